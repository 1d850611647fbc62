"""The built-in default model and `nimbus demo`: files ship, the demo runs and is accurate."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import rasterio

from nimbus.demo import run_demo, score_map
from nimbus.errors import ModelError
from nimbus.modelspec import ModelSpec
from nimbus.models import DEFAULT_MODEL_ENV, default_model_card, default_model_path


def test_default_model_ships_with_its_card() -> None:
    path = default_model_path()
    assert path.name == "nimbus-default.onnx" and path.is_file()
    assert path.stat().st_size < 20e6
    spec = ModelSpec.from_onnx(path)
    assert spec.channels[:13] == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    assert spec.channels[13:] == ("altitude", "treecover")
    assert spec.class_names == ("cloud", "ground", "snow", "water")
    assert spec.normalization_in_graph and spec.softmax_in_graph and spec.dynamic_hw
    assert onnx.load(str(path)).ir_version <= 9  # onnxruntime >= 1.17 loads it
    card = default_model_card().read_text()
    for needle in ("synthetic", "## Limits", "nimbus train", "nimbus export", "Held-out"):
        assert needle in card


def test_default_model_path_override_and_missing(monkeypatch, tmp_path) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(b"x")
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(other))
    assert default_model_path() == other
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelError, match="missing.onnx"):
        default_model_path()


def test_default_model_lookup_never_imports_torch() -> None:
    code = (
        "import sys; from nimbus.models import default_model_path; import nimbus.demo; "
        "p = default_model_path(); assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'nimbus.export' not in sys.modules; print(p)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("nimbus-default.onnx")


def test_score_map_counts_at_the_truth_resolution() -> None:
    pred = np.array([[0, 1], [2, 255]], np.uint8)  # a 2x2 map over a 4x4 truth
    truth = np.array(
        [[0, 0, 1, 1], [0, 3, 1, 1], [2, 2, 1, 1], [2, 2, 1, 255]],
        np.uint8,
    )
    acc, ious, cm = score_map(pred, truth, (0, 1, 2, 3))
    assert cm.sum() == 12  # the 255 map pixel hides four truth pixels
    assert acc == pytest.approx(11 / 12)
    assert ious[0] == pytest.approx(3 / 4) and ious[1] == pytest.approx(1.0) and ious[2] == pytest.approx(1.0)
    assert ious[3] == pytest.approx(0.0)
    with pytest.raises(Exception, match="nested"):
        score_map(pred, truth[:3, :3], (0, 1, 2, 3))


def test_demo_segments_a_synthetic_product_accurately(tmp_path) -> None:
    """The demo writes the COG map and the quicklook, and the default model agrees with the truth."""
    from nimbus.cli import NimbusCLI

    report = NimbusCLI().demo(out=str(tmp_path), size=360, threads=2)
    assert "accuracy" in report and "quicklook" in report
    maps = sorted(tmp_path.glob("*_nimbus-default-v*_classes.tif"))
    pngs = sorted(tmp_path.glob("*_quicklook.png"))
    assert len(maps) == 1 and len(pngs) == 1 and pngs[0].stat().st_size > 1000
    with rasterio.open(maps[0]) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.res == (20.0, 20.0)
        assert src.crs is not None
    result = run_demo(tmp_path, size=360, threads=2, overwrite=False)  # outputs exist: scored again, not redone
    assert result.accuracy > 0.85, result.report()
    assert result.miou > 0.6, result.report()
    assert result.confusion is not None and result.confusion.sum() > 0.9 * 360 * 360
