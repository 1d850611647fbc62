"""The target grid of fetched layers and its footprint in longitude/latitude.

A :class:`Grid` is what a layer is warped onto: a product's grid at one resolution (its exact CRS,
transform and shape), a whole tile grid from an MGRS code, or any window of them. Its geographic
footprint is found by transforming points along its edges (densified, so the curved edges of a UTM
rectangle are followed) and unwrapping the longitudes, so a grid across the antimeridian has a
footprint such as ``west=-180.6, east=-179.4`` rather than one spanning the globe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

__all__ = ["Footprint", "Grid", "footprint", "grid_of"]


@dataclass(frozen=True)
class Grid:
    """A target grid.

    Attributes:
        tile: the MGRS tile code (``"32TMS"``), used in file names.
        crs: the grid's CRS.
        transform: affine transform of the upper-left pixel corner.
        shape: (height, width).
    """

    tile: str
    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    def key(self) -> str:
        """A readable identifier of the grid: ``<epsg>_<x0>_<y0>_<pixel>m_<width>x<height>``."""
        epsg = self.crs.to_epsg() or "crs" + str(abs(hash(self.crs.to_wkt())) % 10**8)
        t = self.transform
        px = f"{abs(t.a):g}" if math.isclose(abs(t.a), abs(t.e)) else f"{abs(t.a):g}x{abs(t.e):g}"
        return f"{epsg}_{t.c:.0f}_{t.f:.0f}_{px}m_{self.shape[1]}x{self.shape[0]}"


@dataclass(frozen=True)
class Footprint:
    """A grid's extent in degrees; ``west``/``east`` are unwrapped (may pass ±180 at the antimeridian)."""

    west: float
    south: float
    east: float
    north: float

    def grow(self, margin: float) -> Footprint:
        """The footprint grown by ``margin`` degrees on every side (latitudes clipped to ±90)."""
        return Footprint(self.west - margin, max(-90.0, self.south - margin), self.east + margin, min(90.0, self.north + margin))


def grid_of(product: Any, res: int) -> Grid:
    """The target grid of ``product`` at ``res`` metres.

    Args:
        product: a :class:`nimbus.product.Product` (or anything with ``tile``, ``crs``, ``transform(res)``
            and ``shape(res)``), a product reference (path, URL) that :func:`nimbus.product.open_product`
            opens, a :class:`nimbus.grid.TileGrid`, or a :class:`Grid`.
        res: the pixel size in metres (10, 20 or 60) for products.

    Returns:
        The grid.
    """
    if isinstance(product, Grid):
        return product
    if isinstance(product, (str, bytes)) or hasattr(product, "__fspath__"):
        from nimbus.product import open_product

        product = open_product(product)
    tile = str(getattr(product, "tile", "") or "").strip().upper()
    tile = tile[1:] if len(tile) == 6 and tile.startswith("T") else tile
    if callable(getattr(product, "transform", None)):
        return Grid(tile, CRS.from_user_input(product.crs), product.transform(res), tuple(int(v) for v in product.shape(res)))
    return Grid(tile, CRS.from_user_input(product.crs), product.transform, tuple(int(v) for v in product.shape))


def footprint(grid: Grid, densify: int = 64) -> Footprint:
    """The longitude/latitude extent of a grid (edges densified, longitudes unwrapped around the first corner)."""
    from rasterio.warp import transform as warp_transform

    h, w = grid.shape
    t = np.linspace(0.0, 1.0, densify + 1)
    cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    xs, ys = grid.transform @ (cols, rows)
    lon, lat = warp_transform(grid.crs, "EPSG:4326", list(np.asarray(xs)), list(np.asarray(ys)))
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    ref = lon[0]
    lon = ref + (lon - ref + 180.0) % 360.0 - 180.0
    return Footprint(float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
