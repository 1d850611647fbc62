"""Open a Sentinel-2 product and read its bands, at native resolution or on one 10/20/60 m grid.

:func:`open_product` dispatches on what it is given (the registry of :mod:`nimbus.sources`):

- a ``.SAFE`` folder (compact naming since December 2016, or the older "OPER" naming with one or
  more granules), L1C or L2A, any processing baseline (:mod:`nimbus.sources.safe`);
- a zipped SAFE, read in place through GDAL's ``/vsizip/`` (the archive is never extracted; the
  metadata XML is read from the zip's member directly) (:mod:`nimbus.sources.safe`);
- a folder of per-band GeoTIFF/COG (or JPEG2000) files as published by cloud archives (``B02.tif``
  ... with a STAC item JSON or an AWS ``tileInfo.json`` beside them) (:mod:`nimbus.sources.cogfolder`);
- a STAC Item: a JSON file, an ``http(s)://`` URL or a ``pystac.Item`` whose band assets are read
  in place, remote ones through ``/vsicurl/`` / ``/vsis3/`` (:mod:`nimbus.sources.stac`).

This module keeps what every source shares: band-file rules (:func:`find_band_files`), the file
store interface (:class:`FileStore`) and the reader (:class:`Product`: grids, windowed reads,
resampling, the DN kinds). Raster files are opened by content (GDAL probes the format), so a
GeoTIFF named ``.jp2`` reads fine.

Example:
    >>> p = open_product("S2B_MSIL2A_...SAFE")                      # doctest: +SKIP
    >>> data, valid = p.read(["B02", "B11"], res=10, window=Window(0, 0, 512, 512))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from nimbus.bands import BANDS, L2A_EXTRAS, NATIVE_RESOLUTION, RESOLUTIONS, normalise_band
from nimbus.errors import MetadataError, MissingBandError, NimbusWarning, ProductError, explain
from nimbus.metadata import ProductMetadata, TileMetadata, baseline_has_offsets, tile_from_name

__all__ = [
    "BandFile",
    "FileStore",
    "KINDS",
    "PRODUCT_MTD_RE",
    "Product",
    "TILE_MTD_RE",
    "baseline_rule",
    "find_band_files",
    "find_metadata_files",
    "is_band_file",
    "open_product",
    "select_tile",
]

#: The value kinds :meth:`Product.read` can return.
KINDS = ("dn", "harmonized", "reflectance")

_BAND_RE = re.compile(r"(?:^|_)(B0[1-9]|B1[0-2]|B8A|SCL|AOT|WVP)(?:_(10|20|60)m)?\.(jp2|j2k|tiff?)$", re.IGNORECASE)
_RES_DIR_RE = re.compile(r"^R(10|20|60)m$", re.IGNORECASE)
_SKIP_DIRS = {"qi_data", "aux_data", "html", "rep_info", "preview", "datastrip"}
PRODUCT_MTD_RE = re.compile(r"^(MTD_MSIL(1C|2A)\.xml|S2[A-D_]_(OPER|USER)_MTD_SAF(L1C|L2A)_.*\.xml)$", re.IGNORECASE)
TILE_MTD_RE = re.compile(r"^(MTD_TL\.xml|S2[A-D_]_(OPER|USER)_MTD_L(1C|2A)_TL_.*\.xml)$", re.IGNORECASE)
_CATEGORICAL = {"SCL"}


@dataclass(frozen=True)
class BandFile:
    """One band's file inside a product.

    Attributes:
        band: canonical band name ("B02", "B8A", "SCL"...).
        path: the file's path as listed (relative to the product root, or as given).
        resolution: the grid it is on, 10, 20 or 60 (from ``_20m``/``R20m`` in the name, else the
            band's native resolution; for cloud COG folders refined from the raster itself).
    """

    band: str
    path: str
    resolution: int


def _parts(path: str) -> list[str]:
    return [p for p in str(path).replace("\\", "/").split("/") if p]


def find_band_files(paths: Iterable[str]) -> dict[str, dict[str, BandFile]]:
    """Find the band files in a list of paths, per tile.

    Works for every SAFE layout (compact and OPER naming, L1C flat ``IMG_DATA``, L2A ``R10m/R20m/R60m``,
    the 2016 ``L2A_..._B02_10m`` names), the AWS bucket layout and cloud COG folders (``B02.tif``).
    Files under ``QI_DATA``, ``AUX_DATA``, ``HTML``, ``rep_info``, ``DATASTRIP`` or ``preview`` are ignored,
    as are TCI/PVI/masks. When a band exists at several resolutions (L2A), the file at the band's native
    resolution is chosen, else the finest one available.

    Args:
        paths: file paths (any separator; relative or absolute; directories are ignored).

    Returns:
        ``{tile: {band: BandFile}}``; the tile is the MGRS code found in the file or folder names
        ("" when none, e.g. ``B02.tif``).
    """
    found: dict[str, dict[str, list[BandFile]]] = {}
    for p in paths:
        parts = _parts(p)
        if not parts:
            continue
        name = parts[-1]
        m = _BAND_RE.search(name)
        if not m:
            continue
        if any(d.lower() in _SKIP_DIRS for d in parts[:-1]):
            continue
        band = normalise_band(m.group(1))
        res: int | None = int(m.group(2)) if m.group(2) else None
        if res is None and len(parts) > 1 and _RES_DIR_RE.match(parts[-2]):
            res = int(parts[-2][1:-1])
        if res is None:
            res = NATIVE_RESOLUTION[band]
        tile = tile_from_name(name)
        if not tile:
            for d in reversed(parts[:-1]):
                tile = tile_from_name(d)
                if tile:
                    break
        found.setdefault(tile, {}).setdefault(band, []).append(BandFile(band, str(p), res))
    result: dict[str, dict[str, BandFile]] = {}
    for tile, bands in found.items():
        chosen: dict[str, BandFile] = {}
        for band, cands in bands.items():
            native = [c for c in cands if c.resolution == NATIVE_RESOLUTION[band]]
            chosen[band] = native[0] if native else min(cands, key=lambda c: c.resolution)
        result[tile] = dict(sorted(chosen.items(), key=lambda kv: _band_order(kv[0])))
    return result


def _band_order(band: str) -> int:
    order = BANDS + L2A_EXTRAS
    return order.index(band) if band in order else len(order)


def find_metadata_files(paths: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Find the product-level and the tile-level metadata XML files in a list of paths.

    Args:
        paths: file paths as for :func:`find_band_files`.

    Returns:
        (product XMLs sorted by depth, ``{tile: tile XML}``).
    """
    products: list[str] = []
    tiles: dict[str, str] = {}
    for p in paths:
        parts = _parts(p)
        if not parts:
            continue
        name = parts[-1]
        if PRODUCT_MTD_RE.match(name):
            products.append(str(p))
        elif TILE_MTD_RE.match(name):
            tile = tile_from_name(name) or next((t for t in (tile_from_name(d) for d in reversed(parts[:-1])) if t), "")
            tiles.setdefault(tile, str(p))
    products.sort(key=lambda s: len(_parts(s)))
    return products, tiles


def is_band_file(name: str) -> bool:
    """Whether a file name follows the band-file rules (``B02.tif``, ``..._B8A_20m.jp2``, ``SCL.tif``...)."""
    return bool(_BAND_RE.search(_parts(name)[-1] if _parts(name) else ""))


def select_tile(where: str, per_tile: dict[str, dict[str, BandFile]], tile: str | None) -> str:
    """The tile to read among the tiles a listing holds (``tile`` if given, else the first).

    Raises:
        MissingBandError: ``tile`` is not among them.
    """
    tiles = sorted(per_tile)
    if tile is None:
        return tiles[0]
    want = tile.upper().removeprefix("T")
    if want not in per_tile:
        raise MissingBandError(f"{where}: tile {want} is not in this product (tiles: {', '.join(t for t in tiles if t) or 'unnamed'})")
    return want


def baseline_rule(baseline: str, from_metadata: bool = False) -> str:
    """The sentence ``nimbus info`` prints for the baseline-based harmonisation rule."""
    if from_metadata:
        return "offsets from the product metadata (RADIO_ADD_OFFSET / BOA_ADD_OFFSET)"
    if not baseline:
        return "baseline unknown: no offset assumed"
    if baseline_has_offsets(baseline):
        return f"baseline {baseline} >= 04.00: -1000 DN offset"
    return f"baseline {baseline} < 04.00: no offset"


# ----------------------------------------------------------------------------------------- stores


class FileStore:
    """Where a product's files live (a folder, a zip archive, a set of URLs): the sources implement it.

    Attributes:
        path: the product as given (folder, archive, item URL...).
        remote: whether the files are read over the network (then reads use :func:`nimbus.remote.remote_env`
            and run in parallel, one thread per band).
    """

    remote = False

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def list(self) -> list[str]:  # pragma: no cover - interface
        """Every file of the product, relative to its root."""
        raise NotImplementedError

    def read_bytes(self, rel: str) -> bytes:  # pragma: no cover - interface
        """The bytes of one (metadata) file."""
        raise NotImplementedError

    def gdal_path(self, rel: str) -> str:  # pragma: no cover - interface
        """The path GDAL opens for one file."""
        raise NotImplementedError

    def describe(self, rel: str) -> str:
        """How messages name one file."""
        return str(Path(self.path) / rel)

    def env(self) -> contextlib.AbstractContextManager[Any]:
        """The GDAL settings to read under (remote settings for network stores)."""
        return contextlib.nullcontext()

    def read_error(self, band: str, rel: str, exc: Exception) -> ProductError:
        """The error to raise when GDAL cannot open or read a band file."""
        where = self.describe(rel)
        if "No such file" in str(exc) or not Path(self.gdal_path(rel)).exists():
            return MissingBandError(f"{where}: band {band} file is missing")
        # GDAL's message is often "Read failed. See previous exception": name the real cause
        return ProductError(f"{where}: band {band} cannot be read, the file is corrupt or truncated ({explain(exc)})")

    def retry_delays(self) -> list[float]:
        """Back-off delays (seconds) of the read retries Nimbus adds on top of GDAL's (none for local files)."""
        return []

    def retryable(self, exc: Exception, rel: str) -> bool:
        """Whether a failed open/read of file ``rel`` may succeed when repeated (a dropped transfer, not a 404)."""
        return False

    def close(self) -> None:
        """Release what the store holds open."""


# ----------------------------------------------------------------------------------------- product


@dataclass
class _Grid:
    shape: tuple[int, int]
    transform: Affine


class Product:
    """An opened Sentinel-2 product. Create it with :func:`open_product`.

    Attributes:
        path: what was opened (a path; for STAC items the URL or the item's id).
        layout: "safe", "zip", "cog" or "stac".
        product_id: the product name (no ``.SAFE``/``.zip``).
        tile: MGRS tile code.
        sensing_time: aware UTC datetime of the datatake start (tile sensing time when absent).
        spacecraft: "Sentinel-2A"...
        level: "L1C" or "L2A".
        baseline: processing baseline, e.g. "05.10" ("" when the layout does not say).
        quantification: DN per unit reflectance.
        offsets: per spectral band additive DN offset (-1000.0 from baseline 04.00 on, else 0.0).
        cloud_cover: percent, or None.
        nodata: the nodata DN (0).
        bands: the band names available, model order first.
        harmonization: the rule that set ``offsets`` (what ``nimbus info`` prints).
        crs: rasterio CRS of the tile.
        metadata: the parsed product-level metadata.
        tile_metadata: the parsed tile-level metadata (None when the layout has none).
    """

    def __init__(
        self,
        path: Path | str,
        layout: str,
        source: FileStore,
        band_files: dict[str, BandFile],
        metadata: ProductMetadata,
        tile_metadata: TileMetadata | None,
        tile: str,
        product_id: str,
        other_tiles: Sequence[str] = (),
        harmonization: str | None = None,
    ) -> None:
        from rasterio.crs import CRS

        self.path = path
        self.layout = layout
        self._source = source
        self._files = band_files
        self.metadata = metadata
        self.tile_metadata = tile_metadata
        self.product_id = product_id
        self.tile = tile
        self.other_tiles = tuple(other_tiles)
        self.level = metadata.level
        self.baseline = metadata.baseline
        self.spacecraft = metadata.spacecraft
        st = metadata.sensing_time or (tile_metadata.sensing_time if tile_metadata else None)
        self.sensing_time: datetime | None = st
        self.quantification = float(metadata.quantification)
        self.offsets = {b: float(metadata.offsets.get(b, 0.0)) for b in BANDS}
        self.cloud_cover = metadata.cloud_cover if metadata.cloud_cover is not None else (tile_metadata.cloud_cover if tile_metadata else None)
        self.nodata = int(metadata.nodata)
        self.bands: tuple[str, ...] = tuple(band_files)
        self.harmonization = harmonization or baseline_rule(self.baseline, metadata.offsets_from_metadata)
        self._lock = threading.RLock()
        self._band_locks: dict[str, threading.Lock] = {}
        self._threads = _remote_threads() if source.remote else 1
        self._datasets: dict[str, Any] = {}
        self._grids: dict[int, _Grid] = {}
        self._band_res: dict[str, int] = {b: f.resolution for b, f in band_files.items()}
        self._grid_from_metadata = False
        if tile_metadata is not None and tile_metadata.sizes and all(r in tile_metadata.geoposition for r in tile_metadata.sizes):
            self.crs = CRS.from_epsg(tile_metadata.epsg)
            for r in RESOLUTIONS:
                if r in tile_metadata.sizes:
                    self._grids[r] = _Grid(tile_metadata.sizes[r], tile_metadata.transform(r))
            if 10 not in self._grids:
                raise MetadataError(f"{tile_metadata.source}: no 10 m Size/Geoposition in the tile metadata")
            for r in RESOLUTIONS:
                if r not in self._grids:
                    self._grids[r] = self._derived_grid(r)
            self._grid_from_metadata = True
        else:
            self.crs = None
            self._grids_from_files(tile_metadata)

    # ------------------------------------------------------------------ grids

    def _derived_grid(self, res: int) -> _Grid:
        g = self._grids[10]
        f = res // 10
        return _Grid((g.shape[0] // f, g.shape[1] // f), g.transform @ Affine.scale(f))

    def _grids_from_files(self, tile_metadata: TileMetadata | None) -> None:
        """Grids from the rasters themselves (cloud COG folders, whose files may be decimated)."""
        from rasterio.crs import CRS

        info: dict[str, tuple[tuple[int, int], Affine, Any]] = {}
        for band, ds in zip(self.bands, self._map(self._dataset, list(self.bands))):
            info[band] = ((ds.height, ds.width), ds.transform, ds.crs)
        if not info:
            raise MissingBandError(f"{self.path}: no band files found")
        finest = min(abs(t.a) for _, t, _ in info.values())
        for band, (shape, tr, _crs) in info.items():
            ratio = abs(tr.a) / finest
            cls = int(round(10 * ratio))
            if cls not in RESOLUTIONS or abs(10 * ratio - cls) > 0.01:
                raise ProductError(
                    f"{self._source.describe(self._files[band].path)}: pixel size {abs(tr.a):g} is not 1, 2 or 6 times "
                    f"the finest band's ({finest:g}); the files do not form one Sentinel-2 tile"
                )
            self._band_res[band] = cls
            if cls not in self._grids:
                self._grids[cls] = _Grid(shape, tr)
        if 10 not in self._grids:
            raise ProductError(f"{self.path}: no band at the finest resolution")
        for r in RESOLUTIONS:
            if r not in self._grids:
                self._grids[r] = self._derived_grid(r)
        crs = next((c for _, _, c in info.values() if c), None)
        if crs is None and tile_metadata is not None and tile_metadata.epsg:
            crs = CRS.from_epsg(tile_metadata.epsg)
        self.crs = crs

    def transform(self, res: int = 10) -> Affine:
        """The affine transform of the ``res`` m grid."""
        return self._grid(res).transform

    def shape(self, res: int = 10) -> tuple[int, int]:
        """(rows, cols) of the ``res`` m grid."""
        return self._grid(res).shape

    def _grid(self, res: int) -> _Grid:
        if int(res) not in self._grids:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, not {res}")
        return self._grids[int(res)]

    def band_file(self, band: str) -> str:
        """The file (GDAL path, ``/vsizip/...`` for zips) holding ``band``."""
        b = self._check_band(band)
        return self._source.gdal_path(self._files[b].path)

    def band_resolution(self, band: str) -> int:
        """The grid (10, 20 or 60 m) the band's file is on."""
        return self._band_res[self._check_band(band)]

    def _check_band(self, band: str) -> str:
        try:
            b = normalise_band(band)
        except ValueError as exc:
            raise MissingBandError(f"{self.path}: {exc}") from exc
        if b not in self._files:
            raise MissingBandError(
                f"{self.path}: band {b} is not in this {self.level} product (available: {', '.join(self.bands) or 'none'})"
            )
        return b

    # ------------------------------------------------------------------ raw reading

    def _band_lock(self, band: str) -> threading.Lock:
        """One lock per band file: a dataset is used by one thread at a time, bands in parallel."""
        with self._lock:
            lock = self._band_locks.get(band)
            if lock is None:
                lock = self._band_locks[band] = threading.Lock()
            return lock

    def _map(self, fn: Any, items: list[Any]) -> list[Any]:
        """``[fn(x) for x in items]``, in parallel threads for network stores."""
        if self._threads <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self._threads, len(items)), thread_name_prefix="nimbus-read") as pool:
            return list(pool.map(fn, items))

    def _dataset(self, band: str) -> Any:
        import rasterio
        from rasterio.errors import RasterioIOError

        with self._band_lock(band):
            ds = self._datasets.get(band)
            if ds is not None:
                return ds
            bf = self._files[band]
            gpath = self._source.gdal_path(bf.path)
            delays = self._source.retry_delays()
            for attempt in range(len(delays) + 1):
                try:
                    with self._source.env():
                        ds = rasterio.open(gpath)
                    break
                except RasterioIOError as exc:
                    if attempt == len(delays) or not self._source.retryable(exc, bf.path):
                        raise self._read_error(bf, exc) from exc
                time.sleep(delays[attempt])
            grid = self._grids.get(self._band_res.get(band, 0)) if self._grid_from_metadata else None
            if grid is not None and (ds.height, ds.width) != grid.shape:
                ds.close()
                raise ProductError(
                    f"{self._source.describe(bf.path)}: band {band} is {ds.height}x{ds.width} pixels but the tile metadata "
                    f"gives {grid.shape[0]}x{grid.shape[1]} at {self._band_res[band]} m; the product is inconsistent"
                )
            self._datasets[band] = ds
            return ds

    def _read_error(self, bf: BandFile, exc: Exception) -> ProductError:
        return self._source.read_error(bf.band, bf.path, exc)

    def _band_shape(self, band: str) -> tuple[int, int]:
        ds = self._dataset(band)
        return ds.height, ds.width

    def _read_raw(self, band: str, row0: int, col0: int, h: int, w: int) -> np.ndarray:
        """Rows/cols of the band's own raster; parts outside it come back as nodata."""
        from rasterio.errors import RasterioIOError

        ds = self._dataset(band)
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + h, ds.height), min(col0 + w, ds.width)
        if r1 <= r0 or c1 <= c0:
            return np.full((h, w), self.nodata, np.uint16)
        win = Window(c0, r0, c1 - c0, r1 - r0)
        delays = self._source.retry_delays()
        for attempt in range(len(delays) + 1):
            with self._band_lock(band):
                try:
                    with self._source.env():
                        block = ds.read(1, window=win, out_dtype=np.uint16)
                    break
                except RasterioIOError as exc:
                    if attempt == len(delays) or not self._source.retryable(exc, self._files[band].path):
                        raise self._read_error(self._files[band], exc) from exc
                    # a transfer cut short (GDAL retries 5xx and resets itself, not truncated bodies):
                    # reopen the file and read again after a back-off
                    with contextlib.suppress(Exception):
                        ds.close()
                    self._datasets.pop(band, None)
            time.sleep(delays[attempt])
            ds = self._dataset(band)
        if (r0, c0, r1, c1) == (row0, col0, row0 + h, col0 + w):
            return block
        out = np.full((h, w), self.nodata, np.uint16)
        out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = block
        return out

    def read_band(self, band: str, window: Window | None = None) -> np.ndarray:
        """Raw DN of one band at its native resolution.

        Args:
            band: band name ("B02", "b8a", "SCL"...).
            window: a rasterio Window on the band's own grid; None for the whole band. Parts outside
                the raster read as nodata (0).

        Returns:
            uint16 array (rows, cols).

        Raises:
            MissingBandError: the band is not in the product or its file is missing.
            CorruptArchiveError: the zip member cannot be decoded.
        """
        b = self._check_band(band)
        if window is None:
            h, w = self._band_shape(b)
            return self._read_raw(b, 0, 0, h, w)
        r0, c0, h, w = _window_ints(window)
        return self._read_raw(b, r0, c0, h, w)

    # ------------------------------------------------------------------ grid reading

    def read(
        self,
        bands: str | Sequence[str],
        res: int = 10,
        window: Window | None = None,
        kind: str = "harmonized",
        resampling: str = "bilinear",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bands on one grid, with the mask of pixels where every requested band has data.

        Bands coarser than ``res`` are upsampled (``resampling``: "nearest", "bilinear" or "cubic"; SCL
        always nearest) reading only the window plus a halo, so reading a tile strip by strip gives
        exactly the whole-band result. Finer bands are area-averaged (SCL: the central sample).
        Nodata never bleeds into valid pixels.

        Args:
            bands: one band name or a list.
            res: the target grid, 10, 20 or 60 m.
            window: a rasterio Window on the ``res`` grid; None for the whole tile.
            kind: "dn" (raw uint16), "harmonized" (uint16 = DN + offset, so baselines >= 04.00 match
                older ones; nodata stays 0, valid pixels are clipped to >= 1) or "reflectance"
                (float32 = (DN + offset) / quantification, 0 where invalid). SCL/AOT/WVP are never offset.
            resampling: the upsampling method.

        Returns:
            (data (C, h, w), valid (h, w) bool).

        Raises:
            MissingBandError: a band is not in the product.
            ValueError: unknown ``kind``, ``res`` or ``resampling``.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if resampling not in ("nearest", "bilinear", "cubic"):
            raise ValueError(f"resampling must be 'nearest', 'bilinear' or 'cubic', not {resampling!r}")
        names = [bands] if isinstance(bands, str) else list(bands)
        names = [self._check_band(b) for b in names]
        gh, gw = self.shape(res)
        r0, c0, h, w = _window_ints(window) if window is not None else (0, 0, gh, gw)
        dtype = np.float32 if kind == "reflectance" else np.uint16
        data = np.zeros((len(names), h, w), dtype)
        valid = np.ones((h, w), bool)
        raws = self._map(lambda b: self._read_on_grid(b, int(res), r0, c0, h, w, resampling), names)
        for i, (b, raw) in enumerate(zip(names, raws)):
            v = raw != self.nodata
            valid &= v
            off = self.offsets.get(b, 0.0) if b in BANDS else 0.0
            if kind == "dn" or (kind == "harmonized" and off == 0.0):
                data[i] = raw
            elif kind == "harmonized":
                shifted = np.clip(raw.astype(np.int32) + int(round(off)), 1, 65535)
                data[i] = np.where(v, shifted, 0).astype(np.uint16)
            else:
                q = self.quantification if b in BANDS else 1.0
                data[i] = np.where(v, (raw.astype(np.float32) + np.float32(off)) / np.float32(q), 0.0)
        return data, valid

    def _read_on_grid(self, band: str, res: int, r0: int, c0: int, h: int, w: int, method: str) -> np.ndarray:
        """``band`` on the ``res`` grid for rows [r0, r0+h) x cols [c0, c0+w); outside the grid is nodata."""
        from fractions import Fraction

        from nimbus.resample import destination_shape, read_resampled

        src_res = self._band_res[band]
        if src_res == res:
            return self._read_raw(band, r0, c0, h, w)
        src_shape = self._band_shape(band)
        factor = Fraction(src_res, res)
        if band in _CATEGORICAL:
            method = "nearest"
        elif src_res < res:
            method = "average"
        # the part of the window inside the destination grid; the rest stays nodata
        dh, dw = destination_shape(src_shape, factor)
        y0, x0 = max(r0, 0), max(c0, 0)
        y1, x1 = min(r0 + h, dh), min(c0 + w, dw)
        out = np.full((h, w), self.nodata, np.uint16)
        if y1 <= y0 or x1 <= x0:
            return out

        def read_src(win: Window) -> np.ndarray:
            rr, cc, hh, ww = _window_ints(win)
            return self._read_raw(band, rr, cc, hh, ww)

        block = read_resampled(read_src, src_shape, factor, Window(x0, y0, x1 - x0, y1 - y0), method, self.nodata)
        out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = block
        return out

    # ------------------------------------------------------------------ description

    @property
    def missing_bands(self) -> tuple[str, ...]:
        """Spectral bands a product of this level has (L1C: 13, L2A: 12, no B10) that no file provides."""
        expected = [b for b in BANDS if not (self.level == "L2A" and b == "B10")]
        return tuple(b for b in expected if b not in self._files)

    def describe(self) -> str:
        """A human-readable summary (what ``nimbus info`` prints); warns when band files are missing."""
        missing = self.missing_bands
        if missing:
            what = "holds no band file (metadata only)" if not any(b in self._files for b in BANDS) else f"lacks band(s) {', '.join(missing)}"
            warnings.warn(
                f"{self.path}: this {self.level} product {what}; models that need them cannot run on it", NimbusWarning, stacklevel=2
            )
        lines = [
            f"product      {self.product_id}",
            f"path         {self.path} ({self.layout})",
            f"tile         {self.tile}" + (f" (other tiles in product: {', '.join(self.other_tiles)})" if self.other_tiles else ""),
            f"sensing time {self.sensing_time.isoformat() if self.sensing_time else 'unknown'}",
            f"spacecraft   {self.spacecraft or 'unknown'}",
            f"level        {self.level}",
            f"baseline     {self.baseline or 'unknown'}",
            f"quantification {self.quantification:g}",
            "offsets      "
            + (
                ", ".join(sorted({f'{v:g}' for v in self.offsets.values()}))
                + (" (from metadata)" if self.metadata.offsets_from_metadata else " (none in metadata; by baseline)")
            ),
            f"harmonisation {self.harmonization}",
            f"cloud cover  {self.cloud_cover:.2f} %" if self.cloud_cover is not None else "cloud cover  unknown",
            f"nodata       {self.nodata}",
            f"crs          {self.crs.to_string() if self.crs else 'unknown'}",
        ]
        for r in RESOLUTIONS:
            g = self._grids[r]
            t = g.transform
            lines.append(f"grid {r:>2} m    {g.shape[0]} x {g.shape[1]} px, pixel {abs(t.a):g} m, transform ({t.a:g}, {t.b:g}, {t.c:.2f}, {t.d:g}, {t.e:g}, {t.f:.2f})")
        lines.append(f"bands        {len(self.bands)}" + (f" (missing: {', '.join(missing)})" if missing else ""))
        for b in self.bands:
            lines.append(f"  {b:<4} {self._band_res[b]:>2} m  {self._source.describe(self._files[b].path)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Product({self.product_id!r}, level={self.level}, baseline={self.baseline}, tile={self.tile})"

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the open band files (and the zip)."""
        with self._lock:
            for ds in self._datasets.values():
                try:
                    ds.close()
                except Exception:  # noqa: BLE001
                    pass
            self._datasets.clear()
            self._source.close()

    def __enter__(self) -> Product:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_datasets"] = {}
        state["_lock"] = None
        state["_band_locks"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._band_locks = {}


def _window_ints(window: Window | Sequence[Any]) -> tuple[int, int, int, int]:
    """(row_off, col_off, height, width) of a rasterio Window (integers required)."""
    if not isinstance(window, Window):
        window = Window(*window) if len(window) == 4 and not isinstance(window[0], (tuple, list)) else Window.from_slices(*window)
    vals = (window.row_off, window.col_off, window.height, window.width)
    if any(abs(v - round(v)) > 1e-9 for v in vals):
        raise ValueError(f"window {window} must have integer offsets and sizes")
    r0, c0, h, w = (int(round(v)) for v in vals)
    if h <= 0 or w <= 0:
        raise ValueError(f"window {window} is empty")
    return r0, c0, h, w


def _remote_threads() -> int:
    from nimbus.remote import read_threads

    return read_threads()


# ----------------------------------------------------------------------------------------- opening


def open_product(path: Any, tile: str | None = None) -> Product:
    """Open a Sentinel-2 product: ``.SAFE`` folder, zipped SAFE (read in place), folder of per-band COGs,
    or a STAC Item (JSON file, ``http(s)://`` URL, ``pystac.Item``).

    The kind is decided by :func:`nimbus.sources.open_source` (the registry of sources).

    Args:
        path: the product. A folder holding exactly one ``.SAFE`` is accepted too, as is the product's
            ``MTD_MSIL*.xml`` itself.
        tile: for old multi-granule "OPER" products, which tile to read (default: the first).

    Returns:
        The :class:`Product`.

    Raises:
        NotAProductError: the path is missing or holds no Sentinel-2 product.
        CorruptArchiveError: a zip that is corrupt or truncated.
        MetadataError: the metadata XML/JSON is unreadable.
        MissingBandError: ``tile`` is not in the product, or the product has no band files.
        nimbus.remote.RemoteReadError: a remote item or band cannot be fetched (names the URL).
    """
    from nimbus.sources import open_source

    return open_source(path, tile=tile)
