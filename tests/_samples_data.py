"""Tiny samples folders for the labelling tool's tests (built with nimbus.samples, no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.transform import from_origin

from nimbus.samples import Sample, SampleSet, sample_id

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


def make_samples(root: Path, n: int = 2) -> SampleSet:
    """A samples folder with ``n`` samples of the same product (windows side by side)."""
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
        s = Sample(id=sample_id(PRODUCT, window), product_id=PRODUCT, window=window, date="2023-07-04",
                   tile="32TMS", score=0.3 - 0.1 * i)
        ss.add(s, {"truecolor": img, "falsecolor": img[::-1].copy(), "auto_label": auto, "prediction": pred,
                   "uncertainty": unc}, CRS, transform)
    return ss
