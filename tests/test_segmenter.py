"""Tests of nimbus.segmenter: exact blending, borders, nodata, TTA, fp16, products, atomic outputs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from onnx_builders import make_model
from rasterio.windows import Window

from nimbus.cli import main
from nimbus.errors import ModelError
from nimbus.segmenter import Segmenter, output_paths
from nimbus.tta import D4

RGBN = ("B02", "B03", "B04", "B08")


def _positive(shape, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 1000 + 10).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "identity": make_model(d / "identity.onnx", kind="normalise", window=32, overlap=0.5),
        "identity16": make_model(d / "identity16.onnx", kind="normalise", dtype="float16", window=32),
        "fixed": make_model(d / "fixed.onnx", kind="normalise", fixed=32),
        "symmetric": make_model(d / "sym.onnx", kind="symmetric", window=32),
        "conv3": make_model(d / "conv3.onnx", kind="conv3", window=32),
        "aux": make_model(d / "aux.onnx", channels=RGBN + ("altitude", "treecover"), kind="softmax", window=48),
    }


@pytest.mark.parametrize("weights", ["spline", "gaussian", "tukey"])
@pytest.mark.parametrize("shape", [(100, 70), (45, 131), (96, 96)])
def test_identity_model_reproduces_input(models, weights, shape) -> None:
    """Blending per-pixel probabilities must give them back to float precision, every pixel written."""
    x = _positive((4, *shape))
    seg = Segmenter(models["identity"], weights=weights, progress=False, threads=1)
    classes, probs = seg.predict(x, probabilities=True)
    np.testing.assert_allclose(probs, x / x.sum(axis=0), rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(classes, np.argmax(x, axis=0).astype(np.uint8))
    assert seg.last_stats["windows_skipped"] == 0


@pytest.mark.parametrize("shape", [(20, 30), (5, 200), (32, 7)])
def test_raster_smaller_than_window(models, shape) -> None:
    x = _positive((4, *shape), seed=1)
    for name in ("identity", "fixed"):
        classes, probs = Segmenter(models[name], progress=False).predict(x, probabilities=True)
        np.testing.assert_allclose(probs, x / x.sum(axis=0), rtol=2e-6)
        assert classes.shape == shape and (classes != 255).all()


def test_nodata_swath_and_skipped_windows(models) -> None:
    x = _positive((4, 96, 160), seed=2)
    valid = np.ones((96, 160), bool)
    yy, xx = np.mgrid[:96, :160]
    valid[xx + yy < 90] = False  # a diagonal swath without data, as at a granule edge
    x[:, ~valid] = 0
    seg = Segmenter(models["identity"], progress=False, overlap=0.5)
    classes, probs = seg.predict(x, probabilities=True)
    assert ((classes == 255) == ~valid).all()  # 255 exactly where there is no data
    np.testing.assert_allclose(probs[:, valid], (x / np.maximum(x.sum(axis=0), 1e-9))[:, valid], rtol=2e-6)
    assert (probs[:, ~valid] == 0).all()
    assert seg.last_stats["windows_skipped"] > 0


def test_all_nodata_runs_no_model(models) -> None:
    seg = Segmenter(models["identity"], progress=False)
    classes = seg.predict(np.zeros((4, 70, 50), np.float32))
    assert (classes == 255).all() and seg.last_stats["windows"] == 0 and seg.last_stats["infer"] == 0


def test_fp16_model_matches_fp32(models) -> None:
    x = _positive((4, 64, 80), seed=3)
    c32, p32 = Segmenter(models["identity"], progress=False).predict(x, probabilities=True)
    c16, p16 = Segmenter(models["identity16"], progress=False).predict(x, probabilities=True)
    np.testing.assert_allclose(p16, p32, atol=2e-3)
    assert (c16 == c32).mean() > 0.99


def test_d4_invariance_symmetric_model(models) -> None:
    """A D4-equivariant model on a D4-symmetric layout gives D4-equivariant probabilities."""
    x = _positive((4, 96, 96), seed=4)  # 96 = 32 + 4 * 16: the window layout is symmetric too
    seg = Segmenter(models["symmetric"], progress=False, weights="gaussian")
    _, p = seg.predict(x, probabilities=True)
    for k in range(1, 8):
        fwd, _ = D4[k]
        _, pk = seg.predict(np.ascontiguousarray(fwd(x)), probabilities=True)
        np.testing.assert_allclose(pk, fwd(p), rtol=1e-4, atol=1e-6)


def test_tta_makes_any_model_d4_invariant(models) -> None:
    x = _positive((4, 96, 96), seed=5)
    plain = Segmenter(models["conv3"], progress=False)
    tta = Segmenter(models["conv3"], progress=False, tta=8)
    _, p0 = plain.predict(x, probabilities=True)
    _, p = tta.predict(x, probabilities=True)
    fwd, _ = D4[5]
    _, p0r = plain.predict(np.ascontiguousarray(fwd(x)), probabilities=True)
    assert np.abs(p0r - fwd(p0)).max() > 1e-4  # the plain model is not D4-equivariant...
    _, pr = tta.predict(np.ascontiguousarray(fwd(x)), probabilities=True)
    np.testing.assert_allclose(pr, fwd(p), rtol=1e-4, atol=1e-6)  # ...with 8-fold TTA it is
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-5)


def test_logits_and_external_normalisation(tmp_path) -> None:
    mean, std = (100.0, 200.0, 300.0, 400.0), (50.0, 60.0, 70.0, 80.0)
    w = np.eye(4, dtype=np.float32)
    path = make_model(tmp_path / "l.onnx", kind="logits", weights=w, window=32, normalization_in_graph=False, mean=mean, std=std)
    x = _positive((4, 40, 50), seed=6)
    _, p = Segmenter(path, progress=False).predict(x, probabilities=True)
    z = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    ref = np.exp(z - z.max(axis=0)) / np.exp(z - z.max(axis=0)).sum(axis=0)
    np.testing.assert_allclose(p, ref, rtol=1e-4, atol=1e-6)


def test_predict_refuses_wrong_channels(models) -> None:
    with pytest.raises(ModelError, match="takes \\(4, H, W\\)"):
        Segmenter(models["identity"], progress=False).predict(np.ones((3, 10, 10), np.float32))
    with pytest.raises(ModelError, match="fixed 32x32"):
        Segmenter(models["fixed"], window=64)


def test_segment_synthetic_product(models, tmp_path) -> None:
    from nimbus.synthetic import make_product

    syn = make_product(tmp_path / "p", size=156, seed=3, nodata_swath=True)
    seg = Segmenter(models["aux"], aux_dir=syn.aux_dir, progress=False, read_rows=40)
    res = seg.segment(syn.path, out=tmp_path / "out", probabilities="uint8", uncertainty=True, quicklook=True)
    assert syn.path.name.split(".")[0] in res.classes.name and "test-softmax-v1" in res.classes.name
    with rasterio.open(res.classes) as d, rasterio.open(syn.truth_path) as t:
        classes = d.read(1)
        assert d.crs == t.crs and d.transform.almost_equals(t.transform) and d.shape == t.shape
        assert d.nodata == 255 and d.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ((classes == 255) == (t.read(1) == 255)).all()  # nodata exactly where the input has none
    assert not (classes == 255).all() and res.windows_skipped >= 0
    # the same pixels through the Python API on an in-memory array give the same map
    from nimbus.inputs import assemble
    from nimbus.product import open_product

    data, valid = assemble(open_product(syn.path), seg.spec.channels, 10, None, syn.aux_dir)
    np.testing.assert_array_equal(seg.predict(data, valid=valid), classes)
    for p in (res.probabilities, res.uncertainty, res.quicklook):
        assert p.exists()
    again = seg.segment(syn.path, out=tmp_path / "out", probabilities="uint8", uncertainty=True, quicklook=True)
    assert again.skipped
    assert not seg.segment(syn.path, out=tmp_path / "out", overwrite=True).skipped
    # a region of the product
    part = seg.segment(syn.path, out=tmp_path / "part", region=Window(30, 60, 100, 50))
    with rasterio.open(part.classes) as d:
        np.testing.assert_array_equal(d.read(1), seg.predict(data[:, 60:110, 30:130], valid=valid[60:110, 30:130]))


def test_missing_channel_refused(tmp_path) -> None:
    from nimbus.synthetic import make_product

    syn = make_product(tmp_path / "p", size=60, seed=4)
    m = make_model(tmp_path / "w.onnx", channels=RGBN + ("water",), kind="softmax")
    with pytest.raises(ModelError, match="needs channel\\(s\\) water"):
        Segmenter(m, aux_dir=syn.aux_dir, progress=False).segment(syn.path, out=tmp_path / "o")
    l2a = make_product(tmp_path / "q", size=60, seed=4, level="L2A")
    m = make_model(tmp_path / "b10.onnx", channels=("B02", "B03", "B04", "B10"), kind="softmax")
    with pytest.raises(ModelError, match="B10"):
        Segmenter(m, progress=False).segment(l2a.path, out=tmp_path / "o")


def test_interrupted_run_leaves_no_file(models, tmp_path) -> None:
    from nimbus.synthetic import make_product

    syn = make_product(tmp_path / "p", size=120, seed=5)
    seg = Segmenter(models["aux"], aux_dir=syn.aux_dir, progress=False, read_rows=24)
    out = tmp_path / "out"

    def stop(done: int, total: int) -> None:
        if done > total // 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seg.segment(syn.path, out=out, probabilities="float16", uncertainty=True, callback=stop)
    assert list(out.iterdir()) == []  # no final file, no temporary left behind
    res = seg.segment(syn.path, out=out, probabilities="float16")
    from nimbus.qgis import pam_path, qml_path

    want = [res.classes.name, res.probabilities.name, qml_path(res.classes).name, pam_path(res.classes).name]
    assert sorted(p.name for p in out.iterdir()) == sorted(want)


def test_real_all_nodata_product(models, realdata, tmp_path) -> None:
    """The real old-format product (every pixel 0) gives an all-255 map (a 10980 x 700 band of it, for speed)."""
    zips = sorted((realdata / "sentinelsat_S2A_L1C_oldformat_T01CEH_20161012_nodata").glob("*.zip"))
    seg = Segmenter(models["identity"], progress=False, window=256)
    res = seg.segment(zips[0], out=tmp_path, region=Window(0, 5000, 10980, 700))
    with rasterio.open(res.classes) as d:
        assert d.shape == (700, 10980) and d.crs.to_epsg() == 32701
        assert (d.read(1) == 255).all()
    assert res.windows == 0 and res.windows_skipped > 0


def test_cli_segment_continues_after_failure(models, tmp_path, capsys) -> None:
    from nimbus.synthetic import make_product

    syn = make_product(tmp_path / "p", size=60, seed=6)
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(tmp_path / "missing.SAFE"), str(syn.path), "--model", str(models["identity"]), "--out", str(tmp_path / "o")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "missing.SAFE" in err and "1 of 2" in err
    assert output_paths(tmp_path / "o", syn.path.name.split(".")[0], Segmenter(models["identity"]).spec)["classes"].exists()
    main(["segment", str(syn.path), "--model", str(models["identity"]), "--out", str(tmp_path / "o")])
    assert "skipped" in capsys.readouterr().out
    main(["segment", str(syn.path), "--model", str(models["identity"]), "--out", str(tmp_path / "o"), "--probabilities",
          "--uncertainty", "--quicklook", "--overwrite", "--tta", "2", "--weights", "tukey", "--provider", "cpu"])
    paths = output_paths(tmp_path / "o", syn.path.name.split(".")[0], Segmenter(models["identity"]).spec)
    assert all(p.exists() for kind, p in paths.items() if kind != "item")
    with rasterio.open(paths["probabilities"]) as d:
        assert d.dtypes[0] == "uint8"  # --probabilities alone means uint8


def test_cuda_strip_blender_in_simulator(models) -> None:
    """The GPU strip accumulator (nimbus.blend_cuda.CudaBlender) gives the CPU result (numba CUDA simulator, subprocess)."""
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import numpy as np
        from nimbus.segmenter import Segmenter
        x = (np.random.default_rng(0).random((4, 40, 30)) * 1000 + 10).astype(np.float32)
        x[:, :10, :20] = 0
        seg = Segmenter({str(models["identity"])!r}, progress=False, window=16, read_rows=8)
        c0, p0, e0 = seg.predict(x, probabilities=True, entropy=True)
        seg._use_cuda = True  # host inference, device blending
        c1, p1, e1 = seg.predict(x, probabilities=True, entropy=True)
        assert (c0 == c1).all() and (c0[:10, :20] == 255).all()
        np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e1, e0, rtol=1e-4, atol=1e-5)
        print("SIM-OK")
        """
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "SIM-OK" in run.stdout


# ----------------------------------------------------------------------------- untrusted inputs


def test_predict_non_finite_values_are_nodata_and_never_reach_neighbours(tmp_path) -> None:
    model = make_model(tmp_path / "m.onnx", kind="conv3", window=64, overlap=0.5)
    seg = Segmenter(model, progress=False)
    x = _positive((4, 150, 170), seed=5)
    clean = seg.predict(x)
    hole = x.copy()
    hole[:, 70, 80] = 0  # the same pixel as ordinary no data
    mask = np.ones((150, 170), bool)
    mask[70, 80] = False
    expected = seg.predict(hole, valid=mask)
    changed = np.argwhere(expected != clean)
    assert (np.abs(changed - [70, 80]) <= 1).all(), "no data reaches at most the 3x3 neighbours of a 3x3 model"
    for bad in (np.inf, -np.inf, np.nan):
        y = x.copy()
        y[2, 70, 80] = bad
        for valid in (None, np.ones((150, 170), bool)):  # even when the caller says the pixel is valid
            got = seg.predict(y, valid=valid)
            assert got[70, 80] == 255
            np.testing.assert_array_equal(got, expected)


def test_predict_refuses_arrays_it_cannot_read(tmp_path) -> None:
    seg = Segmenter(make_model(tmp_path / "m.onnx"), progress=False)
    with pytest.raises(ModelError, match="numeric"):
        seg.predict(np.empty((4, 8, 8), dtype=object))
    with pytest.raises(ModelError, match=r"takes \(4, H, W\)"):
        seg.predict(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ModelError, match="valid mask"):
        seg.predict(np.ones((4, 8, 8), np.float32), valid=np.ones((8, 9), bool))


def test_options_are_blamed_on_the_option_not_the_model(tmp_path) -> None:
    from nimbus.errors import UsageError

    model = make_model(tmp_path / "m.onnx")
    for kwargs, text in [({"overlap": 1.5}, "--overlap 1.5"), ({"window": 3}, "--window 3"), ({"tta": 9}, "--tta 9"),
                         ({"weights": "box"}, "--weights 'box'"), ({"batch": 0}, "--batch 0")]:  # fmt: skip
        with pytest.raises(UsageError, match=text.replace("(", r"\(")) as info:
            Segmenter(model, **kwargs)
        assert "metadata" not in str(info.value)


def test_all_nodata_product_and_uncovering_aux_layer_warn(tmp_path, synthetic_l1c) -> None:
    from rasterio.transform import Affine

    from nimbus.errors import NimbusWarning
    from nimbus.product import open_product

    product = open_product(synthetic_l1c.path)
    aux = tmp_path / "aux"
    aux.mkdir()
    h, w = product.shape(20)
    prof = dict(driver="GTiff", height=h, width=w, count=1, dtype="float32", crs=product.crs, transform=product.transform(20), nodata=np.nan)
    with rasterio.open(aux / f"{product.tile}_altitude_20m.tif", "w", **prof) as ds:
        ds.write(np.full((h, w), np.nan, np.float32), 1)  # covers 0 % of the product
    assert isinstance(product.transform(20), Affine)
    model = make_model(tmp_path / "m.onnx", channels=("B02", "B03", "B04", "altitude"), kind="softmax", resolution=20.0)
    seg = Segmenter(model, aux_dir=aux, progress=False)
    with pytest.warns(NimbusWarning) as record:
        res = seg.segment(product, out=tmp_path / "out")
    texts = [str(r.message) for r in record]
    assert any("altitude" in t and "covers 0.0%" in t for t in texts)
    assert any("no valid pixel" in t for t in texts)
    with rasterio.open(res.classes) as ds:
        assert (ds.read(1) == 255).all()
