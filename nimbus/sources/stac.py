"""STAC Items of Sentinel-2 products: band assets read in place (remote ones through GDAL ``/vsicurl/``).

An item is given as a JSON file (``items.json#ITEM_ID`` picks one feature of an ItemCollection),
an ``http(s)://`` URL, a decoded dict or a ``pystac.Item``. Asset keys are mapped to band names:
Earth Search common names (``coastal blue green red rededge1-3 nir nir08 nir09 cirrus swir16 swir22
scl aot wvp``), ``B04``-style keys (Planetary Computer, ``B04_10m`` on CDSE; the band's native
resolution is preferred), or the asset's single ``eo:bands`` entry. ``-jp2`` assets are used only
when no COG asset gives the band.

Harmonisation (the -1000 DN offset of processing baseline >= 04.00) is decided once per item, by
source and baseline (:func:`harmonization`), and ``nimbus info`` prints the rule:

- Earth Search ``sentinel-2-c1-*`` (Collection 1 reprocessing): the assets' ``raster:bands``
  ``offset``/``scale`` (-0.1 / 0.0001 = -1000 DN), checked against the baseline;
- Earth Search ``sentinel-2-l2a`` (older): baseline < 04.00: none; from 04.00 Element 84 subtracted the
  offset from some COGs and ``earthsearch:boa_offset_applied`` is wrong in both directions, so the
  pixels decide: the darkest bands' coarsest overview is sampled and a share of valid DN below 1000
  above 0.5 % means the offset is already in the pixels (offset 0), below 0.05 % that it is not
  (-1000); in between the flag is used and the rule says "ambiguous";
- Planetary Computer, CDSE and other catalogues (ESA's DN unchanged): ``raster:bands`` offsets when the
  item declares them, else the baseline rule.

Planetary Computer hrefs are signed when the optional ``planetary-computer`` package is installed;
CDSE ``s3://eodata`` hrefs need ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` and
``AWS_S3_ENDPOINT=eodata.dataspace.copernicus.eu`` (``AWS_VIRTUAL_HOSTING=FALSE``) in the environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from nimbus.bands import BANDS, NATIVE_RESOLUTION, normalise_band
from nimbus.errors import MetadataError, NotAProductError, ProductError
from nimbus.metadata import ProductMetadata, TileMetadata, baseline_has_offsets, parse_stac_item
from nimbus.product import BandFile, FileStore, Product, baseline_rule
from nimbus.remote import fetch_bytes, gdal_error, gdal_path, http_status, is_remote, remote_env, retry_delays

__all__ = [
    "COMMON_NAMES",
    "StacStore",
    "accepts_stac",
    "band_assets",
    "catalog_kind",
    "harmonization",
    "harmonize_product",
    "load_item",
    "open_stac",
    "parse_item",
]

#: Earth Search asset keys / eo:bands common names -> band names.
COMMON_NAMES: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
    "aot": "AOT",
    "wvp": "WVP",
}

_KEY_RE = re.compile(r"^(B0?[1-9]|B1[0-2]|B8A|SCL|AOT|WVP)(?:[_-](10|20|60)m)?$", re.IGNORECASE)
_SKIP_ROLES = {"thumbnail", "overview", "visual", "metadata"}
_SAMPLE_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
_APPLIED_ABOVE = 0.005  # share of valid DN < 1000 above which the offset is already in the pixels
_RAW_BELOW = 0.0005  # below which the pixels still carry the +1000


# ----------------------------------------------------------------------------------------- items


def _looks_like_item_file(p: Path) -> bool:
    if not p.is_file() or p.stat().st_size > 50_000_000:
        return False
    if p.suffix.lower() not in (".json", ".geojson"):
        return False
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return '"Feature' in head or '"type"' in head


def accepts_stac(ref: Any) -> bool:
    """A ``pystac.Item``, an item dict, an ``http(s)``/``s3`` URL, or a ``.json`` file (``#id`` allowed)."""
    if isinstance(ref, dict):
        return ref.get("type") == "Feature"
    if hasattr(ref, "to_dict") and hasattr(ref, "assets"):
        return True
    if isinstance(ref, str) and is_remote(ref):
        return not ref.startswith("/vsi")
    if isinstance(ref, (str, os.PathLike)):
        s = os.fspath(ref)
        p = Path(s.split("#", 1)[0]) if "#" in s and not Path(s).exists() else Path(s)
        return _looks_like_item_file(p)
    return False


def load_item(ref: Any) -> tuple[dict[str, Any], str, str]:
    """The item as a dict, how messages name it, and the base for relative hrefs.

    Raises:
        NotAProductError: the JSON is not a STAC Item (or the ``#id`` is not in the collection).
        nimbus.remote.RemoteReadError: the URL cannot be fetched.
        MetadataError: the JSON cannot be parsed.
    """
    if isinstance(ref, dict):
        href = next((lk.get("href", "") for lk in ref.get("links", []) if lk.get("rel") == "self"), "")
        return ref, str(ref.get("id", "<item>")), href
    if hasattr(ref, "to_dict") and hasattr(ref, "assets"):
        href = ref.get_self_href() or ""
        return ref.to_dict(include_self_link=False, transform_hrefs=False), href or str(ref.id), href
    s = os.fspath(ref)
    fragment = ""
    if is_remote(s):
        url, _, fragment = s.partition("#")
        data, name, base = fetch_bytes(url), s, url
    else:
        p = Path(s)
        if not p.exists() and "#" in s:
            p, fragment = Path(s.split("#", 1)[0]), s.split("#", 1)[1]
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise NotAProductError(f"{p}: cannot be read ({exc})") from exc
        name, base = str(ref), p.resolve().as_uri()
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{name}: not a JSON STAC item ({exc})") from exc
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        feats = [f for f in obj.get("features", []) if isinstance(f, dict)]
        pick = [f for f in feats if f.get("id") == fragment] if fragment else feats
        if len(pick) != 1:
            ids = ", ".join(str(f.get("id")) for f in feats[:5])
            raise NotAProductError(f"{name}: an ItemCollection of {len(feats)} items; open one as FILE#ID (e.g. {ids})")
        obj = pick[0]
    if not isinstance(obj, dict) or obj.get("type") != "Feature":
        raise NotAProductError(f"{name}: not a STAC Item (no \"type\": \"Feature\")")
    self_href = next((lk.get("href", "") for lk in obj.get("links", []) if isinstance(lk, dict) and lk.get("rel") == "self"), "")
    return obj, name, base or self_href


def catalog_kind(item: dict[str, Any]) -> str:
    """Which catalogue an item comes from: earth-search-c1, earth-search, planetary-computer, cdse or stac."""
    props = item.get("properties") or {}
    coll = str(item.get("collection") or "")
    hrefs = " ".join(str(a.get("href", "")) for a in (item.get("assets") or {}).values() if isinstance(a, dict))
    links = " ".join(str(lk.get("href", "")) for lk in item.get("links", []) if isinstance(lk, dict))
    if coll.startswith("sentinel-2-c1-"):
        return "earth-search-c1"
    if any(k.startswith("earthsearch:") for k in props) or "earth-search.aws.element84.com" in links:
        return "earth-search"
    if "blob.core.windows.net" in hrefs or "planetarycomputer" in links or any(k.startswith("msft:") for k in props):
        return "planetary-computer"
    if "s3://eodata/" in hrefs or "dataspace.copernicus.eu" in links + hrefs:
        return "cdse"
    return "stac"


def _asset_resolution(key: str, asset: dict[str, Any]) -> int | None:
    m = _KEY_RE.match(key)
    if m and m.group(2):
        return int(m.group(2))
    tr = asset.get("proj:transform")
    if tr and len(tr) >= 1 and abs(float(tr[0])) in (10, 20, 60):
        return int(abs(float(tr[0])))
    gsd = asset.get("gsd")
    rb = asset.get("raster:bands") or []
    res = gsd or (rb[0].get("spatial_resolution") if rb and isinstance(rb[0], dict) else None)
    return int(res) if res in (10, 20, 60) else None


def _band_of_asset(key: str, asset: dict[str, Any]) -> str | None:
    base = key.lower().removesuffix("-jp2").removesuffix("-cog")
    if base in COMMON_NAMES:
        return COMMON_NAMES[base]
    m = _KEY_RE.match(base)
    if m:
        try:
            return normalise_band(m.group(1))
        except ValueError:
            return None
    eob = asset.get("eo:bands") or asset.get("bands") or []
    if len(eob) == 1 and isinstance(eob[0], dict):
        for name in (eob[0].get("name"), eob[0].get("common_name")):
            if isinstance(name, str):
                if name.lower() in COMMON_NAMES:
                    return COMMON_NAMES[name.lower()]
                with contextlib.suppress(ValueError):
                    return normalise_band(name)
    return None


def band_assets(item: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any], int]]:
    """``{band: (asset key, asset, resolution)}`` for the item's band assets.

    COG assets win over ``-jp2`` ones; among several resolutions the band's native one wins, else the finest.
    """
    cands: dict[str, list[tuple[int, int, str, dict[str, Any], int]]] = {}
    for key, asset in (item.get("assets") or {}).items():
        if not isinstance(asset, dict) or not asset.get("href"):
            continue
        roles = set(asset.get("roles") or [])
        if roles & _SKIP_ROLES and "data" not in roles:
            continue
        band = _band_of_asset(key, asset)
        if band is None:
            continue
        res = _asset_resolution(key, asset) or NATIVE_RESOLUTION.get(band, 10)
        is_jp2 = key.lower().endswith("-jp2") or str(asset.get("type", "")).startswith("image/jp2")
        rank = (1 if is_jp2 else 0, 0 if res == NATIVE_RESOLUTION.get(band) else res)
        cands.setdefault(band, []).append((*rank, key, asset, res))
    order = BANDS + ("SCL", "AOT", "WVP")
    out: dict[str, tuple[str, dict[str, Any], int]] = {}
    for band in sorted(cands, key=lambda b: order.index(b) if b in order else len(order)):
        _, _, key, asset, res = min(cands[band], key=lambda c: (c[0], c[1]))
        out[band] = (key, asset, res)
    return out


def parse_item(item: dict[str, Any], name: str) -> tuple[ProductMetadata, TileMetadata]:
    """Product/tile metadata of a Sentinel-2 item from any catalogue (CDSE/PC spellings normalised).

    Raises:
        MetadataError: not a Sentinel-2 L1C/L2A item.
    """
    item = dict(item)
    props = dict(item.get("properties") or {})
    coll = str(item.get("collection") or "").lower()
    if "s2:product_type" not in props:
        ptype = str(props.get("product:type") or props.get("s2:productType") or "")
        if not ptype:
            ptype = "S2MSI2A" if "l2a" in coll or "2a" in str(item.get("id", "")).lower() else "S2MSI1C" if "l1c" in coll else ""
        if ptype:
            props["s2:product_type"] = ptype
    if not props.get("s2:processing_baseline"):
        version = props.get("processing:version") or props.get("s2:processing_baseline")
        if version:
            props["s2:processing_baseline"] = str(version)
    if not (props.get("proj:epsg") or props.get("proj:code")):
        for asset in (item.get("assets") or {}).values():
            code = isinstance(asset, dict) and (asset.get("proj:epsg") or asset.get("proj:code"))
            if code:
                props["proj:epsg"] = int(str(code).split(":")[-1])
                break
    if not props.get("grid:code") and not props.get("mgrs:utm_zone"):
        m = re.search(r"(?:^|_)T?(\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})(?:_|$)", str(item.get("id", "")))
        if m:
            props["grid:code"] = "MGRS-" + m.group(1)
    if not props.get("s2:product_uri") and str(item.get("id", "")).startswith("S2") and "MSIL" in str(item.get("id", "")):
        props["s2:product_uri"] = str(item["id"])
    item["properties"] = props
    md, tmd = parse_stac_item(item, name=name)
    if not md.product_uri:
        md.product_uri = str(item.get("id", ""))
    return md, tmd


# ----------------------------------------------------------------------------------------- harmonisation


def _raster_offsets(item: dict[str, Any]) -> dict[str, float]:
    """DN offsets the spectral assets declare (``raster:bands`` offset / scale), when they declare them."""
    out: dict[str, float] = {}
    for band, (_, asset, _) in band_assets(item).items():
        if band not in BANDS:
            continue
        rb = asset.get("raster:bands") or asset.get("bands") or []
        if not rb or not isinstance(rb[0], dict):
            continue
        scale, offset = rb[0].get("scale"), rb[0].get("offset")
        if scale and offset is not None:
            out[band] = float(round(float(offset) / float(scale)))
    return out


def _share_below(samples: dict[str, np.ndarray]) -> float:
    shares = []
    for arr in samples.values():
        v = arr[arr > 0]
        if v.size:
            shares.append(float((v < 1000).mean()))
    return max(shares) if shares else float("nan")


def harmonization(item: dict[str, Any], baseline: str, sample: Any = None) -> tuple[dict[str, float], str]:
    """The per-band DN offsets of an item and the rule, decided once per source and baseline.

    Args:
        item: the item dict.
        baseline: its processing baseline ("05.10").
        sample: ``sample() -> {band: uint16 array}``, small reads of a few bands (the coarsest overview),
            called only when the pixels must decide (Earth Search ``sentinel-2-l2a`` from 04.00).

    Returns:
        (``{band: offset}`` for the 13 spectral bands, the rule in words).
    """
    kind = catalog_kind(item)
    props = item.get("properties") or {}
    declared = _raster_offsets(item)
    by_baseline = -1000.0 if baseline_has_offsets(baseline) else 0.0

    def every(v: float) -> dict[str, float]:
        return {b: v for b in BANDS}

    if kind == "earth-search-c1":
        if declared:
            vals = sorted(set(declared.values()))
            note = "" if (by_baseline != 0.0) == any(vals) else f"; NB baseline {baseline or 'unknown'} suggests {by_baseline:g}"
            offs = {b: declared.get(b, vals[0]) for b in BANDS}
            return offs, f"Earth Search {item.get('collection')}: raster:bands offset/scale = {', '.join(f'{v:g}' for v in vals)} DN{note}"
        return every(by_baseline), f"Earth Search {item.get('collection')}: no raster:bands offset; " + baseline_rule(baseline)
    if kind == "earth-search":
        flag = props.get("earthsearch:boa_offset_applied", props.get("sentinel:boa_offset_applied"))
        if not baseline_has_offsets(baseline):
            return every(0.0), f"Earth Search sentinel-2-l2a: {baseline_rule(baseline)} (earthsearch:boa_offset_applied not needed)"
        share = _share_below(sample()) if sample is not None else float("nan")
        pct = f"{100 * share:.3g} % of sampled valid DN < 1000" if share == share else "pixels not sampled"
        if share == share and share > _APPLIED_ABOVE:
            return every(0.0), f"Earth Search sentinel-2-l2a, baseline {baseline}: pixels show the offset already applied ({pct}; flag said {flag})"
        if share == share and share < _RAW_BELOW:
            return every(-1000.0), f"Earth Search sentinel-2-l2a, baseline {baseline}: pixels still carry +1000 ({pct}; flag said {flag}): -1000 DN"
        off = 0.0 if flag else -1000.0
        return every(off), f"Earth Search sentinel-2-l2a, baseline {baseline}: pixels ambiguous ({pct}); earthsearch:boa_offset_applied={flag}: {off:g} DN"
    where = {"planetary-computer": "Planetary Computer", "cdse": "CDSE", "stac": "STAC item"}[kind]
    if declared:
        vals = sorted(set(declared.values()))
        return {b: declared.get(b, vals[0]) for b in BANDS}, f"{where}: raster:bands offset/scale = {', '.join(f'{v:g}' for v in vals)} DN"
    return every(by_baseline), f"{where}: {baseline_rule(baseline)}"


def _overview_sample(product: Product, bands: tuple[str, ...] = _SAMPLE_BANDS, size: int = 256) -> dict[str, np.ndarray]:
    """The coarsest overview (about ``size`` pixels across) of a few bands: a few KB each over HTTP."""

    def one(band: str) -> np.ndarray:
        ds = product._dataset(band)
        f = max(1, max(ds.height, ds.width) // size)
        with product._band_lock(band), product._source.env():
            return ds.read(1, out_shape=(max(1, ds.height // f), max(1, ds.width // f)))

    present = [b for b in bands if b in product.bands]
    return dict(zip(present, product._map(one, present)))


def harmonize_product(product: Product, item: dict[str, Any]) -> None:
    """Set ``product.offsets`` and ``product.harmonization`` from the item (called once, at opening)."""
    offsets, rule = harmonization(item, product.baseline, lambda: _overview_sample(product))
    product.offsets = offsets
    product.harmonization = rule


# ----------------------------------------------------------------------------------------- store and opening


class StacStore(FileStore):
    """The band files of an item: each "relative path" is the asset's absolute href."""

    def __init__(self, path: Path | str, hrefs: list[str]) -> None:
        super().__init__(path)
        self._hrefs = list(hrefs)
        self.remote = any(is_remote(h) for h in self._hrefs)
        self._uncached: set[str] = set()

    def list(self) -> list[str]:
        """The band hrefs."""
        return list(self._hrefs)

    def read_bytes(self, rel: str) -> bytes:
        """The bytes behind an href (local file or http(s))."""
        if is_remote(rel):
            return fetch_bytes(rel)
        return Path(gdal_path(rel)).read_bytes()

    def gdal_path(self, rel: str) -> str:
        """``/vsicurl/`` / ``/vsis3/`` path of an href."""
        return gdal_path(rel)

    def describe(self, rel: str) -> str:
        """The href itself."""
        return rel

    def env(self) -> contextlib.AbstractContextManager[Any]:
        """Remote GDAL settings when any href is remote (files that had a transfer cut short: uncached)."""
        if not self.remote:
            return contextlib.nullcontext()
        if self._uncached:
            return remote_env(CPL_VSIL_CURL_NON_CACHED=":".join(sorted(self._uncached)))
        return remote_env()

    def retry_delays(self) -> list[float]:
        """The remote back-off schedule (:func:`nimbus.remote.retry_delays`) when remote."""
        return retry_delays() if self.remote else []

    def retryable(self, exc: Exception, rel: str) -> bool:
        """Remote reads cut short are retried (that file uncached from then on); HTTP 4xx answers are not."""
        code = http_status(exc)
        if not (self.remote and is_remote(rel)) or (code is not None and 400 <= code < 500):
            return False
        # GDAL keeps what it got of a transfer cut short in its cache: read that file uncached from now on
        self._uncached.add(gdal_path(rel))
        return True

    def read_error(self, band: str, rel: str, exc: Exception) -> ProductError:
        """A :class:`nimbus.remote.RemoteReadError` naming the URL for remote hrefs."""
        if is_remote(rel):
            return gdal_error(rel, f"band {band}", exc)
        return super().read_error(band, rel, exc)


def _resolve(href: str, base: str) -> str:
    if "://" in href or href.startswith("/"):
        return href
    if base:
        href = urllib.parse.urljoin(base, href)
    return href


def _local(href: str) -> str:
    return urllib.request.url2pathname(href[7:]) if href.startswith("file://") else href


def _sign(item: dict[str, Any], kind: str) -> dict[str, Any]:
    """Planetary Computer: sign the hrefs when the optional ``planetary-computer`` package is installed."""
    if kind != "planetary-computer":
        return item
    try:
        import planetary_computer  # type: ignore[import-not-found]
    except ImportError:
        return item
    item = json.loads(json.dumps(item))
    for asset in item.get("assets", {}).values():
        if isinstance(asset, dict) and "blob.core.windows.net" in str(asset.get("href", "")) and "?" not in asset["href"]:
            asset["href"] = planetary_computer.sign(asset["href"])
    return item


def open_stac(ref: Any, tile: str | None = None) -> Product:
    """Open a STAC Item: its band assets become the product's band files.

    Args:
        ref: item JSON file (``FILE#ID`` for one item of an ItemCollection), URL, dict or ``pystac.Item``.
        tile: checked against the item's tile when given.

    Raises:
        NotAProductError: not a STAC item, or it has no Sentinel-2 band assets.
        MetadataError: not a Sentinel-2 item.
        nimbus.remote.RemoteReadError: the item or a band cannot be fetched (names the URL).
    """
    item, name, base = load_item(ref)
    kind = catalog_kind(item)
    item = _sign(item, kind)
    md, tmd = parse_item(item, name)
    assets = band_assets(item)
    if not any(b in BANDS for b in assets):
        raise NotAProductError(f"{name}: STAC item has no Sentinel-2 band assets (keys: {', '.join(list(item.get('assets', {}))[:12])})")
    files: dict[str, BandFile] = {}
    for band, (_key, asset, res) in assets.items():
        href = _local(_resolve(str(asset["href"]), base))
        files[band] = BandFile(band, href, res)
    if tile is not None and tmd.tile and tile.upper().removeprefix("T") != tmd.tile:
        raise ProductError(f"{name}: item is tile {tmd.tile}, not {tile}")
    store = StacStore(name, [f.path for f in files.values()])
    path: Path | str = name if is_remote(name) or "#" in name or not Path(name).exists() else Path(name)
    product = Product(path, "stac", store, files, md, None, tmd.tile, md.product_uri or str(item.get("id", "")))
    product.tile_metadata = tmd
    product.item_id = str(item.get("id", ""))  # type: ignore[attr-defined]
    product.catalog = kind  # type: ignore[attr-defined]
    harmonize_product(product, item)
    return product
