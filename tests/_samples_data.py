"""Tiny samples folders for the labelling tool's tests (built with nimbus.samples, no model needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin

from nimbus.samples import Sample, SampleSet, context_window, sample_id

CRS = "EPSG:32632"
PRODUCT = "S2B_MSIL1C_20230704T102559_N0509_R108_T32TMS_20230704T123456"
H, W = 64, 96
RECT_A = (slice(10, 30), slice(50, 80))  # bright, uniform
RECT_B = (slice(40, 60), slice(50, 80))  # medium, uniform


def sample_image() -> np.ndarray:
    """(3, H, W) uint16: dark background, two uniform rectangles A (bright) and B (medium)."""
    img = np.full((3, H, W), 800, np.uint16)
    img[(slice(None), *RECT_A)] = 6000
    img[(slice(None), *RECT_B)] = 3000
    return img


#: DN of the context's own marker: a bright square left of the sample (outside it).
CONTEXT_MARK = 9000


def context_image(ctx: tuple[int, int, int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """(3, h, w) uint16 of a context window: the sample's background DN, the sample's image in its
    place, and a bright marker square just left of the sample."""
    cw, ch = ctx[2], ctx[3]
    img = np.full((3, ch, cw), 800, np.uint16)
    x, y = window[0] - ctx[0], window[1] - ctx[1]
    img[:, y:y + H, x:x + W] = sample_image()
    img[:, y + 10:y + 30, max(0, x - 25):max(0, x - 5)] = CONTEXT_MARK
    return img


def make_samples(
    root: Path,
    n: int = 2,
    context: bool = False,
    scores: Sequence[float] | None = None,
    methods: Sequence[str | None] | None = None,
    products: Sequence[str] | None = None,
) -> SampleSet:
    """A samples folder with ``n`` samples (windows side by side).

    Args:
        root: the folder.
        n: number of samples.
        context: also store a 3x context (:func:`nimbus.samples.context_window` on a 10980 px grid).
        scores: the samples' scores (default 0.3, 0.2, ...).
        methods: per sample, the selection method recorded in ``extra["method"]`` (None: none).
        products: per sample, its product id (default: all :data:`PRODUCT`).
    """
    ss = SampleSet(root, create=True)
    ss.update_selection({"method": "std", "passes": 16})
    for i in range(n):
        window = (1000 + i * 2 * W, 2000, W, H)
        transform = from_origin(600000 + 10 * window[0], 5100000 - 10 * window[1], 10, 10)
        img = sample_image()
        auto = np.ones((H, W), np.uint8)
        auto[:, :3] = 255
        pred = np.ones((H, W), np.uint8)
        pred[RECT_A] = 0
        unc = np.linspace(0, 0.4, H * W, dtype=np.float32).reshape(H, W)
        product = products[i] if products else PRODUCT
        extra = {"method": methods[i]} if methods and methods[i] else {}
        ctx = context_window(window, (10980, 10980)) if context else None
        s = Sample(id=sample_id(product, window), product_id=product, window=window, date="2023-07-04",
                   tile="32TMS", score=scores[i] if scores else 0.3 - 0.1 * i, extra=extra, context=ctx)
        layers = {"truecolor": img, "falsecolor": img[::-1].copy(), "auto_label": auto, "prediction": pred,
                  "uncertainty": unc}
        if ctx is not None:
            cimg = context_image(ctx, window)
            layers.update(context_truecolor=cimg, context_falsecolor=cimg[::-1].copy())
        ss.add(s, layers, CRS, transform)
    return ss
