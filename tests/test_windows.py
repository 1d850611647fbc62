"""Tests of nimbus.windows: layout covering, edge alignment, weights, skipping empty windows."""

from __future__ import annotations

import numpy as np
import pytest

from nimbus.windows import MIN_WEIGHT, WEIGHT_KINDS, WindowLayout, window_starts, window_weights


def test_window_starts_last_aligned_to_edge() -> None:
    assert window_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert window_starts(96, 32, 16) == [0, 16, 32, 48, 64]
    assert window_starts(20, 32, 16) == [0]
    assert window_starts(32, 32, 16) == [0]
    assert window_starts(33, 32, 32) == [0, 1]


@pytest.mark.parametrize("shape", [(100, 37), (37, 100), (5, 3), (256, 256), (257, 129), (1, 300)])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_layout_covers_every_pixel_inside_raster(shape, overlap) -> None:
    lay = WindowLayout(*shape, size=32, overlap=overlap)
    cov = lay.coverage()
    assert cov.min() >= 1
    for y, x in lay:
        assert 0 <= y and y + lay.win_h <= shape[0] and 0 <= x and x + lay.win_w <= shape[1]
    assert lay.row_starts[-1] + lay.win_h == shape[0] and lay.col_starts[-1] + lay.win_w == shape[1]
    for kind in WEIGHT_KINDS:
        assert lay.weight_sum(kind).min() > 0  # no pixel with zero total weight, borders included


@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_weights_shape_and_range(kind) -> None:
    w = window_weights((64, 48), kind)
    assert w.shape == (64, 48) and w.dtype == np.float32
    assert w.max() == pytest.approx(1.0) and w.min() >= MIN_WEIGHT * 0.999
    np.testing.assert_allclose(w, w[::-1], rtol=1e-6)
    np.testing.assert_allclose(w, w[:, ::-1], rtol=1e-6)
    assert w[32, 24] > w[2, 24] and w[32, 24] > w[32, 2]
    assert not w.flags.writeable


def test_spline_matches_original_project() -> None:
    """The squared spline of Smoothly-Blend-Image-Patches (_spline_window with power 2)."""
    from scipy.signal.windows import triang

    def spline_window(window_size: int, power: int = 2) -> np.ndarray:
        intersection = int(window_size / 4)
        wind_outer = (abs(2 * (triang(window_size))) ** power) / 2
        wind_outer[intersection:-intersection] = 0
        wind_inner = 1 - (abs(2 * (triang(window_size) - 1)) ** power) / 2
        wind_inner[:intersection] = 0
        wind_inner[-intersection:] = 0
        wind = wind_inner + wind_outer
        return wind / np.average(wind)

    for n in (64, 65, 256):
        ref = np.outer(spline_window(n), spline_window(n))
        ref = np.maximum(ref / ref.max(), MIN_WEIGHT)
        np.testing.assert_allclose(window_weights(n, "spline"), ref, rtol=1e-5)


def test_gaussian_and_tukey_profiles() -> None:
    g = window_weights(65, "gaussian")[32]
    sigma = 65 * 0.125
    np.testing.assert_allclose(g[32 + 8], np.exp(-64 / (2 * sigma**2)), rtol=1e-5)
    t = window_weights(101, "tukey")[50]
    assert np.all(t[30:71] == 1.0)  # flat middle half
    assert t[0] == pytest.approx(MIN_WEIGHT)


def test_unknown_weights_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="unknown window weights"):
        window_weights(32, "hann")
    with pytest.raises(ValueError):
        window_weights(0)
    with pytest.raises(ValueError):
        WindowLayout(10, 10, 32, overlap=1.0)


def test_windows_skip_all_nodata() -> None:
    lay = WindowLayout(64, 96, 32, 0.5)
    valid = np.zeros((64, 96), bool)
    assert lay.windows(valid) == []
    valid[40, 90] = True  # one valid pixel: every window holding it is kept, no other
    kept = lay.windows(valid)
    assert kept and all(y <= 40 < y + 32 and x <= 90 < x + 32 for y, x in kept)
    assert len(lay.windows(None)) == len(lay) == 3 * 5


@pytest.mark.parametrize("threads", [1, 0, 3])
def test_cut_windows_matches_numpy_slices(threads) -> None:
    from nimbus.windows import cut_windows

    rng = np.random.default_rng(0)
    chunk_a = rng.random((3, 7, 40)).astype(np.float32)  # raster rows 0..6
    chunk_b = rng.random((3, 9, 40)).astype(np.float32)  # raster rows 7..15
    whole = np.concatenate([chunk_a, chunk_b], axis=1)
    cols = [0, 6, 24]
    out = np.full((4, 3, 10, 16), -1.0, np.float32)
    # windows at raster row 3 (rows 3..12) span both chunks: one call per chunk
    cut_windows(chunk_a, out, cols, src_row0=3, dst_row0=0, rows=4, threads=threads)
    cut_windows(chunk_b, out, cols, src_row0=0, dst_row0=4, threads=threads)
    for n, x in enumerate(cols):
        np.testing.assert_array_equal(out[n], whole[:, 3:13, x : x + 16])
    assert (out[3] == -1).all()  # windows beyond cols are left alone
    with pytest.raises(ValueError, match="does not fit"):
        cut_windows(chunk_a, out, [30], rows=2)
    with pytest.raises(ValueError, match="source rows"):
        cut_windows(chunk_a, out, [0], src_row0=5, rows=4)
    with pytest.raises(ValueError, match="channels"):
        cut_windows(chunk_a[:2], out, [0], rows=2)
