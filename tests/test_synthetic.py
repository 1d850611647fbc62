"""The synthetic product generator: real format, deterministic, plausible spectra and structure."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from nimbus.bands import BANDS, NATIVE_RESOLUTION
from nimbus.metadata import parse_product_metadata, parse_tile_metadata
from nimbus.product import open_product
from nimbus.spectra import BOA_SPECTRA, toa_from_boa
from nimbus.synthetic import CLASSES, NODATA_CLASS, _write_jp2, fractal_noise, make_product, tile_origin

IDX = {b: i for i, b in enumerate(BANDS)}


def _ratio(v: np.ndarray, a: str, b: str) -> float:
    return float((v[IDX[a]] - v[IDX[b]]) / (v[IDX[a]] + v[IDX[b]]))


def test_safe_layout_and_metadata_parse_like_real(synthetic_l1c) -> None:
    s = synthetic_l1c
    assert s.path.name == f"{s.product_id}.SAFE"
    assert s.product_id.startswith("S2A_MSIL1C_") and "_N0510_" in s.product_id and "_T32TMS_" in s.product_id
    md = parse_product_metadata(s.path / "MTD_MSIL1C.xml")
    assert (md.level, md.baseline, md.product_uri, md.spacecraft) == ("L1C", "05.10", s.product_id, "Sentinel-2A")
    assert md.offsets_from_metadata and set(md.offsets.values()) == {-1000.0}
    assert md.sensing_time == s.sensing_time and md.product_format == "SAFE_COMPACT"
    assert md.resolutions == {b: NATIVE_RESOLUTION[b] for b in BANDS}
    for rel in md.image_files:
        assert (s.path / f"{rel}.jp2").is_file(), rel
    tl = parse_tile_metadata(next(s.path.glob("GRANULE/*/MTD_TL.xml")))
    assert (tl.tile, tl.epsg, tl.baseline, tl.level) == ("32TMS", 32632, "05.10", "L1C")
    assert tl.sizes == {10: (240, 240), 20: (120, 120), 60: (40, 40)}
    assert tuple(tl.transform(10))[:6] == s.transform
    assert (s.path / "manifest.safe").is_file()
    # the same tile origin as a real 32TMS product (nimbus.grid)
    assert tile_origin("32TMS") == (32632, 399960.0, 5200020.0)


def test_bands_are_lossless_jpeg2000(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(1, 65535, (60, 90), dtype=np.uint16)
    path = tmp_path / "b.jp2"
    _write_jp2(path, data, 32632, (10.0, 0.0, 399960.0, 0.0, -10.0, 5200020.0))
    with rasterio.open(path) as src:
        assert src.driver == "JP2OpenJPEG" and src.crs.to_epsg() == 32632
        np.testing.assert_array_equal(src.read(1), data)


def test_band_shapes_and_values(synthetic_l1c) -> None:
    s = synthetic_l1c
    p = open_product(s.path)
    for b in BANDS:
        with rasterio.open(p.band_file(b)) as src:
            r = NATIVE_RESOLUTION[b]
            assert src.driver == "JP2OpenJPEG" and src.shape == (240 * 10 // r,) * 2 and src.dtypes[0] == "uint16"
            assert src.transform.a == r
    # DN = reflectance * 10000 + 1000 (+ sensor noise), area-averaged to the native grid
    refl, valid = p.read(list(BANDS), res=60, kind="reflectance", resampling="nearest")
    want = s.reflectance.reshape(13, 40, 6, 40, 6).mean(axis=(2, 4))
    err = np.abs(refl - want)[:, valid]
    assert float(np.median(err)) < 0.003 and float(err.max()) < 0.05


def test_deterministic_per_seed(tmp_path: Path) -> None:
    a = make_product(tmp_path / "a", size=60, seed=5)
    b = make_product(tmp_path / "b", size=60, seed=5)
    c = make_product(tmp_path / "c", size=60, seed=6)
    d = make_product(tmp_path / "d", size=60, seed=5, date="2021-07-01")
    assert a.product_id == b.product_id
    assert len({a.product_id, c.product_id, d.product_id}) == 3
    np.testing.assert_array_equal(a.truth, b.truth)
    pa, pb = open_product(a.path), open_product(b.path)
    np.testing.assert_array_equal(pa.read(list(BANDS), kind="dn")[0], pb.read(list(BANDS), kind="dn")[0])
    assert not np.array_equal(a.truth, c.truth)
    assert d.sensing_time.date().isoformat() == "2021-07-01"


def test_zip_matches_folder(tmp_path: Path) -> None:
    f = make_product(tmp_path / "f", size=60, level="L2A", baseline="05.10", seed=9)
    z = make_product(tmp_path / "z", size=60, level="L2A", baseline="05.10", seed=9, zipped=True)
    assert z.path.name == f"{z.product_id}.zip" and zipfile.is_zipfile(z.path)
    with zipfile.ZipFile(z.path) as zf:
        assert all(n.startswith(f"{z.product_id}.SAFE/") for n in zf.namelist())
    a, va = open_product(f.path).read(["B02", "B05", "B01", "SCL", "AOT", "WVP"])
    b, vb = open_product(z.path).read(["B02", "B05", "B01", "SCL", "AOT", "WVP"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(va, vb)
    assert not list((tmp_path / "z").glob("*.SAFE")), "no staging folder left behind"


def test_l2a_layers(synthetic_l2a_zip) -> None:
    p = open_product(synthetic_l2a_zip.path)
    scl = p.read_band("SCL")
    t20 = synthetic_l2a_zip.truth[::2, ::2]
    assert scl.shape == (120, 120)
    # thin cloud edges (opacity 0.2-0.5) over any surface are "thin cirrus" (10), as Sen2Cor would flag them
    assert np.isin(scl[t20 == CLASSES["water"]], (6, 10)).all() and np.isin(scl[t20 == CLASSES["snow"]], (11, 10)).all()
    assert (scl[t20 == CLASSES["water"]] == 6).mean() > 0.5 and (scl[t20 == CLASSES["snow"]] == 11).mean() > 0.5
    assert np.isin(scl[t20 == CLASSES["cloud"]], (8, 9)).all()
    assert np.isin(scl[t20 == CLASSES["ground"]], (4, 5, 10)).all()
    assert "/R20m/" in p.band_file("B05") and "/R60m/" in p.band_file("B09") and "/R10m/" in p.band_file("B02")


def test_truth_and_aux_files(synthetic_l1c) -> None:
    s = synthetic_l1c
    with rasterio.open(s.truth_path) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == NODATA_CLASS and src.crs.to_string() == "EPSG:32632"
        assert tuple(src.transform)[:6] == s.transform
        np.testing.assert_array_equal(src.read(1), s.truth)
        from nimbus.legend import DEFAULT_LEGEND, Legend

        # the truth map has the class maps' palette and names (one legend everywhere)
        assert {v: src.colormap(1)[v][:3] for v in DEFAULT_LEGEND.values} == DEFAULT_LEGEND.color_map()
        assert Legend.from_tags(src.tags()) == DEFAULT_LEGEND
    assert set(np.unique(s.truth).tolist()) == {0, 1, 2, 3}, "every class present, no nodata without a swath"
    for layer in ("altitude", "treecover"):
        grids = {}
        for r in (10, 20, 60):
            path = s.aux_dir / f"32TMS_{layer}_{r}m.tif"
            with rasterio.open(path) as src:
                assert src.shape == (2400 // r, 2400 // r) and src.transform.a == r and src.crs.to_epsg() == 32632
                grids[r] = src.read(1)
        np.testing.assert_allclose(grids[60], grids[10].reshape(40, 6, 40, 6).mean(axis=(1, 3)), rtol=1e-5)
        np.testing.assert_allclose(grids[20], grids[10].reshape(120, 2, 120, 2).mean(axis=(1, 3)), rtol=1e-5)
    np.testing.assert_allclose(grids[10], s.treecover)
    assert 0 <= s.treecover.min() and s.treecover.max() <= 100


def test_scene_structure(tmp_path: Path) -> None:
    s = make_product(tmp_path, size=240, seed=11, nodata_swath=True)
    t, alt = s.truth, s.altitude
    assert alt[t == CLASSES["snow"]].mean() > alt[t == CLASSES["ground"]].mean() > alt[t == CLASSES["water"]].mean()
    assert s.treecover[t == CLASSES["snow"]].max() == 0 and s.treecover[t == CLASSES["water"]].max() == 0
    assert 0.01 < s.ambiguous.mean() < 0.4, "semi-transparent cloud edges exist"
    assert ((s.cloud_opacity > 0.1) & (s.cloud_opacity < 0.5) & (t != CLASSES["cloud"]) & (t != NODATA_CLASS)).any()
    swath = t == NODATA_CLASS
    assert 0.05 < swath.mean() < 0.3 and swath[0, 0] and not swath[-1, -1]
    # the swath is 0 in every band at every resolution
    p = open_product(s.path)
    for b in BANDS:
        raw = p.read_band(b)
        f = NATIVE_RESOLUTION[b] // 10
        np.testing.assert_array_equal(raw == 0, swath[::f, ::f])


def test_cloud_fraction_parameter(tmp_path: Path) -> None:
    clear = make_product(tmp_path / "a", size=60, seed=1, cloud_fraction=0.0)
    cloudy = make_product(tmp_path / "b", size=60, seed=1, cloud_fraction=0.7)
    assert not (clear.truth == CLASSES["cloud"]).any()
    assert 0.5 < (cloudy.truth == CLASSES["cloud"]).mean() < 0.85


def test_class_spectra_are_plausible(synthetic_l1c) -> None:
    s = synthetic_l1c
    r, t, op = s.reflectance, s.truth, s.cloud_opacity
    cloud = r[:, (t == CLASSES["cloud"]) & (op > 0.99)].mean(axis=1)
    snow = r[:, (t == CLASSES["snow"]) & (op < 0.01)].mean(axis=1)
    water = r[:, (t == CLASSES["water"]) & (op < 0.01)].mean(axis=1)
    ground = r[:, (t == CLASSES["ground"]) & (op < 0.01) & (s.treecover > 50)].mean(axis=1)
    assert cloud[IDX["B02"]] > 0.4 and snow[IDX["B02"]] > 0.5
    assert _ratio(snow, "B03", "B11") > 0.6 > _ratio(cloud, "B03", "B11"), "NDSI separates snow from cloud"
    assert cloud[IDX["B11"]] > 3 * snow[IDX["B11"]]
    assert water[IDX["B08"]] < 0.05 and _ratio(water, "B03", "B08") > 0.3
    assert _ratio(ground, "B08", "B04") > 0.3, "vegetated ground has a red edge"
    assert cloud[IDX["B10"]] > 0.05 > ground[IDX["B10"]], "cirrus band sees clouds, not the surface"


def test_toa_model() -> None:
    boa = np.stack([BOA_SPECTRA["vegetation"]] * 2, axis=1)[:, :, None]
    toa = toa_from_boa(boa)
    assert toa.shape == boa.shape and toa[0, 0, 0] > boa[0, 0, 0], "Rayleigh path brightens the blue"
    assert toa[10, 0, 0] < 0.01 and toa[9, 0, 0] < boa[9, 0, 0]


def test_fractal_noise() -> None:
    a = fractal_noise((64, 96), np.random.default_rng(0))
    b = fractal_noise((64, 96), np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 96) and abs(float(a.mean())) < 1e-5 and abs(float(a.std()) - 1) < 1e-3
    assert np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1] > 0.8, "spatially smooth"


@pytest.mark.parametrize(("kw", "match"), [({"size": 100}, "multiple of 6"), ({"level": "L3"}, "level"), ({"baseline": "5"}, "baseline"), ({"tile": "XX"}, "tile")])
def test_bad_parameters(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_product(tmp_path, **{"size": 60, **kw})
