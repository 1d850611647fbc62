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
from typing import Any

import numpy as np

__all__ = ["HostBlender", "accumulate", "accumulate_reference", "cuda_accumulate", "cuda_finalize", "finalize", "finalize_reference"]


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
) -> None:
    """Add weighted window probabilities into an accumulator, in place (C++ kernel).

    Args:
        acc: float32 ``(K, H, W)`` C-contiguous accumulator of weighted probabilities.
        wsum: float32 ``(H, W)`` accumulator of weights.
        probs: ``(N, K, h, w)`` probabilities of N windows (converted to float32 if needed).
        weights: float32 ``(h, w)`` window weights.
        rows: top row of each window in accumulator coordinates.
        cols: left column of each window.
        threads: worker threads (0 = all cores).
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


class HostBlender:
    """Strip accumulator on the host (C++ kernels): one reused buffer of ``capacity`` rows.

    Rows ``[start, start + used)`` of the raster are held in buffer rows ``[0, used)``; finished
    rows are finalised in place, then the rows still open move to the top (no reallocation).
    """

    def __init__(self, k: int, width: int, class_values: tuple[int, ...], threads: int, capacity: int) -> None:
        self.k, self.width, self.threads = k, width, threads
        self.class_values = class_values
        self.start = 0
        self.used = 0
        self.acc = np.zeros((k, capacity, width), np.float32)
        self.wsum = np.zeros((capacity, width), np.float32)

    @property
    def end(self) -> int:
        return self.start + self.used

    def extend(self, end: int) -> None:
        need = end - self.start
        if need > self.wsum.shape[0]:  # not expected (capacity = window height), but stay correct
            acc = np.zeros((self.k, need, self.width), np.float32)
            wsum = np.zeros((need, self.width), np.float32)
            acc[:, : self.used], wsum[: self.used] = self.acc[:, : self.used], self.wsum[: self.used]
            self.acc, self.wsum = acc, wsum
        self.used = max(self.used, need)

    def add(self, probs: Any, rows: list[int], cols: list[int], weights: np.ndarray) -> None:
        accumulate(self.acc, self.wsum, probs, weights, [r - self.start for r in rows], cols, self.threads)

    def take(self, end: int, valid: np.ndarray, want_probs: bool, want_entropy: bool) -> tuple[np.ndarray, Any, Any]:
        n = end - self.start
        ent = np.empty((n, self.width), np.float32) if want_entropy else None
        classes = finalize(self.acc, self.wsum, valid, self.class_values, ent, self.threads)
        probs = self.acc[:, :n].copy() if want_probs else None
        carry = self.used - n
        if carry > 0:  # numpy copes with the overlap when carry > n
            self.acc[:, :carry] = self.acc[:, n : n + carry]
            self.wsum[:carry] = self.wsum[n : n + carry]
        self.acc[:, max(carry, 0) : self.used] = 0
        self.wsum[max(carry, 0) : self.used] = 0
        self.used = max(carry, 0)
        self.start = end
        return classes, probs, ent
