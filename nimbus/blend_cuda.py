"""numba.cuda kernels of the probability blending (see :mod:`nimbus.blend` for the interface).

Kept apart from :mod:`nimbus.blend` so the CPU path never imports ``numba.cuda``. :class:`CudaBlender`
is the strip accumulator of the GPU path (the device twin of :class:`nimbus.blend.HostBlender`). Both kernels run
on CPU through numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how they are tested
on machines without a GPU.

* :data:`accumulate_kernel` grid ``(ceil(w/32), ceil(h/8), N)``, block ``(32, 8)``: thread
  ``(x, y)`` of block-z ``n`` adds ``probs[n, :, y, x] * weights[y, x]`` into the accumulator with
  atomic adds (overlapping windows of one batch touch the same pixels). ``probs`` may be float16
  or float32 and may be larger than the window (padded inference); only ``[:h, :w]`` is read.
* :data:`finalize_kernel` grid over the strip's pixels: normalise, arg-max, entropy, 255 where no data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float32

from nimbus.blend import cuda_accumulate, cuda_finalize

__all__ = ["CudaBlender", "accumulate_kernel", "finalize_kernel"]


@cuda.jit
def accumulate_kernel(acc, wsum, probs, weights, rows, cols):  # type: ignore[no-untyped-def]
    """Add weighted window probabilities into ``acc`` (K, H, W) and weights into ``wsum`` (H, W)."""
    x, y = cuda.grid(2)
    n = cuda.blockIdx.z
    h = weights.shape[0]
    w = weights.shape[1]
    if x >= w or y >= h:
        return
    r = rows[n] + y
    c = cols[n] + x
    wt = weights[y, x]
    cuda.atomic.add(wsum, (r, c), wt)
    for k in range(probs.shape[1]):
        cuda.atomic.add(acc, (k, r, c), float32(probs[n, k, y, x]) * wt)


@cuda.jit
def finalize_kernel(acc, wsum, valid, class_values, classes, entropy, want_entropy):  # type: ignore[no-untyped-def]
    """Normalise ``acc`` by ``wsum`` in place, write arg-max class values (255 = no data) and entropy."""
    x, y = cuda.grid(2)
    if y >= wsum.shape[0] or x >= wsum.shape[1]:
        return
    s = wsum[y, x]
    n_classes = acc.shape[0]
    if valid[y, x] == 0 or not s > 0:
        classes[y, x] = 255
        for k in range(n_classes):
            acc[k, y, x] = 0.0
        if want_entropy:
            entropy[y, x] = 0.0
        return
    inv = float32(1.0) / s
    best = 0
    bestv = float32(-1.0)
    hsum = float32(0.0)
    for k in range(n_classes):
        p = acc[k, y, x] * inv
        acc[k, y, x] = p
        if p > bestv:
            bestv = p
            best = k
        if p > 0:
            hsum -= p * math.log(p)
    classes[y, x] = class_values[best]
    if want_entropy:
        entropy[y, x] = hsum


def _zero(acc: Any, wsum: Any) -> None:  # pragma: no cover - device helper
    acc.copy_to_device(np.zeros(acc.shape, np.float32))
    wsum.copy_to_device(np.zeros(wsum.shape, np.float32))


class CudaBlender:  # pragma: no cover - needs a GPU; the kernels are tested in the CUDA simulator
    """Strip accumulator on the GPU (numba.cuda kernels reading onnxruntime's device outputs)."""

    def __init__(self, k: int, width: int, class_values: tuple[int, ...]) -> None:
        from numba import cuda

        self.cuda = cuda
        self.k, self.width = k, width
        self.reads_top_left = True  # the kernel reads the top-left (h, w) of padded outputs itself
        self.class_values = cuda.to_device(np.asarray(class_values, np.uint8))
        self.start = 0
        self.acc = cuda.device_array((k, 0, width), np.float32)
        self.wsum = cuda.device_array((0, width), np.float32)
        self._weights: dict[tuple[int, int], Any] = {}

    @property
    def end(self) -> int:
        return self.start + self.wsum.shape[0]

    def _realloc(self, start: int, end: int) -> None:
        cuda = self.cuda
        n = end - start
        acc = cuda.device_array((self.k, n, self.width), np.float32)
        wsum = cuda.device_array((n, self.width), np.float32)
        if n:
            _zero(acc, wsum)
        keep = max(0, min(self.end, end) - start)
        if keep:
            off = start - self.start
            for c in range(self.k):
                acc[c, :keep].copy_to_device(self.acc[c, off : off + keep])
            wsum[:keep].copy_to_device(self.wsum[off : off + keep])
        self.acc, self.wsum, self.start = acc, wsum, start

    def extend(self, end: int) -> None:
        if end > self.end:
            self._realloc(self.start, end)

    def add(self, probs: Any, rows: list[int], cols: list[int], weights: np.ndarray) -> None:
        key = weights.shape
        if key not in self._weights:
            self._weights[key] = self.cuda.to_device(np.ascontiguousarray(weights, np.float32))
        r = self.cuda.to_device(np.asarray([x - self.start for x in rows], np.int64))
        c = self.cuda.to_device(np.asarray(cols, np.int64))
        if isinstance(probs, np.ndarray):
            probs = self.cuda.to_device(np.ascontiguousarray(probs))
        cuda_accumulate(self.acc, self.wsum, probs, self._weights[key], r, c)
        # onnxruntime may reuse the output memory on its own stream once released: finish reading it
        self.cuda.synchronize()

    def take(self, end: int, valid: np.ndarray, want_probs: bool, want_entropy: bool) -> tuple[np.ndarray, Any, Any]:
        cuda = self.cuda
        n = end - self.start
        acc = cuda.device_array((self.k, n, self.width), np.float32)
        for c in range(self.k):
            acc[c].copy_to_device(self.acc[c, :n])
        wsum = self.wsum[:n]
        classes = cuda.device_array((n, self.width), np.uint8)
        ent = cuda.device_array((n, self.width), np.float32) if want_entropy else None
        cuda_finalize(acc, wsum, cuda.to_device(np.ascontiguousarray(valid, np.uint8)), self.class_values, classes, ent)
        out = (classes.copy_to_host(), acc.copy_to_host() if want_probs else None, ent.copy_to_host() if ent is not None else None)
        self._realloc(end, max(end, self.end))
        return out
