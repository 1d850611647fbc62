"""Weighted blending of overlapping window predictions (C++ on CPU, numba.cuda on GPU).

Why probabilities, not logits: the segmenter blends the *softmax probabilities* of overlapping
windows. A weighted mean of probabilities is again a probability vector (non-negative, summing to
one), stays in [0, 1] and keeps the model's calibration, so the blended values can be written as
per-class probabilities and turned into an entropy. Logits have no fixed scale: one window may be
far more confident (larger logits) than its neighbour only because of what it saw at its edge, so
averaging logits lets an over-confident edge prediction dominate, and the result is not a
probability until it is pushed through a softmax again. Probabilities from windows that disagree
average to an honest "uncertain" value instead.

The accumulation is two steps per strip of rows:

1. :func:`accumulate` adds ``probs[n] * weights`` into ``acc[:, rows[n]:+h, cols[n]:+w]`` and
   ``weights`` into ``wsum`` for every window ``n``;
2. :func:`finalize` divides by ``wsum``, takes the arg-max class and writes 255 where the input has
   no data.

:func:`accumulate_reference` / :func:`finalize_reference` are the plain numpy definitions the
kernels are tested against. :class:`HostBlender` is the segmenter's strip accumulator built on the
two kernels (:class:`nimbus.blend_cuda.CudaBlender` is its GPU twin). :func:`cuda_accumulate` / :func:`cuda_finalize` do the same on device
arrays with the numba.cuda kernels of :mod:`nimbus.blend_cuda` (tested on CPU through ``NUMBA_ENABLE_CUDASIM=1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "Blender",
    "HostBlender",
    "accumulate",
    "accumulate_reference",
    "cuda_accumulate",
    "cuda_finalize",
    "finalize",
    "finalize_reference",
    "finalize_rows",
]


def _kernels() -> Any:
    from nimbus import _kernels

    return _kernels


def _cuda() -> Any:
    from nimbus import blend_cuda  # numba.cuda is imported only for the GPU path

    return blend_cuda


def accumulate(
    acc: np.ndarray,
    wsum: np.ndarray,
    probs: np.ndarray,
    weights: np.ndarray,
    rows: Sequence[int] | np.ndarray,
    cols: Sequence[int] | np.ndarray,
    threads: int = 0,
    wrap: bool = False,
) -> None:
    """Add weighted window probabilities into an accumulator, in place (C++ kernel).

    One call per window row is the fast way: the kernel adds every window's row into one
    accumulator row before the next, so the accumulator is passed over once per call.

    Args:
        acc: float32 ``(K, H, W)`` C-contiguous accumulator of weighted probabilities.
        wsum: float32 ``(H, W)`` accumulator of weights.
        probs: ``(N, K, h, w)`` probabilities of N windows (converted to float32 if needed).
        weights: float32 ``(h, w)`` window weights.
        rows: top row of each window in accumulator coordinates.
        cols: left column of each window.
        threads: worker threads (0 = all cores).
        wrap: ``acc``/``wsum`` are a ring of ``H`` rows: raster row ``r`` is accumulator row
            ``r % H`` and ``rows`` are raster rows (windows at most ``H`` rows tall).
    """
    if len(probs) == 0:
        return
    _kernels().blend_accumulate(
        acc,
        wsum,
        np.ascontiguousarray(probs, dtype=np.float32),
        np.ascontiguousarray(weights, dtype=np.float32),
        np.asarray(rows, dtype=np.int64),
        np.asarray(cols, dtype=np.int64),
        int(threads),
        bool(wrap),
    )


def finalize(
    acc: np.ndarray,
    wsum: np.ndarray,
    valid: np.ndarray,
    class_values: Sequence[int],
    entropy: np.ndarray | None = None,
    threads: int = 0,
    row0: int = 0,
) -> np.ndarray:
    """Normalise ``acc`` by ``wsum`` in place and return the class map (C++ kernel).

    Only rows ``[row0, row0 + n)`` are finalised, ``n = valid.shape[0]`` (all rows by default),
    so the accumulator can be a reused buffer taller than the rows that are done.

    Args:
        acc: float32 ``(K, H, W)``; on return the blended probabilities of the rows (0 where no data).
        wsum: float32 ``(H, W)`` total weights.
        valid: bool ``(n, W)``: pixels with input data.
        class_values: class value of each of the K channels.
        entropy: optional float32 ``(n, W)`` filled with the entropy (nats) of the probabilities.
        threads: worker threads (0 = all cores).
        row0: first accumulator row to finalise.

    Returns:
        uint8 ``(n, W)``: the value of the most probable class, 255 where ``valid`` is false or
        no window contributed.
    """
    valid = np.ascontiguousarray(valid, dtype=np.uint8)
    classes = np.empty(valid.shape, np.uint8)
    _kernels().blend_finalize(acc, wsum, valid, np.asarray(class_values, dtype=np.uint8), classes, entropy, int(row0), int(threads))
    return classes


def finalize_rows(
    acc: np.ndarray,
    wsum: np.ndarray,
    valid: np.ndarray,
    class_values: Sequence[int],
    row0: int,
    entropy: np.ndarray | None = None,
    probs_out: np.ndarray | None = None,
    threads: int = 0,
) -> np.ndarray:
    """Finalise raster rows ``[row0, row0 + n)`` of a ring accumulator and free them (C++ kernel).

    Raster row ``r`` lives in accumulator row ``r % H``. The normalised probabilities go to
    ``probs_out`` (when given), not back into ``acc``; the finalised rows of ``acc`` and ``wsum``
    are zeroed, ready for the rows of later windows (no copy or move of the strip).

    Args:
        acc: float32 ``(K, H, W)`` ring accumulator (zeroed on the finalised rows on return).
        wsum: float32 ``(H, W)`` ring of total weights (likewise zeroed).
        valid: bool ``(n, W)``: pixels with input data, ``n <= H``.
        class_values: class value of each of the K channels.
        row0: first raster row to finalise.
        entropy: optional float32 ``(n, W)`` filled with the entropy (nats).
        probs_out: optional float32 ``(K, n, W)`` filled with the blended probabilities (0 where no data).
        threads: worker threads (0 = all cores).

    Returns:
        uint8 ``(n, W)`` class values, 255 where ``valid`` is false or no window contributed.
    """
    valid = np.ascontiguousarray(valid, dtype=np.uint8)
    classes = np.empty(valid.shape, np.uint8)
    _kernels().blend_finalize_rows(
        acc, wsum, valid, np.asarray(class_values, dtype=np.uint8), classes, entropy, probs_out, int(row0), int(threads)
    )
    return classes


def accumulate_reference(
    acc: np.ndarray,
    wsum: np.ndarray,
    probs: np.ndarray,
    weights: np.ndarray,
    rows: Sequence[int] | np.ndarray,
    cols: Sequence[int] | np.ndarray,
) -> None:
    """Plain numpy version of :func:`accumulate` (the definition the kernels are tested against)."""
    h, w = weights.shape
    for n, (r, c) in enumerate(zip(rows, cols)):
        acc[:, r : r + h, c : c + w] += probs[n].astype(np.float32) * weights
        wsum[r : r + h, c : c + w] += weights


def finalize_reference(
    acc: np.ndarray, wsum: np.ndarray, valid: np.ndarray, class_values: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain numpy version of :func:`finalize`: returns ``(classes, probabilities, entropy)``."""
    ok = valid.astype(bool) & (wsum > 0)
    probs = np.where(ok, acc / np.where(wsum > 0, wsum, 1), 0).astype(np.float32)
    classes = np.asarray(class_values, np.uint8)[np.argmax(probs, axis=0)]
    classes[~ok] = 255
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.sum(np.where(probs > 0, probs * np.log(probs), 0), axis=0).astype(np.float32)
    return classes, probs, ent


def cuda_accumulate(acc: Any, wsum: Any, probs: Any, weights: Any, rows: Any, cols: Any, stream: Any = 0) -> None:
    """:func:`accumulate` on the GPU with numba.cuda (atomic adds; windows may overlap).

    Args:
        acc: device float32 ``(K, H, W)``.
        wsum: device float32 ``(H, W)``.
        probs: device ``(N, K, h, w)`` float32 or float16 (e.g. an onnxruntime output bound on the
            device, wrapped with ``numba.cuda.as_cuda_array``).
        weights: device float32 ``(h, w)``.
        rows: device int64 ``(N)``.
        cols: device int64 ``(N)``.
        stream: numba CUDA stream (0 = default).
    """
    n = probs.shape[0]
    if n == 0:
        return
    h, w = weights.shape
    tpb = (32, 8)
    grid = ((w + tpb[0] - 1) // tpb[0], (h + tpb[1] - 1) // tpb[1], n)
    _cuda().accumulate_kernel[grid, tpb, stream](acc, wsum, probs, weights, rows, cols)


def cuda_finalize(acc: Any, wsum: Any, valid: Any, class_values: Any, classes: Any, entropy: Any = None, stream: Any = 0) -> None:
    """:func:`finalize` on the GPU with numba.cuda (in place on device arrays).

    Args:
        acc: device float32 ``(K, H, W)``; normalised in place.
        wsum: device float32 ``(H, W)``.
        valid: device uint8 ``(H, W)``.
        class_values: device uint8 ``(K)``.
        classes: device uint8 ``(H, W)`` output.
        entropy: optional device float32 ``(H, W)`` output.
        stream: numba CUDA stream (0 = default).
    """
    from numba import cuda

    h, w = wsum.shape
    tpb = (32, 8)
    grid = ((w + tpb[0] - 1) // tpb[0], (h + tpb[1] - 1) // tpb[1])
    want = entropy is not None
    ent = entropy if want else cuda.device_array((1, 1), np.float32)
    _cuda().finalize_kernel[grid, tpb, stream](acc, wsum, valid, class_values, classes, ent, want)


class Blender(Protocol):
    """What the streaming loop needs of a strip accumulator (:class:`HostBlender` on the host,
    :class:`nimbus.blend_cuda.CudaBlender` on a GPU).

    Rows ``[start, end)`` of the raster are open; windows are added with their top-left corners;
    :meth:`take` finalises the rows before ``end`` and returns them.

    Attributes:
        start: first raster row still open.
        reads_top_left: True when :meth:`add` takes whole (padded) model outputs and reads their
            top-left part itself; False when the caller crops them to the window first.
    """

    start: int
    reads_top_left: bool

    def extend(self, end: int) -> None:
        """Open rows up to ``end`` (exclusive)."""

    def add(self, probs: Any, rows: list[int], cols: list[int], weights: np.ndarray) -> None:
        """Accumulate windows ``probs`` (N, K, h, w) at ``(rows[i], cols[i])`` with ``weights`` (h, w)."""

    def take(self, end: int, valid: np.ndarray, want_probs: bool, want_entropy: bool) -> tuple[np.ndarray, Any, Any]:
        """Finalise rows ``[start, end)``: ``(classes uint8, probabilities (K, n, W) | None, entropy | None)``."""


class HostBlender:
    """Strip accumulator on the host (C++ kernels): one reused ring buffer of ``capacity`` rows.

    Raster rows ``[start, end)`` are open; raster row ``r`` lives in buffer row ``r % capacity``, so
    finishing rows never moves the strip: :meth:`take` finalises them straight out of the ring
    (probabilities written to a new array only when asked for) and zeroes their buffer rows for
    the rows of later windows. Windows are added with their raster rows; adding a whole window
    row in one :meth:`add` is the fast way (one pass over the strip).
    """

    def __init__(self, k: int, width: int, class_values: tuple[int, ...], threads: int, capacity: int) -> None:
        self.k, self.width, self.threads = k, width, threads
        self.reads_top_left = False
        self.class_values = class_values
        self.start = 0
        self._end = 0
        self.acc = np.zeros((k, max(1, capacity), width), np.float32)
        self.wsum = np.zeros((max(1, capacity), width), np.float32)

    @property
    def end(self) -> int:
        """One past the last open raster row."""
        return self._end

    @property
    def used(self) -> int:
        """Open rows."""
        return self._end - self.start

    def extend(self, end: int) -> None:
        """Open rows up to ``end`` (grows the ring, keeping the open rows, if they do not fit)."""
        need = end - self.start
        cap = self.wsum.shape[0]
        if need > cap:  # not expected (capacity = window height), but stay correct
            acc = np.zeros((self.k, need, self.width), np.float32)
            wsum = np.zeros((need, self.width), np.float32)
            for r in range(self.start, self._end):
                acc[:, r % need], wsum[r % need] = self.acc[:, r % cap], self.wsum[r % cap]
            self.acc, self.wsum = acc, wsum
        self._end = max(self._end, end)

    def add(self, probs: Any, rows: list[int], cols: list[int], weights: np.ndarray) -> None:
        """Accumulate windows ``probs`` (N, K, h, w) whose top-left corners are at raster ``(rows, cols)``."""
        if len(rows) == 0:
            return
        h = weights.shape[0]
        if min(rows) < self.start or max(rows) + h > self._end:
            raise ValueError(f"windows at rows {min(rows)}..{max(rows) + h} outside the open rows {self.start}..{self._end}")
        accumulate(self.acc, self.wsum, probs, weights, rows, cols, self.threads, wrap=True)

    def take(self, end: int, valid: np.ndarray, want_probs: bool, want_entropy: bool) -> tuple[np.ndarray, Any, Any]:
        """Finalise rows ``[start, end)``: ``(classes uint8, probabilities (K, n, W) | None, entropy | None)``."""
        n = end - self.start
        ent = np.empty((n, self.width), np.float32) if want_entropy else None
        probs = np.empty((self.k, n, self.width), np.float32) if want_probs else None
        if n > self.wsum.shape[0]:
            self.extend(end)
        classes = finalize_rows(self.acc, self.wsum, valid, self.class_values, self.start, ent, probs, self.threads)
        self.start = end
        self._end = max(self._end, end)
        return classes, probs, ent
