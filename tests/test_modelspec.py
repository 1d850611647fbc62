"""Tests of nimbus.modelspec: metadata round trip, QGIS Deepness keys, refusals."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx_builders import make_model

from nimbus.cli import main
from nimbus.errors import ModelError
from nimbus.modelspec import DEFAULT_CLASSES, FORMAT_VERSION, ClassInfo, ModelSpec

CHANNELS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12", "altitude", "treecover")


def _spec(**kw: object) -> ModelSpec:
    n = len(CHANNELS)
    fields = dict(channels=CHANNELS, mean=tuple(float(i) for i in range(n)), std=tuple(1.0 + i for i in range(n)), window=384,
                  overlap=0.25, resolution=20.0, name="unet-r34", version="2.1")
    fields.update(kw)
    return ModelSpec(**fields)


def test_default_classes_match_the_issue() -> None:
    assert [(c.value, c.name, c.color) for c in DEFAULT_CLASSES] == [
        (0, "cloud", (255, 0, 0)),
        (1, "ground", (112, 153, 89)),
        (2, "snow", (115, 191, 250)),
        (3, "water", (242, 238, 162)),
    ]


def test_metadata_round_trip_all_values_json() -> None:
    spec = _spec(normalization_in_graph=False, softmax_in_graph=False, classes=(ClassInfo(0, "a", (1, 2, 3)), ClassInfo(7, "b", (4, 5, 6))))
    meta = spec.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    for v in meta.values():
        json.loads(v)  # every value is JSON text
    back = ModelSpec.from_metadata(meta)
    assert back == spec
    assert back.class_values == (0, 7) and back.format_version == FORMAT_VERSION
    assert back.bands == CHANNELS[:13] and back.aux_layers == ("altitude", "treecover")


def test_deepness_keys() -> None:
    meta = _spec().to_metadata()
    assert json.loads(meta["model_type"]) == "Segmentor"
    assert json.loads(meta["class_names"]) == {"0": "cloud", "1": "ground", "2": "snow", "3": "water"}
    assert json.loads(meta["resolution"]) == pytest.approx(2000.0)  # cm
    assert json.loads(meta["tile_size"]) == json.loads(meta["tiles_size"]) == 384
    assert json.loads(meta["tiles_overlap"]) == 25  # percent
    # normalisation baked into the graph: Deepness's x/255 then (x - 0) / (1/255) cancels out
    assert json.loads(meta["standardization_mean"]) == [0.0] * 15
    assert json.loads(meta["standardization_std"]) == pytest.approx([1 / 255] * 15)
    meta = _spec(normalization_in_graph=False).to_metadata()
    mean, std = json.loads(meta["standardization_mean"]), json.loads(meta["standardization_std"])
    x = 1234.0  # Deepness computes (x/255 - m) / s, which must equal the training (x - mean) / std
    assert (x / 255 - mean[3]) / std[3] == pytest.approx((x - 3.0) / 4.0)


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(mean=(0.0,)), "means"),
        (dict(std=(0.0,) * 15), "std"),
        (dict(overlap=1.0), "overlap"),
        (dict(window=0), "window"),
        (dict(classes=(ClassInfo(255, "x", (0, 0, 0)),)), "class values"),
        (dict(channels=CHANNELS[:14] + ("B01",)), "twice"),
    ],
)
def test_invalid_specs_refused(change: dict, words: str) -> None:
    with pytest.raises(ModelError, match=words):
        _spec(**change)


def test_missing_and_malformed_metadata_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="no Nimbus metadata"):
        ModelSpec.from_metadata({}, source="x.onnx")
    deep = {k: v for k, v in _spec().to_metadata().items() if not k.startswith("nimbus.")}
    with pytest.raises(ModelError, match="Deepness"):
        ModelSpec.from_metadata(deep)
    meta = _spec().to_metadata()
    meta["nimbus.mean"] = "[1, 2,"
    with pytest.raises(ModelError, match="nimbus.mean.*not valid JSON"):
        ModelSpec.from_metadata(meta)
    meta = _spec().to_metadata()
    meta["nimbus.format_version"] = str(FORMAT_VERSION + 1)
    with pytest.raises(ModelError, match="upgrade"):
        ModelSpec.from_metadata(meta)
    bare = make_model(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(ModelError, match=r"bare\.onnx.*no Nimbus metadata"):
        ModelSpec.from_onnx(bare)
    with pytest.raises(ModelError, match="does not exist"):
        ModelSpec.from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot be loaded"):
        ModelSpec.from_onnx(tmp_path / "junk.onnx")


def test_from_onnx_reads_graph(tmp_path) -> None:
    path = make_model(tmp_path / "m.onnx", channels=("B02", "B03", "B04", "B08"), dtype="float16", fixed=48, name="tiny")
    spec = ModelSpec.from_onnx(path)
    assert spec.channels == ("B02", "B03", "B04", "B08")
    assert spec.input_dtype == "float16" and not spec.dynamic_hw and spec.window == 48
    assert spec.input_name == "input" and spec.output_name == "probabilities"
    assert spec.file_tag == "tiny-v1"
    dyn = ModelSpec.from_onnx(make_model(tmp_path / "d.onnx"))
    assert dyn.dynamic_hw and dyn.input_dtype == "float32"


def test_graph_metadata_mismatch_refused(tmp_path) -> None:
    path = make_model(tmp_path / "m.onnx", channels=("B02", "B03", "B04", "B08"))
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    meta["nimbus.channels"] = json.dumps(["B02", "B03", "B04"])
    meta["nimbus.mean"] = meta["nimbus.std"] = json.dumps([1.0, 1.0, 1.0])
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="takes 4 channels but the metadata names 3"):
        ModelSpec.from_onnx(tmp_path / "bad.onnx")


def test_describe_and_cli_info(tmp_path, capsys) -> None:
    text = _spec().describe()
    for word in ("unet-r34", "2.1", "20 m", "384", "cloud", "water", "treecover", "B8A", "rgb(255, 0, 0)"):
        assert word in text
    path = make_model(tmp_path / "m.onnx", channels=("B02", "B03", "B04", "B08"), name="clitest")
    main(["info", str(path)])
    out = capsys.readouterr().out
    assert "clitest" in out and "B08" in out and "snow" in out
