"""Tests of nimbus.quicklook: colours, true-colour stretch, the PNG beside a real class map."""

from __future__ import annotations

import numpy as np
from PIL import Image

from nimbus.modelspec import DEFAULT_CLASSES, ModelSpec
from nimbus.quicklook import colorize, true_color, write_quicklook

SPEC = ModelSpec(channels=("B02", "B03", "B04"), mean=(0.0,) * 3, std=(1.0,) * 3)


def test_colorize_and_true_color() -> None:
    rgb = colorize(np.array([[0, 1], [3, 255]], np.uint8), SPEC)
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[1, 0]) == DEFAULT_CLASSES[3].color
    assert tuple(rgb[1, 1]) == (40, 40, 40)
    tc = true_color(np.stack([np.full((2, 2), 0.3), np.zeros((2, 2)), np.full((2, 2), 0.6)]), valid=np.array([[1, 1], [1, 0]], bool))
    assert tuple(tc[0, 0]) == (255, 0, 255) and tuple(tc[1, 1]) == (40, 40, 40)


def test_quicklook_png(tmp_path) -> None:
    from nimbus.product import open_product
    from nimbus.synthetic import make_product
    from nimbus.writers import write_class_map

    syn = make_product(tmp_path / "p", size=120, seed=7, nodata_swath=True)
    product = open_product(syn.path)
    cpath = write_class_map(tmp_path / "c.tif", syn.truth.astype(np.uint8), product.crs, product.transform(10), SPEC)
    png = write_quicklook(product, cpath, tmp_path / "q.png", SPEC, size=120)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[1] == 2 * 120 + 3 * 8 and img.shape[0] > 120
    right = img[8 : 8 + 120, 16 + 120 : 16 + 240]
    np.testing.assert_array_equal(right, colorize(syn.truth.astype(np.uint8), SPEC))  # classes at full size
    left = img[8 : 8 + 120, 8 : 8 + 120].astype(int)
    assert left.std() > 5 and not np.array_equal(left, right)  # a real image, not the class colours
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
