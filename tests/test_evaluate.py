"""Evaluate: known confusion matrices, metrics from their definitions, reprojected references,
binary and SCL reference kinds, ignore values, outputs, errors, and the real L2A SCL against itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from nimbus.errors import NimbusError
from nimbus.evaluate import Evaluation, EvaluationError, confusion_metrics, evaluate, parse_ignore, scl_lookup
from nimbus.labels import SCL_TO_CLASS

UTM = CRS.from_epsg(32632)
X0, Y0 = 300000.0, 5000020.0


def _write(path: Path, arr: np.ndarray, res: float = 10.0, x0: float = X0, y0: float = Y0, crs: CRS = UTM,
           nodata: float | None = 255, dtype: str = "uint8") -> Path:
    arr = np.asarray(arr)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=dtype,
                       crs=crs, transform=Affine(res, 0, x0, 0, -res, y0), nodata=nodata) as dst:
        dst.write(arr.astype(dtype), 1)
    return path


def _pair(rng: np.random.Generator, shape: tuple[int, int] = (37, 53)) -> tuple[np.ndarray, np.ndarray]:
    ref = rng.integers(0, 4, shape).astype(np.uint8)
    pred = ref.copy()
    flip = rng.random(shape) < 0.3
    pred[flip] = rng.integers(0, 4, int(flip.sum()))
    return pred, ref


def _confusion(ref: np.ndarray, pred: np.ndarray, k: int = 4) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    for r, p in zip(ref.ravel(), pred.ravel()):
        cm[int(r), int(p)] += 1
    return cm


def test_hand_made_confusion_matrix_and_metrics(tmp_path: Path) -> None:
    # 10 pixels: reference row 0, prediction row 1; one nodata pixel in each, not compared
    ref = np.array([[0, 0, 0, 1, 1, 2, 2, 3, 255, 1]], np.uint8)
    pred = np.array([[0, 0, 1, 1, 1, 2, 0, 3, 2, 255]], np.uint8)
    ev = evaluate(_write(tmp_path / "pred.tif", pred), _write(tmp_path / "ref.tif", ref))
    expected = np.array([[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(ev.confusion, expected)
    assert ev.compared == 8 and ev.total == 10 and ev.ignored_total == 2
    assert ev.ignored == {"prediction_nodata": 1, "outside_reference": 0, "reference_nodata": 1, "reference_ignored": 0}
    assert ev.accuracy == pytest.approx(6 / 8)
    # kappa from its definition: p_o = 6/8, p_e = sum(row_i * col_i) / n^2
    rows, cols = [3, 2, 2, 1], [3, 3, 1, 1]
    pe = sum(r * c for r, c in zip(rows, cols)) / 64
    assert ev.kappa == pytest.approx((6 / 8 - pe) / (1 - pe))
    per = ev.per_class()
    assert per["cloud"]["precision"] == pytest.approx(2 / 3) and per["cloud"]["recall"] == pytest.approx(2 / 3)
    assert per["cloud"]["iou"] == pytest.approx(2 / 4) and per["cloud"]["f1"] == pytest.approx(2 / 3)
    assert per["ground"]["precision"] == pytest.approx(2 / 3) and per["ground"]["recall"] == 1.0
    assert per["ground"]["iou"] == pytest.approx(2 / 3) and per["ground"]["f1"] == pytest.approx(4 / 5)
    assert per["snow"]["precision"] == 1.0 and per["snow"]["recall"] == 0.5 and per["snow"]["iou"] == 0.5
    assert per["water"] == {"value": 3, "iou": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0, "support": 1}
    assert [per[n]["support"] for n in ("cloud", "ground", "snow", "water")] == rows
    text = ev.to_text()
    assert "Cohen's kappa" in text and "confusion matrix (rows reference, columns prediction)" in text
    assert "0.7500" in text


def test_random_maps_match_a_direct_count_in_small_strips(tmp_path: Path) -> None:
    pred, ref = _pair(np.random.default_rng(0))
    pred[5:9, 3:20] = 255
    ev = evaluate(_write(tmp_path / "p.tif", pred), _write(tmp_path / "r.tif", ref), strip_rows=7)
    ok = pred != 255
    np.testing.assert_array_equal(ev.confusion, _confusion(ref[ok], pred[ok]))
    assert ev.ignored["prediction_nodata"] == (~ok).sum() and not ev.reprojected


def test_metrics_of_degenerate_matrices() -> None:
    m = confusion_metrics(np.diag([5, 0, 0, 0]))
    assert m["accuracy"] == 1.0 and math.isnan(m["kappa"])  # one class in both: kappa 0/0
    assert m["iou"][0] == 1.0 and all(math.isnan(x) for x in m["iou"][1:]) and m["mean_iou"] == 1.0
    m = confusion_metrics(np.array([[0, 4], [4, 0]]))
    assert m["accuracy"] == 0.0 and m["kappa"] == pytest.approx(-1.0) and m["iou"].tolist() == [0.0, 0.0]


def test_reference_at_20m_is_resampled_nearest(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ref20 = rng.integers(0, 4, (20, 25)).astype(np.uint8)
    ref10 = np.repeat(np.repeat(ref20, 2, axis=0), 2, axis=1)
    pred = ref10.copy()
    pred[::3, ::2] = (pred[::3, ::2] + 1) % 4
    ev = evaluate(_write(tmp_path / "p.tif", pred), _write(tmp_path / "r20.tif", ref20, res=20.0), strip_rows=9)
    assert ev.reprojected
    np.testing.assert_array_equal(ev.confusion, _confusion(ref10, pred))
    assert ev.ignored_total == 0


def test_reference_with_an_offset_extent(tmp_path: Path) -> None:
    pred, ref = _pair(np.random.default_rng(2), (40, 40))
    # the reference starts 5 columns right and 3 rows down and extends beyond the prediction
    big = np.full((50, 50), 255, np.uint8)
    big[:37, :35] = ref[3:, 5:]
    ev = evaluate(_write(tmp_path / "p.tif", pred), _write(tmp_path / "r.tif", big, x0=X0 + 50, y0=Y0 - 30))
    assert not ev.reprojected  # same pixel size and phase: read directly
    np.testing.assert_array_equal(ev.confusion, _confusion(ref[3:, 5:], pred[3:, 5:]))
    assert ev.ignored["outside_reference"] == 40 * 40 - 37 * 35
    # half a pixel off: warped by nearest neighbour, same extent rule
    ev2 = evaluate(tmp_path / "p.tif", _write(tmp_path / "r2.tif", big, x0=X0 + 50.001, y0=Y0 - 30.001))
    assert ev2.reprojected
    np.testing.assert_array_equal(ev2.confusion, ev.confusion)


def test_reference_in_another_crs(tmp_path: Path) -> None:
    # a uniform reference in geographic coordinates covering the prediction entirely
    pred = np.zeros((30, 30), np.uint8)
    pred[:, 15:] = 2
    with rasterio.open(_write(tmp_path / "p.tif", pred)) as src:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    ref = np.full((20, 20), 2, np.uint8)
    d = 0.01
    _write(tmp_path / "r.tif", ref, res=(e - w + 2 * d) / 20, x0=w - d, y0=n + d, crs=CRS.from_epsg(4326))
    with rasterio.open(tmp_path / "r.tif", "r+") as dst:  # non-square pixels
        t = dst.transform
        dst.transform = Affine(t.a, 0, t.c, 0, -(n - s + 2 * d) / 20, t.f)
    ev = evaluate(tmp_path / "p.tif", tmp_path / "r.tif")
    assert ev.reprojected and ev.compared == 900
    assert ev.confusion[2, 2] == 450 and ev.confusion[2, 0] == 450


@pytest.mark.parametrize("kind,target", [("cloud-binary", 0), ("snow-binary", 2), ("water-binary", 3)])
@pytest.mark.parametrize("positive", [1, 255])
def test_binary_references(tmp_path: Path, kind: str, target: int, positive: int) -> None:
    pred, ref = _pair(np.random.default_rng(3))
    mask = np.where(ref == target, positive, 0).astype(np.uint8)
    mask[0, :10] = 7  # left out with ignore
    ev = evaluate(_write(tmp_path / "p.tif", pred), _write(tmp_path / "m.tif", mask, nodata=None), ref_kind=kind, ignore=7)
    keep = np.ones(ref.shape, bool)
    keep[0, :10] = False
    expected = _confusion((ref[keep] == target).astype(int), (pred[keep] == target).astype(int), k=2)
    np.testing.assert_array_equal(ev.confusion, expected)
    assert ev.classes == (0, 1) and ev.class_names[1] == ["cloud", "ground", "snow", "water"][target]
    assert ev.ignored["reference_ignored"] == 10
    tp, fp, fn = expected[1, 1], expected[0, 1], expected[1, 0]
    assert ev.per_class()[ev.class_names[1]]["iou"] == pytest.approx(tp / (tp + fp + fn))


def test_binary_reference_refuses_other_values(tmp_path: Path) -> None:
    pred = np.zeros((4, 4), np.uint8)
    with pytest.raises(EvaluationError, match=r"m\.tif.*value 2.*0/1 or 0/255"):
        evaluate(_write(tmp_path / "p.tif", pred), _write(tmp_path / "m.tif", np.full((4, 4), 2), nodata=None),
                 ref_kind="snow-binary")


def test_scl_reference_and_cirrus_option(tmp_path: Path) -> None:
    scl = np.arange(12, dtype=np.uint8).reshape(1, 12).repeat(2, axis=0)
    pred = np.zeros((2, 12), np.uint8)
    pred[1] = [0, 1, 1, 1, 1, 1, 3, 2, 0, 0, 1, 2]  # what the SCL means (row 0 all cloud)
    p, r = _write(tmp_path / "p.tif", pred), _write(tmp_path / "scl.tif", scl, nodata=0)
    ev = evaluate(p, r, ref_kind="scl")  # cirrus -> cloud
    assert ev.ignored == {"prediction_nodata": 0, "outside_reference": 0, "reference_nodata": 2, "reference_ignored": 4}
    ref_classes = [SCL_TO_CLASS[v] for v in range(12)]
    keep = [v for v in range(12) if ref_classes[v] != 255]
    exp = _confusion(np.array([ref_classes[v] for v in keep] * 2), np.concatenate([pred[0, keep], pred[1, keep]]))
    np.testing.assert_array_equal(ev.confusion, exp)
    assert ev.confusion[0, 1] == 1  # SCL 10 is cloud, predicted ground in row 1
    evg = evaluate(p, r, ref_kind="scl", cirrus="ground")
    assert evg.confusion[1, 1] == ev.confusion[1, 1] + 1 and evg.confusion[1, 0] == ev.confusion[1, 0] + 1
    evi = evaluate(p, r, ref_kind="scl", cirrus="ignore", ignore="3, 2")  # raw SCL values: shadows left out
    assert evi.ignored["reference_ignored"] == 4 + 2 + 4 and evi.compared == 24 - 2 - 10
    assert scl_lookup("ignore")[10] == 255 and scl_lookup()[10] == 0
    with pytest.raises(EvaluationError, match="cirrus"):
        evaluate(p, r, ref_kind="scl", cirrus="maybe")


def test_ignore_values_and_wrong_kind(tmp_path: Path) -> None:
    pred, ref = _pair(np.random.default_rng(4))
    p, r = _write(tmp_path / "p.tif", pred), _write(tmp_path / "r.tif", ref)
    ev = evaluate(p, r, ignore=[0, 3])
    keep = (ref == 1) | (ref == 2)
    np.testing.assert_array_equal(ev.confusion, _confusion(ref[keep], pred[keep]))
    assert ev.ignored["reference_ignored"] == (~keep).sum() and ev.ignore == (0, 3)
    assert np.isnan(ev.per_class()["cloud"]["recall"]) and any("absent" in n for n in ev.notes)
    assert parse_ignore("7,8") == (7, 8) and parse_ignore((8, "7")) == (7, 8) and parse_ignore(None) == ()
    with pytest.raises(EvaluationError, match="integer"):
        parse_ignore("cloud")
    scl_like = ref + 4
    with pytest.raises(EvaluationError, match=r"r2\.tif.*not a Nimbus class.*--ref-kind scl"):
        evaluate(p, _write(tmp_path / "r2.tif", scl_like))
    with pytest.raises(EvaluationError, match="ref-kind"):
        evaluate(p, r, ref_kind="exolabs")


def test_outputs_exist_and_reopen(tmp_path: Path) -> None:
    pred, ref = _pair(np.random.default_rng(5), (300, 260))
    ref[:10] = 255
    p, r = _write(tmp_path / "map_classes.tif", pred), _write(tmp_path / "r.tif", ref)
    ev = evaluate(p, r, out=tmp_path / "eval", strip_rows=64)
    out = tmp_path / "eval"
    assert sorted(f.name for f in out.iterdir()) == [
        "map_classes_difference.tif", "map_classes_evaluation.json", "map_classes_evaluation.png"]
    data = json.loads((out / "map_classes_evaluation.json").read_text())
    assert data["confusion_matrix"]["counts"] == ev.confusion.tolist()
    assert data["accuracy"] == pytest.approx(ev.accuracy) and data["kappa"] == pytest.approx(ev.kappa)
    assert data["pixels"]["compared"] == 290 * 260 and data["pixels"]["reference_nodata"] == 2600
    assert set(data["per_class"]) == {"cloud", "ground", "snow", "water"}
    with rasterio.open(out / "map_classes_difference.tif") as src:
        codes = src.read(1)
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.crs == UTM
        assert src.colormap(1)[22][:3] == (115, 191, 250) and src.tags()["CODE_2"] == "reference cloud, prediction snow"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    expected = np.where(ref == 255, 255, ref.astype(int) * 10 + pred).astype(np.uint8)
    np.testing.assert_array_equal(codes, expected)
    from PIL import Image

    with Image.open(out / "map_classes_evaluation.png") as im:
        assert im.format == "PNG" and im.width > 3 * 256
    assert not [f for f in out.iterdir() if f.name.startswith(".")]  # no temporary left


def test_binary_outputs(tmp_path: Path) -> None:
    pred, ref = _pair(np.random.default_rng(6))
    p = _write(tmp_path / "p.tif", pred)
    m = _write(tmp_path / "m.tif", (ref == 0).astype(np.uint8), nodata=None)
    ev = evaluate(p, m, ref_kind="cloud-binary", out=tmp_path / "o", name="run1")
    assert Path(ev.outputs["png"]).is_file() and Path(ev.outputs["json"]).name == "run1_evaluation.json"
    with rasterio.open(ev.outputs["difference"]) as src:
        assert set(np.unique(src.read(1))) <= {0, 1, 10, 11}


def test_errors_name_the_file(tmp_path: Path) -> None:
    pred = np.zeros((10, 10), np.uint8)
    p = _write(tmp_path / "p.tif", pred)
    far = _write(tmp_path / "far.tif", pred, x0=X0 + 10000)
    with pytest.raises(EvaluationError, match=r"far\.tif: does not overlap"):
        evaluate(p, far, out=tmp_path / "o")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    with pytest.raises(EvaluationError, match=r"missing\.tif"):
        evaluate(p, tmp_path / "missing.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a raster")
    with pytest.raises(NimbusError, match=r"junk\.tif.*cannot be read"):
        evaluate(junk, p)
    bad = _write(tmp_path / "bad.tif", np.full((10, 10), 9))
    with pytest.raises(EvaluationError, match=r"bad\.tif.*not a Nimbus class map"):
        evaluate(bad, p)
    with pytest.raises(EvaluationError, match="no pixel left"):
        evaluate(p, _write(tmp_path / "nd.tif", np.full((10, 10), 255)), out=tmp_path / "o2")
    assert not (tmp_path / "o2").exists() or not list((tmp_path / "o2").iterdir())


def test_evaluation_json_roundtrip_of_nan() -> None:
    ev = Evaluation("p", "r", "nimbus", (0, 1, 2, 3), ("cloud", "ground", "snow", "water"), np.diag([3, 0, 0, 0]),
                    total=3)
    d = json.loads(ev.to_json())
    assert d["kappa"] is None and d["per_class"]["snow"]["iou"] is None and d["accuracy"] == 1.0
    assert "n/a" in ev.to_text()


def test_real_scl_against_itself(realdata: Path, tmp_path: Path) -> None:
    scl = realdata / "rio-tiler-pds_S2_L2A_COG_29RKH_20200219" / "SCL.tif"
    if not scl.is_file():
        pytest.skip(f"{scl} not found")
    with rasterio.open(scl) as src:
        values = src.read(1)
        profile = src.profile
    classes = np.array([SCL_TO_CLASS.get(int(v), 255) for v in range(256)], np.uint8)[values]
    profile.update(driver="GTiff", dtype="uint8", nodata=255)
    with rasterio.open(tmp_path / "scl_classes.tif", "w", **profile) as dst:
        dst.write(classes, 1)
    ev = evaluate(tmp_path / "scl_classes.tif", scl, ref_kind="scl", out=tmp_path / "o")
    assert ev.accuracy == 1.0 and ev.compared == int((classes != 255).sum()) > 0
    assert not ev.reprojected and np.count_nonzero(ev.confusion - np.diag(np.diag(ev.confusion))) == 0
    assert Path(ev.outputs["difference"]).is_file()


def test_declared_nodata_that_is_a_class_value(tmp_path: Path) -> None:
    pred, ref = _pair(np.random.default_rng(7), (8, 9))
    p = _write(tmp_path / "p.tif", pred, nodata=0)  # 0 is cloud: compared all the same
    ev = evaluate(p, _write(tmp_path / "r.tif", ref))
    np.testing.assert_array_equal(ev.confusion, _confusion(ref, pred))
    assert any("declares 0 as nodata" in n for n in ev.notes)
    m = _write(tmp_path / "m.tif", np.where(ref == 2, 255, 0), nodata=255)  # 0/255 mask declaring 255: positives lost
    ev = evaluate(p, m, ref_kind="snow-binary")
    assert ev.per_class()["snow"]["support"] == 0 and any("must not declare 255" in n for n in ev.notes)


def test_finer_reference_is_read_in_smaller_strips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nimbus.evaluate as ev_mod

    rng = np.random.default_rng(8)
    pred = rng.integers(0, 4, (24, 30)).astype(np.uint8)
    ref5 = np.repeat(np.repeat(pred, 2, axis=0), 2, axis=1)  # 5 m reference of the same content
    monkeypatch.setattr(ev_mod, "_SOURCE_BUDGET", 30 * 4 * 5)  # about 5 rows per strip
    ev = evaluate(_write(tmp_path / "p.tif", pred), _write(tmp_path / "r5.tif", ref5, res=5.0))
    assert ev.reprojected and ev.accuracy == 1.0 and ev.compared == pred.size
