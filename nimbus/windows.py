"""Sliding-window layout and blending weights for tiled inference.

A raster of ``height x width`` pixels is covered by square windows of ``size`` pixels whose starts
advance by ``step = round(size * (1 - overlap))``; the last window of each row and column is
aligned to the raster edge (so no window sticks out and none is padded, unless the raster is
smaller than a window). Every pixel is covered by at least one window.

Each window's predictions are weighted by a 2-D weight image that is high in the centre (where
the network sees the most context) and low near the window edges:

* ``"spline"``: the squared spline of the original "smoothly blend image patches" project
  (two parabola pieces, 1/4 of the window on each side), normalised to mean 1;
* ``"gaussian"``: as MONAI's ``sliding_window_inference`` (sigma = size / 8);
* ``"tukey"``: a tapered cosine (alpha 0.5), flat in the middle half.

Weights are floored at :data:`MIN_WEIGHT` of their peak so every pixel of every window counts a
little: no pixel ever has zero total weight, at the product border included (where only one
window covers a pixel, its prediction is used as is, whatever its weight).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "MIN_WEIGHT",
    "WEIGHT_KINDS",
    "WindowLayout",
    "cut_windows",
    "window_starts",
    "window_weights",
]

#: Smallest weight relative to the peak of a weight image.
MIN_WEIGHT: float = 1e-3

#: The weight kinds :func:`window_weights` knows.
WEIGHT_KINDS: tuple[str, ...] = ("spline", "gaussian", "tukey")


def window_starts(length: int, size: int, step: int) -> list[int]:
    """Start offsets of windows of ``size`` covering ``[0, length)``, the last aligned to the end.

    Args:
        length: extent of the raster along one axis (pixels).
        size: window size along that axis.
        step: distance between consecutive starts (>= 1).

    Returns:
        Increasing starts; ``[0]`` when ``length <= size``.
    """
    if length <= 0:
        return []
    if length <= size:
        return [0]
    step = max(1, int(step))
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def _triang(m: int) -> np.ndarray:
    """``scipy.signal.windows.triang(m)`` without scipy."""
    n = np.arange(1, (m + 1) // 2 + 1, dtype=np.float64)
    if m % 2 == 0:
        w = (2 * n - 1.0) / m
        return np.concatenate([w, w[::-1]])
    w = 2 * n / (m + 1.0)
    return np.concatenate([w, w[-2::-1]])


def _spline_1d(m: int, power: int = 2) -> np.ndarray:
    # As in Vooban's Smoothly-Blend-Image-Patches (_spline_window): two squared-spline pieces.
    inter = max(1, m // 4)
    tri = _triang(m)
    outer = (np.abs(2 * tri) ** power) / 2
    outer[inter:-inter] = 0
    inner = 1 - (np.abs(2 * (tri - 1)) ** power) / 2
    inner[:inter] = 0
    inner[-inter:] = 0
    w = inner + outer
    return w / np.mean(w)


def _gaussian_1d(m: int, sigma_scale: float = 0.125) -> np.ndarray:
    sigma = max(sigma_scale * m, 1e-6)
    x = np.arange(m, dtype=np.float64) - (m - 1) / 2.0
    return np.exp(-(x**2) / (2 * sigma**2))


def _tukey_1d(m: int, alpha: float = 0.5) -> np.ndarray:
    if m == 1:
        return np.ones(1)
    x = np.linspace(0.0, 1.0, m)
    w = np.ones(m)
    edge = alpha / 2
    lo = x < edge
    hi = x > 1 - edge
    w[lo] = 0.5 * (1 + np.cos(math.pi * (2 * x[lo] / alpha - 1)))
    w[hi] = 0.5 * (1 + np.cos(math.pi * (2 * x[hi] / alpha - 2 / alpha + 1)))
    return w


@lru_cache(maxsize=32)
def _weights_cached(height: int, width: int, kind: str) -> np.ndarray:
    fn = {"spline": _spline_1d, "gaussian": _gaussian_1d, "tukey": _tukey_1d}[kind]
    w = np.outer(fn(height), fn(width))
    w = w / w.max()
    w = np.maximum(w, MIN_WEIGHT).astype(np.float32)
    w.setflags(write=False)
    return w


def window_weights(size: int | tuple[int, int], kind: str = "spline") -> np.ndarray:
    """The 2-D blending weight image of a window.

    Args:
        size: window size, or ``(height, width)``.
        kind: ``"spline"`` (squared spline, default), ``"gaussian"`` or ``"tukey"``.

    Returns:
        Read-only float32 array ``(height, width)``, peak 1, every value >= :data:`MIN_WEIGHT`.

    Raises:
        ValueError: for an unknown kind or a non-positive size.
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"unknown window weights {kind!r}; choose one of {', '.join(WEIGHT_KINDS)}")
    if h <= 0 or w <= 0:
        raise ValueError(f"window size must be positive, got {h}x{w}")
    return _weights_cached(int(h), int(w), kind)


def cut_windows(
    src: np.ndarray,
    out: np.ndarray,
    cols: Any,
    src_row0: int = 0,
    dst_row0: int = 0,
    rows: int | None = None,
    threads: int = 0,
) -> np.ndarray:
    """Cut the windows of one window row out of a strip of input rows, into a batch buffer (C++ kernel).

    ``out[n, :, dst_row0 + i, :] = src[:, src_row0 + i, cols[n] : cols[n] + w]`` for
    ``i < rows`` and every ``n < len(cols)``, in one parallel call (the GIL released). A window
    whose rows span two input chunks is cut by one call per chunk, each filling its rows.

    Args:
        src: float32 ``(C, H, W)`` C-contiguous input rows (a chunk; converted if needed).
        out: float32 ``(N, C, h, w)`` C-contiguous batch buffer, written in place; ``N >= len(cols)``.
        cols: left column of each window.
        src_row0: first source row to copy.
        dst_row0: window row it goes to.
        rows: rows to copy (default: ``h - dst_row0``).
        threads: worker threads (0 = all cores).

    Returns:
        ``out``.

    Raises:
        ValueError: when shapes do not fit (a window outside ``src``, rows outside either array).
    """
    from nimbus import _kernels

    n = out.shape[2] - dst_row0 if rows is None else int(rows)
    _kernels.cut_windows(src, out, np.asarray(cols, np.int64), int(src_row0), int(dst_row0), n, int(threads))
    return out


@dataclass(frozen=True)
class WindowLayout:
    """The windows covering a ``height x width`` raster.

    Attributes:
        height: raster height (pixels).
        width: raster width (pixels).
        size: window size (square); windows are clipped to the raster when it is smaller.
        overlap: fraction of a window shared with its neighbour, 0 <= overlap < 1.
    """

    height: int
    width: int
    size: int
    overlap: float = 0.5

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"window size must be positive, got {self.size}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"raster must not be empty, got {self.height}x{self.width}")

    @property
    def step(self) -> int:
        """Distance between consecutive window starts."""
        return max(1, int(round(self.size * (1.0 - self.overlap))))

    @property
    def win_h(self) -> int:
        """Window height (``size`` clipped to the raster)."""
        return min(self.size, self.height)

    @property
    def win_w(self) -> int:
        """Window width (``size`` clipped to the raster)."""
        return min(self.size, self.width)

    @property
    def row_starts(self) -> list[int]:
        """Top rows of the window rows."""
        return window_starts(self.height, self.size, self.step)

    @property
    def col_starts(self) -> list[int]:
        """Left columns of the window columns."""
        return window_starts(self.width, self.size, self.step)

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Yield ``(row, col)`` of every window's top-left corner, row by row."""
        cols = self.col_starts
        for y in self.row_starts:
            for x in cols:
                yield y, x

    def windows(self, valid: np.ndarray | None = None, row_offset: int = 0) -> list[tuple[int, int]]:
        """The windows, skipping those with no valid pixel.

        Args:
            valid: optional boolean mask of valid (data) pixels; it covers the raster rows from
                ``row_offset`` on (a strip) and the full width.
            row_offset: raster row of ``valid[0]``.

        Returns:
            ``(row, col)`` of every window that holds at least one valid pixel (all when ``valid``
            is None). Windows outside the strip are left out when a mask is given.
        """
        if valid is None:
            return list(self)
        out = []
        hh, ww = self.win_h, self.win_w
        rows = valid.any(axis=1) if valid.ndim == 2 else valid
        for y in self.row_starts:
            r0 = y - row_offset
            if r0 < 0 or r0 + hh > valid.shape[0]:
                continue
            if not rows[r0 : r0 + hh].any():
                continue
            block = valid[r0 : r0 + hh]
            for x in self.col_starts:
                if block[:, x : x + ww].any():
                    out.append((y, x))
        return out

    def coverage(self) -> np.ndarray:
        """Number of windows covering each pixel (int32 ``(height, width)``), for checks."""
        cov = np.zeros((self.height, self.width), np.int32)
        for y, x in self:
            cov[y : y + self.win_h, x : x + self.win_w] += 1
        return cov

    def weight_sum(self, kind: str = "spline") -> np.ndarray:
        """Total blending weight of each pixel (float64 ``(height, width)``), for checks."""
        wsum = np.zeros((self.height, self.width), np.float64)
        w = window_weights((self.win_h, self.win_w), kind)
        for y, x in self:
            wsum[y : y + self.win_h, x : x + self.win_w] += w
        return wsum
