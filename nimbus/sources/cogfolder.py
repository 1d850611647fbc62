"""Folders of per-band GeoTIFF/COG (or JPEG2000) files, as published by cloud archives.

``B02.tif``, ``B8A.tif``, ``SCL.tif``... with, when present, the archive's metadata beside them: a
STAC item JSON (harmonised by the same rule as :mod:`nimbus.sources.stac`), an AWS ``tileInfo.json``
or a tile XML. The grids come from the rasters themselves (archives may decimate the files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nimbus.bands import BANDS
from nimbus.metadata import ProductMetadata, TileMetadata, baseline_has_offsets, parse_aws_tile_info, parse_tile_metadata, tile_from_name
from nimbus.product import BandFile, FileStore, Product, find_band_files, select_tile
from nimbus.sources.safe import FolderStore, folder_markers, is_safe_listing

__all__ = ["accepts_cog_folder", "folder_metadata", "open_cog_folder"]


def accepts_cog_folder(ref: Any) -> bool:
    """A folder whose top level holds band files (or IMG_DATA) but no SAFE metadata."""
    if not isinstance(ref, (str, os.PathLike)):
        return False
    p = Path(ref)
    return p.is_dir() and folder_markers(p) and not is_safe_listing(FolderStore(p).list())


def open_cog_folder(ref: Any, tile: str | None = None, layout: str = "cog") -> Product:
    """Open a folder of band files.

    Args:
        ref: the folder.
        tile: which tile, when the file names carry several.
        layout: the layout name the product reports.

    Raises:
        NotAProductError: no band files.
        MetadataError: a metadata file beside the bands cannot be parsed.
    """
    from nimbus.errors import NotAProductError

    path = Path(ref)
    store = FolderStore(path)
    names = store.list()
    per_tile = find_band_files(names)
    if not per_tile:
        raise NotAProductError(f"{path}: no Sentinel-2 band files (B01..B12, B8A) found")
    chosen = select_tile(str(path), per_tile, tile)
    files = per_tile[chosen]
    md, tmd, item = folder_metadata(path, store, names, files)
    prod_id = md.product_uri or path.name.removesuffix(".zip").removesuffix(".SAFE")
    tile_code = chosen or (tmd.tile if tmd else "") or tile_from_name(prod_id) or tile_from_name(path.name)
    product = Product(path, layout, store, files, md, None, tile_code, prod_id, [t for t in sorted(per_tile) if t != chosen])
    product.tile_metadata = tmd
    if item is not None:
        from nimbus.sources.stac import harmonize_product

        harmonize_product(product, item)
    return product


def folder_metadata(
    path: Path, src: FileStore, names: list[str], files: dict[str, BandFile]
) -> tuple[ProductMetadata, TileMetadata | None, dict[str, Any] | None]:
    """Metadata of a band-file folder: a STAC item JSON first, else an AWS tileInfo.json, else a tile XML.

    Returns:
        (product metadata, tile metadata or None, the STAC item dict when one was used).
    """
    from nimbus.sources.stac import parse_item

    stac: tuple[str, dict[str, Any]] | None = None
    aws: tuple[str, dict[str, Any]] | None = None
    for n in names:
        if "/" in n or not n.lower().endswith(".json"):
            continue
        try:
            obj = json.loads(src.read_bytes(n))
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "Feature" and stac is None:
            stac = (n, obj)
        elif isinstance(obj, dict) and "productName" in obj and "utmZone" in obj and aws is None:
            aws = (n, obj)
    if stac is not None:
        md, tmd = parse_item(stac[1], name=src.describe(stac[0]))
        return md, tmd, stac[1]
    if aws is not None:
        md, tmd = parse_aws_tile_info(aws[1], name=src.describe(aws[0]))
        return md, tmd, None
    for n in names:
        if "/" not in n and (n.lower() in ("mtd_tl.xml", "metadata.xml", "granule_metadata.xml")):
            tmd = parse_tile_metadata(src.read_bytes(n), name=src.describe(n))
            off = -1000.0 if baseline_has_offsets(tmd.baseline) else 0.0
            return ProductMetadata(source=tmd.source, level=tmd.level, baseline=tmd.baseline, sensing_time=tmd.sensing_time,
                                   offsets={b: off for b in BANDS}, cloud_cover=tmd.cloud_cover), tmd, None  # fmt: skip
    level = "L2A" if "SCL" in files else "L1C"
    return ProductMetadata(source=str(path), level=level, baseline="", product_uri=path.name, offsets={b: 0.0 for b in BANDS}), None, None
