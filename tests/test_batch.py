"""Batch isolation: any exception of one item is one line; the others go on; the summary tells."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from nimbus.batch import BatchFailedError, run_batch
from nimbus.errors import ProductError, explain, root_cause


def _ort_fail(tmp_path: Path) -> None:
    """A real onnxruntime error: a graph fed the wrong channel count."""
    import onnxruntime as ort

    from onnx_builders import make_model

    m = make_model(tmp_path / "m.onnx", kind="softmax")
    sess = ort.InferenceSession(str(m), providers=["CPUExecutionProvider"])
    sess.run(None, {"input": np.zeros((1, 7, 8, 8), np.float32)})


def _gdal_chain(tmp_path: Path) -> None:
    """A real rasterio error whose message only points at 'previous exception'."""
    import rasterio

    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    with rasterio.open(bad) as ds:
        ds.read(1)


def _value_error(tmp_path: Path) -> None:
    np.zeros(3).reshape(2, 2)


def _nimbus_chain(tmp_path: Path) -> None:
    try:
        int("x")
    except ValueError as exc:
        raise ProductError("product P: band B04 cannot be read") from exc


@pytest.mark.parametrize("fail", [_ort_fail, _gdal_chain, _value_error, _nimbus_chain])
def test_middle_item_fails_the_others_go_on(tmp_path: Path, fail) -> None:
    done: list[str] = []

    def work(item: str) -> tuple[str, str]:
        if item == "b":
            fail(tmp_path)
        done.append(item)
        return "done", f"{item}: ok"

    log = io.StringIO()
    report = run_batch(["a", "b", "c"], work, log=log)
    assert done == ["a", "c"]
    assert [r.status for r in report.results] == ["done", "failed", "done"]
    errors = [line for line in log.getvalue().splitlines() if line.startswith("nimbus: error:")]
    assert len(errors) == 1 and errors[0].startswith("nimbus: error: b: ")
    err = report.results[1].error
    assert err is not None and explain(err) in errors[0]
    root = root_cause(err)
    assert " ".join(str(root).split()) in errors[0], "the root cause is in the line"
    assert report.lines() == "a: ok\nc: ok"
    with pytest.raises(BatchFailedError, match=r"1 of 3 product\(s\) failed \(2 done, 0 skipped\): b"):
        report.raise_if_failed()


def test_debug_prints_the_root_traceback(tmp_path: Path) -> None:
    def work(item: str) -> tuple[str, str]:
        _nimbus_chain(tmp_path)
        return "done", ""

    log = io.StringIO()
    run_batch(["p"], work, debug=True, log=log)
    text = log.getvalue()
    assert "int(\"x\")" in text and "ValueError: invalid literal" in text, "the traceback reaches the root cause"
    assert "_nimbus_chain" in text


def test_keyboard_interrupt_stops_the_batch() -> None:
    def work(item: str) -> tuple[str, str]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(["a", "b"], work, log=io.StringIO())


def test_all_good_summary() -> None:
    report = run_batch(["a", "b"], lambda i: ("skipped" if i == "a" else "done", i), log=io.StringIO())
    report.raise_if_failed()
    assert report.summary() == "2 product(s): 1 done, 1 skipped"
