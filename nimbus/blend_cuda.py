"""numba.cuda kernels of the probability blending (see :mod:`nimbus.blend` for the interface).

Kept apart from :mod:`nimbus.blend` so the CPU path never imports ``numba.cuda``. Both kernels run
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

from numba import cuda, float32

__all__ = ["accumulate_kernel", "finalize_kernel"]


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
