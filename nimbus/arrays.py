"""Training arrays: a model-ready, memory-mappable stack per product, written strip by strip.

Layout of ``ARRAYS_DIR/<product_id>/``::

    bands.npy   uint16 (n_bands, H, W)  harmonised DN (every baseline on the pre-04.00 scale), 0 = nodata
    aux.npy     float32 (n_aux, H, W)   auxiliary layers in their units, NaN = nodata (absent when none)
    meta.json   product_id, tile, date (ISO), sensing_time, crs (WKT), epsg, transform (6 numbers:
                a, b, c, d, e, f), resolution, shape, bands (names), aux (names), nodata (0), aux_nodata
                ("NaN"), level, baseline, spacecraft, source (product path)
    labels.tif  uint8 COG on the same grid (written by ``nimbus labels``)

``bands`` lists the bands the product holds, in model order (an L2A has no B10). Both arrays are
filled through :func:`nimbus.inputs.assemble`, the function the segmenter uses, so training sees
exactly what deployment feeds. The folder is written under a temporary name and renamed when
complete: a folder with ``meta.json`` is always whole. :class:`ArrayStack` reads channels and
windows back without loading whole products.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from nimbus.atomic import atomic_path
from nimbus.auxiliary import LAYERS, canonical_layer, find_aux
from nimbus.bands import BANDS
from nimbus.errors import AuxiliaryDataError, NimbusError
from nimbus.inputs import assemble, is_band, missing_channels
from nimbus.validate import is_valid

__all__ = ["ArrayStack", "build_arrays", "default_layers"]

FORMAT_VERSION = 1


def default_layers(aux_dir: str | os.PathLike[str] | None, tile: str) -> list[str]:
    """The auxiliary layers ``aux_dir`` holds for a tile (at any resolution), in the order of ``LAYERS``."""
    return [name for name in LAYERS if find_aux(aux_dir, tile, name) is not None]


def _open_memmap(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` memory map whose blocks are reserved on disk first.

    A sparse file written through a memory map dies with SIGBUS when the disk fills up; reserving
    the space turns a full disk into an ``OSError`` (ENOSPC) before any pixel is written.
    """
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate
            raise
    finally:
        os.close(fd)
    return arr


def build_arrays(
    product: Any,
    out_root: str | os.PathLike[str],
    res: int = 10,
    aux_dir: str | os.PathLike[str] | None = None,
    layers: Sequence[str] | None = None,
    strip_rows: int = 512,
    overwrite: bool = False,
) -> tuple[Path, bool]:
    """Write the arrays of one product into ``out_root/<product_id>/``, strip by strip.

    Memory stays bounded by ``strip_rows`` rows of all channels (the arrays themselves are written
    through memory maps), never by the product's size.

    Args:
        product: a product path or an opened product.
        out_root: the arrays folder.
        res: pixel size in metres (10, 20 or 60).
        aux_dir: the folder of auxiliary files (``nimbus auxiliary``).
        layers: auxiliary layer names to stack; None takes every layer ``aux_dir`` holds for the tile.
        strip_rows: rows assembled at a time.
        overwrite: rebuild a product whose arrays already exist (otherwise it is skipped).

    Returns:
        ``(folder, written)``: ``written`` is False when complete arrays already existed.

    Raises:
        AuxiliaryDataError: a requested layer has no file for the product's tile.
    """
    if not hasattr(product, "read"):
        from nimbus.product import open_product

        product = open_product(product)
    final = Path(out_root) / product.product_id
    if not overwrite and (final / "meta.json").is_file() and is_valid(final):
        return final, False  # complete; a folder that does not validate is rebuilt
    bands = [b for b in BANDS if b in set(product.bands)]
    layers = default_layers(aux_dir, product.tile) if layers is None else [canonical_layer(x) for x in layers]
    bad = [x for x in layers if is_band(x)]
    if bad:
        raise NimbusError(f"{', '.join(bad)}: band names given as auxiliary layers")
    missing = missing_channels(product, layers, aux_dir)
    if missing:
        raise AuxiliaryDataError(
            f"no auxiliary file for layer(s) {', '.join(missing)} of tile {product.tile} in {aux_dir}; "
            f"build them with `nimbus auxiliary` or leave them out"
        )
    h, w = product.shape(res)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        band_arr = _open_memmap(tmp / "bands.npy", np.uint16, (len(bands), h, w))
        aux_arr = _open_memmap(tmp / "aux.npy", np.float32, (len(layers), h, w)) if layers else None
        for r0 in range(0, h, strip_rows):
            rows = min(strip_rows, h - r0)
            win = Window(0, r0, w, rows)
            data, _ = assemble(product, bands, res, win)
            band_arr[:, r0 : r0 + rows] = data.astype(np.uint16)
            for i, layer in enumerate(layers):
                values, ok = assemble(product, [layer], res, win, aux_dir=aux_dir)
                aux_arr[i, r0 : r0 + rows] = np.where(ok, values[0], np.nan)
        band_arr.flush()
        del band_arr
        if aux_arr is not None:
            aux_arr.flush()
            del aux_arr
        t = product.transform(res)
        crs = CRS.from_user_input(product.crs)
        sensing = getattr(product, "sensing_time", None)
        meta = {
            "format_version": FORMAT_VERSION,
            "product_id": product.product_id,
            "tile": product.tile,
            "date": sensing.date().isoformat() if sensing else None,
            "sensing_time": sensing.isoformat() if sensing else None,
            "crs": crs.to_wkt(),
            "epsg": crs.to_epsg(),
            "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "resolution": int(res),
            "shape": [h, w],
            "bands": bands,
            "aux": list(layers),
            "nodata": 0,
            "aux_nodata": "NaN",
            "level": getattr(product, "level", None),
            "baseline": getattr(product, "baseline", None),
            "spacecraft": getattr(product, "spacecraft", None),
            "source": str(getattr(product, "path", "")),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return final, True


class ArrayStack:
    """Read access to one product's arrays folder (``bands.npy``, ``aux.npy``, ``meta.json``).

    Args:
        folder: ``ARRAYS_DIR/<product_id>``.

    Attributes:
        folder: the folder.
        meta: the parsed ``meta.json``.
        bands: the band array (memory-mapped, uint16 (n_bands, H, W)).
        aux: the auxiliary array (memory-mapped, float32 (n_aux, H, W)) or None.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise NimbusError(f"{self.folder}: no meta.json; not a complete arrays folder (run `nimbus arrays`)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
            self.bands = np.load(self.folder / "bands.npy", mmap_mode="r")
            self.aux = np.load(self.folder / "aux.npy", mmap_mode="r") if self.meta.get("aux") else None
        except (OSError, ValueError) as exc:
            raise NimbusError(f"{self.folder}: unreadable arrays ({exc}); rebuild with `nimbus arrays --overwrite`") from exc
        if self.bands.shape != (len(self.meta["bands"]), *self.shape):
            raise NimbusError(f"{self.folder}: bands.npy shape {self.bands.shape} disagrees with meta.json")
        self._index = {name: ("bands", i) for i, name in enumerate(self.meta["bands"])}
        self._index.update({name: ("aux", i) for i, name in enumerate(self.meta.get("aux", []))})

    @property
    def channels(self) -> list[str]:
        """Every channel name: the bands then the auxiliary layers."""
        return list(self.meta["bands"]) + list(self.meta.get("aux", []))

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the grid."""
        return int(self.meta["shape"][0]), int(self.meta["shape"][1])

    @property
    def transform(self) -> Affine:
        """The grid's affine transform."""
        return Affine(*self.meta["transform"])

    @property
    def crs(self) -> CRS:
        """The grid's CRS."""
        return CRS.from_wkt(self.meta["crs"])

    @property
    def labels_path(self) -> Path:
        """Where ``nimbus labels`` writes this product's class map."""
        return self.folder / "labels.tif"

    def read(self, channels: Sequence[str] | None = None, window: Window | tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read channels for a window.

        Args:
            channels: channel names (bands as harmonised DN, layers in their units); None for all.
            window: a rasterio ``Window`` or ``(row_off, col_off, height, width)``; None for the whole grid.

        Returns:
            ``(data float32 (C, h, w), valid bool (h, w))``: valid where every band requested is
            non-zero and every layer requested is finite; invalid pixels hold 0 in every channel.
        """
        channels = self.channels if channels is None else [canonical_layer(c) if not is_band(c) else c.upper() for c in channels]
        if window is None:
            r0, c0, h, w = 0, 0, *self.shape
        elif isinstance(window, Window):
            r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        else:
            r0, c0, h, w = (int(v) for v in window)
        unknown = [c for c in channels if c not in self._index]
        if unknown:
            raise NimbusError(f"{self.folder}: no channel {', '.join(unknown)} (has {', '.join(self.channels)})")
        H, W = self.shape
        out = np.zeros((len(channels), h, w), np.float32)
        valid = np.ones((h, w), bool)
        rs, cs = slice(max(r0, 0), min(r0 + h, H)), slice(max(c0, 0), min(c0 + w, W))
        inside = np.zeros((h, w), bool)
        dst = (slice(rs.start - r0, rs.stop - r0), slice(cs.start - c0, cs.stop - c0))
        inside[dst] = True
        valid &= inside
        for i, name in enumerate(channels):
            kind, j = self._index[name]
            if kind == "bands":
                part = np.asarray(self.bands[j, rs, cs])
                out[i][dst] = part
                valid[dst] &= part != 0
            else:
                part = np.asarray(self.aux[j, rs, cs], dtype=np.float32)
                ok = np.isfinite(part)
                out[i][dst] = np.where(ok, part, 0.0)
                valid[dst] &= ok
        out[:, ~valid] = 0.0
        return out, valid
