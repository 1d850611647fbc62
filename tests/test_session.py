"""Tests of nimbus.session: providers, CPU fallback warning, fp16 graphs, input checks."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
from onnx_builders import make_model

from nimbus import session as session_mod
from nimbus.errors import ModelError
from nimbus.session import Session, resolve_providers


@pytest.fixture()
def batch() -> np.ndarray:
    return np.random.default_rng(0).random((3, 4, 16, 24)).astype(np.float32) * 1000 + 1


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_run_fp32_and_fp16(tmp_path, batch, dtype) -> None:
    s = Session(make_model(tmp_path / "m.onnx", dtype=dtype), provider="cpu", threads=1)
    out = s.run(batch)
    assert out.shape == (3, 4, 16, 24) and out.dtype == np.float32
    ref = batch / batch.sum(axis=1, keepdims=True)
    tol = 2e-3 if dtype == "float16" else 1e-6
    np.testing.assert_allclose(out, ref, atol=tol)
    assert s.spec.input_dtype == dtype and not s.on_gpu and s.providers == ["CPUExecutionProvider"]


def test_cuda_request_falls_back_with_one_warning(tmp_path, batch, monkeypatch) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime here has CUDA; the fallback is for CPU-only installs")
    monkeypatch.setattr(session_mod, "_WARNED", set())
    path = make_model(tmp_path / "m.onnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s1 = Session(path, provider="cuda")
        s2 = Session(path, provider="tensorrt")
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "running on the CPU" in msgs[0] and "CUDAExecutionProvider" in msgs[0]
    assert s1.providers == s2.providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(s1.run(batch), s2.run(batch))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns: CPU is a normal choice there
        Session(path, provider="auto")


def test_resolve_providers() -> None:
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    assert resolve_providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(ModelError, match="unknown provider"):
        resolve_providers("metal")


def test_input_checks(tmp_path, batch) -> None:
    s = Session(make_model(tmp_path / "m.onnx", fixed=16), provider="cpu")
    with pytest.raises(ModelError, match=r"takes \(N, 4, H, W\)"):
        s.run(batch[:, :3])
    with pytest.raises(ModelError, match="fixed 16x16"):
        s.run(batch)
    assert s.run(batch[:, :, :, :16]).shape == (3, 4, 16, 16)
    with pytest.raises(ModelError, match="needs the CUDA provider"):
        s.run_device(batch[:, :, :, :16])


def test_refuses_bad_files(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Session(tmp_path / "none.onnx")
    with pytest.raises(ModelError, match="no Nimbus metadata"):
        Session(make_model(tmp_path / "bare.onnx", metadata=False))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_io_binding_sequence_on_cpu(tmp_path, batch, dtype) -> None:
    """The IO-binding path used on CUDA (bound input reused in place, bound output), run on the CPU device."""
    s = Session(make_model(tmp_path / "m.onnx", dtype=dtype), provider="cpu")
    for b in (batch, batch[:2], batch[:2] * 3):  # new shape -> new input; same shape -> refilled in place
        out = s._run_bound(b, "cpu")
        assert out.data_type() == ("tensor(float16)" if dtype == "float16" else "tensor(float)")
        np.testing.assert_allclose(out.numpy().astype(np.float32), s.run(b), rtol=1e-6)
    view = session_mod._DeviceView(out.data_ptr(), tuple(out.shape()), "<f2")
    assert view.__cuda_array_interface__["shape"] == (2, 4, 16, 24) and view.__cuda_array_interface__["data"][0] == out.data_ptr()


def test_dynamic_channel_graph_that_disagrees_with_its_metadata_is_refused_at_load(tmp_path) -> None:
    """A graph whose channel dimension is symbolic fails only when run: the session probes it at once."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nimbus.modelspec import ModelSpec

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "C", "H", "W"])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4, "H", "W"])
    w = numpy_helper.from_array(np.zeros((4, 3, 1, 1), np.float32), "w")  # the graph really takes 3 channels
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["z"]), helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)],
                              "g", [x], [y], [w])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    spec = ModelSpec(channels=("B02", "B03", "B04", "B08"), mean=(0.0,) * 4, std=(1.0,) * 4)  # metadata names 4
    for k, v in spec.to_metadata().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match="does not accept the 4 channels"):
        Session(path, provider="cpu")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_run_into_a_reused_output_buffer(tmp_path, batch, dtype) -> None:
    """run(out=...) writes into the caller's buffer (CPU IO binding for float32 graphs) and equals run()."""
    s = Session(make_model(tmp_path / "m.onnx", dtype=dtype), provider="cpu", threads=1)
    buf = np.full((3, 4, 16, 24), -1.0, np.float32)
    for b in (batch, batch * 2, batch[::-1].copy()):
        got = s.run(b, out=buf)
        assert got is buf
        np.testing.assert_allclose(buf, s.run(b), rtol=1e-6)
    part = np.empty((2, 4, 16, 24), np.float32)
    np.testing.assert_allclose(s.run(batch[:2], out=part), s.run(batch[:2]), rtol=1e-6)
    with pytest.raises(ModelError):
        s.run(batch, out=np.empty((3, 4, 16, 24), np.float64))
    if dtype == "float32":
        with pytest.raises(ModelError, match="does not fit"):
            s.run(batch, out=np.empty((3, 4, 8, 24), np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_large_batches_run_in_parts_with_the_same_result(tmp_path, batch, dtype) -> None:
    """max_run_pixels bounds the pixels of one onnxruntime run; the output is the same, in one array."""
    whole = Session(make_model(tmp_path / "m.onnx", dtype=dtype), provider="cpu", threads=1, max_run_pixels=None)
    parts = Session(tmp_path / "m.onnx", provider="cpu", threads=1, max_run_pixels=16 * 24)  # one window per run
    ref = whole.run(batch)
    np.testing.assert_array_equal(parts.run(batch), ref)
    buf = np.empty_like(ref)
    assert parts.run(batch, out=buf) is buf
    np.testing.assert_array_equal(buf, ref)
