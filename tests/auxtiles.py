"""Small public-bucket look-alikes for the fetch tests (a helper module, not a test).

Folders laid out exactly like the public buckets, holding synthetic tiles on the **real grids**:

- Copernicus DEM GLO-30: ``Copernicus_DSM_COG_10_N59_00_E010_00_DEM/...DEM.tif``, 3600 rows of 1",
  the latitude-dependent number of columns (2400 at 50-60°, 1800 at 60-70°...), pixels centred on
  whole arc-seconds (origin half a pixel north-west of the corner), ``AREA_OR_POINT=Point``, float32
  COG with 1024² blocks and overviews, plus ``tileList.txt``. Heights are an analytic plane
  :func:`dem_height` so a warped value can be checked against the formula at the pixel centre.
- Hansen GFC treecover2000 and JRC GSW occurrence: 40000² uint8 tiles of 0.00025° named by their
  north-west corner; *sparse* GeoTIFFs (only the blocks around the test areas are written) so a
  real-size tile costs a few hundred kilobytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from nimbus.fetch.copdem import dem_columns, tile_name
from nimbus.fetch.hansen import HANSEN
from nimbus.fetch.jrcwater import JRC_GSW

__all__ = ["HILL", "dem_height", "make_copdem", "make_tens", "unwrap"]

#: (lat0, lon0, a, b, c): dem_height = c + a * (lat - lat0) + b * (unwrap(lon) - lon0)
HILL = (59.0, 9.0, 3600.0, 900.0, 100.0)


def unwrap(lon: np.ndarray | float, ref: float = 0.0) -> np.ndarray:
    """Longitudes continued across ±180 around ``ref`` (so a field is continuous at the antimeridian)."""
    return ref + (np.asarray(lon, float) - ref + 180.0) % 360.0 - 180.0


def dem_height(lon: np.ndarray, lat: np.ndarray, ref: float = 0.0) -> np.ndarray:
    """The analytic height of the synthetic DEM: a plane in (lon, lat), 1 m per arc-second northwards."""
    lat0, lon0, a, b, c = HILL
    return c + a * (np.asarray(lat, float) - lat0) + b * (unwrap(lon, ref) - unwrap(lon0, ref))


def make_copdem(root: Path, corners: Iterable[tuple[int, int]], listed: Iterable[tuple[int, int]] = (), ref: float = 0.0) -> Path:
    """Write GLO-30 look-alike tiles (south-west corners) and ``tileList.txt`` (``corners`` + ``listed``)."""
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for south, west in corners:
        name = tile_name(south, west)
        names.append(name)
        cols, rows = dem_columns(south), 3600
        dx, dy = 1.0 / cols, 1.0 / rows
        transform = Affine(dx, 0, west - dx / 2, 0, -dy, south + 1 + dy / 2)
        cc, rr = np.meshgrid(np.arange(cols) + 0.5, np.arange(rows) + 0.5)
        lon, lat = transform @ (cc, rr)
        z = dem_height(lon, lat, ref).astype(np.float32)
        folder = root / name
        folder.mkdir(exist_ok=True)
        raw = folder / "raw.tif"
        prof = dict(driver="GTiff", width=cols, height=rows, count=1, dtype="float32", crs="EPSG:4326", transform=transform)
        with rasterio.open(raw, "w", **prof) as dst:
            dst.write(z, 1)
            dst.update_tags(AREA_OR_POINT="Point")
        from rasterio.shutil import copy as rio_copy

        rio_copy(raw, folder / f"{name}.tif", driver="COG", compress="DEFLATE", predictor="FLOATING_POINT",
                 blocksize=1024, overviews="AUTO")  # fmt: skip
        raw.unlink()
        with rasterio.open(folder / f"{name}.tif") as ds:
            assert ds.transform.almost_equals(transform), (ds.transform, transform)
    extra = [tile_name(s, w) for s, w in listed]
    (root / "tileList.txt").write_text("\n".join(sorted(set(names + extra))) + "\n")
    return root


def make_tens(root: Path, source: str, corners: Iterable[tuple[int, int]], regions: Iterable[tuple[float, float, float, float]]) -> Path:
    """Write sparse 40000² Hansen (``source="treecover"``) or JRC (``"water"``) tiles with data only in ``regions``.

    Args:
        root: the bucket folder.
        source: "treecover" or "water".
        corners: south-west corners (multiples of 10) of the tiles.
        regions: (west, south, east, north) boxes where blocks are written (others stay sparse).
    """
    src = HANSEN if source == "treecover" else JRC_GSW
    root.mkdir(parents=True, exist_ok=True)
    n, step, block = 40000, 0.00025, 512
    for south, west in corners:
        transform = Affine(step, 0, west, 0, -step, south + 10)
        path = root / src.path(south, west)
        prof = dict(driver="GTiff", width=n, height=n, count=1, dtype="uint8", crs="EPSG:4326", transform=transform,
                    tiled=True, blockxsize=block, blockysize=block, compress="deflate", sparse_ok=True,
                    nodata=255 if source == "water" else None)  # fmt: skip
        with rasterio.open(path, "w", **prof) as dst:
            for west_b, south_b, east_b, north_b in regions:
                for lon_shift in (0.0, 360.0, -360.0):
                    c0 = (west_b + lon_shift - west) / step
                    c1 = (east_b + lon_shift - west) / step
                    r0 = (south + 10 - north_b) / step
                    r1 = (south + 10 - south_b) / step
                    c0, c1 = max(0, math.floor(c0 / block) * block), min(n, math.ceil(c1 / block) * block)
                    r0, r1 = max(0, math.floor(r0 / block) * block), min(n, math.ceil(r1 / block) * block)
                    if c1 <= c0 or r1 <= r0:
                        continue
                    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
                    if source == "treecover":
                        data = ((cc // 37 + rr // 53) * 7 % 101).astype(np.uint8)
                    else:
                        data = np.where((cc // 97 + rr // 89) % 3 == 0, (cc // 13 % 101), 0).astype(np.uint8)
                    dst.write(data, 1, window=Window(c0, r0, c1 - c0, r1 - r0))
    return root
