"""Quicklook PNG: the product in true colour beside its class map, with a legend.

The true colour (B04, B03, B02 as top-of-atmosphere / surface reflectance, 0..0.3 stretched to
0..255 with a mild gamma) is read at the coarsest Sentinel-2 grid that still gives the requested
size; the class map is read through its overviews. Pixels without data are dark grey in both.
Colours and names come from a :class:`nimbus.legend.Legend` (a ``ModelSpec`` is still accepted).

The legend below the panels flows left to right and wraps, each entry measured with the font it
is drawn with; the canvas is at least as wide as the widest entry, and class maps smaller than
``min_size`` pixels are enlarged by an integer factor (nearest), so the legend of a tiny product
is neither cut nor overlapping (:func:`legend_layout`, checked in ``tests/test_quicklook.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nimbus.atomic import atomic_path
from nimbus.legend import NODATA_RGB, Legend, as_legend
from nimbus.modelspec import ModelSpec

__all__ = ["LegendItem", "colorize", "legend_font", "legend_layout", "render_quicklook", "true_color", "write_quicklook"]

_NODATA_RGB = NODATA_RGB
_PAD, _BOX, _GAP, _COL_GAP = 8, 14, 6, 18  # margins, swatch side, swatch-text gap, gap between entries


def colorize(classes: np.ndarray, legend: Legend | ModelSpec | None = None) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of a class map with the legend's colours (no data dark grey)."""
    return as_legend(legend).lut(_NODATA_RGB)[np.asarray(classes, np.uint8)]


@dataclass(frozen=True)
class LegendItem:
    """One drawn legend entry: its swatch and text boxes ``(x0, y0, x1, y1)`` on the canvas (x1, y1 exclusive)."""

    name: str
    color: tuple[int, int, int]
    swatch: tuple[int, int, int, int]
    text: tuple[int, int, int, int]


def legend_font(size: int = 13) -> Any:
    """The legend's font: Pillow's built-in TrueType font at ``size`` px (its bitmap font without FreeType)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def legend_layout(entries: list[tuple[str, tuple[int, int, int]]], width: int, top: int, font: Any) -> tuple[list[LegendItem], int]:
    """Place legend entries left to right, wrapping at ``width``, starting at row ``top``.

    Every text box is the font's own bounding box of the name, so nothing drawn lies outside it.

    Args:
        entries: ``[(name, rgb), ...]``.
        width: canvas width (entries stay within ``[_PAD, width - _PAD)``).
        top: y of the first row.
        font: the font the names are drawn with.

    Returns:
        ``(items, bottom)``: the placed entries and the y below the last row.
    """
    items: list[LegendItem] = []
    x, y = _PAD, top
    heights = [font.getbbox(n)[3] for n, _ in entries] or [0]
    line = max(_BOX, max(heights)) + 6
    for name, color in entries:
        l_, t_, r_, b_ = font.getbbox(name)
        w = _BOX + _GAP + r_
        if x > _PAD and x + w > width - _PAD:
            x, y = _PAD, y + line
        tx, ty = x + _BOX + _GAP, y + max(0, (_BOX - b_) // 2)
        items.append(LegendItem(name, tuple(color), (x, y, x + _BOX, y + _BOX), (tx + l_, ty + t_, tx + r_, ty + b_)))  # type: ignore[arg-type]
        x += w + _COL_GAP
    return items, y + line


def render_quicklook(left: np.ndarray, right: np.ndarray, legend: Legend | ModelSpec | None = None, font: Any = None) -> tuple[Any, list[LegendItem]]:
    """Compose the quicklook: two RGB panels side by side and the legend below.

    Args:
        left: uint8 ``(h, w, 3)`` true colour.
        right: uint8 ``(h, w, 3)`` coloured classes (same size).
        legend: the classes (names, colours).
        font: the legend font (default :func:`legend_font`).

    Returns:
        ``(PIL image, legend items)``: the items' boxes lie inside the image and do not overlap.
    """
    from PIL import Image, ImageDraw

    font = font or legend_font()
    oh, ow = right.shape[:2]
    entries = as_legend(legend).entries(nodata=True)
    widest = max(_BOX + _GAP + font.getbbox(n)[2] for n, _ in entries)
    width = max(2 * ow + 3 * _PAD, widest + 2 * _PAD)
    items, bottom = legend_layout(entries, width, oh + 2 * _PAD, font)
    canvas = Image.new("RGB", (width, bottom + _PAD), (255, 255, 255))
    x0 = (width - (2 * ow + 3 * _PAD)) // 2  # panels centred when the legend is wider
    canvas.paste(Image.fromarray(np.ascontiguousarray(left)), (x0 + _PAD, _PAD))
    canvas.paste(Image.fromarray(np.ascontiguousarray(right)), (x0 + 2 * _PAD + ow, _PAD))
    draw = ImageDraw.Draw(canvas)
    for it in items:
        sx0, sy0, sx1, sy1 = it.swatch
        draw.rectangle([sx0, sy0, sx1 - 1, sy1 - 1], fill=it.color, outline=(0, 0, 0))
        l_, t_, _, _ = font.getbbox(it.name)
        draw.text((it.text[0] - l_, it.text[1] - t_), it.name, fill=(0, 0, 0), font=font)
    return canvas, items


def true_color(reflectance: np.ndarray, valid: np.ndarray | None = None, top: float = 0.3) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` from reflectance ``(3, H, W)`` (red, green, blue), 0..top stretched."""
    x = np.clip(np.asarray(reflectance, np.float32) / top, 0, 1) ** (1 / 1.4)
    rgb = np.moveaxis(np.rint(x * 255).astype(np.uint8), 0, -1)
    if valid is not None:
        rgb[~np.asarray(valid, bool)] = _NODATA_RGB
    return np.ascontiguousarray(rgb)


def _read_rgb(product: Any, region_10m: tuple[int, int, int, int], model_res: float, size: int) -> np.ndarray | None:
    from rasterio.windows import Window

    col, row, w, h = region_10m  # on the model grid
    for res in (60, 20, 10):
        f = res / model_res
        if res == 10 or max(h, w) / f >= size:
            break
    f = res / model_res
    win = Window(int(col // f), int(row // f), max(1, int(round(w / f))), max(1, int(round(h / f))))
    try:
        data, valid = product.read(["B04", "B03", "B02"], res=res, window=win, kind="reflectance")
    except Exception:  # a product without visible bands still gets a quicklook of its classes
        return None
    return true_color(data, valid)


def write_quicklook(
    product: Any,
    classes_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    legend: Legend | ModelSpec | None = None,
    region: Any = None,
    size: int = 768,
    resolution: float | None = None,
    min_size: int = 100,
) -> Path:
    """Write a PNG: true colour (left), classes (right), legend (below), atomically.

    Args:
        product: the opened product the class map was made from.
        classes_path: the class map GeoTIFF.
        out_path: the PNG to write.
        legend: the class names and colours (a :class:`nimbus.legend.Legend`; a ``ModelSpec`` is
            still accepted; None = the legend in the class map's tags, else the default).
        region: the ``rasterio.windows.Window`` of the model grid that was segmented (None = all).
        size: the longest side of each panel in pixels.
        resolution: pixel size of the class map in metres (default: read from the file).
        min_size: class maps smaller than this are enlarged by an integer factor (nearest).

    Returns:
        The path written.
    """
    import rasterio
    from PIL import Image
    from rasterio.enums import Resampling

    with rasterio.open(classes_path) as src:
        h, w = src.height, src.width
        if legend is None:
            legend = Legend.from_tags(src.tags())
        if resolution is None:
            resolution = getattr(legend, "resolution", None) or float(abs(src.transform.a))
        scale = min(1.0, size / max(h, w))
        oh, ow = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        classes = src.read(1, out_shape=(oh, ow), resampling=Resampling.nearest)
    k = max(1, -(-int(min_size) // max(oh, ow)))  # enlarge tiny maps so the panels can be seen
    if k > 1:
        classes = np.repeat(np.repeat(classes, k, axis=0), k, axis=1)
        oh, ow = classes.shape
    right = colorize(classes, legend)
    col, row = (0, 0) if region is None else (int(region.col_off), int(region.row_off))
    rgb = _read_rgb(product, (col, row, w, h), float(resolution), max(oh, ow))
    resample = Image.NEAREST if k > 1 else Image.BILINEAR
    left = np.asarray(Image.fromarray(rgb).resize((ow, oh), resample)) if rgb is not None else np.full((oh, ow, 3), _NODATA_RGB, np.uint8)
    canvas, _ = render_quicklook(left, right, legend)
    with atomic_path(out_path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(out_path)
