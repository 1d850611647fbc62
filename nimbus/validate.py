"""Is a written file complete? Checks run on every output before it gets its final name.

A write that ran out of disk space, or was cut short, can leave a file whose header looks fine but
whose last blocks are missing, and GDAL does not always report errors raised while a file is
closed. So every output is reopened and read where a truncation shows: a raster's header, the
first and last block of every band and of every overview level; a ``.npy`` header against the file
size; a JSON document parsed whole; an ONNX model loaded by onnxruntime; a PNG decoded.

:func:`validate_path` picks the check from the suffix (a folder: each file inside) and is what
:func:`nimbus.atomic.atomic_path` runs before its rename; :func:`is_valid` is the boolean form used
to decide whether an existing output may be skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nimbus.errors import OutputError, explain

__all__ = ["is_valid", "validate_json", "validate_npy", "validate_onnx", "validate_path", "validate_png", "validate_raster"]

_RASTER_SUFFIXES = (".tif", ".tiff")


def _last_block(ds: Any, band: int) -> Any:
    from rasterio.windows import Window

    bh, bw = ds.block_shapes[band - 1]
    bh, bw = min(bh, ds.height), min(bw, ds.width)
    return Window(ds.width - bw, ds.height - bh, bw, bh), Window(0, 0, bw, bh)


def validate_raster(
    path: str | os.PathLike[str],
    shape: tuple[int, int] | None = None,
    count: int | None = None,
    dtype: str | None = None,
) -> None:
    """Check that a GeoTIFF opens and that its first and last blocks decode, at every level.

    Args:
        path: the raster.
        shape: expected ``(height, width)``, or None.
        count: expected number of bands, or None.
        dtype: expected data type name (``"uint8"`` ...), or None.

    Raises:
        OutputError: naming the file and what is wrong (unreadable header, a block that does not
            decode, a size or band count other than expected, an empty file).
    """
    import rasterio

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise OutputError(f"{path}: empty file")
        with rasterio.open(path) as ds:
            if shape is not None and (ds.height, ds.width) != tuple(shape):
                raise OutputError(f"{path}: {ds.height}x{ds.width} pixels, expected {shape[0]}x{shape[1]}")
            if count is not None and ds.count != count:
                raise OutputError(f"{path}: {ds.count} band(s), expected {count}")
            if dtype is not None and ds.dtypes[0] != dtype:
                raise OutputError(f"{path}: data type {ds.dtypes[0]}, expected {dtype}")
            levels = len(ds.overviews(1)) if ds.count else 0
            for b in range(1, ds.count + 1):
                for win in _last_block(ds, b):
                    ds.read(b, window=win)
        for level in range(levels):  # overviews: rasterio opens one level as a dataset of its own
            with rasterio.open(path, overview_level=level) as ov:
                for b in range(1, ov.count + 1):
                    for win in _last_block(ov, b):
                        ov.read(b, window=win)
    except OutputError:
        raise
    except Exception as exc:  # any GDAL/rasterio/OS error means the file is not usable
        raise OutputError(f"{path}: incomplete or unreadable raster: {explain(exc)}") from exc


def validate_npy(path: str | os.PathLike[str], shape: tuple[int, ...] | None = None, dtype: str | None = None) -> None:
    """Check that a ``.npy`` file's header parses and its size matches the header exactly.

    Args:
        path: the ``.npy`` file.
        shape: expected array shape, or None.
        dtype: expected dtype name, or None.

    Raises:
        OutputError: on a bad header, a size other than header + data, or another shape/dtype.
    """
    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            hdr_shape, _, hdr_dtype = read_header(f)
            offset = f.tell()
        size = path.stat().st_size
    except Exception as exc:
        raise OutputError(f"{path}: not a readable .npy file: {explain(exc)}") from exc
    expected = offset + int(np.prod(hdr_shape, dtype=np.int64)) * hdr_dtype.itemsize
    if size != expected:
        raise OutputError(f"{path}: {size} bytes, the header {tuple(hdr_shape)} {hdr_dtype} needs {expected}")
    if shape is not None and tuple(hdr_shape) != tuple(shape):
        raise OutputError(f"{path}: shape {tuple(hdr_shape)}, expected {tuple(shape)}")
    if dtype is not None and hdr_dtype != np.dtype(dtype):
        raise OutputError(f"{path}: dtype {hdr_dtype}, expected {np.dtype(dtype)}")


def validate_json(path: str | os.PathLike[str]) -> None:
    """Check that a file holds one complete JSON document.

    Raises:
        OutputError: when it does not parse.
    """
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except Exception as exc:
        raise OutputError(f"{path}: incomplete or invalid JSON: {explain(exc)}") from exc


def validate_onnx(path: str | os.PathLike[str]) -> None:
    """Check that onnxruntime can load a model file (a truncated protobuf cannot).

    Raises:
        OutputError: when onnxruntime refuses it.
    """
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OutputError(f"{path}: onnxruntime cannot load it: {explain(exc)}") from exc


def validate_png(path: str | os.PathLike[str]) -> None:
    """Check that a PNG decodes completely.

    Raises:
        OutputError: when Pillow cannot decode it.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:
        raise OutputError(f"{path}: incomplete or invalid PNG: {explain(exc)}") from exc


_BY_SUFFIX: Mapping[str, Callable[[Path], None]] = {
    **{s: validate_raster for s in _RASTER_SUFFIXES},
    ".npy": validate_npy,
    ".json": validate_json,
    ".onnx": validate_onnx,
    ".png": validate_png,
}


def validate_path(path: str | os.PathLike[str]) -> None:
    """Validate a file by its suffix, or every such file inside a folder (recursively).

    Files of other kinds (JPEG2000 bands, XML, text) are only checked to exist: their writers
    check sizes themselves.

    Args:
        path: a file or a folder.

    Raises:
        OutputError: from the first file that does not validate, or when ``path`` is missing.
    """
    path = Path(path)
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            check = _BY_SUFFIX.get(f.suffix.lower())
            if check is not None and f.is_file() and not f.name.startswith("."):
                check(f)
        return
    if not path.exists():
        raise OutputError(f"{path}: missing")
    check = _BY_SUFFIX.get(path.suffix.lower())
    if check is not None:
        check(path)


def is_valid(path: str | os.PathLike[str], check: Callable[[Path], None] = validate_path) -> bool:
    """Whether an existing output is complete (False when missing or invalid).

    Args:
        path: the output.
        check: the validation to run (default: by suffix, :func:`validate_path`).
    """
    p = Path(path)
    if not p.exists():
        return False
    try:
        check(p)
    except OutputError:
        return False
    return True
