"""Quicklook PNG: the product in true colour beside its class map, with a legend.

The true colour (B04, B03, B02 as top-of-atmosphere / surface reflectance, 0..0.3 stretched to
0..255 with a mild gamma) is read at the coarsest Sentinel-2 grid that still gives the requested
size; the class map is read through its overviews. Pixels without data are dark grey in both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from nimbus.atomic import atomic_path
from nimbus.modelspec import NODATA_CLASS, ModelSpec

__all__ = ["colorize", "true_color", "write_quicklook"]

_NODATA_RGB = (40, 40, 40)


def colorize(classes: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of a class map with the model's colours (no data dark grey)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:] = _NODATA_RGB
    for c in spec.classes:
        lut[c.value] = c.color
    lut[NODATA_CLASS] = _NODATA_RGB
    return lut[np.asarray(classes, np.uint8)]


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
    spec: ModelSpec,
    region: Any = None,
    size: int = 768,
) -> Path:
    """Write a PNG: true colour (left), classes (right), legend (below), atomically.

    Args:
        product: the opened product the class map was made from.
        classes_path: the class map GeoTIFF.
        out_path: the PNG to write.
        spec: the model description (class names and colours).
        region: the ``rasterio.windows.Window`` of the model grid that was segmented (None = all).
        size: the longest side of each panel in pixels.

    Returns:
        The path written.
    """
    import rasterio
    from PIL import Image, ImageDraw, ImageFont
    from rasterio.enums import Resampling

    with rasterio.open(classes_path) as src:
        h, w = src.height, src.width
        scale = min(1.0, size / max(h, w))
        oh, ow = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        classes = src.read(1, out_shape=(oh, ow), resampling=Resampling.nearest)
    right = Image.fromarray(colorize(classes, spec))
    col, row = (0, 0) if region is None else (int(region.col_off), int(region.row_off))
    rgb = _read_rgb(product, (col, row, w, h), spec.resolution, max(oh, ow))
    left = Image.fromarray(rgb).resize((ow, oh), Image.BILINEAR) if rgb is not None else Image.new("RGB", (ow, oh), _NODATA_RGB)
    font = ImageFont.load_default()
    pad, box, line = 8, 14, 20
    legend_h = pad * 2 + line * ((len(spec.classes) + 1 + 3) // 4)
    canvas = Image.new("RGB", (2 * ow + 3 * pad, oh + 2 * pad + legend_h), (255, 255, 255))
    canvas.paste(left, (pad, pad))
    canvas.paste(right, (2 * pad + ow, pad))
    draw = ImageDraw.Draw(canvas)
    entries = [(c.name, c.color) for c in spec.classes] + [("no data", _NODATA_RGB)]
    col_w = max(1, (canvas.width - 2 * pad) // 4)
    for i, (name, color) in enumerate(entries):
        x = pad + (i % 4) * col_w
        y = oh + 2 * pad + (i // 4) * line
        draw.rectangle([x, y, x + box, y + box], fill=tuple(color), outline=(0, 0, 0))
        draw.text((x + box + 6, y + 1), name, fill=(0, 0, 0), font=font)
    with atomic_path(out_path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(out_path)
