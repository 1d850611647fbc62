"""What a public tiled raster source is: its tile grid, file names, mirror, version and licence.

Every login-free source of an auxiliary layer (:mod:`nimbus.fetch.copdem`, :mod:`~nimbus.fetch.hansen`,
:mod:`~nimbus.fetch.jrcwater`, :mod:`~nimbus.fetch.worldcover`) is one :class:`TileSource`: geographic
(EPSG:4326) tiles of ``cell`` degrees, each a file whose path below the base URL follows from the
tile's south-west corner. The reader (:mod:`nimbus.fetch.mosaic`) never trusts the names for the
geometry: it reads every file's own transform.

The base URL of each source can be pointed at a mirror (an http(s) URL or a local folder laid out like
the bucket): ``mirrors={"altitude": URL}`` (a layer, the source name or an alias), else the source's
environment variable (``NIMBUS_COPDEM_URL``...), else the public bucket.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nimbus.auxiliary import canonical_layer
from nimbus.errors import AuxiliaryDataError, UsageError

__all__ = ["TileSource", "base_url", "join_url", "lat_label", "lon_label", "parse_mirrors", "register", "source_for", "sources"]


def lat_label(lat: int, width: int = 2) -> str:
    """``N46`` / ``S05`` style latitude of a tile corner (``width`` digits)."""
    return f"{'N' if lat >= 0 else 'S'}{abs(int(lat)):0{width}d}"


def lon_label(lon: int, width: int = 3) -> str:
    """``E007`` / ``W120`` style longitude of a tile corner (``width`` digits)."""
    return f"{'E' if lon >= 0 else 'W'}{abs(int(lon)):0{width}d}"


@dataclass(frozen=True)
class TileSource:
    """One public tiled raster source of an auxiliary layer.

    Attributes:
        name: short identifier, e.g. ``"copdem-glo30"`` (a tag of every output; a key of ``mirrors``).
        layer: the Nimbus layer it provides (``altitude``, ``treecover``, ``water``, ``landcover``).
        title: the dataset's name for people.
        version: the dataset version read (a tag; a cached layer of another version is rebuilt).
        licence: the licence, in words, with its URL.
        credit: the attribution the licence asks for.
        default_url: the public base URL (login-free).
        env: the environment variable that points the base URL at a mirror.
        cell: tile size in degrees (1, 3, 10).
        path: ``path(south, west) -> str``: the file path below the base URL of the tile whose
            south-west corner is (south, west), in whole degrees.
        lat_range: (south, north) of the source's coverage; tiles outside are never asked for.
        sea_value: value of a tile absent from the source because it is sea (None: an absent tile is an error).
        index: path of the list of existing tiles below the base URL (``tileList.txt``), or None.
        index_name: ``index_name(south, west) -> str``: how a tile appears in the index.
        nodata: nodata of the source files when they declare none (None: every value is data).
        aliases: other keys accepted in ``mirrors`` / ``--mirror``.
        notes: extra tags for the outputs (vertical datum, units...).
    """

    name: str
    layer: str
    title: str
    version: str
    licence: str
    credit: str
    default_url: str
    env: str
    cell: int
    path: Callable[[int, int], str]
    lat_range: tuple[float, float] = (-90.0, 90.0)
    sea_value: float | None = None
    index: str | None = None
    index_name: Callable[[int, int], str] | None = None
    nodata: float | None = None
    aliases: tuple[str, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict)

    def tags(self, base: str) -> dict[str, str]:
        """The GeoTIFF tags naming this source in an output built from it."""
        return {
            "source": self.title,
            "source_id": self.name,
            "source_version": self.version,
            "source_url": base,
            "licence": self.licence,
            "credit": self.credit,
            **dict(self.notes),
        }


_SOURCES: dict[str, TileSource] = {}


def register(source: TileSource) -> TileSource:
    """Register a source as the provider of its layer (one per layer; the last registered wins)."""
    _SOURCES[source.layer] = source
    return source


def sources() -> dict[str, TileSource]:
    """``{layer: source}`` of every registered source."""
    from nimbus.fetch import copdem, hansen, jrcwater, worldcover  # noqa: F401  (registration on import)

    return dict(_SOURCES)


def source_for(layer: str) -> TileSource:
    """The source of a layer (aliases such as ``dem`` accepted).

    Raises:
        AuxiliaryDataError: no public source provides that layer.
    """
    known = sources()
    name = canonical_layer(layer)
    if name not in known:
        raise AuxiliaryDataError(
            f"no public source for auxiliary layer {layer!r}; fetchable layers: {', '.join(sorted(known))} "
            "(build others from your own rasters with `nimbus auxiliary OUT --dem/--treecover/--water FILES`)"
        )
    return known[name]


def parse_mirrors(value: object) -> dict[str, str]:
    """``{key: base URL}`` from ``"altitude=URL,treecover=URL"``, a list of such, or a dict.

    Raises:
        UsageError: an entry is not ``KEY=URL`` or the key names no source.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        parts = list(value) if isinstance(value, (list, tuple)) else str(value).split(",")
        items = []
        for part in (str(p).strip() for p in parts):
            if not part:
                continue
            key, sep, url = part.partition("=")
            if not sep or not key.strip() or not url.strip():
                raise UsageError(f"--mirror {part!r}: give LAYER=URL, e.g. --mirror altitude=https://my.mirror/copdem")
            items.append((key.strip(), url.strip()))
    keys = {k for s in sources().values() for k in (s.layer, s.name, *s.aliases)}
    out = {}
    for key, url in items:
        k = key.lower()
        if k not in keys and canonical_layer(k) not in keys:
            raise UsageError(f"--mirror {key}=...: {key!r} names no source; use one of {', '.join(sorted(keys))}")
        out[k] = url
    return out


def base_url(source: TileSource, mirrors: Mapping[str, str] | None = None) -> str:
    """The base URL (or local folder) a source is read from: a mirror, its environment variable, or the public bucket."""
    mirrors = {str(k).lower(): v for k, v in (mirrors or {}).items()}
    for key in (source.layer, source.name, *source.aliases):
        if mirrors.get(key):
            return str(mirrors[key]).rstrip("/")
    for key, url in mirrors.items():
        if url and canonical_layer(key) == source.layer:
            return str(url).rstrip("/")
    env = os.environ.get(source.env, "").strip()
    return (env or source.default_url).rstrip("/")


def join_url(base: str, path: str) -> str:
    """``base/path`` for URLs and local folders alike."""
    if "://" in base:
        return f"{base.rstrip('/')}/{path.lstrip('/')}"
    return os.path.join(base, *path.split("/"))
