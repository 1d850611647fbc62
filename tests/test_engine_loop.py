"""The streaming loop alone: a numpy reader, a per-pixel model, the host blender and a sink."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nimbus.blend import HostBlender
from nimbus.engine.loop import Tiling, stream


def _softmax_of_inputs(tiles: np.ndarray) -> np.ndarray:
    """A per-pixel 'model': the softmax of the input channels (3 channels -> 3 classes)."""
    e = np.exp(tiles - tiles.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _run(x: np.ndarray, valid: np.ndarray, tiling: Tiling, sink_rows: list | None = None) -> np.ndarray:
    c, h, w = x.shape
    out = np.full((h, w), 77, np.uint8)

    def reader(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        return x[:, r0:r1].copy(), valid[r0:r1].copy()

    def sink(r0: int, cls: np.ndarray, p, e) -> None:
        out[r0 : r0 + cls.shape[0]] = cls
        if sink_rows is not None:
            sink_rows.append((r0, cls.shape[0]))

    blender = HostBlender(3, w, (0, 1, 2), 1, tiling.size)
    stats = stream(h, w, c, reader, _softmax_of_inputs, blender, sink, tiling, progress=False)
    assert stats["windows"] > 0
    return out


@pytest.mark.parametrize(("h", "w", "size", "overlap", "read_rows"), [(100, 90, 32, 0.5, None), (100, 90, 32, 0.25, 7), (20, 15, 32, 0.5, None), (64, 64, 64, 0.0, 64)])
def test_per_pixel_model_gives_the_per_pixel_argmax(h: int, w: int, size: int, overlap: float, read_rows: int | None) -> None:
    rng = np.random.default_rng(h * w)
    x = rng.normal(size=(3, h, w)).astype(np.float32)
    valid = rng.random((h, w)) > 0.1
    rows: list = []
    got = _run(x, valid, Tiling(size, overlap, "spline", batch=3, read_rows=read_rows), rows)
    want = np.where(valid, x.argmax(axis=0), 255).astype(np.uint8)
    assert np.array_equal(got, want)
    assert sum(n for _, n in rows) == h and [r for r, _ in rows] == sorted(r for r, _ in rows)  # every row once, in order


def test_reader_error_reaches_the_caller_and_threads_end() -> None:
    before = threading.active_count()

    def reader(r0: int, r1: int):
        if r0 > 30:
            raise OSError("band B04: read failed")
        return np.zeros((3, r1 - r0, 40), np.float32), np.ones((r1 - r0, 40), bool)

    with pytest.raises(OSError, match="B04"):
        stream(100, 40, 3, reader, _softmax_of_inputs, HostBlender(3, 40, (0, 1, 2), 1, 32), lambda *a: None, Tiling(32, 0.5), progress=False)
    assert threading.active_count() == before


def test_sink_error_stops_the_loop() -> None:
    def sink(r0: int, *_):
        if r0 > 0:
            raise OSError("disk full")

    def reader(r0: int, r1: int):
        return np.ones((3, r1 - r0, 40), np.float32), np.ones((r1 - r0, 40), bool)

    with pytest.raises(OSError, match="disk full"):
        stream(200, 40, 3, reader, _softmax_of_inputs, HostBlender(3, 40, (0, 1, 2), 1, 32), sink, Tiling(32, 0.5), progress=False)


def test_reader_of_the_wrong_shape_is_a_model_error() -> None:
    from nimbus.errors import ModelError

    def reader(r0: int, r1: int):
        return np.ones((2, r1 - r0, 40), np.float32), np.ones((r1 - r0, 40), bool)

    with pytest.raises(ModelError, match="expected"):
        stream(64, 40, 3, reader, _softmax_of_inputs, HostBlender(3, 40, (0, 1, 2), 1, 32), lambda *a: None, Tiling(32, 0.5), progress=False)
