"""The Sentinel-2 tiling grid: CRS, transform and shape of a tile from its MGRS code alone.

A Sentinel-2 tile is a 109 800 m square in the UTM zone of its MGRS code (WGS 84, EPSG 326zz in
the north, 327zz in the south). Its upper-left corner is the upper-left corner of the MGRS 100 km
square (lower-left easting, northing + 100 km) snapped onto the zone's 60 m lattice (counted from
the UTM true origin: easting down, distance from the equator up), so that the 10, 20 and 60 m grids
share the corner (10980, 5490 and 1830 pixels a side) and neighbouring tiles overlap by ~9 800 m.

The 100 km square letters repeat every 2 000 km of northing; the latitude band letter picks the
right repetition. Checked against the geopositions of real products (``tests/test_grid.py``),
including tiles in UTM zone 01 next to the antimeridian and in both hemispheres.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from nimbus.errors import NimbusError

__all__ = ["TILE_SIZE_M", "TileCodeError", "TileGrid", "parse_tile", "tile_grid"]

#: Side of a Sentinel-2 tile in metres.
TILE_SIZE_M = 109_800

_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # latitude bands, 8 degrees each from 80 S (X is 12 degrees)
_COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROWS = "ABCDEFGHJKLMNPQRSTUV"
_CODE = re.compile(r"^T?(?P<zone>\d{1,2})(?P<band>[C-HJ-NP-X])(?P<col>[A-HJ-NP-Z])(?P<row>[A-HJ-NP-V])$")


class TileCodeError(NimbusError, ValueError):
    """The text is not a valid MGRS / Sentinel-2 tile code."""


@dataclass(frozen=True)
class TileGrid:
    """The pixel grid of one Sentinel-2 tile at one resolution.

    Attributes:
        tile: the tile code without the ``T`` prefix (``"32TMS"``).
        crs: the UTM CRS of the tile.
        transform: affine transform of the upper-left pixel corner.
        shape: (height, width) in pixels.
        res: pixel size in metres.
    """

    tile: str
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    res: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the tile's CRS."""
        left, top = self.transform.c, self.transform.f
        return left, top - self.shape[0] * self.res, left + self.shape[1] * self.res, top


def parse_tile(code: str) -> tuple[int, str, str, str]:
    """Split a tile code (``"T32TMS"`` or ``"32TMS"``) into (zone, latitude band, column, row letters).

    Raises:
        TileCodeError: when the code is not a valid MGRS 100 km square.
    """
    m = _CODE.match(code.strip().upper())
    if not m or not 1 <= int(m["zone"]) <= 60:
        raise TileCodeError(f"{code!r} is not a Sentinel-2 tile code such as 32TMS (zone 01-60, band C-X, two letters)")
    zone = int(m["zone"])
    col_set = _COLUMN_SETS[(zone - 1) % 3]
    if m["col"] not in col_set:
        raise TileCodeError(f"{code!r}: column letter {m['col']} does not occur in UTM zone {zone} (allowed: {col_set})")
    return zone, m["band"], m["col"], m["row"]


def _epsg(zone: int, band: str) -> int:
    return (32600 if band >= "N" else 32700) + zone


def _band_latitudes(band: str) -> tuple[float, float]:
    i = _BANDS.index(band)
    south = -80.0 + 8.0 * i
    return south, (84.0 if band == "X" else south + 8.0)


def tile_grid(code: str, res: int = 10) -> TileGrid:
    """The grid of a Sentinel-2 tile at 10, 20 or 60 m computed from its MGRS code.

    Args:
        code: the tile code, with or without ``T`` (``"T01WCP"``, ``"32TMS"``).
        res: the pixel size in metres (10, 20 or 60; any divisor of 109 800 works).

    Returns:
        The :class:`TileGrid`.

    Raises:
        TileCodeError: for an invalid code or resolution.
    """
    zone, band, col, row = parse_tile(code)
    if res <= 0 or TILE_SIZE_M % int(res):
        raise TileCodeError(f"resolution {res} m does not divide the {TILE_SIZE_M} m tile; use 10, 20 or 60")
    epsg = _epsg(zone, band)
    crs = CRS.from_epsg(epsg)
    easting = (_COLUMN_SETS[(zone - 1) % 3].index(col) + 1) * 100_000
    row_index = (_ROWS.index(row) - (5 if zone % 2 == 0 else 0)) % 20
    base = row_index * 100_000  # northing of the square's lower edge, modulo 2 000 km
    lat_s, lat_n = _band_latitudes(band)
    # pick the 2 000 km repetition whose square centre falls closest to the latitude band
    best, best_dist = None, None
    for k in range(0, 6):
        northing = base + k * 2_000_000
        if northing >= 10_000_000:
            break
        _, lats = warp_transform(crs, "EPSG:4326", [easting + 50_000], [northing + 50_000])
        lat = lats[0]
        dist = 0.0 if lat_s <= lat <= lat_n else min(abs(lat - lat_s), abs(lat - lat_n))
        if best_dist is None or dist < best_dist:
            best, best_dist = northing, dist
    # corners snap onto the 60 m lattice of the UTM zone (true origin): west and north of the square
    false_northing = 0 if band >= "N" else 10_000_000
    left = (easting // 60) * 60
    top = -((-(best + 100_000 - false_northing)) // 60) * 60 + false_northing
    n = TILE_SIZE_M // int(res)
    tile = f"{zone:02d}{band}{col}{row}"
    return TileGrid(tile, crs, Affine(float(res), 0.0, float(left), 0.0, -float(res), float(top)), (n, n), int(res))
