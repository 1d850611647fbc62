"""Model inputs: bands as harmonised DN plus auxiliary layers, for any window, on the product grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from nimbus.errors import AuxiliaryDataError, MissingBandError
from nimbus.inputs import assemble, is_band, missing_channels, split_channels
from nimbus.product import open_product

CHANNELS = ["B02", "B8A", "B10", "dem", "treecover", "B01"]


@pytest.fixture(scope="module")
def swath(tmp_path_factory: pytest.TempPathFactory):
    from nimbus.synthetic import make_product

    return make_product(tmp_path_factory.mktemp("swath"), size=120, seed=5, nodata_swath=True, baseline="04.00")


def test_channel_names() -> None:
    assert is_band("b2") and is_band("B8A") and not is_band("altitude") and not is_band("dem")
    assert split_channels(["b2", "DEM", "B8A", "treecover"]) == (["B02", "B8A"], ["altitude", "treecover"])


def test_bands_and_aux_for_a_window(swath) -> None:
    p = open_product(swath.path)
    win = Window(30, 18, 50, 40)
    data, valid = assemble(p, CHANNELS, 10, win, swath.aux_dir)
    assert data.shape == (6, 40, 50) and data.dtype == np.float32 and valid.shape == (40, 50)
    bands, bvalid = p.read(["B02", "B8A", "B10", "B01"], res=10, window=win, kind="harmonized")
    with rasterio.open(swath.aux_dir / "32TMS_altitude_10m.tif") as a, rasterio.open(swath.aux_dir / "32TMS_treecover_10m.tif") as t:
        alt, tree = a.read(1, window=win), t.read(1, window=win)
    expect = np.stack([bands[0], bands[1], bands[2], alt, tree, bands[3]]).astype(np.float32)
    expect[:, ~bvalid] = 0
    assert np.array_equal(valid, bvalid)
    assert np.array_equal(data, expect)
    # the nodata swath is invalid in every channel, holding 0; some valid pixels remain
    assert 0 < valid.mean() < 1 and (data[:, ~valid] == 0).all()
    # harmonised DN of a 04.00 product: the +1000 offset is removed
    raw = p.read(["B02"], res=10, window=win, kind="dn")[0][0].astype(np.int64)
    assert np.array_equal(data[0][valid], np.clip(raw[valid] - 1000, 1, None))


def test_aux_on_another_grid_is_warped_on_the_fly(swath, tmp_path: Path) -> None:
    p = open_product(swath.path)
    # only a 20 m file: read at 10 m, equal to GDAL's warp of that file onto the window grid
    aux = tmp_path / "aux20"
    aux.mkdir()
    shutil.copy(swath.aux_dir / "32TMS_altitude_20m.tif", aux / "32TMS_altitude_20m.tif")
    win = Window(10, 20, 60, 30)
    data, valid = assemble(p, ["altitude"], 10, win, aux)
    ref = np.full((30, 60), np.nan, np.float32)
    with rasterio.open(aux / "32TMS_altitude_20m.tif") as src:
        reproject(rasterio.band(src, 1), ref, dst_transform=p.transform(10) @ Affine.translation(10, 20), dst_crs=p.crs,
                  dst_nodata=np.nan, resampling=Resampling.bilinear)
    assert valid.all() and np.allclose(data[0], ref)
    # a file in geographic coordinates (as Earth Engine may export): warped, close to the UTM original
    geo = tmp_path / "geo"
    geo.mkdir()
    with rasterio.open(swath.aux_dir / "32TMS_altitude_10m.tif") as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        out = np.full((h, w), np.nan, np.float32)
        reproject(rasterio.band(src, 1), out, dst_transform=tr, dst_crs="EPSG:4326", dst_nodata=np.nan, resampling=Resampling.bilinear)
        orig = src.read(1)
    with rasterio.open(geo / "32TMS_altitude_10m.tif", "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                       crs="EPSG:4326", transform=tr, nodata=np.nan) as dst:
        dst.write(out, 1)
    inner = Window(20, 20, 80, 80)
    got, ok = assemble(p, ["altitude"], 10, inner, geo)
    assert ok.all()
    diff = np.abs(got[0] - orig[20:100, 20:100])
    assert np.median(diff) < 0.05 * np.ptp(orig) and diff.max() < 0.5 * np.ptp(orig)


def test_missing_channels_are_named(swath, synthetic_l2a_zip) -> None:
    p = open_product(swath.path)
    assert missing_channels(p, CHANNELS, swath.aux_dir) == []
    assert missing_channels(p, CHANNELS, None) == ["dem", "treecover"]
    l2a = open_product(synthetic_l2a_zip.path)
    assert missing_channels(l2a, ["B02", "B10", "water"], swath.aux_dir) == ["B10", "water"]
    with pytest.raises(MissingBandError, match="B10"):
        assemble(l2a, ["B02", "B10"], 60)
    with pytest.raises(AuxiliaryDataError, match="water.*32TMS"):
        assemble(p, ["B02", "water"], 60, None, swath.aux_dir)
    with pytest.raises(AuxiliaryDataError, match="--aux"):
        assemble(p, ["altitude"], 60)


def test_whole_grid_at_60m(swath) -> None:
    p = open_product(swath.path)
    data, valid = assemble(p, ["B09", "altitude"], 60, aux_dir=swath.aux_dir)
    assert data.shape == (2, 20, 20) and valid.shape == (20, 20)
    with rasterio.open(swath.aux_dir / "32TMS_altitude_60m.tif") as a:
        alt = a.read(1)
    assert np.array_equal(data[1][valid], alt[valid])
