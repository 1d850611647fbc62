"""Auxiliary layers: the real Copernicus DEM (EPSG:4326) warped onto a UTM tile grid, coverage, lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from nimbus.auxiliary import (
    aux_name,
    build_auxiliary,
    build_layer,
    canonical_layer,
    find_aux,
    list_aux,
    read_layer,
)
from nimbus.errors import AuxiliaryDataError
from nimbus.grid import tile_grid

# 32NKF holds Sao Tome island (0.0-0.4 N, 6.5-6.75 E); this window of its 10 m grid is on the island
WINDOW = Window(3100, 6500, 400, 300)


@pytest.fixture(scope="module")
def dem(realdata: Path) -> Path:
    return realdata / "rio-tiler-pds_CopernicusDEM" / "Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif"


def _grid(window: Window = WINDOW, res: int = 10):
    g = tile_grid("32NKF", res)
    return g.crs, g.transform @ Affine.translation(window.col_off, window.row_off), (int(window.height), int(window.width))


def test_real_dem_matches_gdal_warp_and_independent_bilinear(tmp_path: Path, dem: Path) -> None:
    crs, transform, shape = _grid()
    out = tmp_path / aux_name("T32NKF", "dem", 10)
    report = build_layer([dem], "altitude", out, crs, transform, shape, strip_rows=64)
    assert report.missing == 0 and out.name == "32NKF_altitude_10m.tif"
    with rasterio.open(out) as d:
        got = d.read(1)
        assert d.crs == crs and d.transform == transform and d.shape == shape
        assert d.profile["compress"].lower() == "zstd" and d.tags()["layer"] == "altitude"
        assert d.dtypes[0] == "float32"
    # the one-shot GDAL warp (what `gdalwarp -t_srs EPSG:32632 -tr 10 10 -te ... -r bilinear` runs)
    ref = np.full(shape, np.nan, np.float32)
    with rasterio.open(dem) as src:
        reproject(rasterio.band(src, 1), ref, dst_transform=transform, dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
        arr, st = src.read(1), src.transform
    assert np.allclose(got, ref, atol=1e-3)
    assert got.max() > 1000 and got.min() < 700  # the island's relief, not sea level
    # an independent bilinear interpolation at pixel centres (no GDAL warper involved)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    xs, ys = transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    lon, lat = warp_transform(crs, "EPSG:4326", xs, ys)
    c, r = ~st @ (np.asarray(lon), np.asarray(lat))
    c, r = c - 0.5, r - 0.5
    c0, r0 = np.floor(c).astype(int), np.floor(r).astype(int)
    fc, fr = c - c0, r - r0
    expect = (
        arr[r0, c0] * (1 - fc) * (1 - fr) + arr[r0, c0 + 1] * fc * (1 - fr) + arr[r0 + 1, c0] * (1 - fc) * fr + arr[r0 + 1, c0 + 1] * fc * fr
    ).reshape(shape)
    assert np.abs(expect - got).max() < 0.1


def test_mosaic_of_pieces_equals_whole(tmp_path: Path, dem: Path) -> None:
    # cut the DEM into two overlapping-free halves (west / east) and mosaic them back
    with rasterio.open(dem) as src:
        profile = src.profile
        pieces = []
        for i, win in enumerate((Window(2000, 2000, 900, 1400), Window(2900, 2000, 700, 1400))):
            p = tmp_path / f"piece{i}.tif"
            prof = dict(profile, width=int(win.width), height=int(win.height), transform=src.window_transform(win))
            with rasterio.open(p, "w", **prof) as dst:
                dst.write(src.read(1, window=win), 1)
            pieces.append(p)
    crs, transform, shape = _grid(res=20, window=Window(1550, 3250, 150, 100))
    whole = build_layer([dem], "altitude", tmp_path / "whole.tif", crs, transform, shape)
    mosaic = build_layer(pieces, "altitude", tmp_path / "mosaic.tif", crs, transform, shape)
    assert whole.missing == mosaic.missing == 0
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "mosaic.tif") as b:
        wa, wb = a.read(1), b.read(1)
    # pixels whose bilinear neighbourhood lies in one piece are identical; the seam column differs a little
    assert np.mean(np.isclose(wa, wb, atol=1e-3)) > 0.95
    assert np.abs(wa - wb).max() < 50


def test_partial_coverage_is_an_error_saying_how_much(tmp_path: Path, dem: Path) -> None:
    # the 60 m grid of the whole tile 32NKF reaches past 7 E and south of the equator: the DEM covers part
    with pytest.raises(AuxiliaryDataError) as err:
        build_auxiliary(tmp_path, {"dem": [dem]}, tile="32NKF", res=60)
    msg = str(err.value)
    assert "32NKF_altitude_60m.tif" in msg and "missing" in msg and "%" in msg and "--fill" in msg
    pct = float(msg.split("(")[1].split("%")[0])
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    reports = build_auxiliary(tmp_path, {"dem": [dem]}, tile="32NKF", res=60, allow_fill=True)
    (report,) = reports
    with rasterio.open(report.path) as d:
        data = d.read(1, masked=True)
        assert d.shape == (1830, 1830) and d.transform == tile_grid("32NKF", 60).transform
    assert report.missing == int(data.mask.sum()) > 0
    assert abs(100 * report.missing_fraction - pct) < 2.0
    # east of 7 E (and south of 0) is nodata, the west/north part has values
    assert data.mask[:, -1].all() and data.mask[-1, :].all() and not data.mask[:1500, :1000].any()
    # a second call keeps the existing file
    assert build_auxiliary(tmp_path, {"dem": [dem]}, tile="32NKF", res=60)[0].missing == report.missing


def test_find_and_read_layers(tmp_path: Path, dem: Path) -> None:
    crs, transform, shape = _grid(res=20, window=Window(1550, 3250, 40, 30))
    build_layer([dem], "altitude", tmp_path / aux_name("32NKF", "altitude", 20), crs, transform, shape)
    assert canonical_layer("DEM") == "altitude" and canonical_layer("tree_cover") == "treecover"
    assert find_aux(tmp_path, "T32NKF", "dem", 20) == tmp_path / "32NKF_altitude_20m.tif"
    assert find_aux(tmp_path, "32NKF", "altitude", 10) == tmp_path / "32NKF_altitude_20m.tif"
    assert find_aux(tmp_path, "32NKF", "altitude", 10, exact=True) is None
    assert find_aux(tmp_path, "32NKF", "treecover", 20) is None and find_aux(None, "32NKF", "altitude", 20) is None
    assert find_aux(tmp_path, "32TMS", "altitude", 20) is None
    assert list_aux(tmp_path) == [("32NKF", "altitude", 20, tmp_path / "32NKF_altitude_20m.tif")]
    path = find_aux(tmp_path, "32NKF", "altitude", 20)
    with rasterio.open(path) as d:
        full = d.read(1)
    # aligned window: direct read, with the part outside the file invalid
    data, valid = read_layer(path, crs, transform @ Affine.translation(30, 20), (20, 20), layer="altitude")
    assert valid[:10, :10].all() and not valid[10:, :].any() and not valid[:, 10:].any()
    assert np.array_equal(data[:10, :10], full[20:, 30:])
    # another grid (10 m): warped on the fly, close to the 20 m values it sits in
    fine, ok = read_layer(path, crs, transform @ Affine.translation(10, 10) @ Affine.scale(0.5), (20, 20), layer="altitude")
    assert ok.all()
    coarse = np.repeat(np.repeat(full[10:20, 10:20], 2, 0), 2, 1)
    assert np.median(np.abs(fine - coarse)) < np.median(np.abs(np.diff(full, axis=1))) + 1
