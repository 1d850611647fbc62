"""Find Sentinel-2 items: a STAC API (through pystac-client) or a static catalogue (filtered locally).

``nimbus search --bbox W,S,E,N --datetime 2024-06-01/2024-06-30 [--tile 32TMS] [--cloud-cover 20]
[--collection sentinel-2-c1-l2a] [--catalog URL|earth-search|planetary-computer|cdse] [--out items.json]``.

A catalogue is a STAC API when its landing page declares the item-search conformance class (then
``pystac-client``, the optional extra ``nimbus-s2[stac]``, runs the search); otherwise it is walked
as a static catalogue (``catalog.json`` on disk or over HTTP: child and item links) and the items
are filtered here. The tile and cloud-cover filters are always (re)applied locally, so catalogues
that ignore the ``query`` extension give the same answer. ``--out`` writes an ItemCollection that
every command takes (``items.json`` for all of them, ``items.json#ID`` for one).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nimbus.errors import NimbusError, UsageError
from nimbus.remote import fetch_bytes

__all__ = [
    "CATALOGS",
    "ItemSummary",
    "format_table",
    "search_items",
    "summarize",
    "write_items",
]

#: Named catalogues: (root URL, default collection).
CATALOGS: dict[str, tuple[str, str]] = {
    "earth-search": ("https://earth-search.aws.element84.com/v1", "sentinel-2-c1-l2a"),
    "planetary-computer": ("https://planetarycomputer.microsoft.com/api/stac/v1", "sentinel-2-l2a"),
    "cdse": ("https://stac.dataspace.copernicus.eu/v1", "sentinel-2-l2a"),
}

_ITEM_SEARCH = "api.stacspec.org/v1.0.0/item-search"
_TILE_RE = re.compile(r"(?:^|[_-])T?(\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})(?=[_-]|$)")


@dataclass(frozen=True)
class ItemSummary:
    """One line of a search result."""

    id: str
    date: datetime | None
    tile: str
    cloud_cover: float | None
    level: str
    collection: str


def _tile(item: dict[str, Any]) -> str:
    p = item.get("properties") or {}
    if p.get("grid:code"):
        return str(p["grid:code"]).replace("MGRS-", "")
    if p.get("mgrs:utm_zone"):
        return f"{int(p['mgrs:utm_zone']):02d}{p.get('mgrs:latitude_band', '')}{p.get('mgrs:grid_square', '')}"
    if p.get("s2:mgrs_tile"):
        return str(p["s2:mgrs_tile"])
    m = _TILE_RE.search(str(item.get("id", "")))
    return m.group(1) if m else ""


def _level(item: dict[str, Any]) -> str:
    p = item.get("properties") or {}
    text = " ".join(str(x) for x in (p.get("s2:product_type"), p.get("product:type"), item.get("collection"), item.get("id"))).upper()
    return "L2A" if "2A" in text else "L1C" if "1C" in text else ""


def _time(item: dict[str, Any]) -> datetime | None:
    from nimbus.metadata import parse_time

    p = item.get("properties") or {}
    return parse_time(p.get("datetime") or p.get("start_datetime"))


def summarize(item: dict[str, Any]) -> ItemSummary:
    """The id, date, tile, cloud cover, level and collection of an item dict."""
    cc = (item.get("properties") or {}).get("eo:cloud_cover")
    return ItemSummary(str(item.get("id", "")), _time(item), _tile(item), None if cc is None else float(cc), _level(item), str(item.get("collection") or ""))


def format_table(items: Sequence[dict[str, Any]]) -> str:
    """One line per item: id, date, tile, cloud cover, level."""
    lines = [f"{'id':<44} {'date':<20} {'tile':<6} {'cloud%':>7} level"]
    for it in items:
        s = summarize(it)
        date = s.date.strftime("%Y-%m-%dT%H:%M:%SZ") if s.date else "?"
        cc = f"{s.cloud_cover:7.2f}" if s.cloud_cover is not None else f"{'?':>7}"
        lines.append(f"{s.id:<44} {date:<20} {s.tile:<6} {cc} {s.level}")
    lines.append(f"{len(items)} item(s)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- filters


def _bbox(value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    parts = list(value) if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        w, s, e, n = (float(x) for x in parts)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--bbox {value!r}: give four numbers W,S,E,N in degrees") from exc
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise UsageError(f"--bbox {value!r}: W,S,E,N out of range (longitudes -180..180, latitudes -90..90, S <= N)")
    return w, s, e, n


def _interval(value: str | None) -> tuple[datetime | None, datetime | None]:
    from nimbus.metadata import parse_time

    if not value:
        return None, None

    def one(text: str, end: bool) -> datetime | None:
        text = text.strip()
        if text in ("", ".."):
            return None
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            text += "T23:59:59.999999Z" if end else "T00:00:00Z"
        t = parse_time(text)
        if t is None:
            raise UsageError(f"--datetime {value!r}: not an ISO date/time or interval (e.g. 2024-06-01/2024-06-30)")
        return t

    try:
        if "/" in value:
            a, b = value.split("/", 1)
            return one(a, False), one(b, True)
        return one(value, False), one(value, True)
    except ValueError as exc:
        raise UsageError(f"--datetime {value!r}: not an ISO date/time or interval ({exc})") from exc


def _keep(item: dict[str, Any], bbox: Any, interval: tuple[datetime | None, datetime | None], tile: str | None,
          cloud: float | None, collections: Sequence[str] | None) -> bool:  # fmt: skip
    if collections and item.get("collection") and item["collection"] not in collections:
        return False
    if bbox is not None and item.get("bbox"):
        ib = item["bbox"]
        w, s, e, n = (ib[0], ib[1], ib[2], ib[3]) if len(ib) == 4 else (ib[0], ib[1], ib[3], ib[4])
        if e < bbox[0] or w > bbox[2] or n < bbox[1] or s > bbox[3]:
            return False
    t = _time(item)
    if interval[0] and (t is None or t < interval[0]):
        return False
    if interval[1] and (t is None or t > interval[1]):
        return False
    if tile and _tile(item) != tile.upper().removeprefix("T"):
        return False
    cc = (item.get("properties") or {}).get("eo:cloud_cover")
    return not (cloud is not None and (cc is None or float(cc) > cloud))


# ----------------------------------------------------------------------------------------- catalogues


def _read_json(ref: str) -> dict[str, Any]:
    try:
        data = fetch_bytes(ref) if ref.startswith(("http://", "https://")) else Path(urllib.request.url2pathname(ref[7:]) if ref.startswith("file://") else ref).read_bytes()
        obj = json.loads(data)
    except OSError as exc:
        raise NimbusError(f"{ref}: cannot be read ({exc})") from exc
    except ValueError as exc:
        raise NimbusError(f"{ref}: not JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise NimbusError(f"{ref}: not a STAC document")
    return obj


def _join(base: str, href: str) -> str:
    if "://" in href or href.startswith("/"):
        return href
    if "://" in base:
        return urllib.parse.urljoin(base, href)
    return str((Path(base).parent / href).resolve())


def _absolute_hrefs(item: dict[str, Any], base: str) -> dict[str, Any]:
    """A copy of the item whose asset hrefs are absolute (so a written ItemCollection stands alone)."""
    item = json.loads(json.dumps(item))
    for asset in (item.get("assets") or {}).values():
        if isinstance(asset, dict) and asset.get("href"):
            asset["href"] = _join(base, str(asset["href"]))
    return item


def _walk_static(root: str, max_docs: int = 20000) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    stack = [root]
    while stack and len(seen) < max_docs:
        ref = stack.pop()
        if ref in seen:
            continue
        seen.add(ref)
        doc = _read_json(ref)
        kind = doc.get("type")
        if kind == "Feature":
            yield _absolute_hrefs(doc, ref)
            continue
        if kind == "FeatureCollection":
            for f in doc.get("features", []):
                if isinstance(f, dict):
                    yield _absolute_hrefs(f, ref)
            continue
        links = [lk for lk in doc.get("links", []) if isinstance(lk, dict) and lk.get("href")]
        for lk in reversed(links):
            if lk.get("rel") in ("child", "item"):
                stack.append(_join(ref, str(lk["href"])))


def _is_api(doc: dict[str, Any]) -> bool:
    return any(_ITEM_SEARCH in str(c) for c in doc.get("conformsTo", []) or [])


def search_items(
    bbox: Any = None,
    datetime: str | None = None,
    tile: str | None = None,
    cloud_cover: float | None = None,
    collections: str | Sequence[str] | None = None,
    catalog: str = "earth-search",
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Items of a STAC API or a static catalogue matching the filters, sorted by date.

    Args:
        bbox: W,S,E,N in degrees (a string or four numbers).
        datetime: an ISO date, date-time or interval ("2024-06-01/2024-06-30", open ends "..").
        tile: an MGRS tile ("32TMS").
        cloud_cover: maximum cloud cover in percent.
        collections: collection id(s); default the catalogue's Sentinel-2 L2A collection.
        catalog: a URL or path of a STAC API or a static catalogue, or a name in :data:`CATALOGS`.
        limit: the most items returned.

    Returns:
        Item dicts (asset hrefs absolute).

    Raises:
        UsageError: a malformed filter, or pystac-client missing for an API.
        NimbusError: the catalogue cannot be read.
    """
    box = _bbox(bbox)
    interval = _interval(datetime)
    if cloud_cover is not None and not 0 <= float(cloud_cover) <= 100:
        raise UsageError(f"--cloud-cover {cloud_cover}: give a percentage between 0 and 100")
    root, default_coll = CATALOGS.get(catalog, (catalog, ""))
    colls = [collections] if isinstance(collections, str) else list(collections or ([default_coll] if default_coll else []))
    colls = [c for part in colls for c in str(part).split(",") if c]
    tile = tile.upper().removeprefix("T") if tile else None
    cc = None if cloud_cover is None else float(cloud_cover)
    if not root.startswith(("http://", "https://")) and not os.path.exists(root):
        raise UsageError(f"--catalog {catalog!r}: no such file, and not a URL or one of {', '.join(CATALOGS)}")
    landing = _read_json(root)
    if _is_api(landing):
        items = _api_search(root, box, datetime, colls, tile, cc, limit)
    else:
        items = []
        for it in _walk_static(root):
            if _keep(it, box, interval, tile, cc, colls):
                items.append(it)
    items = [it for it in items if _keep(it, box, interval, tile, cc, colls)]
    items.sort(key=lambda it: (_time(it) or datetime_min(), str(it.get("id"))))
    return items[:limit]


def datetime_min() -> datetime:
    """The earliest aware datetime (sort key of items without a date)."""
    return datetime.min.replace(tzinfo=timezone.utc)


def _api_search(root: str, box: Any, dt: str | None, colls: list[str], tile: str | None, cc: float | None, limit: int) -> list[dict[str, Any]]:
    try:
        from pystac_client import Client
    except ImportError as exc:
        raise UsageError(f"{root} is a STAC API: searching it needs pystac-client (pip install 'nimbus-s2[stac]')") from exc
    client = Client.open(root)
    kwargs: dict[str, Any] = {"max_items": max(limit * 4, limit), "limit": min(max(limit, 10), 250)}
    if box is not None:
        kwargs["bbox"] = list(box)
    if dt:
        kwargs["datetime"] = dt
    if colls:
        kwargs["collections"] = colls
    query: dict[str, Any] = {}
    if cc is not None:
        query["eo:cloud_cover"] = {"lte": cc}
    if tile:
        query["grid:code"] = {"eq": f"MGRS-{tile}"}
    try:
        from pystac_client import ConformanceClasses

        if query and client.conforms_to(ConformanceClasses.QUERY):
            kwargs["query"] = query
    except Exception:  # noqa: BLE001 - old pystac-client: filter locally only
        pass
    try:
        return [it for it in client.search(**kwargs).items_as_dicts()]
    except Exception as exc:  # noqa: BLE001 - pystac-client raises APIError, requests errors...
        raise NimbusError(f"{root}: search failed ({type(exc).__name__}: {exc})") from exc


def write_items(items: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Write the items as one GeoJSON ItemCollection, atomically.

    Returns:
        The file written.
    """
    from nimbus.atomic import atomic_path

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"type": "FeatureCollection", "features": list(items)}
    with atomic_path(path, validate="auto") as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path

