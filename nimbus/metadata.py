"""Sentinel-2 metadata: the product XML (``MTD_MSIL1C/2A.xml``), the tile XML (``MTD_TL.xml``),
their pre-2016 "OPER" spellings, the STAC item JSON of cloud COG archives and AWS ``tileInfo.json``.

Parsing ignores XML namespaces (they changed between PSD versions 12, 13, 14) and looks elements up
by local name, so every processing baseline from 02.01 to 05.xx reads the same way.

The DN -> reflectance rule: ``reflectance = (DN + offset) / quantification``. From processing
baseline 04.00 on, products carry ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET`` (L2A) = -1000 per
band; earlier baselines have none (offset 0). DN 0 is nodata in every baseline.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from affine import Affine

from nimbus.bands import BANDS, band_from_id, normalise_band
from nimbus.errors import MetadataError

__all__ = [
    "ProductMetadata",
    "TileMetadata",
    "baseline_has_offsets",
    "parse_aws_tile_info",
    "parse_metadata",
    "parse_product_metadata",
    "parse_stac_item",
    "parse_tile_metadata",
    "parse_time",
    "tile_from_name",
]

_BASELINE_RE = re.compile(r"_N(\d{2})\.?(\d{2})(?=[_./]|$)")


@dataclass
class ProductMetadata:
    """What the product-level XML (``MTD_MSIL1C.xml``, ``MTD_MSIL2A.xml``, ``*_MTD_SAFL1C_*.xml``) says.

    Attributes:
        source: the file (or URL-like path) parsed, for messages.
        level: ``"L1C"`` or ``"L2A"``.
        baseline: processing baseline, e.g. ``"05.10"``.
        product_uri: the product name (``PRODUCT_URI``), without ``.SAFE``.
        spacecraft: ``"Sentinel-2A"``, ``"Sentinel-2B"``...
        sensing_time: start of the datatake sensing (aware, UTC).
        quantification: DN per unit reflectance (10000.0).
        offsets: per band additive offset in DN (``-1000.0`` from baseline 04.00 on, else ``0.0``).
        offsets_from_metadata: whether the offsets were read from the file (else inferred from the baseline).
        nodata: the DN of missing pixels (0).
        saturated: the DN of saturated pixels (65535).
        cloud_cover: ``Cloud_Coverage_Assessment`` in percent (None when absent).
        product_format: ``"SAFE_COMPACT"`` (current naming) or ``"SAFE"`` (pre-December-2016 OPER naming).
        image_files: the band files listed in the metadata, relative to the product root, without extension.
        resolutions: native resolution of each band as listed in ``Spectral_Information``.
    """

    source: str
    level: str
    baseline: str
    product_uri: str = ""
    spacecraft: str = ""
    sensing_time: datetime | None = None
    quantification: float = 10000.0
    offsets: dict[str, float] = field(default_factory=dict)
    offsets_from_metadata: bool = False
    nodata: int = 0
    saturated: int = 65535
    cloud_cover: float | None = None
    product_format: str = "SAFE_COMPACT"
    image_files: list[str] = field(default_factory=list)
    resolutions: dict[str, int] = field(default_factory=dict)


@dataclass
class TileMetadata:
    """What the tile-level XML (``MTD_TL.xml``, ``*_MTD_L1C_TL_*.xml``) says.

    Attributes:
        source: the file parsed.
        level: ``"L1C"`` or ``"L2A"``.
        baseline: processing baseline from the ``TILE_ID`` (``..._N02.06``), "" when absent.
        tile_id: the granule identifier.
        tile: the MGRS tile code, e.g. ``"31TDH"``.
        sensing_time: the tile's sensing time (aware, UTC).
        epsg: the EPSG code of the tile CRS (326xx/327xx UTM).
        crs_name: e.g. ``"WGS84 / UTM zone 31N"``.
        sizes: ``{resolution: (rows, cols)}`` for 10, 20, 60.
        geoposition: ``{resolution: (ulx, uly, xdim, ydim)}``.
        cloud_cover: ``CLOUDY_PIXEL_PERCENTAGE`` (None when absent).
        sun_zenith: mean sun zenith angle in degrees (None when absent).
        sun_azimuth: mean sun azimuth angle in degrees.
        view_angles: ``{band: (zenith, azimuth)}`` mean viewing incidence angles (NaN allowed).
    """

    source: str
    level: str
    baseline: str
    tile_id: str
    tile: str
    sensing_time: datetime | None
    epsg: int
    crs_name: str = ""
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    geoposition: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    cloud_cover: float | None = None
    sun_zenith: float | None = None
    sun_azimuth: float | None = None
    view_angles: dict[str, tuple[float, float]] = field(default_factory=dict)

    def transform(self, res: int) -> Affine:
        """The affine transform of the ``res`` m grid (pixel corners, north up)."""
        if res not in self.geoposition:
            raise MetadataError(f"{self.source}: no Geoposition for resolution {res} m")
        ulx, uly, xdim, ydim = self.geoposition[res]
        return Affine(xdim, 0.0, ulx, 0.0, ydim, uly)


def parse_time(text: str | None) -> datetime | None:
    """Parse an ISO-8601 time as written in Sentinel-2 metadata (``Z``, 0-6 decimals) to aware UTC.

    Args:
        text: e.g. ``"2018-01-01T10:54:41.026Z"``.

    Returns:
        The aware datetime, or None for an empty value.
    """
    if not text:
        return None
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", t)
    if m:
        frac = (m.group(2) or "")[:7].ljust(7, "0") if m.group(2) else ""
        t = m.group(1) + frac + m.group(3)
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def baseline_has_offsets(baseline: str) -> bool:
    """Whether a processing baseline carries the -1000 DN offset (04.00 and later)."""
    try:
        return float(baseline) >= 4.0
    except (TypeError, ValueError):
        return False


def tile_from_name(name: str) -> str:
    """The MGRS tile code in a product, granule or file name (``..._T31TDH_...`` -> ``"31TDH"``); "" if none."""
    m = re.search(r"(?:^|[_/])T(\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})(?=[_./]|$)", name)
    return m.group(1) if m else ""


def _baseline_from_name(name: str) -> str:
    m = _BASELINE_RE.search(name)
    return f"{m.group(1)}.{m.group(2)}" if m else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _Doc:
    """Namespace-free lookups by local element name over one parsed XML document."""

    def __init__(self, data: bytes, source: str) -> None:
        self.source = source
        try:
            self.root = ET.fromstring(data)
        except (ET.ParseError, LookupError, ValueError) as exc:  # LookupError/ValueError: unknown or multi-byte encoding
            raise MetadataError(f"{source}: metadata XML cannot be parsed ({exc}); the file is damaged or truncated") from exc
        self.index: dict[str, list[ET.Element]] = {}
        for el in self.root.iter():
            self.index.setdefault(_local(el.tag), []).append(el)

    @property
    def root_name(self) -> str:
        return _local(self.root.tag)

    def all(self, name: str) -> list[ET.Element]:
        return self.index.get(name, [])

    def text(self, name: str, default: str | None = None) -> str | None:
        for el in self.all(name):
            if el.text and el.text.strip():
                return el.text.strip()
        return default

    def number(self, name: str) -> float | None:
        t = self.text(name)
        try:
            return float(t) if t is not None else None
        except ValueError:
            return None

    def suffix_text(self, suffix: str) -> str | None:
        for name, els in self.index.items():
            if name.endswith(suffix):
                for el in els:
                    if el.text and el.text.strip():
                        return el.text.strip()
        return None


def _time(doc: _Doc, *names: str) -> datetime | None:
    """The first of ``names`` present, as an aware UTC time (``MetadataError`` naming the element when malformed)."""
    for name in names:
        text = doc.text(name)
        if text is not None:
            try:
                return parse_time(text)
            except (ValueError, OverflowError) as exc:
                raise MetadataError(f"{doc.source}: <{name}> {text[:60]!r} is not an ISO-8601 time ({exc})") from exc
    return None


def _band_of(el: ET.Element, band_id: str, source: str) -> str:
    """The band name of a ``bandId``/``band_id`` attribute (``MetadataError`` naming the element when not 0..12)."""
    try:
        return band_from_id(band_id)
    except (IndexError, ValueError) as exc:
        raise MetadataError(f"{source}: <{_local(el.tag)}> has band id {band_id[:20]!r}, expected 0..{len(BANDS) - 1}") from exc


def _number(el: ET.Element, text: str | None, source: str, kind: type = float) -> Any:
    """``kind(text)`` of an element's value (``MetadataError`` naming the element when not a finite number)."""
    try:
        return int(float(text)) if kind is int else float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as exc:
        raise MetadataError(f"{source}: <{_local(el.tag)}> value {str(text)[:30]!r} is not a number") from exc


def _level_from_root(root_name: str, source: str) -> str:
    m = re.search(r"Level-(1C|2A)", root_name, re.IGNORECASE)
    if not m:
        raise MetadataError(f"{source}: root element <{root_name}> is not Sentinel-2 Level-1C/2A metadata")
    return "L" + m.group(1).upper()


def _read(source: str | Path | bytes, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), name or "<metadata>"
    p = str(source)
    try:
        return Path(p).read_bytes(), name or p
    except FileNotFoundError as exc:
        raise MetadataError(f"{p}: metadata file not found") from exc
    except OSError as exc:
        raise MetadataError(f"{p}: metadata file cannot be read ({exc})") from exc


def parse_product_metadata(source: str | Path | bytes, name: str | None = None) -> ProductMetadata:
    """Parse a product-level XML (``MTD_MSIL1C.xml``, ``MTD_MSIL2A.xml``, OPER ``*_MTD_SAF*.xml``).

    Args:
        source: the file path or its bytes.
        name: the name used in messages when ``source`` is bytes.

    Returns:
        The parsed :class:`ProductMetadata`.

    Raises:
        MetadataError: unreadable XML, not a product-level file, or a required element missing.
    """
    data, src = _read(source, name)
    doc = _Doc(data, src)
    if not doc.root_name.endswith("User_Product"):
        raise MetadataError(f"{src}: <{doc.root_name}> is not a product-level metadata file (MTD_MSIL1C/2A.xml)")
    return _product_from_doc(doc)


def _product_from_doc(doc: _Doc) -> ProductMetadata:
    src = doc.source
    level = _level_from_root(doc.root_name, src)
    baseline = doc.text("PROCESSING_BASELINE") or ""
    uri = (doc.text("PRODUCT_URI") or "").removesuffix(".SAFE")
    if not baseline:
        baseline = _baseline_from_name(uri)
    if not baseline:
        raise MetadataError(f"{src}: no PROCESSING_BASELINE in the product metadata")
    # Quantification: L1C QUANTIFICATION_VALUE; L2A BOA_QUANTIFICATION_VALUE (older: L2A_BOA_QUANTIFICATION_VALUE).
    q = doc.suffix_text("BOA_QUANTIFICATION_VALUE") if level == "L2A" else None
    if q is None:
        q = doc.text("QUANTIFICATION_VALUE")
    try:
        quantification = float(q) if q is not None else 10000.0
    except ValueError as exc:
        raise MetadataError(f"{src}: quantification value {q!r} is not a number") from exc
    offsets: dict[str, float] = {}
    for tag in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
        for el in doc.all(tag):
            bid = el.get("band_id", el.get("bandId"))
            if bid is None or not el.text:
                continue
            offsets[_band_of(el, bid, src)] = _number(el, el.text.strip(), src)
    from_md = bool(offsets)
    default = -1000.0 if baseline_has_offsets(baseline) else 0.0
    offsets = {b: offsets.get(b, default if not from_md else 0.0) for b in BANDS}
    nodata, saturated = 0, 65535
    for sv in doc.all("Special_Values"):
        txt = idx = None
        for child in sv:
            if _local(child.tag) == "SPECIAL_VALUE_TEXT":
                txt = (child.text or "").strip()
            elif _local(child.tag) == "SPECIAL_VALUE_INDEX":
                idx = (child.text or "").strip()
        if txt == "NODATA" and idx:
            nodata = _number(sv, idx, src, int)
        elif txt == "SATURATED" and idx:
            saturated = _number(sv, idx, src, int)
    resolutions: dict[str, int] = {}
    for si in doc.all("Spectral_Information"):
        pb = si.get("physicalBand")
        for child in si:
            if _local(child.tag) == "RESOLUTION" and pb and child.text:
                try:
                    resolutions[normalise_band(pb)] = int(float(child.text))
                except (ValueError, OverflowError):
                    pass
    images = [el.text.strip() for el in doc.all("IMAGE_FILE") + doc.all("IMAGE_ID") if el.text and el.text.strip()]
    sensing = _time(doc, "PRODUCT_START_TIME", "DATATAKE_SENSING_START")
    cc = doc.number("Cloud_Coverage_Assessment")
    return ProductMetadata(
        source=src,
        level=level,
        baseline=baseline,
        product_uri=uri,
        spacecraft=doc.text("SPACECRAFT_NAME") or "",
        sensing_time=sensing,
        quantification=quantification,
        offsets=offsets,
        offsets_from_metadata=from_md,
        nodata=nodata,
        saturated=saturated,
        cloud_cover=cc,
        product_format=doc.text("PRODUCT_FORMAT") or ("SAFE" if "_OPER_" in uri or "_USER_" in uri else "SAFE_COMPACT"),
        image_files=images,
        resolutions=resolutions,
    )


def parse_tile_metadata(source: str | Path | bytes, name: str | None = None) -> TileMetadata:
    """Parse a tile-level XML (``MTD_TL.xml``, OPER ``*_MTD_L1C_TL_*.xml``, AWS ``metadata.xml``).

    Args:
        source: the file path or its bytes.
        name: the name used in messages when ``source`` is bytes.

    Returns:
        The parsed :class:`TileMetadata`.

    Raises:
        MetadataError: unreadable XML, not a tile-level file, or no CRS/geoposition.
    """
    data, src = _read(source, name)
    doc = _Doc(data, src)
    if not doc.root_name.endswith("Tile_ID"):
        raise MetadataError(f"{src}: <{doc.root_name}> is not a tile-level metadata file (MTD_TL.xml)")
    return _tile_from_doc(doc)


def _tile_from_doc(doc: _Doc) -> TileMetadata:
    src = doc.source
    level = _level_from_root(doc.root_name, src)
    tile_id = doc.text("TILE_ID") or ""
    code = doc.text("HORIZONTAL_CS_CODE") or ""
    m = re.search(r"(\d+)\s*$", code)
    if not m:
        raise MetadataError(f"{src}: no HORIZONTAL_CS_CODE (tile CRS) in the tile metadata")
    try:
        epsg = int(m.group(1))
    except ValueError as exc:  # more digits than int() converts
        raise MetadataError(f"{src}: HORIZONTAL_CS_CODE {code[:30]!r}... is not an EPSG code") from exc
    sizes: dict[int, tuple[int, int]] = {}
    for el in doc.all("Size"):
        res = _number(el, el.get("resolution", "0"), src, int)
        vals = {_local(c.tag): c.text for c in el}
        try:
            sizes[res] = (int(vals["NROWS"]), int(vals["NCOLS"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"{src}: malformed <Size resolution={res}>") from exc
    geo: dict[int, tuple[float, float, float, float]] = {}
    for el in doc.all("Geoposition"):
        res = _number(el, el.get("resolution", "0"), src, int)
        vals = {_local(c.tag): c.text for c in el}
        try:
            geo[res] = (float(vals["ULX"]), float(vals["ULY"]), float(vals["XDIM"]), float(vals["YDIM"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"{src}: malformed <Geoposition resolution={res}>") from exc
    if not geo or not sizes:
        raise MetadataError(f"{src}: the tile metadata has no Size/Geoposition (tile grid)")
    sun_z = sun_a = None
    for el in doc.all("Mean_Sun_Angle"):
        vals = {_local(c.tag): c.text for c in el}
        sun_z = _float(vals.get("ZENITH_ANGLE"))
        sun_a = _float(vals.get("AZIMUTH_ANGLE"))
    views: dict[str, tuple[float, float]] = {}
    for el in doc.all("Mean_Viewing_Incidence_Angle"):
        vals = {_local(c.tag): c.text for c in el}
        bid = el.get("bandId")
        if bid is not None:
            views[_band_of(el, bid, src)] = (_float(vals.get("ZENITH_ANGLE")) or float("nan"), _float(vals.get("AZIMUTH_ANGLE")) or float("nan"))
    return TileMetadata(
        source=src,
        level=level,
        baseline=_baseline_from_name(tile_id),
        tile_id=tile_id,
        tile=tile_from_name(tile_id),
        sensing_time=_time(doc, "SENSING_TIME"),
        epsg=epsg,
        crs_name=doc.text("HORIZONTAL_CS_NAME") or "",
        sizes=sizes,
        geoposition=geo,
        cloud_cover=doc.number("CLOUDY_PIXEL_PERCENTAGE"),
        sun_zenith=sun_z,
        sun_azimuth=sun_a,
        view_angles=views,
    )


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def parse_metadata(source: str | Path | bytes, name: str | None = None) -> ProductMetadata | TileMetadata:
    """Parse any Sentinel-2 metadata XML, product- or tile-level, telling them apart by the root element.

    Args:
        source: the file path or its bytes.
        name: the name used in messages when ``source`` is bytes.

    Returns:
        A :class:`ProductMetadata` or a :class:`TileMetadata`.

    Raises:
        MetadataError: unreadable or not Sentinel-2 L1C/L2A metadata.
    """
    data, src = _read(source, name)
    doc = _Doc(data, src)
    if doc.root_name.endswith("User_Product"):
        return _product_from_doc(doc)
    if doc.root_name.endswith("Tile_ID"):
        return _tile_from_doc(doc)
    raise MetadataError(f"{src}: <{doc.root_name}> is neither product nor tile Sentinel-2 metadata")


def _load_json(source: str | Path | bytes | dict, name: str | None) -> tuple[dict[str, Any], str]:
    if isinstance(source, dict):
        return source, name or "<json>"
    data, src = _read(source, name)
    try:
        return json.loads(data), src
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{src}: JSON metadata cannot be parsed ({exc})") from exc


def parse_stac_item(source: str | Path | bytes | dict, name: str | None = None) -> tuple[ProductMetadata, TileMetadata]:
    """Parse the STAC item JSON of a Sentinel-2 COG archive (Element84 / earth-search layout).

    Args:
        source: the JSON file path, its bytes or the decoded dict.
        name: the name used in messages when ``source`` is bytes or a dict.

    Returns:
        The product- and tile-level view of the item. Offsets are -1000 for baseline >= 04.00
        unless the item says the offset was already applied (``earthsearch:boa_offset_applied``).

    Raises:
        MetadataError: not a Sentinel-2 STAC item.
    """
    item, src = _load_json(source, name)
    props = item.get("properties") or {}
    if not isinstance(props, dict) or item.get("type") != "Feature":
        raise MetadataError(f"{src}: not a STAC item (no Feature with properties)")
    ptype = str(props.get("s2:product_type", ""))
    uri = str(props.get("s2:product_uri", "")).removesuffix(".SAFE")
    level = "L2A" if "2A" in ptype or "MSIL2A" in uri else "L1C" if ("1C" in ptype or "MSIL1C" in uri) else ""
    if not level:
        raise MetadataError(f"{src}: STAC item has no Sentinel-2 product type (s2:product_type)")
    baseline = str(props.get("s2:processing_baseline") or _baseline_from_name(uri))
    applied = bool(props.get("earthsearch:boa_offset_applied", False))
    off = -1000.0 if baseline_has_offsets(baseline) and not applied else 0.0
    tile = str(props.get("grid:code", "")).replace("MGRS-", "") or (
        f"{int(props.get('mgrs:utm_zone', 0)):02d}{props.get('mgrs:latitude_band', '')}{props.get('mgrs:grid_square', '')}"
    )
    epsg = int(props.get("proj:epsg") or props.get("proj:code", "EPSG:0").split(":")[-1])
    sensing = parse_time(props.get("datetime"))
    platform = str(props.get("platform", ""))
    spacecraft = "Sentinel-" + platform.split("-")[-1].upper() if platform else ""
    product = ProductMetadata(
        source=src,
        level=level,
        baseline=baseline,
        product_uri=uri or str(item.get("id", "")),
        spacecraft=spacecraft,
        sensing_time=sensing,
        quantification=10000.0,
        offsets={b: off for b in BANDS},
        offsets_from_metadata=False,
        cloud_cover=_float(props.get("eo:cloud_cover")),
    )
    sizes: dict[int, tuple[int, int]] = {}
    geo: dict[int, tuple[float, float, float, float]] = {}
    for asset in (item.get("assets") or {}).values():
        shape, tr = asset.get("proj:shape"), asset.get("proj:transform")
        if shape and tr and abs(tr[0]) in (10, 20, 60):
            res = int(abs(tr[0]))
            sizes[res] = (int(shape[0]), int(shape[1]))
            geo[res] = (float(tr[2]), float(tr[5]), float(tr[0]), float(tr[4]))
    tmeta = TileMetadata(
        source=src,
        level=level,
        baseline=baseline,
        tile_id=str(props.get("s2:granule_id", "")),
        tile=tile,
        sensing_time=sensing,
        epsg=epsg,
        sizes=sizes,
        geoposition=geo,
        cloud_cover=_float(props.get("eo:cloud_cover")),
        sun_zenith=(90.0 - float(props["view:sun_elevation"])) if "view:sun_elevation" in props else None,
        sun_azimuth=_float(props.get("view:sun_azimuth")),
    )
    return product, tmeta


def parse_aws_tile_info(source: str | Path | bytes | dict, name: str | None = None) -> tuple[ProductMetadata, TileMetadata]:
    """Parse an AWS ``tileInfo.json`` (sentinel-s2-l1c/l2a bucket layout).

    Args:
        source: the JSON file path, its bytes or the decoded dict.
        name: the name used in messages when ``source`` is bytes or a dict.

    Returns:
        Product- and tile-level views (grid sizes are not in tileInfo.json: ``sizes`` is empty and the
        geoposition holds only the tile origin at 10 m).

    Raises:
        MetadataError: not a tileInfo.json.
    """
    info, src = _load_json(source, name)
    try:
        pname = str(info["productName"])
        zone, band, square = int(info["utmZone"]), str(info["latitudeBand"]), str(info["gridSquare"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MetadataError(f"{src}: not an AWS tileInfo.json (needs productName, utmZone, latitudeBand, gridSquare)") from exc
    level = "L2A" if "MSIL2A" in pname else "L1C"
    baseline = _baseline_from_name(pname) or _baseline_from_name(str((info.get("datastrip") or {}).get("id", "")))
    crs_name = str(((info.get("tileOrigin") or {}).get("crs") or {}).get("properties", {}).get("name", ""))
    m = re.search(r"(\d{4,5})\s*$", crs_name)
    epsg = int(m.group(1)) if m else (32600 if band >= "N" else 32700) + zone
    origin = (info.get("tileOrigin") or {}).get("coordinates") or [0.0, 0.0]
    sensing = parse_time(info.get("timestamp"))
    off = -1000.0 if baseline_has_offsets(baseline) else 0.0
    product = ProductMetadata(
        source=src,
        level=level,
        baseline=baseline,
        product_uri=pname,
        spacecraft="Sentinel-" + pname[1:3].upper() if pname.startswith("S2") else "",
        sensing_time=sensing,
        offsets={b: off for b in BANDS},
        cloud_cover=_float(info.get("cloudyPixelPercentage")),
    )
    tmeta = TileMetadata(
        source=src,
        level=level,
        baseline=baseline,
        tile_id=str((info.get("datastrip") or {}).get("id", "")),
        tile=f"{zone:02d}{band}{square}",
        sensing_time=sensing,
        epsg=epsg,
        geoposition={10: (float(origin[0]), float(origin[1]), 10.0, -10.0)},
        cloud_cover=_float(info.get("cloudyPixelPercentage")),
    )
    return product, tmeta
