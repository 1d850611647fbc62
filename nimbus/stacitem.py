"""STAC Items beside class maps, and static catalogues of them (pystac; the ``[stac]`` extra).

Every class map ``<stem>_classes.tif`` gets ``<stem>_item.json`` beside it:

- geometry and bbox of the map in longitude/latitude, ``datetime`` = the product's sensing time,
  ``platform``/``constellation``, ``grid:code`` (``MGRS-32TMS``) and the source product id;
- the ``classes`` asset (a COG) with one ``raster:bands`` entry (uint8, nodata 255, pixel size) that
  carries the classification extension: one class per model class (value, name, description,
  ``color_hint``) plus 255 marked ``nodata``; the projection extension (``proj:code``, shape,
  transform, bbox) on the item;
- the other outputs (probabilities, uncertainty, quicklook) as assets; every asset has ``file:size``
  and ``file:checksum`` (a multihash: ``1220`` + the SHA-256 hex digest);
- ``processing:software`` = ``{"nimbus": <version>}`` with the model's name and version;
- a ``derived_from`` link to the source product's STAC item when the product was opened from one.

Asset hrefs are relative (``./<file>``), so a folder of maps and items can be moved or served as is.
:func:`collect_catalog` gathers items into a static ``catalog.json`` (``nimbus catalog MAPS_DIR``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nimbus.errors import NimbusError, OutputError, UsageError

__all__ = [
    "GRID_SCHEMA",
    "PROCESSING_SCHEMA",
    "classmap_item",
    "collect_catalog",
    "file_checksum",
    "item_path",
    "source_item_href",
    "write_classmap_item",
]

#: The processing extension's schema (pystac has no class for it).
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
#: The grid extension's schema (``grid:code``).
GRID_SCHEMA = "https://stac-extensions.github.io/grid/v1.1.0/schema.json"

_MEDIA = {
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".png": "image/png",
    ".json": "application/json",
}
_ROLES = {"classes": ["data"], "probabilities": ["data"], "uncertainty": ["data"], "quicklook": ["overview", "visual"]}


def _pystac() -> Any:
    try:
        import pystac
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise UsageError("STAC items need pystac: pip install -c constraints.txt 'nimbus-s2[stac]'") from exc
    return pystac


def file_checksum(path: str | os.PathLike[str]) -> str:
    """The ``file:checksum`` of a file: multihash sha2-256 (``1220`` + 64 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "1220" + h.hexdigest()


def item_path(classes_path: str | os.PathLike[str]) -> Path:
    """``<stem>_item.json`` beside ``<stem>_classes.tif``."""
    p = Path(classes_path)
    stem = p.name[: -len("_classes.tif")] if p.name.endswith("_classes.tif") else p.stem
    return p.with_name(f"{stem}_item.json")


def source_item_href(product: Any) -> str | None:
    """The href of the STAC item a product was opened from (an URL or a local file), or None."""
    if getattr(product, "layout", None) != "stac":
        return None
    ref = str(getattr(product, "path", "") or "")
    if not ref:
        return None
    if "://" in ref:
        return ref
    local = Path(ref.split("#", 1)[0])
    return local.resolve().as_uri() if local.is_file() else None


def _footprint(ds: Any) -> tuple[dict, list[float]]:
    """Geometry (polygon, densified edges) and bbox of a raster in EPSG:4326."""
    from rasterio.warp import transform_bounds, transform_geom

    left, bottom, right, top = ds.bounds
    n = 16
    ring = (
        [(left + (right - left) * i / n, top) for i in range(n)]
        + [(right, top - (top - bottom) * i / n) for i in range(n)]
        + [(right - (right - left) * i / n, bottom) for i in range(n)]
        + [(left, bottom + (top - bottom) * i / n) for i in range(n)]
    )
    ring.append(ring[0])
    geom = transform_geom(ds.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}, antimeridian_cutting=True)
    bbox = list(transform_bounds(ds.crs, "EPSG:4326", left, bottom, right, top, densify_pts=21))
    return geom, bbox


def classmap_item(
    classes_path: str | os.PathLike[str],
    product: Any,
    spec: Any,
    assets: Mapping[str, str | os.PathLike[str] | None] | None = None,
    source_href: str | None = None,
    read_from: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Any:
    """The STAC Item of one class map.

    Args:
        classes_path: the class map (``<stem>_classes.tif``).
        product: the segmented product (:class:`nimbus.product.Product`): id, time, tile, spacecraft.
        spec: the model's :class:`nimbus.modelspec.ModelSpec` (classes, name, version).
        assets: other outputs by role name (``probabilities``, ``uncertainty``, ``quicklook``); None values are skipped.
        source_href: the source product's STAC item (default: :func:`source_item_href` of ``product``).
        read_from: where to read each output by role, when it is not yet under its final name
            (the temporaries of a commit group): hrefs name the final files, sizes and checksums
            come from these.

    Returns:
        A ``pystac.Item`` (self href not set; asset hrefs relative to the class map's folder).

    Raises:
        UsageError: pystac is not installed (the ``[stac]`` extra).
        OutputError: the class map cannot be read.
    """
    pystac = _pystac()
    import rasterio
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    import nimbus

    classes_path = Path(classes_path)
    sources = {k: Path(v) for k, v in (read_from or {}).items()}
    try:
        with rasterio.open(sources.get("classes", classes_path)) as ds:
            geom, bbox = _footprint(ds)
            epsg = ds.crs.to_epsg()
            shape = [ds.height, ds.width]
            transform = list(ds.transform)[:6]
            bounds = list(ds.bounds)
            res = abs(ds.transform.a)
            dtype = ds.dtypes[0]
    except rasterio.errors.RasterioIOError as exc:
        raise OutputError(f"{classes_path}: the class map cannot be read for its STAC item ({exc})") from exc
    stem = item_path(classes_path).name[: -len("_item.json")]
    when = getattr(product, "sensing_time", None) or datetime.now(timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    tile = str(getattr(product, "tile", "") or "")
    props: dict[str, Any] = {
        "constellation": "sentinel-2",
        "nimbus:product_id": str(getattr(product, "product_id", "")),
        "nimbus:model": {"name": spec.name, "version": str(spec.version), "channels": list(spec.channels)},
        "processing:software": {"nimbus": nimbus.__version__},
        "processing:level": "L3",
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    spacecraft = str(getattr(product, "spacecraft", "") or "")
    if spacecraft:
        props["platform"] = spacecraft.lower()
    if tile:
        props["grid:code"] = f"MGRS-{tile}"
    level = getattr(product, "level", None)
    if level:
        props["nimbus:source_level"] = str(level)
    item = pystac.Item(id=stem, geometry=geom, bbox=bbox, datetime=when, properties=props)
    item.stac_extensions.append(PROCESSING_SCHEMA)
    if tile:
        item.stac_extensions.append(GRID_SCHEMA)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    if epsg:
        proj.epsg = epsg
    proj.shape = shape
    proj.transform = transform
    proj.bbox = bounds

    def add(key: str, path: Path) -> Any:
        asset = pystac.Asset(href=f"./{path.name}", media_type=_MEDIA.get(path.suffix.lower()), roles=_ROLES.get(key, ["data"]))
        item.add_asset(key, asset)
        fext = FileExtension.ext(asset, add_if_missing=True)
        data = sources.get(key, path)
        fext.size = data.stat().st_size
        fext.checksum = file_checksum(data)
        return asset

    main = add("classes", classes_path)
    main.title = f"classes: {', '.join(f'{c.value} {c.name}' for c in spec.classes)}, 255 no data"
    band = RasterBand.create(nodata=255, data_type=DataType(dtype), spatial_resolution=res)
    RasterExtension.ext(main, add_if_missing=True).bands = [band]
    classes = [
        Classification.create(value=int(c.value), name=c.name, description=c.name,
                              color_hint="".join(f"{int(v):02X}" for v in c.color))  # fmt: skip
        for c in spec.classes
    ]
    classes.append(Classification.create(value=255, name="nodata", description="no data", nodata=True))
    ClassificationExtension.ext(band, add_if_missing=False).classes = classes
    # the band now holds classification:classes; the item declares the extension
    ClassificationExtension.ext(item, add_if_missing=True)
    item.properties.pop("classification:classes", None)
    main.extra_fields["raster:bands"] = [band.to_dict()]
    for key, path in (assets or {}).items():
        if path is not None and key != "classes":
            add(key, Path(path))
    href = source_href if source_href is not None else source_item_href(product)
    if href:
        item.add_link(pystac.Link("derived_from", href, media_type="application/geo+json", title="source Sentinel-2 item"))
    return item


def write_classmap_item(
    paths: Mapping[str, str | os.PathLike[str] | None],
    product: Any,
    spec: Any,
    source_href: str | None = None,
    group: Any = None,
) -> Path:
    """Write ``<stem>_item.json`` beside the class map, atomically (validated JSON).

    Args:
        paths: the outputs by role (final paths): ``classes`` (required), ``probabilities``,
            ``uncertainty``, ``quicklook``.
        product: the segmented product.
        spec: the model's spec.
        source_href: the source item's href (default: taken from the product when it came from a STAC item).
        group: an :class:`nimbus.atomic.AtomicGroup` not yet committed that holds the outputs under
            temporary names: the item is read from those and joins the group (committed with the
            maps, or not at all).

    Returns:
        The item file (its final path).
    """
    from nimbus.atomic import atomic_path

    if not paths.get("classes"):
        raise UsageError("write_classmap_item: paths needs the 'classes' output")
    classes = Path(paths["classes"])  # type: ignore[arg-type]
    read_from = {k: group.temporary(v) for k, v in paths.items() if v is not None} if group is not None else None
    item = classmap_item(classes, product, spec, {k: v for k, v in paths.items() if k != "classes"}, source_href, read_from)
    out = item_path(classes)
    text = json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1)
    if group is not None:
        group.path(out).write_text(text, encoding="utf-8")
        return out
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out


def collect_catalog(
    items: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    catalog_id: str = "nimbus-class-maps",
    description: str = "Nimbus class maps (cloud, ground, snow, water) of Sentinel-2 products",
) -> Path:
    """Build a static STAC catalogue (``catalog.json``) of class-map items.

    The items are copied into ``out_dir/<item id>/<item id>.json`` with their asset hrefs made
    absolute to the class maps' folders (or relative when the catalogue is in the same folder tree),
    so the catalogue works wherever it is written.

    Args:
        items: the ``*_item.json`` files.
        out_dir: the catalogue folder.
        catalog_id: the catalogue's id.
        description: its description.

    Returns:
        The ``catalog.json`` written.

    Raises:
        NimbusError: an item cannot be read or two items share an id.
    """
    pystac = _pystac()
    out_dir = Path(out_dir).resolve()
    cat = pystac.Catalog(id=catalog_id, description=description, title="Nimbus class maps")
    seen: set[str] = set()
    for path in (Path(p) for p in items):
        try:
            item = pystac.Item.from_file(str(path.resolve()))
        except Exception as exc:  # noqa: BLE001 - any parse error becomes one message naming the file
            raise NimbusError(f"{path}: not a readable STAC item ({exc})") from exc
        if item.id in seen:
            raise NimbusError(f"{path}: a second item with id {item.id!r}; give each class map its own name")
        seen.add(item.id)
        item.make_asset_hrefs_absolute()
        cat.add_item(item)
    if not seen:
        raise NimbusError("no *_item.json given: segment products first (each class map gets one)")
    cat.normalize_hrefs(str(out_dir))
    cat.make_all_asset_hrefs_relative()
    # written beside, validated, then moved in file by file with catalog.json last: a catalog.json
    # under its final name always lists items that are all in place
    import shutil
    import tempfile

    from nimbus.validate import validate_json

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".nimbus-catalog-", dir=out_dir))
    try:
        cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, dest_href=str(tmp))
        written = sorted(tmp.rglob("*.json"))
        for f in written:
            validate_json(f)
        for f in written:
            if f.name != "catalog.json" or f.parent != tmp:
                dst = out_dir / f.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, dst)
        out = out_dir / "catalog.json"
        os.replace(tmp / "catalog.json", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
