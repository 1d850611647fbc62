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


def _boxes_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_legend_readable_on_tiny_products(tmp_path) -> None:
    """A 2x3-pixel map (and a 24-pixel product): every legend text box lies inside the PNG, none overlaps."""
    from nimbus.legend import Legend
    from nimbus.quicklook import legend_font, render_quicklook

    font = legend_font()
    for h, w in ((2, 3), (1, 1), (40, 7), (300, 500)):
        rgb = np.zeros((h, w, 3), np.uint8)
        for lg in (Legend.scheme("default"), Legend.scheme("colorblind")):
            img, items = render_quicklook(rgb, rgb, lg, font=font)
            assert [it.name for it in items] == [*lg.names, "no data"]
            boxes = [b for it in items for b in (it.swatch, it.text)]
            for x0, y0, x1, y1 in boxes:
                assert 0 <= x0 < x1 <= img.width and 2 * 8 + h <= y0 < y1 <= img.height, f"{(x0, y0, x1, y1)} cut off in {img.size}"
            assert not any(_boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]), "legend entries overlap"
            px = np.asarray(img.convert("L"))
            for it in items:  # the name is really drawn inside its box: dark text pixels there
                x0, y0, x1, y1 = it.text
                assert (px[y0:y1, x0:x1] < 128).any(), f"{it.name}: no text drawn"
                sx0, sy0, sx1, sy1 = it.swatch
                assert tuple(np.asarray(img)[(sy0 + sy1) // 2, (sx0 + sx1) // 2]) == it.color


def test_quicklook_of_a_tiny_product(tmp_path) -> None:
    from nimbus.legend import Legend
    from nimbus.product import open_product
    from nimbus.synthetic import make_product
    from nimbus.writers import write_class_map

    syn = make_product(tmp_path / "p", size=24, seed=3)
    product = open_product(syn.path)
    lg = Legend.scheme("colorblind")
    cpath = write_class_map(tmp_path / "c.tif", syn.truth.astype(np.uint8), product.crs, product.transform(10), lg)
    png = write_quicklook(product, cpath, tmp_path / "q.png")  # legend from the map's tags
    img = np.asarray(Image.open(png).convert("RGB"))
    k = -(-100 // 24)  # enlarged to at least 100 px per panel
    assert img.shape[1] >= 2 * 24 * k + 24 and img.shape[0] > 24 * k + 40
    x0 = (img.shape[1] - (2 * 24 * k + 24)) // 2
    right = img[8 : 8 + 24 * k, x0 + 16 + 24 * k : x0 + 16 + 48 * k]
    np.testing.assert_array_equal(right[::k, ::k], colorize(syn.truth.astype(np.uint8), lg))
