"""Open a Sentinel-2 product and read its bands, at native resolution or on one 10/20/60 m grid.

Three layouts are recognised by their content, not their names:

- a ``.SAFE`` folder (compact naming since December 2016, or the older "OPER" naming with one or
  more granules), L1C or L2A, any processing baseline;
- a zipped SAFE, read in place through GDAL's ``/vsizip/`` (the archive is never extracted; the
  metadata XML is read from the zip's member directly);
- a folder of per-band GeoTIFF/COG (or JPEG2000) files as published by cloud archives (``B02.tif``
  ... with a STAC item JSON or an AWS ``tileInfo.json`` beside them).

Band files are found by :func:`find_band_files` from a plain list of paths, so the same rules
apply to a folder, a zip's member list, or a published list of a product's files. Raster files
are opened by content (GDAL probes the format), so a GeoTIFF named ``.jp2`` reads fine.

Example:
    >>> p = open_product("S2B_MSIL2A_...SAFE")                      # doctest: +SKIP
    >>> data, valid = p.read(["B02", "B11"], res=10, window=Window(0, 0, 512, 512))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import threading
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from nimbus.bands import BANDS, L2A_EXTRAS, NATIVE_RESOLUTION, RESOLUTIONS, normalise_band
from nimbus.errors import CorruptArchiveError, MetadataError, MissingBandError, NimbusWarning, NotAProductError, ProductError, explain
from nimbus.metadata import (
    ProductMetadata,
    TileMetadata,
    baseline_has_offsets,
    parse_aws_tile_info,
    parse_product_metadata,
    parse_stac_item,
    parse_tile_metadata,
    tile_from_name,
)

__all__ = [
    "BandFile",
    "KINDS",
    "Product",
    "find_band_files",
    "find_metadata_files",
    "open_product",
]

#: The value kinds :meth:`Product.read` can return.
KINDS = ("dn", "harmonized", "reflectance")

_BAND_RE = re.compile(r"(?:^|_)(B0[1-9]|B1[0-2]|B8A|SCL|AOT|WVP)(?:_(10|20|60)m)?\.(jp2|j2k|tiff?)$", re.IGNORECASE)
_RES_DIR_RE = re.compile(r"^R(10|20|60)m$", re.IGNORECASE)
_SKIP_DIRS = {"qi_data", "aux_data", "html", "rep_info", "preview", "datastrip"}
_PRODUCT_MTD_RE = re.compile(r"^(MTD_MSIL(1C|2A)\.xml|S2[A-D_]_(OPER|USER)_MTD_SAF(L1C|L2A)_.*\.xml)$", re.IGNORECASE)
_TILE_MTD_RE = re.compile(r"^(MTD_TL\.xml|S2[A-D_]_(OPER|USER)_MTD_L(1C|2A)_TL_.*\.xml)$", re.IGNORECASE)
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
        if _PRODUCT_MTD_RE.match(name):
            products.append(str(p))
        elif _TILE_MTD_RE.match(name):
            tile = tile_from_name(name) or next((t for t in (tile_from_name(d) for d in reversed(parts[:-1])) if t), "")
            tiles.setdefault(tile, str(p))
    products.sort(key=lambda s: len(_parts(s)))
    return products, tiles


# ----------------------------------------------------------------------------------------- sources


class _Source:
    """Where the product's files live: a folder or a zip archive."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list(self) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def read_bytes(self, rel: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def gdal_path(self, rel: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self, rel: str) -> str:
        return str(self.path / rel)


class _FolderSource(_Source):
    def list(self) -> list[str]:
        out: list[str] = []
        root = str(self.path)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d.lower() not in ("html", "rep_info")]
            rel_dir = os.path.relpath(dirpath, root)
            for f in filenames:
                out.append(f if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{f}")
        return sorted(out)

    def read_bytes(self, rel: str) -> bytes:
        try:
            return (self.path / rel).read_bytes()
        except OSError as exc:
            raise MetadataError(f"{self.path / rel}: cannot be read ({exc})") from exc

    def gdal_path(self, rel: str) -> str:
        return str(self.path / rel)


class _ZipSource(_Source):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise CorruptArchiveError(
                f"{path}: corrupt or truncated zip archive ({exc}); download the product again"
            ) from exc
        except OSError as exc:
            raise CorruptArchiveError(f"{path}: cannot read the zip archive ({exc})") from exc
        self._names = [i.filename for i in self._zip.infolist() if not i.is_dir()]

    def list(self) -> list[str]:
        return sorted(self._names)

    def read_bytes(self, rel: str) -> bytes:
        try:
            return self._zip.read(rel)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, KeyError) as exc:
            raise CorruptArchiveError(f"{self.path}: member {rel} cannot be read ({exc}); the archive is corrupt") from exc

    def gdal_path(self, rel: str) -> str:
        return f"/vsizip/{self.path.resolve()}/{rel}"

    def describe(self, rel: str) -> str:
        return f"{self.path}!/{rel}"

    def close(self) -> None:
        self._zip.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


# ----------------------------------------------------------------------------------------- product


@dataclass
class _Grid:
    shape: tuple[int, int]
    transform: Affine


class Product:
    """An opened Sentinel-2 product. Create it with :func:`open_product`.

    Attributes:
        path: what was opened.
        layout: "safe", "zip" or "cog".
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
        crs: rasterio CRS of the tile.
        metadata: the parsed product-level metadata.
        tile_metadata: the parsed tile-level metadata (None when the layout has none).
    """

    def __init__(
        self,
        path: Path,
        layout: str,
        source: _Source,
        band_files: dict[str, BandFile],
        metadata: ProductMetadata,
        tile_metadata: TileMetadata | None,
        tile: str,
        product_id: str,
        other_tiles: Sequence[str] = (),
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
        self._lock = threading.RLock()
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
        for band in self.bands:
            ds = self._dataset(band)
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

    def _dataset(self, band: str) -> Any:
        import rasterio
        from rasterio.errors import RasterioIOError

        with self._lock:
            ds = self._datasets.get(band)
            if ds is not None:
                return ds
            bf = self._files[band]
            gpath = self._source.gdal_path(bf.path)
            try:
                ds = rasterio.open(gpath)
            except RasterioIOError as exc:
                raise self._read_error(bf, exc) from exc
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
        where = self._source.describe(bf.path)
        if self.layout == "zip":
            return CorruptArchiveError(f"{where}: band {bf.band} cannot be read from the archive ({explain(exc)}); the zip is corrupt or truncated")
        if "No such file" in str(exc) or not Path(self._source.gdal_path(bf.path)).exists():
            return MissingBandError(f"{where}: band {bf.band} file is missing")
        # GDAL's message is often "Read failed. See previous exception": name the real cause
        return ProductError(f"{where}: band {bf.band} cannot be read, the file is corrupt or truncated ({explain(exc)})")

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
        with self._lock:
            try:
                block = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype=np.uint16)
            except RasterioIOError as exc:
                raise self._read_error(self._files[band], exc) from exc
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
        for i, b in enumerate(names):
            raw = self._read_on_grid(b, int(res), r0, c0, h, w, resampling)
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
            if isinstance(self._source, _ZipSource):
                self._source.close()

    def __enter__(self) -> Product:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_datasets"] = {}
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


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


# ----------------------------------------------------------------------------------------- opening


def open_product(path: str | os.PathLike[str], tile: str | None = None) -> Product:
    """Open a Sentinel-2 product: ``.SAFE`` folder, zipped SAFE (read in place) or a folder of per-band COGs.

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
    """
    p = Path(path)
    if not p.exists():
        raise NotAProductError(f"{p}: no such file or folder")
    if p.is_file() and _PRODUCT_MTD_RE.match(p.name):
        p = p.parent
    if p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(4)
        if head[:2] == b"PK" or p.suffix.lower() == ".zip":
            return _open_listing(p, "zip", _ZipSource(p), tile)
        raise NotAProductError(
            f"{p}: not a Sentinel-2 product (expected a .SAFE folder, a zipped SAFE or a folder of band files)"
        )
    top = [c.name for c in p.iterdir()]
    if not any(_PRODUCT_MTD_RE.match(n) or _TILE_MTD_RE.match(n) or _BAND_RE.search(n) or n.upper() in ("GRANULE", "IMG_DATA") for n in top):
        safes = [p / n for n in top if n.upper().endswith(".SAFE") and (p / n).is_dir()]
        if len(safes) == 1:
            return open_product(safes[0], tile)
        raise NotAProductError(
            f"{p}: folder holds no Sentinel-2 product (no MTD_MSIL*.xml, no GRANULE/ and no band files"
            + (f"; it holds {len(safes)} .SAFE folders: open one of them" if safes else "")
            + ")"
        )
    src = _FolderSource(p)
    names = src.list()
    is_safe = any(
        _PRODUCT_MTD_RE.match(PurePosixPath(n).name) or _TILE_MTD_RE.match(PurePosixPath(n).name) or n.upper().startswith("GRANULE/")
        for n in names
    )
    layout = "safe" if is_safe else "cog"
    return _open_listing(p, layout, src, tile, names)


def _open_listing(path: Path, layout: str, src: _Source, tile: str | None, names: list[str] | None = None) -> Product:
    names = src.list() if names is None else names
    per_tile = find_band_files(names)
    product_xmls, tile_xmls = find_metadata_files(names)
    if not per_tile:
        raise NotAProductError(f"{path}: no Sentinel-2 band files (B01..B12, B8A) found")
    md: ProductMetadata | None = None
    tmd: TileMetadata | None = None
    tiles = sorted(t for t in per_tile)
    if tile is not None:
        want = tile.upper().removeprefix("T")
        if want not in per_tile:
            raise MissingBandError(f"{path}: tile {want} is not in this product (tiles: {', '.join(t for t in tiles if t) or 'unnamed'})")
        chosen = want
    else:
        chosen = tiles[0]
    files = per_tile[chosen]
    if layout in ("safe", "zip") and product_xmls:
        rel = product_xmls[0]
        md = parse_product_metadata(src.read_bytes(rel), name=src.describe(rel))
        txml = tile_xmls.get(chosen) or (next(iter(tile_xmls.values())) if len(tile_xmls) == 1 else None)
        if txml is not None:
            tmd = parse_tile_metadata(src.read_bytes(txml), name=src.describe(txml))
    elif layout in ("safe", "zip") and tile_xmls:
        txml = tile_xmls.get(chosen) or next(iter(tile_xmls.values()))
        tmd = parse_tile_metadata(src.read_bytes(txml), name=src.describe(txml))
        md = ProductMetadata(source=tmd.source, level=tmd.level, baseline=tmd.baseline, sensing_time=tmd.sensing_time,
                             offsets={b: (-1000.0 if baseline_has_offsets(tmd.baseline) else 0.0) for b in BANDS}, cloud_cover=tmd.cloud_cover)  # fmt: skip
    elif layout == "zip":
        raise NotAProductError(f"{path}: zip holds band files but no Sentinel-2 metadata (MTD_MSIL*.xml)")
    else:
        md, tmd = _cog_metadata(path, src, names, files)
    layout_name = layout
    safe_dir = _parts(product_xmls[0])[-2] if product_xmls and len(_parts(product_xmls[0])) > 1 else ""
    if safe_dir.upper().endswith(".SAFE"):
        prod_id = safe_dir[:-5]
    elif md.product_format == "SAFE" and (path.name.upper().endswith(".SAFE") or "_TL_" in (md.product_uri or "")):
        # OPER naming: PRODUCT_URI names a granule, so the folder (as `nimbus extract` names it) is the product id
        prod_id = path.name.removesuffix(".SAFE").removesuffix(".zip")
    else:
        prod_id = md.product_uri or path.name.removesuffix(".zip").removesuffix(".SAFE")
    tile_code = chosen or (tmd.tile if tmd else "") or tile_from_name(prod_id) or tile_from_name(path.name)
    grid_md = tmd if layout != "cog" else None
    product = Product(path, layout_name, src, files, md, grid_md, tile_code, prod_id, [t for t in tiles if t != chosen])
    if layout == "cog":
        product.tile_metadata = tmd
    return product


def _cog_metadata(path: Path, src: _Source, names: list[str], files: dict[str, BandFile]) -> tuple[ProductMetadata, TileMetadata | None]:
    """Metadata of a band-file folder: a STAC item JSON first, else an AWS tileInfo.json, else a tile XML."""
    import json

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
        return parse_stac_item(stac[1], name=src.describe(stac[0]))
    if aws is not None:
        return parse_aws_tile_info(aws[1], name=src.describe(aws[0]))
    for n in names:
        if "/" not in n and (n.lower() in ("mtd_tl.xml", "metadata.xml", "granule_metadata.xml")):
            tmd = parse_tile_metadata(src.read_bytes(n), name=src.describe(n))
            off = -1000.0 if baseline_has_offsets(tmd.baseline) else 0.0
            return ProductMetadata(source=tmd.source, level=tmd.level, baseline=tmd.baseline, sensing_time=tmd.sensing_time,
                                   offsets={b: off for b in BANDS}, cloud_cover=tmd.cloud_cover), tmd  # fmt: skip
    level = "L2A" if "SCL" in files else "L1C"
    return ProductMetadata(source=str(path), level=level, baseline="", product_uri=path.name, offsets={b: 0.0 for b in BANDS}), None

