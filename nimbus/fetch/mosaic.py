"""Fetch the windows of a tiled source that cover a grid, then mosaic and warp them onto it.

1. The grid's footprint in degrees (:func:`nimbus.fetch.grid.footprint`) gives the source tiles
   (cells) it touches; tiles outside the source's coverage are never asked for.
2. Each tile is opened where it lies (``/vsicurl/`` inside :func:`nimbus.remote.remote_env`, or a local
   mirror folder) and only the window covering the footprint (plus two pixels for the bilinear
   kernel) is read, computed from **the file's own transform**: the Copernicus DEM's longitude spacing
   changes with latitude and its pixels are centred on whole arc-seconds, Hansen and JRC tiles have
   their own grids; nothing is assumed from the tile names. GDAL fetches only the blocks of that window.
3. Tiles absent from a source that has a tile list (the DEM's ``tileList.txt``) are sea and become a
   constant raster (0 m); a tile listed but missing on the server, or any tile of a source without a
   list, is an :class:`~nimbus.errors.AuxiliaryFetchError`. 5xx answers and dropped connections are
   retried with back-off (GDAL's retries, then ours with the file uncached); 4xx are not.
4. The windows are mosaicked and warped in one pass by :func:`nimbus.auxiliary.build_layer` (the same
   code as ``nimbus auxiliary --dem FILES``), written atomically as a validated COG whose tags name the
   source, its version, licence and credit.

Across the antimeridian the windows are expressed in unwrapped longitudes (e.g. 179.5 ... 180.6) under
a geographic CRS with ``+lon_wrap`` at the footprint's centre, so the warp sees one continuous mosaic.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from nimbus.atomic import atomic_path
from nimbus.auxiliary import CoverageReport, build_layer
from nimbus.errors import AuxiliaryFetchError, NimbusWarning, RemoteReadError, explain
from nimbus.fetch.cache import index_path
from nimbus.fetch.grid import Footprint, Grid, footprint
from nimbus.fetch.source import TileSource, join_url
from nimbus.remote import fetch_bytes, gdal_path, http_status, is_remote, read_threads, remote_env, retry_delays

__all__ = ["Cell", "Piece", "cells", "fetch_layer", "read_window", "tile_index"]

_PAD = 2  # source pixels around the footprint (bilinear needs one)
_MARGIN = 1e-4  # degrees around the densified footprint when choosing tiles (~11 m)
_INDEX_RE = re.compile(r"([NS])(\d{2})_00_([EW])(\d{3})")
_SEA_STEP = 0.01  # degrees per pixel of the constant "sea" rasters


@dataclass(frozen=True)
class Cell:
    """One source tile the footprint touches.

    Attributes:
        south: latitude of its south edge (whole degrees).
        west: longitude of its west edge in [-180, 180) (whole degrees): what names the file.
        shift: ``west - unwrapped west``: add it to an unwrapped longitude to get the file's longitude.
    """

    south: int
    west: int
    shift: float


@dataclass(frozen=True)
class Piece:
    """A window (or a sea stand-in) written to a local file, ready for the warp.

    Attributes:
        path: the local GeoTIFF.
        name: the source file's name (or ``sea_<cell>``).
        url: where it was read from ("" for sea).
        window: the window read, in the source file's pixels (None for sea).
        size: (height, width) of the source file.
    """

    path: Path
    name: str
    url: str
    window: Window | None
    size: tuple[int, int] | None


class _Missing(Exception):
    """A tile the server does not have (404) or a local mirror lacks."""


def cells(fp: Footprint, source: TileSource) -> list[Cell]:
    """The tiles of ``source`` that a footprint touches (only inside the source's latitude coverage)."""
    c = source.cell
    south = max(fp.south - _MARGIN, source.lat_range[0])
    north = min(fp.north + _MARGIN, source.lat_range[1])
    if north <= south:
        return []
    out = []
    for ky in range(math.floor(south / c), math.ceil(north / c)):
        for kx in range(math.floor((fp.west - _MARGIN) / c), math.ceil((fp.east + _MARGIN) / c)):
            west_u = kx * c
            west = int((west_u + 180) % 360 - 180)
            out.append(Cell(int(ky * c), west, float(west - west_u)))
    return out


def tile_index(source: TileSource, base: str, root: Path) -> set[tuple[int, int]] | None:
    """The (south, west) corners of the tiles that exist, from the source's tile list (cached).

    Returns:
        The set, or None when the source has no list or the mirror does not serve it (then a
        missing tile is taken as sea, with a warning).
    """
    if source.index is None:
        return None
    cached = index_path(root, source, base)
    if cached.is_file() and cached.stat().st_size > 0:
        text = cached.read_text(encoding="utf-8", errors="replace")
    else:
        url = join_url(base, source.index)
        try:
            if "://" in url:
                data = fetch_bytes(url)
            else:
                data = Path(url).read_bytes()
        except (RemoteReadError, OSError) as exc:
            status = getattr(exc, "status", None)
            if status == 404 or isinstance(exc, FileNotFoundError):
                warnings.warn(
                    f"{url}: the tile list of {source.title} is missing on this mirror; tiles that are not found "
                    f"are taken as sea ({source.sea_value:g})", NimbusWarning, stacklevel=3,
                )  # fmt: skip
                return None
            raise AuxiliaryFetchError(f"{url}: the tile list of {source.title} cannot be read ({explain(exc)})", url, status) from exc
        text = data.decode("utf-8", "replace")
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached, validate=None) as tmp:
            tmp.write_text(text, encoding="utf-8")
    found = set()
    for m in _INDEX_RE.finditer(text):
        lat = int(m.group(2)) * (1 if m.group(1) == "N" else -1)
        lon = int(m.group(4)) * (1 if m.group(3) == "E" else -1)
        found.add((lat, lon))
    return found


def _window(src: rasterio.io.DatasetReader, bounds: tuple[float, float, float, float]) -> Window | None:
    """The window of ``src`` covering ``bounds`` (west, south, east, north in its CRS) plus the pad, clipped."""
    t = src.transform
    if t.b != 0 or t.d != 0:
        raise AuxiliaryFetchError(f"{src.name}: a rotated grid; not a tile of a public source", src.name)
    west, south, east, north = bounds
    xs = sorted(((west - t.c) / t.a, (east - t.c) / t.a))
    ys = sorted(((north - t.f) / t.e, (south - t.f) / t.e))
    c0, c1 = max(0, math.floor(xs[0]) - _PAD), min(src.width, math.ceil(xs[1]) + _PAD)
    r0, r1 = max(0, math.floor(ys[0]) - _PAD), min(src.height, math.ceil(ys[1]) + _PAD)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def read_window(
    url: str,
    bounds: tuple[float, float, float, float],
    out: Path,
    source: TileSource,
    shift: float = 0.0,
    crs: CRS | None = None,
) -> Piece | None:
    """Read the window of one source tile that covers ``bounds`` and write it to ``out``.

    Args:
        url: the tile's URL (or local path of a mirror).
        bounds: (west, south, east, north) in the file's own longitudes.
        out: the local GeoTIFF to write.
        source: the source (for its nodata and messages).
        shift: written into the window's transform as ``-shift`` (unwrapped longitudes at the antimeridian).
        crs: the CRS written for the window (default: the file's).

    Returns:
        The piece, or None when the tile does not overlap ``bounds``.

    Raises:
        _Missing: the tile does not exist (HTTP 404, or a missing file of a local mirror).
        AuxiliaryFetchError: any other failure, after the retries.
    """
    remote = is_remote(url)
    path = gdal_path(url) if remote else url
    if not remote and not Path(path).is_file():
        raise _Missing(url)
    delays = retry_delays() if remote else []
    extra: dict[str, str] = {}
    for attempt in range(len(delays) + 1):
        try:
            env = remote_env(**extra) if remote else contextlib.nullcontext()
            with env, rasterio.open(path) as src:
                if src.crs is None or not src.crs.is_geographic:
                    raise AuxiliaryFetchError(f"{url}: not a geographic (longitude/latitude) raster; not a {source.title} tile", url)
                win = _window(src, bounds)
                if win is None:
                    return None
                data = src.read(1, window=win)
                nodata = src.nodata if src.nodata is not None else source.nodata
                transform = Affine.translation(-shift, 0) @ src.window_transform(win)
                profile = dict(
                    driver="GTiff", width=int(win.width), height=int(win.height), count=1, dtype=data.dtype,
                    crs=crs or src.crs, transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
                )  # fmt: skip
                size = (src.height, src.width)
            with rasterio.open(out, "w", **profile) as dst:
                dst.write(data, 1)
            return Piece(out, Path(url).name, url, win, size)
        except rasterio.errors.RasterioIOError as exc:
            code = http_status(exc)
            if code == 404:
                raise _Missing(url) from exc
            if code is not None and 400 <= code < 500:
                raise AuxiliaryFetchError(f"{url}: refused by the server (HTTP {code}); check the mirror of {source.layer}", url, code) from exc
            if attempt >= len(delays):
                raise AuxiliaryFetchError(
                    f"{url}: {source.title} tile cannot be read after {attempt + 1} attempt(s) ({explain(exc)})", url, code
                ) from exc
            extra = {"CPL_VSIL_CURL_NON_CACHED": path}  # a transfer cut short stays in GDAL's cache otherwise
            time.sleep(delays[attempt])
    return None  # pragma: no cover - the loop returns or raises


def _sea(cell: Cell, source: TileSource, out: Path, crs: CRS) -> Piece:
    """A constant raster of the source's sea value over a cell (grown a little: tiles are half a pixel off the cell)."""
    grow = 0.01
    n = int(round((source.cell + 2 * grow) / _SEA_STEP))
    west_u = cell.west - cell.shift
    transform = Affine(_SEA_STEP, 0, west_u - grow, 0, -_SEA_STEP, cell.south + source.cell + grow)
    profile = dict(driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=crs, transform=transform, nodata=None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.full((n, n), source.sea_value, np.float32), 1)
    return Piece(out, f"sea_{cell.south}_{cell.west}", "", None, None)


def _geographic_crs(fp: Footprint) -> tuple[CRS, bool]:
    """WGS 84, with ``+lon_wrap`` at the footprint's centre when it crosses the antimeridian."""
    if fp.west >= -180.0 and fp.east <= 180.0:
        return CRS.from_epsg(4326), False
    centre = round((fp.west + fp.east) / 2.0)
    return CRS.from_proj4(f"+proj=longlat +datum=WGS84 +lon_wrap={centre} +no_defs"), True


def fetch_layer(
    source: TileSource,
    grid: Grid,
    out: Path,
    base: str,
    root: Path,
    work: Path,
    allow_fill: bool = False,
) -> tuple[CoverageReport, list[Piece]]:
    """Fetch the windows of ``source`` covering ``grid`` from ``base`` and write the layer ``out``.

    Args:
        source: the tiled source.
        grid: the target grid.
        out: the layer file (``<TILE>_<layer>_<res>m.tif``), written atomically.
        base: the base URL (or mirror folder).
        root: the cache root (tile lists).
        work: a private temporary folder for the windows.
        allow_fill: write nodata where the source does not cover the grid (beyond its latitudes)
            instead of failing.

    Returns:
        The coverage report and the pieces read (for logs and tests).

    Raises:
        AuxiliaryFetchError: a tile is missing (and is not sea) or cannot be read.
        nimbus.errors.AuxiliaryDataError: the tiles leave part of the grid uncovered and not ``allow_fill``.
    """
    fp = footprint(grid)
    want = cells(fp, source)
    if not want:
        from nimbus.errors import AuxiliaryDataError

        raise AuxiliaryDataError(
            f"{source.title} covers latitudes {source.lat_range[0]:g}..{source.lat_range[1]:g} only; "
            f"the grid of {out.name} spans {fp.south:.3f}..{fp.north:.3f}"
        )
    crs, wrapped = _geographic_crs(fp)
    index = tile_index(source, base, root)
    sea: list[Cell] = []
    todo: list[Cell] = []
    for cell in want:
        if index is not None and (cell.south, cell.west) not in index:
            sea.append(cell)
        else:
            todo.append(cell)

    def one(cell: Cell) -> Piece | Cell | None:
        url = join_url(base, source.path(cell.south, cell.west))
        bounds = (fp.west + cell.shift, fp.south, fp.east + cell.shift, fp.north)
        target = work / Path(url).name
        try:
            return read_window(url, bounds, target, source, shift=cell.shift if wrapped else 0.0, crs=crs if wrapped else None)
        except _Missing as exc:
            if source.sea_value is not None and index is None:
                return cell  # no tile list on this mirror: a missing tile is sea
            listed = " although tileList.txt lists it" if index is not None else ""
            raise AuxiliaryFetchError(
                f"{url}: {source.title} tile not found (HTTP 404){listed}; the mirror {base} is incomplete or wrong "
                f"(set it with --mirror {source.layer}=URL or {source.env})",
                url,
                404,
            ) from exc

    pieces: list[Piece] = []
    if todo:
        workers = max(1, min(read_threads(), len(todo)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nimbus-fetch") as pool:
            for got in pool.map(one, todo):
                if isinstance(got, Cell):
                    sea.append(got)
                elif got is not None:
                    pieces.append(got)
    sea_pieces = [_sea(c, source, work / f"sea_{c.south}_{c.west}.tif", crs) for c in sea]
    if not pieces and not sea_pieces:
        raise AuxiliaryFetchError(f"{base}: no {source.title} tile overlaps the grid of {out.name}", base)
    tags = source.tags(base)
    tags["tiles"] = ";".join(p.name for p in pieces)
    tags["sea_tiles"] = ";".join(source.path(c.south, c.west).rsplit("/", 1)[-1] for c in sea)
    tags["fetched"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # sea first: later sources win where they have data (the real tiles)
    report = build_layer(
        [p.path for p in sea_pieces + pieces], source.layer, out, grid.crs, grid.transform, grid.shape,
        allow_fill=allow_fill, tags=tags,
    )  # fmt: skip
    return report, pieces
