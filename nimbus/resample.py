"""Band resampling between the Sentinel-2 grids (10, 20, 60 m): integer-factor up- and downsampling.

The compute runs in C++ (``csrc/resample.cpp``, threads, GIL released); this module validates the
input, dispatches on dtype and maps windows of the destination grid to the source pixels they need.

Grids and the exact rules
-------------------------
* Upsampling by an integer factor ``f`` (20→10 m: 2, 60→10 m: 6, 60→20 m: 3) maps destination
  pixel ``j`` (row or column) to source coordinate ``u = (j + 0.5) / f - 0.5`` (pixel centres, as
  GDAL's warper does); ``i0 = floor(u)``, ``t = u - i0``.
* ``nearest``: source pixel ``j // f`` (pixel replication); any integer dtype (e.g. uint8 SCL).
* ``bilinear``: taps ``i0, i0 + 1`` with weights ``1 - t, t`` in each axis; taps beyond the band
  edge are clamped to the edge. This equals
  ``rasterio.warp.reproject(..., resampling=Resampling.bilinear)`` onto the finer grid within
  1 DN: uint16 results are the exact weighted mean rounded half up (integer arithmetic), while
  GDAL's weights carry floating-point noise from its coordinate transform, so its exact .5 ties
  go either way (on the real 29RKH grid 3 % of ×2 pixels differ by 1; ×6 weights are inexact in
  floating point anyway).
* ``cubic``: Keys' cubic convolution (``a = -0.5``, GDAL's ``cubic``) on the 4×4 taps
  ``i0 - 1 .. i0 + 2``. Where those 16 taps are not all inside the band or not all valid, the
  pixel takes the bilinear result instead (GDAL's rule). uint16 results are clamped to
  ``[0, 65535]`` and rounded; they are within 1 DN of GDAL (computed in float32, GDAL in double),
  except for odd factors (×3) on the second row/column from a band edge, where the destination
  centre falls exactly on a source centre and GDAL's floating-point position decides between
  cubic and bilinear depending on the grid's coordinates (we use exact arithmetic: cubic).
* Nodata (``nodata=None`` disables it; for float32 it may be ``nan``):

  - an output pixel whose *nearest* source pixel (``j // f``) is nodata is nodata;
  - otherwise it is computed only from its valid taps: the weighted mean of the valid taps
    with the weights renormalised to sum to 1 (for cubic: bilinear over valid taps as above).
    So nodata never bleeds into valid pixels, and valid data never grows into nodata by more
    than the nearest-pixel rule allows;
  - a valid result that equals the nodata value (cubic undershoot to 0, say) is moved to the
    next value (``nodata + 1`` for uint16, ``nextafter`` for float32), as GDAL does.
* Downsampling by ``f`` (10→20 m: 2, 10→60 m: 6, 20→60 m: 3), ``method="average"``: the mean of
  the valid pixels of each ``f × f`` block (uint16 rounded half up), nodata only where the whole
  block is nodata. ``method="nearest"`` picks pixel ``(f // 2)`` of each block (GDAL's nearest).
  Trailing rows/columns that do not fill a block are dropped (``H // f``).

Windows
-------
Every output pixel depends only on its global position and the source pixels it reads, so a
window of the destination grid resampled from the matching source window (with its halo: one
pixel for bilinear, two for cubic, clipped to the band) equals the same crop of the whole-band
result exactly. :func:`read_resampled` reads only those source pixels through a callback;
:func:`source_window` gives the window to read for either direction and
:func:`destination_window` the inverse: the destination pixels a source window determines.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import numpy as np
from rasterio.windows import Window

from nimbus.errors import ResampleError

__all__ = [
    "DOWN_METHODS",
    "UP_METHODS",
    "destination_shape",
    "destination_window",
    "downsample",
    "downsample_mean",
    "parse_factor",
    "read_resampled",
    "resample",
    "source_window",
    "upsample",
]

#: Methods for upsampling by an integer factor.
UP_METHODS: tuple[str, ...] = ("nearest", "bilinear", "cubic")

#: Methods for downsampling by an integer factor ("bilinear"/"cubic" requests also mean "average").
DOWN_METHODS: tuple[str, ...] = ("average", "nearest")

_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))


def _kernels():
    from nimbus import _kernels

    return _kernels


def _int_factor(factor: object, what: str = "factor") -> int:
    """An integer factor >= 1 from an int or an integral float; a clear error otherwise."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating, Fraction)):
        raise ResampleError(f"resample: {what} must be a positive integer, got {factor!r}")
    if isinstance(factor, (float, np.floating)) and not math.isfinite(factor):
        raise ResampleError(f"resample: {what} must be a positive integer, got {factor!r}")
    f = int(round(float(factor)))
    if f < 1 or abs(float(factor) - f) > 1e-9:
        raise ResampleError(f"resample: {what} must be a positive integer (2, 3 or 6 between Sentinel-2 grids), got {factor!r}")
    return f


def parse_factor(factor: object) -> tuple[str, int]:
    """Split a scale ``src_res / dst_res`` into a direction and an integer factor.

    Args:
        factor: source pixel size over destination pixel size, e.g. ``2`` (20→10 m),
            ``6`` (60→10 m), ``0.5`` or ``Fraction(1, 2)`` (10→20 m), ``1/6`` (10→60 m).

    Returns:
        ``("up", f)``, ``("down", f)`` or ``("same", 1)``.

    Raises:
        ResampleError: the scale or its inverse is not an integer.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating, Fraction)):
        raise ResampleError(f"resample: factor must be a number (src_res / dst_res), got {factor!r}")
    value = float(factor)
    if not math.isfinite(value) or value <= 0:
        raise ResampleError(f"resample: factor must be a positive number (src_res / dst_res), got {factor!r}")
    if value >= 1:
        f = _int_factor(factor)
        return ("same", 1) if f == 1 else ("up", f)
    inv = 1.0 / value
    f = int(round(inv))
    if abs(inv - f) > 1e-6 * inv:
        raise ResampleError(f"resample: factor {factor!r} is neither an integer nor 1/integer (src_res / dst_res)")
    return "down", f


def _check_array(src: np.ndarray, what: str = "source", any_dtype: bool = False) -> tuple[np.ndarray, bool]:
    """Validate dtype and ndim; return a contiguous (C, H, W) view and whether it was 2-D."""
    if not isinstance(src, np.ndarray):
        raise ResampleError(f"resample: {what} must be a numpy array, got {type(src).__name__}")
    if any_dtype and src.dtype.kind in "biuf":
        pass
    elif src.dtype not in _DTYPES:
        raise ResampleError(f"resample: {what} dtype {src.dtype} is not supported; use uint16 or float32")
    if src.ndim not in (2, 3):
        raise ResampleError(f"resample: {what} must be (H, W) or (C, H, W), got {src.ndim} dimensions {src.shape}")
    squeeze = src.ndim == 2
    arr = src[None] if squeeze else src
    return np.ascontiguousarray(arr), squeeze


def _nodata_args(nodata: float | None, dtype: np.dtype) -> tuple[bool, float]:
    if nodata is None:
        return False, 0.0
    try:
        value = float(nodata)
    except (TypeError, ValueError):
        raise ResampleError(f"resample: nodata must be a number or None, got {nodata!r}") from None
    if dtype == np.uint16 and not (value.is_integer() and 0 <= value <= 65535):
        raise ResampleError(f"resample: nodata {nodata!r} is not a uint16 value")
    return True, value


def _check_method(method: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(method, str) or method.lower() not in allowed:
        raise ResampleError(f"resample: unknown method {method!r}; use one of {', '.join(allowed)}")
    return method.lower()


def _check_out(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """Validate a caller's output buffer; return it as a (C, h, w) view (or None)."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != tuple(shape):
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ResampleError(f"resample: out must be a {dtype} array of shape {tuple(shape)}, got {got}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ResampleError("resample: out must be C-contiguous and writable")
    return out[None] if out.ndim == 2 else out


def upsample(
    src: np.ndarray,
    factor: int,
    method: str = "bilinear",
    nodata: float | None = 0,
    threads: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Upsample a band (or a stack of bands) by an integer factor onto the finer grid.

    Args:
        src: uint16 or float32 array, ``(H, W)`` or ``(C, H, W)``.
        factor: integer factor (2: 20→10 m, 6: 60→10 m, 3: 60→20 m).
        method: ``nearest``, ``bilinear`` or ``cubic`` (see the module docstring for the rules).
        nodata: value marking missing pixels, ``None`` for none (``nan`` allowed for float32).
        threads: worker threads, 0 for all cores.
        out: optional C-contiguous array of the result's shape and dtype to write into (e.g. a band
            of a preallocated stack); saves allocating (and page-faulting) a new array.

    Returns:
        Array of the same dtype and rank, ``(H*f, W*f)`` or ``(C, H*f, W*f)`` (``out`` when given).

    Raises:
        ResampleError: bad dtype, rank, factor, method or nodata.
    """
    method = _check_method(method, UP_METHODS)
    arr, squeeze = _check_array(src, any_dtype=method == "nearest")
    f = _int_factor(factor)
    _, h, w = arr.shape
    shape = (h * f, w * f) if squeeze else (arr.shape[0], h * f, w * f)
    buf = _check_out(out, shape, arr.dtype)
    if arr.dtype not in _DTYPES:  # nearest on class maps (uint8 SCL ...): pixel replication
        res = _nearest_numpy(arr, f, (0, 0), (0, 0, h * f, w * f))
        if buf is not None:
            np.copyto(buf, res)
            return out
        return res[0] if squeeze else res
    has_nd, nd = _nodata_args(nodata, arr.dtype)
    res = _kernels().upsample(arr, f, method, has_nd, nd, 0, 0, h, w, 0, 0, h * f, w * f, int(threads), buf)
    if out is not None:
        return out
    return res[0] if squeeze else res


def _nearest_numpy(arr: np.ndarray, f: int, src_off: tuple[int, int], dst: tuple[int, int, int, int]) -> np.ndarray:
    """Nearest upsampling of any dtype with numpy: destination (r0, c0, h, w) from a source window at src_off."""
    r0, c0, h, w = dst
    rows = (r0 + np.arange(h)) // f - src_off[0]
    cols = (c0 + np.arange(w)) // f - src_off[1]
    return np.ascontiguousarray(arr[:, rows][:, :, cols])


def downsample_mean(src: np.ndarray, factor: int, nodata: float | None = 0, threads: int = 0) -> np.ndarray:
    """Area-average downsampling by an integer factor (mean of the valid pixels of each block).

    Args:
        src: uint16 or float32 array, ``(H, W)`` or ``(C, H, W)``.
        factor: integer factor (2: 10→20 m, 6: 10→60 m, 3: 20→60 m).
        nodata: value marking missing pixels (ignored in the mean), ``None`` for none.
        threads: worker threads, 0 for all cores.

    Returns:
        ``(H // f, W // f)`` (or with the channel axis) of the same dtype; a block with no valid
        pixel is nodata.

    Raises:
        ResampleError: bad dtype, rank, factor or nodata.
    """
    arr, squeeze = _check_array(src)
    f = _int_factor(factor)
    has_nd, nd = _nodata_args(nodata, arr.dtype)
    out = _kernels().downsample_mean(arr, f, has_nd, nd, int(threads))
    return out[0] if squeeze else out


def downsample(src: np.ndarray, factor: int, method: str = "average", nodata: float | None = 0, threads: int = 0) -> np.ndarray:
    """Downsample by an integer factor with ``average`` (area mean) or ``nearest`` (block pixel f // 2).

    Args:
        src: uint16 or float32 array, ``(H, W)`` or ``(C, H, W)``.
        factor: integer factor.
        method: ``average`` (also accepted: ``bilinear``, ``cubic``) or ``nearest`` (for class maps).
        nodata: nodata value or ``None``.
        threads: worker threads, 0 for all cores.

    Returns:
        ``(H // f, W // f)`` (or with the channel axis) of the same dtype.
    """
    method = _check_method(method, DOWN_METHODS + ("bilinear", "cubic"))
    if method != "nearest":
        return downsample_mean(src, factor, nodata, threads)
    arr, squeeze = _check_array(src, any_dtype=True)
    f = _int_factor(factor)
    _nodata_args(nodata, arr.dtype)
    _, h, w = arr.shape
    out = np.ascontiguousarray(arr[:, f // 2 : (h // f) * f : f, f // 2 : (w // f) * f : f])
    return out[0] if squeeze else out


def resample(src: np.ndarray, factor: float, method: str = "bilinear", nodata: float | None = 0, threads: int = 0) -> np.ndarray:
    """Resample by a scale ``factor = src_res / dst_res`` (2, 3, 6 up; 1/2, 1/3, 1/6 down; 1 copies).

    Args:
        src: uint16 or float32 array, ``(H, W)`` or ``(C, H, W)``.
        factor: source pixel size over destination pixel size.
        method: upsampling: nearest, bilinear, cubic; downsampling: nearest, else area average.
        nodata: nodata value or ``None``.
        threads: worker threads, 0 for all cores.

    Returns:
        The resampled array.
    """
    direction, f = parse_factor(factor)
    if direction == "up":
        return upsample(src, f, method, nodata, threads)
    if direction == "down":
        return downsample(src, f, "nearest" if str(method).lower() == "nearest" else "average", nodata, threads)
    arr, squeeze = _check_array(src)
    return arr[0].copy() if squeeze else arr.copy()


def destination_shape(src_shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """Shape of the destination grid for a source band of ``src_shape`` and scale ``factor``."""
    direction, f = parse_factor(factor)
    h, w = (int(v) for v in src_shape[-2:])
    if direction == "up":
        return h * f, w * f
    if direction == "down":
        return h // f, w // f
    return h, w


def _window_bounds(window: Window, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer (row0, col0, height, width) of a window that must lie inside ``shape``."""
    try:
        vals = [float(window.row_off), float(window.col_off), float(window.height), float(window.width)]
    except AttributeError:
        raise ResampleError(f"resample: dst_window must be a rasterio Window, got {window!r}") from None
    if any(not v.is_integer() for v in vals):
        raise ResampleError(f"resample: dst_window {window!r} must have integer offsets and sizes")
    r0, c0, h, w = (int(v) for v in vals)
    if h < 1 or w < 1 or r0 < 0 or c0 < 0 or r0 + h > shape[0] or c0 + w > shape[1]:
        raise ResampleError(f"resample: dst_window {window!r} is empty or outside the destination grid {shape}")
    return r0, c0, h, w


def _up_range(d0: int, d1: int, f: int, n: int, method: str) -> tuple[int, int]:
    """Source index range [lo, hi) read by destination indices [d0, d1) when upsampling."""
    if method == "nearest":
        lo, hi = d0 // f, (d1 - 1) // f + 1
    else:
        lo = (2 * d0 + 1 - f) // (2 * f)
        hi = (2 * (d1 - 1) + 1 - f) // (2 * f) + 2
        if method == "cubic":
            lo, hi = lo - 1, hi + 1
    return max(0, lo), min(n, hi)


def source_window(src_shape: tuple[int, int], factor: float, dst_window: Window, method: str = "bilinear") -> Window:
    """The source window (with halo, clipped to the band) needed for ``dst_window``.

    Args:
        src_shape: ``(H, W)`` of the full source band.
        factor: ``src_res / dst_res`` (2, 3, 6 up; 1/2, 1/3, 1/6 down).
        dst_window: window on the destination grid (inside it).
        method: resampling method (the halo depends on it).

    Returns:
        A rasterio Window on the source grid. For downsampling it is the exact block-aligned
        window ``f`` times larger; for upsampling it adds the taps' halo.
    """
    direction, f = parse_factor(factor)
    h, w = (int(v) for v in src_shape[-2:])
    r0, c0, dh, dw = _window_bounds(dst_window, destination_shape((h, w), factor))
    if direction == "down":
        return Window(c0 * f, r0 * f, dw * f, dh * f)
    if direction == "same":
        return Window(c0, r0, dw, dh)
    method = _check_method(method, UP_METHODS)
    y0, y1 = _up_range(r0, r0 + dh, f, h, method)
    x0, x1 = _up_range(c0, c0 + dw, f, w, method)
    return Window(x0, y0, x1 - x0, y1 - y0)


def destination_window(src_shape: tuple[int, int], factor: float, src_window: Window, method: str = "bilinear") -> Window | None:
    """The destination pixels fully determined by a source window (the inverse of :func:`source_window`).

    Use it to cut a band into source strips and know which destination rows each strip yields
    exactly; for downsampling these are the whole ``f × f`` blocks inside the window.

    Args:
        src_shape: ``(H, W)`` of the full source band.
        factor: ``src_res / dst_res`` (2, 3, 6 up; 1/2, 1/3, 1/6 down).
        src_window: window on the source grid (inside it).
        method: resampling method (the halo depends on it).

    Returns:
        The largest destination window whose :func:`source_window` lies inside ``src_window``,
        or ``None`` when there is none.
    """
    direction, f = parse_factor(factor)
    h, w = (int(v) for v in src_shape[-2:])
    r0, c0, sh, sw = _window_bounds(src_window, (h, w))
    if direction == "same":
        return Window(c0, r0, sw, sh)
    if direction == "down":
        y0, y1 = -(-r0 // f), (r0 + sh) // f
        x0, x1 = -(-c0 // f), (c0 + sw) // f
    else:
        method = _check_method(method, UP_METHODS)

        def span(lo: int, hi: int, n: int) -> tuple[int, int]:
            # destination indices d whose taps (_up_range) lie inside [lo, hi); both ends move
            # monotonically with d, so search a few pixels around the scaled window edges
            first, last = max(0, (lo - 3) * f), min(n * f, (hi + 3) * f) - 1
            while first <= last and _up_range(first, first + 1, f, n, method)[0] < lo:
                first += 1
            while last >= first and _up_range(last, last + 1, f, n, method)[1] > hi:
                last -= 1
            return first, last + 1

        y0, y1 = span(r0, r0 + sh, h)
        x0, x1 = span(c0, c0 + sw, w)
    if y1 <= y0 or x1 <= x0:
        return None
    return Window(x0, y0, x1 - x0, y1 - y0)


def read_resampled(
    read_src: Callable[[Window], np.ndarray],
    src_shape: tuple[int, int],
    factor: float,
    dst_window: Window | None = None,
    method: str = "bilinear",
    nodata: float | None = 0,
    threads: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read and resample one window of the destination grid, reading only the source pixels it needs.

    The result equals the same crop of the whole-band result exactly (see the module docstring).

    Args:
        read_src: ``read_src(window) -> array`` reading a source window (inside the band) as
            uint16/float32 ``(h, w)`` or ``(C, h, w)``, e.g. ``lambda w: ds.read(1, window=w)``.
        src_shape: ``(H, W)`` of the full source band.
        factor: ``src_res / dst_res``: 2, 3, 6 upsample; 1/2, 1/3, 1/6 (or 0.5 …) downsample; 1 copies.
        dst_window: window on the destination grid; ``None`` for the whole grid.
        method: upsampling: nearest, bilinear, cubic; downsampling: average (any other name) or nearest.
        nodata: nodata value or ``None``.
        threads: worker threads, 0 for all cores.
        out: optional C-contiguous array of the result's shape and dtype to write into.

    Returns:
        ``(height, width)`` or ``(C, height, width)`` of the source dtype (``out`` when given).

    Raises:
        ResampleError: bad factor, method, window, or a read_src result of the wrong shape/dtype.
    """
    direction, f = parse_factor(factor)
    h, w = (int(v) for v in src_shape[-2:])
    dshape = destination_shape((h, w), factor)
    if dst_window is None:
        dst_window = Window(0, 0, dshape[1], dshape[0])
    if direction == "up":
        method = _check_method(method, UP_METHODS)
    src_win = source_window((h, w), factor, dst_window, method)
    r0, c0, dh, dw = _window_bounds(dst_window, dshape)
    data = read_src(src_win)
    arr, squeeze = _check_array(np.asarray(data), "read_src result", any_dtype=str(method).lower() == "nearest")
    want = (int(src_win.height), int(src_win.width))
    if arr.shape[1:] != want:
        raise ResampleError(f"resample: read_src returned shape {np.shape(data)} for window {src_win!r}, expected {want}")
    buf = _check_out(out, (dh, dw) if squeeze else (arr.shape[0], dh, dw), arr.dtype)
    if direction == "up" and arr.dtype in _DTYPES:
        has_nd, nd = _nodata_args(nodata, arr.dtype)
        res = _kernels().upsample(
            arr, f, method, has_nd, nd, int(src_win.row_off), int(src_win.col_off), h, w, r0, c0, dh, dw, int(threads), buf
        )
    else:
        if direction == "up":
            res = _nearest_numpy(arr, f, (int(src_win.row_off), int(src_win.col_off)), (r0, c0, dh, dw))
        elif direction == "down":
            res = downsample(arr, f, "nearest" if str(method).lower() == "nearest" else "average", nodata, threads)
        else:
            res = arr.copy()
        if buf is not None:
            np.copyto(buf, res)
    if out is not None:
        return out
    return res[0] if squeeze else res
