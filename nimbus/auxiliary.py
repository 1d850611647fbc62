"""Auxiliary layers (DEM, tree cover, surface water) on the exact grid of a Sentinel-2 tile.

Layers come from rasters in any CRS and resolution (one or several, mosaicked) and are warped with
GDAL (through rasterio) onto a tile grid at 10, 20 or 60 m: continuous layers (``altitude``,
``treecover``) bilinearly, categorical ones (``water``) by nearest neighbour. The results are
Cloud-Optimized GeoTIFFs named ``AUX_DIR/<TILE>_<layer>_<res>m.tif`` (tile without the ``T``
prefix, e.g. ``32TMS_altitude_10m.tif``), which :func:`find_aux` finds again for the segmenter
(``nimbus segment --aux DIR``) and the array builder.

A layer that does not cover the whole grid is an :class:`~nimbus.errors.AuxiliaryDataError` that
says how much is missing, unless filling with nodata is allowed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from nimbus.atomic import atomic_path
from nimbus.errors import AuxiliaryDataError
from nimbus.validate import is_valid

__all__ = [
    "AuxLayer",
    "CoverageReport",
    "LAYERS",
    "LAYER_ALIASES",
    "aux_name",
    "build_auxiliary",
    "build_layer",
    "canonical_layer",
    "find_aux",
    "grid_of",
    "list_aux",
    "read_layer",
]


@dataclass(frozen=True)
class AuxLayer:
    """How one auxiliary layer is stored and resampled.

    Attributes:
        name: the channel name (``altitude``, ``treecover``, ``water``).
        resampling: GDAL resampling used when warping onto a tile grid.
        dtype: the stored data type.
        nodata: the stored nodata value.
        units: human-readable units.
    """

    name: str
    resampling: Resampling
    dtype: str
    nodata: float
    units: str


#: The auxiliary layers Nimbus knows, by channel name.
LAYERS: dict[str, AuxLayer] = {
    "altitude": AuxLayer("altitude", Resampling.bilinear, "float32", -32768.0, "m above the geoid"),
    "treecover": AuxLayer("treecover", Resampling.bilinear, "float32", -1.0, "% canopy cover (0-100)"),
    "water": AuxLayer("water", Resampling.nearest, "uint8", 255.0, "1 water, 0 not water (or % occurrence)"),
    "landcover": AuxLayer("landcover", Resampling.nearest, "uint8", 255.0, "ESA WorldCover class (10 tree cover ... 100 moss and lichen)"),
}

#: Other spellings accepted for the layer names (model channel names, CLI options).
LAYER_ALIASES: dict[str, str] = {
    "dem": "altitude",
    "elevation": "altitude",
    "height": "altitude",
    "tree_cover": "treecover",
    "tree-cover": "treecover",
    "canopy": "treecover",
    "gfcc": "treecover",
    "jrc_water": "water",
    "surface_water": "water",
    "worldcover": "landcover",
    "land_cover": "landcover",
}

_NAME = re.compile(r"^T?(?P<tile>\d{1,2}[A-Z]{3})_(?P<layer>[A-Za-z0-9-]+)_(?P<res>\d+)m\.tif$")


def canonical_layer(name: str) -> str:
    """The canonical layer name of ``name`` (``"DEM"`` -> ``"altitude"``); unknown names are lower-cased."""
    key = name.strip().lower()
    return LAYER_ALIASES.get(key, key)


def _tile_code(tile: str) -> str:
    tile = tile.strip().upper()
    return tile[1:] if tile.startswith("T") and len(tile) == 6 else tile


def aux_name(tile: str, layer: str, res: int) -> str:
    """The file name of a layer on a tile grid: ``<TILE>_<layer>_<res>m.tif`` (``32TMS_altitude_10m.tif``)."""
    return f"{_tile_code(tile)}_{canonical_layer(layer)}_{int(res)}m.tif"


def list_aux(aux_dir: str | os.PathLike[str]) -> list[tuple[str, str, int, Path]]:
    """Every auxiliary file in ``aux_dir`` as ``(tile, layer, res, path)``, sorted."""
    out = []
    folder = Path(aux_dir)
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        m = _NAME.match(path.name)
        if m and path.is_file():
            out.append((m["tile"].upper(), canonical_layer(m["layer"]), int(m["res"]), path))
    return out


def find_aux(
    aux_dir: str | os.PathLike[str] | None, tile: str, layer: str, res: int | None = None, exact: bool = False
) -> Path | None:
    """Find the file of one auxiliary layer of a tile.

    Args:
        aux_dir: the folder written by ``nimbus auxiliary`` (None: nothing is found).
        tile: the MGRS tile code, with or without the ``T`` prefix.
        layer: the layer (channel) name; aliases such as ``dem`` are accepted.
        res: the wanted pixel size in metres; None takes the finest available.
        exact: only accept the file at exactly ``res``; otherwise the file at the closest
            resolution is returned when the exact one is missing (the caller warps it).

    Returns:
        The path, or None when the folder holds no file of that tile and layer.
    """
    if aux_dir is None:
        return None
    tile, layer = _tile_code(tile), canonical_layer(layer)
    found = [(r, p) for t, lay, r, p in list_aux(aux_dir) if t == tile and lay == layer]
    if not found:
        return None
    if res is not None:
        for r, p in found:
            if r == int(res):
                return p
        if exact:
            return None
        return min(found, key=lambda rp: (abs(math.log(rp[0] / float(res))), rp[0]))[1]
    return min(found)[1]


def _aligned_offset(src_transform: Affine, dst_transform: Affine) -> tuple[int, int] | None:
    """(col, row) of the destination origin in the source grid when both grids share pixel size and phase."""
    if not (
        math.isclose(src_transform.a, dst_transform.a, rel_tol=1e-9)
        and math.isclose(src_transform.e, dst_transform.e, rel_tol=1e-9)
        and src_transform.b == 0
        and src_transform.d == 0
        and dst_transform.b == 0
        and dst_transform.d == 0
    ):
        return None
    col = (dst_transform.c - src_transform.c) / src_transform.a
    row = (dst_transform.f - src_transform.f) / src_transform.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(col)), int(round(row))


def read_layer(
    path: str | os.PathLike[str],
    crs: CRS | str,
    transform: Affine,
    shape: tuple[int, int],
    resampling: Resampling | str | None = None,
    layer: str | None = None,
    band: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one band of a raster onto a target grid (a window of a tile grid).

    When the file lies on the same grid (same CRS, pixel size and pixel phase) its pixels are read
    directly for the window; otherwise the window is warped on the fly from the file.

    Args:
        path: the raster (an auxiliary file, a label input...).
        crs: the target CRS.
        transform: the target transform (of the window's upper-left pixel).
        shape: the target (height, width).
        resampling: GDAL resampling when warping; default by ``layer`` (nearest when unknown).
        layer: the layer name, which picks the default resampling.
        band: the band to read (1-based).

    Returns:
        ``(data float32 (h, w), valid bool (h, w))``; invalid pixels hold 0.
    """
    h, w = int(shape[0]), int(shape[1])
    if resampling is None:
        spec = LAYERS.get(canonical_layer(layer)) if layer else None
        resampling = spec.resampling if spec else Resampling.nearest
    elif isinstance(resampling, str):
        resampling = Resampling[resampling]
    crs = CRS.from_user_input(crs)
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise AuxiliaryDataError(f"{path}: cannot be read as a raster ({exc}); rebuild it with `nimbus auxiliary`") from exc
    with src:
        offset = _aligned_offset(src.transform, transform) if src.crs == crs else None
        if offset is not None:
            col, row = offset
            data = np.zeros((h, w), np.float32)
            valid = np.zeros((h, w), bool)
            r0, r1 = max(row, 0), min(row + h, src.height)
            c0, c1 = max(col, 0), min(col + w, src.width)
            if r1 > r0 and c1 > c0:
                win = Window(c0, r0, c1 - c0, r1 - r0)
                arr = src.read(band, window=win, masked=True)
                sl = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
                data[sl] = np.ma.filled(arr.astype(np.float32), 0.0)
                valid[sl] = ~np.ma.getmaskarray(arr)
        else:
            data = np.full((h, w), np.nan, np.float32)
            if not 1 <= band <= src.count:
                raise AuxiliaryDataError(f"{path}: has {src.count} band(s), band {band} was asked for")
            reproject(
                source=rasterio.band(src, band),
                destination=data,
                dst_transform=transform,
                dst_crs=crs,
                dst_nodata=np.nan,
                src_nodata=src.nodatavals[band - 1],
                resampling=resampling,
            )
            valid = np.isfinite(data)
            data[~valid] = 0.0
    valid &= np.isfinite(data)
    data[~valid] = 0.0
    return data, valid


@dataclass(frozen=True)
class CoverageReport:
    """How much of a tile grid a layer covers.

    Attributes:
        layer: the layer name.
        path: the file written (or that would have been written).
        total: pixels of the grid.
        missing: pixels without data.
    """

    layer: str
    path: Path
    total: int
    missing: int

    @property
    def missing_fraction(self) -> float:
        """Fraction of the grid without data."""
        return self.missing / self.total if self.total else 0.0


def _open_sources(sources: Sequence[str | os.PathLike[str]]) -> list:
    opened = []
    try:
        for s in sources:
            try:
                opened.append(rasterio.open(s))
            except rasterio.errors.RasterioIOError as exc:
                raise AuxiliaryDataError(f"{s}: cannot be opened as a raster ({exc})") from exc
            if opened[-1].crs is None:
                raise AuxiliaryDataError(f"{s}: has no coordinate reference system; georeference it first")
    except BaseException:
        for d in opened:
            d.close()
        raise
    return opened


def build_layer(
    sources: Sequence[str | os.PathLike[str]],
    layer: str,
    out: str | os.PathLike[str],
    crs: CRS | str,
    transform: Affine,
    shape: tuple[int, int],
    resampling: Resampling | str | None = None,
    allow_fill: bool = False,
    strip_rows: int = 1024,
    tags: dict[str, str] | None = None,
) -> CoverageReport:
    """Mosaic and warp source rasters onto a grid and write one auxiliary COG, strip by strip.

    Later sources win where several overlap. Memory stays bounded by ``strip_rows`` rows of the grid.

    Args:
        sources: one or more rasters (any CRS and resolution) holding the layer.
        layer: the layer name (``altitude``, ``treecover``, ``water`` or an alias).
        out: the output file (written atomically as a COG).
        crs: the grid's CRS.
        transform: the grid's transform.
        shape: the grid's (height, width).
        resampling: GDAL resampling; default by layer (bilinear continuous, nearest categorical).
        allow_fill: write nodata where the sources do not cover the grid instead of failing.
        strip_rows: rows warped at a time.
        tags: extra GeoTIFF tags for the output (e.g. source, version, licence of fetched layers).

    Returns:
        The coverage report of the written file.

    Raises:
        AuxiliaryDataError: when a source cannot be read, or the sources leave part of the grid
            uncovered and ``allow_fill`` is False (the message says how much is missing).
    """
    if not sources:
        raise AuxiliaryDataError(f"no source raster given for layer {layer!r}")
    name = canonical_layer(layer)
    spec = LAYERS.get(name, AuxLayer(name, Resampling.bilinear, "float32", -32768.0, ""))
    if resampling is None:
        resampling = spec.resampling
    elif isinstance(resampling, str):
        resampling = Resampling[resampling]
    crs = CRS.from_user_input(crs)
    h, w = int(shape[0]), int(shape[1])
    out = Path(out)
    missing = 0
    srcs = _open_sources(sources)
    try:
        with atomic_path(out.with_suffix(".strips.tif")) as tmp_strips:
            profile = dict(
                driver="GTiff", width=w, height=h, count=1, dtype=spec.dtype, crs=crs, transform=transform,
                nodata=spec.nodata, tiled=True, blockxsize=256, blockysize=256, compress="zstd",
            )
            with rasterio.open(tmp_strips, "w", **profile) as dst:
                for r0 in range(0, h, strip_rows):
                    rows = min(strip_rows, h - r0)
                    strip_transform = transform @ Affine.translation(0, r0)
                    acc = np.full((rows, w), np.nan, np.float32)
                    for src in srcs:
                        part = np.full((rows, w), np.nan, np.float32)
                        reproject(
                            source=rasterio.band(src, 1), destination=part, dst_transform=strip_transform,
                            dst_crs=crs, dst_nodata=np.nan, src_nodata=src.nodata, resampling=resampling,
                        )
                        ok = np.isfinite(part)
                        acc[ok] = part[ok]
                    bad = ~np.isfinite(acc)
                    missing += int(bad.sum())
                    if missing and not allow_fill:
                        break
                    acc[bad] = spec.nodata
                    if np.dtype(spec.dtype).kind in "ui":
                        info = np.iinfo(spec.dtype)
                        acc = np.clip(np.rint(acc), info.min, info.max)
                    dst.write(acc.astype(spec.dtype), 1, window=Window(0, r0, w, rows))
                dst.update_tags(
                    layer=name, units=spec.units, missing_pixels=str(missing),
                    sources=";".join(os.path.basename(str(s)) for s in sources), **(tags or {}),
                )
            if missing and not allow_fill:
                rest = _count_missing_rest(srcs, crs, transform, (h, w), r0 + rows, strip_rows)
                total_missing = missing + rest
                pct = 100.0 * total_missing / (h * w)
                names = ", ".join(str(s) for s in sources)
                about = "about " if r0 + rows < h else ""  # rows after the first gap are counted on a coarse grid
                raise AuxiliaryDataError(
                    f"layer {name!r} from {names} does not cover the grid of {out.name}: "
                    f"{about}{total_missing} of {h * w} pixels ({pct:.2f}%) are missing; add rasters that cover "
                    f"the whole tile or allow filling with nodata (--fill)"
                )
            with atomic_path(out) as tmp:
                from rasterio.shutil import copy as rio_copy

                opts = {"compress": "ZSTD", "blocksize": 512, "overviews": "AUTO", "BIGTIFF": "IF_SAFER"}
                if np.dtype(spec.dtype).kind == "f":
                    opts["predictor"] = "3"
                else:
                    opts["predictor"] = "2"
                rio_copy(tmp_strips, tmp, driver="COG", **opts)
            tmp_strips.unlink()
    finally:
        for s in srcs:
            s.close()
    return CoverageReport(name, out, h * w, missing)


def _count_missing_rest(srcs: list, crs: CRS, transform: Affine, shape: tuple[int, int], start: int, step: int) -> int:
    """Count missing pixels of the rows after ``start`` cheaply (nearest, on a 10x coarser grid)."""
    h, w = shape
    if start >= h:
        return 0
    f = 10
    rows, cols = math.ceil((h - start) / f), math.ceil(w / f)
    coarse = transform @ Affine.translation(0, start) @ Affine.scale(f)
    acc = np.zeros((rows, cols), bool)
    for src in srcs:
        part = np.full((rows, cols), np.nan, np.float32)
        reproject(source=rasterio.band(src, 1), destination=part, dst_transform=coarse, dst_crs=crs,
                  dst_nodata=np.nan, src_nodata=src.nodata, resampling=Resampling.nearest)
        acc |= np.isfinite(part)
    # scale the coarse count back to full-resolution pixels, bounded by the true remainder
    return int(min((~acc).sum() * f * f, (h - start) * w))


def grid_of(tile: str | None = None, product: str | os.PathLike[str] | None = None, res: int = 10) -> tuple[str, CRS, Affine, tuple[int, int]]:
    """The target grid: that of a product (its exact CRS and transform) or of a tile code.

    Args:
        tile: a Sentinel-2 tile code (``"32TMS"``), used when no product is given.
        product: a product path; its grid wins over ``tile``.
        res: the pixel size in metres.

    Returns:
        ``(tile, crs, transform, (height, width))``.
    """
    if product is not None:
        from nimbus.product import open_product

        p = open_product(product)
        return _tile_code(p.tile), CRS.from_user_input(p.crs), p.transform(res), tuple(p.shape(res))
    if tile is None:
        raise AuxiliaryDataError("give a tile code (--tile 32TMS) or a product (--product PATH) to define the grid")
    from nimbus.grid import tile_grid

    g = tile_grid(tile, res)
    return g.tile, g.crs, g.transform, g.shape


def build_auxiliary(
    out_dir: str | os.PathLike[str],
    layers: dict[str, Sequence[str | os.PathLike[str]]],
    tile: str | None = None,
    product: str | os.PathLike[str] | None = None,
    res: int = 10,
    allow_fill: bool = False,
    overwrite: bool = False,
) -> list[CoverageReport]:
    """Write every given layer onto a tile grid as ``out_dir/<TILE>_<layer>_<res>m.tif``.

    Args:
        out_dir: the auxiliary folder.
        layers: ``{layer name: [source rasters]}``, e.g. ``{"altitude": ["dem1.tif", "dem2.tif"]}``.
        tile: the tile code (when no product is given).
        product: a product whose grid is used.
        res: 10, 20 or 60.
        allow_fill: write nodata where the sources do not cover the grid instead of failing.
        overwrite: rebuild files that already exist (otherwise they are kept and reported).

    Returns:
        One coverage report per layer.
    """
    tile_code, crs, transform, shape = grid_of(tile, product, res)
    reports = []
    for layer, sources in layers.items():
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        out = Path(out_dir) / aux_name(tile_code, layer, res)
        if not overwrite and is_valid(out):  # an incomplete file is rebuilt, never kept
            with rasterio.open(out) as d:
                missing = int(d.tags().get("missing_pixels", 0))
            reports.append(CoverageReport(canonical_layer(layer), out, shape[0] * shape[1], missing))
            continue
        reports.append(build_layer(sources, layer, out, crs, transform, shape, allow_fill=allow_fill))
    return reports
