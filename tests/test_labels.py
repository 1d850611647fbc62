"""Labels: each ExoLabs / S2cloudless / water rule, --masked, other grids, SCL on real files, local s2cloudless."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from nimbus.arrays import ArrayStack, build_arrays
from nimbus.errors import LabelError
from nimbus.labels import (
    CLOUD,
    GROUND,
    NODATA,
    SCL_TO_CLASS,
    SNOW,
    WATER,
    build_labels,
    cloud_probability,
    exolabs_rules,
    scl_to_classes,
)

# one pixel per case: (ExoLabs band 1, band 2, water, probability)
CASES = {
    "exo cloud, no flag": (3, 0, False, 0.1),
    "no snow": (3, 1, False, 0.1),
    "dark region": (2, 0, False, 0.1),
    "no snow on water": (2, 1, True, 0.1),
    "snow flag on water": (4, 2, True, 0.1),
    "snow class only": (4, 0, False, 0.1),
    "probable cloud over snow": (4, 2, True, 0.9),
    "probability at threshold": (2, 1, False, 0.5),
    "exo nodata": (0, 0, False, 0.2),
}


def _arrays(name: str) -> tuple[np.ndarray, ...]:
    vals = [CASES[name]]
    e1, e2, wa, pr = (np.array([[v[i] for v in vals]]) for i in range(4))
    return e1, e2, wa.astype(bool), pr.astype(np.float32)


@pytest.mark.parametrize(
    "name,with_prob,without_prob",
    [
        ("exo cloud, no flag", CLOUD, CLOUD),  # starts cloud / ExoLabs cloud -> 0
        ("no snow", GROUND, CLOUD),  # no snow -> ground; without s2cloudless ExoLabs cloud wins
        ("dark region", GROUND, GROUND),
        ("no snow on water", WATER, WATER),  # water after ground
        ("snow flag on water", SNOW, SNOW),  # snow after water
        ("snow class only", SNOW, SNOW),  # band 1 = 4 is snow too
        ("probable cloud over snow", CLOUD, SNOW),  # probability > threshold overrides everything
        ("probability at threshold", GROUND, GROUND),  # strictly above the threshold
        ("exo nodata", CLOUD, GROUND),  # the starting class (masked -> 255 in build_labels)
    ],
)
def test_each_rule(name: str, with_prob: int, without_prob: int) -> None:
    e1, e2, water, prob = _arrays(name)
    assert exolabs_rules(e1, e2, water, prob, 0.5)[0, 0] == with_prob
    assert exolabs_rules(e1, e2, water, None)[0, 0] == without_prob


def test_threshold_parameter() -> None:
    e1, e2, water, prob = _arrays("no snow on water")
    assert exolabs_rules(e1, e2, water, np.array([[0.3]]), 0.5)[0, 0] == WATER
    assert exolabs_rules(e1, e2, water, np.array([[0.3]]), 0.25)[0, 0] == CLOUD


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nimbus.synthetic import make_product

    tmp = tmp_path_factory.mktemp("labels")
    s = make_product(tmp, size=240, seed=11, nodata_swath=True)
    folder, _ = build_arrays(s.path, tmp / "arrays", res=20)
    return folder


def _write(path: Path, data: np.ndarray, crs: CRS, transform: Affine, nodata: float | None = None) -> Path:
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data)
    return path


def _inputs(stack_dir: Path, tmp: Path) -> dict[str, Path]:
    """Hand-made ExoLabs / water / probability rasters on the arrays grid (120 x 120 at 20 m): bands of rows."""
    st = ArrayStack(stack_dir)
    h, w = st.shape
    e = np.zeros((2, h, w), np.uint8)
    e[0], e[1] = 2, 1  # dark region, no snow -> ground
    e[0, 0:20] = 3  # rows 0-19: ExoLabs cloud (band 2 no flag)
    e[1, 0:20] = 0
    e[0, 20:40], e[1, 20:40] = 4, 2  # rows 20-39: snow
    e[:, 100:] = 0  # rows 100-119: ExoLabs nodata
    water = np.zeros((h, w), np.uint8)
    water[40:60] = 1  # rows 40-59: water
    water[30:40] = 1  # snow on water stays snow
    prob = np.zeros((h, w), np.uint8)
    prob[60:80] = 80  # rows 60-79: S2cloudless says cloud (0-100 scale)
    return {
        "exolabs": _write(tmp / "exo.tif", e, st.crs, st.transform),
        "water": _write(tmp / "water.tif", water, st.crs, st.transform),
        "cloudprob": _write(tmp / "prob.tif", prob, st.crs, st.transform),
    }


def _classes(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.profile["compress"].lower() == "zstd"
        assert src.colormap(1)[CLOUD][:3] != src.colormap(1)[GROUND][:3]
        return src.read(1), src.tags()


def test_build_labels_rules_masked_and_metadata(stack: Path, tmp_path: Path) -> None:
    inp = _inputs(stack, tmp_path)
    st = ArrayStack(stack)
    _, image_ok = st.read(st.meta["bands"])
    assert 0 < image_ok.mean() < 1  # the synthetic swath has no image data
    rep = build_labels(stack, exolabs=inp["exolabs"], water=inp["water"], cloudprob=inp["cloudprob"])
    assert rep.path == stack / "labels.tif" and rep.source == "exolabs+cloudprob"
    got, tags = _classes(rep.path)
    with rasterio.open(rep.path) as src:
        assert src.crs == st.crs and src.transform == st.transform and src.shape == st.shape
    expect = np.full(st.shape, GROUND, np.uint8)
    expect[0:20] = CLOUD  # starts cloud, ExoLabs flags neither snow nor no-snow
    expect[20:40] = SNOW
    expect[40:60] = WATER
    expect[60:80] = CLOUD  # probability 0.8 > 0.5
    expect[100:] = CLOUD  # ExoLabs nodata keeps the starting class when not masked
    expect[~image_ok] = NODATA
    assert np.array_equal(got, expect)
    uncovered = int(image_ok[100:].sum())
    assert rep.uncovered_pixels == uncovered == int(tags["uncovered_pixels"])
    assert rep.no_image_pixels == int((~image_ok).sum()) == int(tags["no_image_pixels"])
    assert tags["date"] == st.meta["date"] and tags["product_id"] == st.meta["product_id"]
    assert json.loads(tags["class_counts"]) == {str(k): int((got == k).sum()) for k in np.unique(got)}
    # --masked: ExoLabs nodata becomes 255
    rep = build_labels(stack, exolabs=inp["exolabs"], water=inp["water"], cloudprob=inp["cloudprob"], masked=True)
    got, tags = _classes(rep.path)
    expect[100:] = NODATA
    assert np.array_equal(got, expect) and tags["masked"] == "True"
    # without S2cloudless: ground start, water, snow, ExoLabs cloud
    rep = build_labels(stack, exolabs=inp["exolabs"], water=inp["water"], out=tmp_path / "plain.tif")
    got, _ = _classes(rep.path)
    expect = np.full(st.shape, GROUND, np.uint8)
    expect[0:20], expect[20:40], expect[40:60] = CLOUD, SNOW, WATER
    expect[~image_ok] = NODATA
    assert rep.source == "exolabs" and np.array_equal(got, expect)


def test_inputs_on_another_grid_reprojected_or_refused(stack: Path, tmp_path: Path) -> None:
    st = ArrayStack(stack)
    h, w = st.shape
    # ExoLabs at 10 m (twice as fine) covering the grid: nearest onto the 20 m grid gives the same classes
    e = np.zeros((2, h, w), np.uint8)
    e[0], e[1] = 2, 1
    e[0, :, :50] = 3
    fine = np.repeat(np.repeat(e, 2, axis=1), 2, axis=2)
    path = _write(tmp_path / "exo10.tif", fine, st.crs, st.transform @ Affine.scale(0.5))
    rep = build_labels(stack, exolabs=path, out=tmp_path / "a.tif")
    got, _ = _classes(rep.path)
    _, image_ok = st.read(st.meta["bands"])
    expect = np.where(np.arange(w)[None, :] < 50, CLOUD, GROUND).repeat(h, 0).astype(np.uint8)
    expect[~image_ok] = NODATA
    assert rep.reprojected == [str(path)] and np.array_equal(got, expect)
    # a raster of another area (shifted 500 km) is refused with a message naming it
    far = _write(tmp_path / "far.tif", e, st.crs, st.transform @ Affine.translation(0, 25_000))
    with pytest.raises(LabelError, match="far.tif.*does not overlap"):
        build_labels(stack, exolabs=far, out=tmp_path / "b.tif")
    assert not (tmp_path / "b.tif").exists()
    with pytest.raises(LabelError, match="no label source"):
        build_labels(stack)
    with pytest.raises(LabelError, match="not both"):
        build_labels(stack, exolabs=path, scl=True)


def test_scl_mapping_on_real_scl(realdata: Path, tmp_path: Path) -> None:
    # the 15-bit SCL of a real L2A at 60 m: classes 0 and 2-11 present
    scl_path = realdata / "sentinelhub-py_SAFE_file_lists" / "SCL_60m_real_partial_tile_img-15bit.jp2"
    with rasterio.open(scl_path) as src:
        scl, crs, transform = src.read(1), src.crs, src.transform
    values = set(np.unique(scl).tolist())
    assert {0, 6, 8, 9, 10, 11} <= values
    classes = scl_to_classes(scl)
    for v in values:
        assert (classes[scl == v] == SCL_TO_CLASS[v]).all()
    assert (classes[scl == 11] == SNOW).all() and (classes[scl == 6] == WATER).all()
    assert (classes[np.isin(scl, [8, 9, 10])] == CLOUD).all() and (classes[np.isin(scl, [2, 3, 4, 5])] == GROUND).all()
    assert (classes[np.isin(scl, [0, 1, 7])] == NODATA).all()
    # end to end onto a hand-made arrays folder: a 300 x 200 window of that tile's 60 m grid
    r0, c0, h, w = 0, 1400, 300, 200
    folder = tmp_path / "S2X_fake"
    folder.mkdir()
    np.save(folder / "bands.npy", np.ones((1, h, w), np.uint16))
    t = transform @ Affine.translation(c0, r0)
    meta = {"product_id": "S2X_fake", "tile": "31SBU", "date": "2020-01-01", "crs": crs.to_wkt(), "transform": list(t)[:6],
            "resolution": 60, "shape": [h, w], "bands": ["B02"], "aux": [], "nodata": 0}
    (folder / "meta.json").write_text(json.dumps(meta))
    rep = build_labels(folder, scl=str(scl_path))
    got, tags = _classes(rep.path)
    assert rep.source == "scl" and rep.reprojected == [str(scl_path)]
    assert np.array_equal(got, scl_to_classes(scl[r0 : r0 + h, c0 : c0 + w]))
    assert set(np.unique(got).tolist()) == {CLOUD, GROUND, SNOW, WATER, NODATA} and tags["date"] == "2020-01-01"


def test_scl_of_a_real_l2a_product(realdata: Path, tmp_path: Path) -> None:
    from nimbus.product import open_product

    cog = realdata / "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
    p = open_product(cog)
    rep = build_labels(cog, out=tmp_path / "scl.tif", scl=True, res=20)
    got, tags = _classes(rep.path)
    with rasterio.open(p.band_file("SCL")) as src:
        scl = src.read(1)
    assert got.shape == scl.shape == p.shape(20)
    assert np.array_equal(got, scl_to_classes(scl))  # same grid: pixel for pixel
    assert tags["date"] == "2020-02-19" and rep.counts[CLOUD] == int(np.isin(scl, [8, 9, 10]).sum())


def test_local_s2cloudless(stack: Path, tmp_path: Path) -> None:
    from nimbus.product import open_product

    st = ArrayStack(stack)
    p = open_product(st.meta["source"])
    prob = cloud_probability(p, st.crs, st.transform, st.shape)
    assert prob.shape == st.shape and prob.dtype == np.float32
    finite = np.isfinite(prob)
    assert finite.mean() > 0.5 and ((prob[finite] >= 0) & (prob[finite] <= 1)).all()
    # the synthetic truth (10 m) at the 20 m grid: clouds come out more probable than clear ground
    with rasterio.open(next(Path(st.meta["source"]).parent.glob("*_truth.tif"))) as src:
        truth = src.read(1)[::2, ::2]
    assert np.nanmean(prob[truth == CLOUD]) > np.nanmean(prob[truth == GROUND]) + 0.1
    inp = _inputs(stack, tmp_path)
    rep = build_labels(stack, exolabs=inp["exolabs"], s2cloudless=True, out=tmp_path / "s2c.tif")
    got, tags = _classes(rep.path)
    assert rep.source == "exolabs+s2cloudless" and tags["label_source"] == "exolabs+s2cloudless"
    over = np.isfinite(prob) & (prob > 0.5) & (got != NODATA)
    assert over.any() and (got[over] == CLOUD).all()


def test_s2cloudless_refuses_l2a(synthetic_l2a_zip) -> None:
    from nimbus.product import open_product

    p = open_product(synthetic_l2a_zip.path)
    with pytest.raises(LabelError, match="B10"):
        cloud_probability(p, CRS.from_user_input(p.crs), p.transform(60), p.shape(60))


def test_cli_arrays_and_labels(stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nimbus.cli import main

    inp = _inputs(stack, tmp_path)
    source = Path(ArrayStack(stack).meta["source"])
    main(["arrays", str(source.parent), str(tmp_path / "arr"), "--res", "20"])
    folder = tmp_path / "arr" / stack.name
    assert f"{folder}: written" in capsys.readouterr().out
    assert np.array_equal(np.load(folder / "bands.npy"), np.load(stack / "bands.npy"))
    main(["labels", str(folder), "--exolabs", str(inp["exolabs"]), "--masked"])
    out = capsys.readouterr().out
    assert "labels.tif: exolabs" in out and "nodata" in out
    got, tags = _classes(folder / "labels.tif")
    assert tags["masked"] == "True" and (got[100:] == NODATA).all()


def test_pixels_without_aux_values_get_no_class(stack: Path, tmp_path: Path) -> None:
    st = ArrayStack(stack)
    h, w = st.shape
    aux = tmp_path / "aux"
    aux.mkdir()
    _write(aux / "32TMS_altitude_20m.tif", np.full((h, w // 2), 500, np.float32), st.crs, st.transform)  # left half only
    folder, _ = build_arrays(st.meta["source"], tmp_path / "arr", res=20, aux_dir=aux, layers=["altitude"])
    alt = np.load(folder / "aux.npy")[0]
    assert np.isnan(alt[:, w // 2 :]).all() and (alt[:, : w // 2] == 500).all()
    inp = _inputs(stack, tmp_path)
    rep = build_labels(folder, exolabs=inp["exolabs"])
    got, _ = _classes(rep.path)
    assert (got[:, w // 2 :] == NODATA).all() and (got[:, : w // 2] != NODATA).any()


def test_rule_labels_from_product_and_from_arrays_agree(tmp_path, synthetic_l2a_zip) -> None:
    """`nimbus labels --rules`: the same labels from the product and from its arrays; they match the truth mostly."""
    import rasterio

    from nimbus.arrays import build_arrays
    from nimbus.errors import LabelError
    from nimbus.labels import build_labels

    rep = build_labels(synthetic_l2a_zip.path, out=tmp_path / "p.tif", rules=True, res=20)
    folder, _ = build_arrays(synthetic_l2a_zip.path, tmp_path / "arrays", res=20)
    rep2 = build_labels(folder, rules=True)
    assert rep.source == rep2.source == "rules"
    with rasterio.open(rep.path) as a, rasterio.open(rep2.path) as b:
        la, lb = a.read(1), b.read(1)
        assert a.tags()["label_source"] == "rules"
    np.testing.assert_array_equal(la, lb)
    truth = np.asarray(synthetic_l2a_zip.truth)[::2, ::2]
    ok = (truth != 255) & (la != 255)
    assert (la[ok] == truth[ok]).mean() > 0.75, "rules labels agree with the generator's truth on most pixels"
    with pytest.raises(LabelError, match="cannot be combined"):
        build_labels(folder, rules=True, scl=True)


def test_truth_labels_from_a_synthetic_product(tmp_path: Path, synthetic_l1c, capsys: pytest.CaptureFixture[str]) -> None:
    """`nimbus labels ARRAYS/<id> --truth`: the generator's truth on the arrays grid, as the old SCL trick gave it."""
    from nimbus.cli import main
    from nimbus.legend import DEFAULT_LEGEND

    folder, _ = build_arrays(synthetic_l1c.path, tmp_path / "arrays", res=20)
    main(["labels", str(folder), "--truth"])
    assert "labels.tif: truth" in capsys.readouterr().out
    got, tags = _classes(folder / "labels.tif")
    assert tags["label_source"] == "truth" and json.loads(tags["inputs"]) == {"truth": synthetic_l1c.truth_path.name}
    assert Path(synthetic_l1c.truth_path).name in json.loads(tags["reprojected_inputs"])  # 10 m truth onto the 20 m grid
    with rasterio.open(folder / "labels.tif") as src:
        assert src.colormap(1)[0][:3] == DEFAULT_LEGEND.color(0) and src.tags()["CLASS_3"] == "water"
    # the same labels as the SCL trick export/train_default.py used before (truth -> SCL codes -> --scl)
    scl_codes = np.zeros(256, np.uint8)
    for cls, code in {CLOUD: 9, GROUND: 4, SNOW: 11, WATER: 6}.items():
        scl_codes[cls] = code
    with rasterio.open(synthetic_l1c.truth_path) as src:
        prof = src.profile
        scl = scl_codes[src.read(1)]
    prof.update(nodata=0)
    with rasterio.open(tmp_path / "scl.tif", "w", **prof) as dst:
        dst.write(scl, 1)
    old, _ = _classes(build_labels(folder, out=tmp_path / "old.tif", scl=tmp_path / "scl.tif").path)
    np.testing.assert_array_equal(got, old)
    # a product target at 10 m gives the truth itself
    rep = build_labels(synthetic_l1c.path, out=tmp_path / "p.tif", truth=True, res=10)
    np.testing.assert_array_equal(_classes(rep.path)[0], np.asarray(synthetic_l1c.truth))


def test_truth_labels_refuse_what_is_not_a_truth_map(tmp_path: Path, synthetic_l1c) -> None:
    from nimbus.labels import find_truth

    with rasterio.open(synthetic_l1c.truth_path) as src:
        prof = src.profile
        data = src.read(1)
    data[:5, :5] = 7
    prof.pop("nodata")
    with rasterio.open(tmp_path / "scl_like.tif", "w", **prof) as dst:
        dst.write(data, 1)
    with pytest.raises(LabelError, match=r"scl_like.tif: holds 7, not Nimbus classes \(0 cloud, 1 ground"):
        build_labels(synthetic_l1c.path, out=tmp_path / "x.tif", truth=tmp_path / "scl_like.tif", res=10)
    with pytest.raises(LabelError, match="cannot be combined"):
        build_labels(synthetic_l1c.path, out=tmp_path / "x.tif", truth=True, rules=True, res=10)
    with pytest.raises(LabelError, match="PID_truth.tif: no truth map beside the product"):
        find_truth(tmp_path / "PID.SAFE", "PID")
