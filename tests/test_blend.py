"""Tests of nimbus.blend: the C++ kernels against numpy, and the numba.cuda kernels in the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nimbus import blend
from nimbus.windows import WindowLayout, window_weights


def _random_case(h: int = 70, w: int = 53, k: int = 4, size: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    lay = WindowLayout(h, w, size, 0.5)
    wins = list(lay)
    probs = rng.random((len(wins), k, lay.win_h, lay.win_w)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    return lay, wins, probs


@pytest.mark.parametrize("kind", ["spline", "gaussian", "tukey"])
@pytest.mark.parametrize("threads", [1, 0, 3])
def test_accumulate_and_finalize_match_numpy(kind, threads) -> None:
    lay, wins, probs = _random_case()
    wts = window_weights((lay.win_h, lay.win_w), kind)
    rows, cols = [y for y, _ in wins], [x for _, x in wins]
    acc = np.zeros((4, lay.height, lay.width), np.float32)
    wsum = np.zeros((lay.height, lay.width), np.float32)
    racc, rwsum = acc.copy(), wsum.copy()
    blend.accumulate(acc, wsum, probs, wts, rows, cols, threads=threads)
    blend.accumulate_reference(racc, rwsum, probs, wts, rows, cols)
    np.testing.assert_allclose(acc, racc, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(wsum, rwsum, rtol=1e-6)
    valid = np.ones((lay.height, lay.width), bool)
    valid[10:20, 5:9] = False
    rcls, rprobs, rent = blend.finalize_reference(racc, rwsum, valid, [0, 1, 2, 3])
    ent = np.empty_like(wsum)
    cls = blend.finalize(acc, wsum, valid, [0, 1, 2, 3], entropy=ent, threads=threads)
    np.testing.assert_array_equal(cls, rcls)
    np.testing.assert_allclose(acc, rprobs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ent, rent, rtol=1e-5, atol=1e-6)
    assert (cls[10:20, 5:9] == 255).all() and (cls[valid] != 255).all()
    np.testing.assert_allclose(acc[:, valid].sum(axis=0), 1.0, rtol=1e-5)


def test_constant_probabilities_blend_to_themselves() -> None:
    lay, wins, _ = _random_case(h=50, w=80)
    p = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    probs = np.broadcast_to(p[None, :, None, None], (len(wins), 4, lay.win_h, lay.win_w)).copy()
    acc = np.zeros((4, 50, 80), np.float32)
    wsum = np.zeros((50, 80), np.float32)
    blend.accumulate(acc, wsum, probs, window_weights(lay.win_h, "gaussian"), [y for y, _ in wins], [x for _, x in wins])
    cls = blend.finalize(acc, wsum, np.ones((50, 80), bool), [5, 6, 7, 9])
    np.testing.assert_allclose(acc, np.broadcast_to(p[:, None, None], acc.shape), rtol=1e-6)
    assert (cls == 9).all()


def test_unweighted_pixels_are_nodata() -> None:
    acc = np.zeros((2, 4, 4), np.float32)
    wsum = np.zeros((4, 4), np.float32)
    acc[0, :2], wsum[:2] = 1.0, 1.0
    cls = blend.finalize(acc, wsum, np.ones((4, 4), bool), [3, 4])
    assert (cls[:2] == 3).all() and (cls[2:] == 255).all()


def test_kernel_checks_shapes() -> None:
    acc = np.zeros((2, 10, 10), np.float32)
    wsum = np.zeros((10, 10), np.float32)
    probs = np.ones((1, 2, 4, 4), np.float32)
    wts = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        blend.accumulate(acc, wsum, probs, wts, [8], [0])
    with pytest.raises(ValueError, match="classes"):
        blend.accumulate(acc, wsum, np.ones((1, 3, 4, 4), np.float32), wts, [0], [0])
    with pytest.raises(TypeError):  # in-place accumulators must already be float32
        blend.accumulate(acc.astype(np.float64), wsum, probs, wts, [0], [0])


def test_cuda_kernels_in_simulator() -> None:
    """The numba.cuda kernels equal the numpy reference (CUDA simulator, in a subprocess)."""
    code = textwrap.dedent(
        """
        import numpy as np
        from numba import cuda
        from nimbus import blend
        rng = np.random.default_rng(3)
        H, W, K, h, w = 20, 23, 3, 8, 8
        rows, cols = np.array([0, 4, 12, 12], np.int64), np.array([0, 6, 15, 3], np.int64)
        probs = rng.random((4, K, h, w)).astype(np.float16)
        wts = rng.random((h, w)).astype(np.float32) + 0.1
        racc = np.zeros((K, H, W), np.float32); rws = np.zeros((H, W), np.float32)
        blend.accumulate_reference(racc, rws, probs, wts, rows, cols)
        acc = cuda.to_device(np.zeros((K, H, W), np.float32)); ws = cuda.to_device(np.zeros((H, W), np.float32))
        blend.cuda_accumulate(acc, ws, cuda.to_device(probs), cuda.to_device(wts), cuda.to_device(rows), cuda.to_device(cols))
        np.testing.assert_allclose(acc.copy_to_host(), racc, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ws.copy_to_host(), rws, rtol=1e-5)
        valid = np.ones((H, W), np.uint8); valid[:, 0] = 0
        rcls, rp, rent = blend.finalize_reference(racc, rws, valid, [0, 2, 5])
        cls = cuda.device_array((H, W), np.uint8); ent = cuda.device_array((H, W), np.float32)
        blend.cuda_finalize(acc, ws, cuda.to_device(valid), cuda.to_device(np.array([0, 2, 5], np.uint8)), cls, ent)
        np.testing.assert_array_equal(cls.copy_to_host(), rcls)
        np.testing.assert_allclose(acc.copy_to_host(), rp, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ent.copy_to_host(), rent, rtol=1e-4, atol=1e-5)
        assert (rcls == 255).sum() > W  # unweighted pixels and the invalid column
        print("SIM-OK")
        """
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "SIM-OK" in run.stdout


def test_finalize_a_band_of_rows() -> None:
    """Finalising rows [row0, row0 + n) of a taller buffer equals the reference on those rows only."""
    lay, wins, probs = _random_case(h=40, w=30, size=16)
    wts = window_weights(16, "spline")
    acc = np.zeros((4, 40, 30), np.float32)
    wsum = np.zeros((40, 30), np.float32)
    blend.accumulate(acc, wsum, probs, wts, [y for y, _ in wins], [x for _, x in wins])
    before = acc.copy()
    valid = np.ones((10, 30), bool)
    valid[3] = False
    rcls, rprobs, rent = blend.finalize_reference(acc[:, 12:22], wsum[12:22], valid, [0, 1, 2, 3])
    ent = np.empty((10, 30), np.float32)
    cls = blend.finalize(acc, wsum, valid, [0, 1, 2, 3], entropy=ent, row0=12)
    np.testing.assert_array_equal(cls, rcls)
    np.testing.assert_allclose(acc[:, 12:22], rprobs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ent, rent, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(acc[:, :12], before[:, :12])  # other rows untouched
    np.testing.assert_array_equal(acc[:, 22:], before[:, 22:])
    with pytest.raises(ValueError, match="inside the accumulator"):
        blend.finalize(acc, wsum, valid, [0, 1, 2, 3], row0=35)


@pytest.mark.parametrize("threads", [1, 0, 3])
def test_ring_accumulate_matches_flat(threads) -> None:
    """wrap=True: raster row r lands on ring row r % H, the same sums as a flat accumulator."""
    rng = np.random.default_rng(3)
    k, h, w, W, cap = 3, 8, 10, 30, 11
    probs = rng.random((4, k, h, w)).astype(np.float32)
    wts = window_weights((h, w), "spline")
    rows, cols = [17, 17, 20, 19], [0, 9, 20, 5]  # raster rows 17..28 wrap around a ring of 11 rows
    flat, fws = np.zeros((k, 40, W), np.float32), np.zeros((40, W), np.float32)
    blend.accumulate_reference(flat, fws, probs, wts, rows, cols)
    ring, rws = np.zeros((k, cap, W), np.float32), np.zeros((cap, W), np.float32)
    blend.accumulate(ring, rws, probs, wts, rows, cols, threads=threads, wrap=True)
    for r in range(17, 28):
        np.testing.assert_allclose(ring[:, r % cap], flat[:, r], rtol=1e-6)
        np.testing.assert_allclose(rws[r % cap], fws[r], rtol=1e-6)
    with pytest.raises(ValueError, match="taller"):
        blend.accumulate(np.zeros((k, 5, W), np.float32), np.zeros((5, W), np.float32), probs, wts, rows, cols, wrap=True)


@pytest.mark.parametrize("threads", [1, 0])
def test_finalize_rows_matches_numpy_and_frees_rows(threads) -> None:
    rng = np.random.default_rng(4)
    k, cap, W = 4, 9, 13
    acc = rng.random((k, cap, W)).astype(np.float32)
    wsum = rng.random((cap, W)).astype(np.float32) + 0.1
    wsum[2, 3] = 0.0  # no window: nodata
    valid = rng.random((5, W)) > 0.2
    row0 = 25  # raster rows 25..29 = ring rows 7, 8, 0, 1, 2
    ring = [(row0 + i) % cap for i in range(5)]
    rcls, rprobs, rent = blend.finalize_reference(acc[:, ring].copy(), wsum[ring].copy(), valid, [0, 1, 2, 7])
    keep = [r for r in range(cap) if r not in ring]
    acc_keep, ws_keep = acc[:, keep].copy(), wsum[keep].copy()
    ent = np.empty((5, W), np.float32)
    probs = np.empty((k, 5, W), np.float32)
    acc[:, ring[1], 4] = np.nan  # a model's 0/0 on a pixel without data must not leak out
    valid[1, 4] = False
    rcls[1, 4], rprobs[:, 1, 4], rent[1, 4] = 255, 0, 0
    cls = blend.finalize_rows(acc, wsum, valid, [0, 1, 2, 7], row0, entropy=ent, probs_out=probs, threads=threads)
    np.testing.assert_array_equal(cls, rcls)
    np.testing.assert_allclose(probs, rprobs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ent, rent, rtol=1e-5, atol=1e-6)
    assert not acc[:, ring].any() and not wsum[ring].any()  # freed for later windows
    np.testing.assert_array_equal(acc[:, keep], acc_keep)  # other rows untouched
    np.testing.assert_array_equal(wsum[keep], ws_keep)


@pytest.mark.parametrize("per_row", [True, False])
def test_host_blender_streams_like_the_whole_raster(per_row) -> None:
    """Window rows added (whole row or window by window) and taken strip by strip == one flat blend."""
    lay, wins, probs = _random_case(h=75, w=53, size=24)
    wts = window_weights((lay.win_h, lay.win_w), "spline")
    acc, wsum = np.zeros((4, 75, 53), np.float32), np.zeros((75, 53), np.float32)
    blend.accumulate_reference(acc, wsum, probs, wts, [y for y, _ in wins], [x for _, x in wins])
    valid = np.random.default_rng(5).random((75, 53)) > 0.1
    rcls, rprobs, rent = blend.finalize_reference(acc, wsum, valid, [0, 1, 2, 3])
    hb = blend.HostBlender(4, 53, (0, 1, 2, 3), threads=2, capacity=lay.win_h)
    ys = lay.row_starts
    got_cls, got_p, got_e = np.zeros((75, 53), np.uint8), np.zeros((4, 75, 53), np.float32), np.zeros((75, 53), np.float32)
    for i, y in enumerate(ys):
        hb.extend(y + lay.win_h)
        idx = [j for j, (wy, _) in enumerate(wins) if wy == y]
        groups = [idx] if per_row else [[j] for j in idx]
        for g in groups:
            hb.add(probs[g], [y] * len(g), [wins[j][1] for j in g], wts)
        end = ys[i + 1] if i + 1 < len(ys) else y + lay.win_h
        r0 = hb.start
        c, p, e = hb.take(end, valid[r0:end], True, True)
        got_cls[r0:end], got_p[:, r0:end], got_e[r0:end] = c, p, e
    np.testing.assert_array_equal(got_cls, rcls)
    np.testing.assert_allclose(got_p, rprobs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_e, rent, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="outside the open rows"):
        hb.add(probs[:1], [0], [0], wts)
