"""Tests of nimbus.resample: agreement with GDAL's warper, window exactness, nodata rules, errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from nimbus import resample as R
from nimbus.errors import NimbusError, ResampleError

CRS = "EPSG:32632"
L2A = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"


def gdal_resample(src: np.ndarray, src_transform: Affine, dst_shape: tuple[int, int], dst_transform: Affine, method: str, nodata):
    """rasterio.warp.reproject of a 2-D array onto another grid of the same CRS."""
    dst = np.full(dst_shape, 0 if nodata is None else nodata, dtype=src.dtype)
    reproject(
        src,
        dst,
        src_transform=src_transform,
        src_crs=CRS,
        dst_transform=dst_transform,
        dst_crs=CRS,
        resampling=getattr(Resampling, method),
        src_nodata=nodata,
        dst_nodata=nodata,
    )
    return dst


def gdal_up(src: np.ndarray, f: int, method: str, nodata):
    st = Affine(60.0, 0, 300000.0, 0, -60.0, 5000000.0)
    dt = Affine(60.0 / f, 0, 300000.0, 0, -60.0 / f, 5000000.0)
    h, w = src.shape
    return gdal_resample(src, st, (h * f, w * f), dt, method, nodata)


def gdal_ties(src: np.ndarray, f: int, nodata) -> np.ndarray:
    """Destination pixels where GDAL's cubic picks cubic or bilinear by floating-point noise.

    For odd factors the centre of destination pixel f*i + f//2 falls exactly on source centre i, and
    GDAL's computed position lands on either side of it: its 4x4 neighbourhood is then i-1..i+2 or
    i-2..i+1. Where the band edge or a nodata pixel lies in i-2..i+2, the choice between cubic and its
    bilinear fallback depends on that noise (on the grid's coordinates), so these pixels are not compared.
    """
    h, w = src.shape
    mask = np.zeros((h * f, w * f), bool)
    if f % 2 == 0:
        return mask
    invalid = np.ones((h + 6, w + 6), bool)  # out of bounds counts as invalid
    invalid[3:-3, 3:-3] = (src == nodata) if nodata is not None else False
    j = np.arange(max(h, w) * f)
    num = 2 * j + 1 - f
    i0, r = num // (2 * f), num % (2 * f)
    for y in range(h * f):
        for x in range(w * f):
            if r[y] != 0 and r[x] != 0:
                continue
            y0, x0 = i0[y] - (2 if r[y] == 0 else 1), i0[x] - (2 if r[x] == 0 else 1)
            mask[y, x] = invalid[y0 + 3 : i0[y] + 6, x0 + 3 : i0[x] + 6].any()
    return mask


def synthetic(shape, dtype, nodata, seed=0):
    """Smooth-ish random band with a nodata blob, a nodata row and a nodata column."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = 3000 + 2000 * np.sin(yy / 3.0) * np.cos(xx / 4.0) + rng.integers(0, 3000, shape)
    a = base.astype(dtype)
    if dtype == np.float32:
        a = (a / 10000.0).astype(np.float32)
    if nodata is not None:
        a[4:8, 6:11] = nodata
        a[h - 5, :] = nodata
        a[:, w // 2] = nodata
        a[0, 0] = nodata
    return a


def crop(a: np.ndarray, win: Window) -> np.ndarray:
    r, c, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
    return a[..., r : r + h, c : c + w]


# --------------------------------------------------------------------------------------------
# Agreement with GDAL


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("factor", [2, 3, 6])
@pytest.mark.parametrize("method", ["nearest", "bilinear", "cubic"])
@pytest.mark.parametrize("nodata", [None, 0])
def test_upsample_matches_gdal(dtype, factor, method, nodata):
    src = synthetic((23, 19), dtype, nodata, seed=factor)
    ours = R.upsample(src, factor, method, nodata)
    ref = gdal_up(src, factor, method, nodata)
    assert ours.shape == ref.shape == (23 * factor, 19 * factor)
    assert ours.dtype == dtype
    if nodata is not None:
        np.testing.assert_array_equal(ours == nodata, ref == nodata)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    if method == "cubic":
        diff[gdal_ties(src, factor, nodata)] = 0
    if dtype == np.uint16:
        assert diff.max() <= 1
        if method == "nearest" or (method == "bilinear" and factor in (2, 3)):
            assert diff.max() == 0  # exact integer arithmetic == GDAL's rounded double
    else:
        assert diff.max() <= 1e-6 * np.abs(ref).max() * 10


def test_real_l2a_b05_bilinear_x2_matches_gdal(realdata):
    folder = realdata / L2A
    with rasterio.open(folder / "B05.tif") as s, rasterio.open(folder / "B04.tif") as d:
        src, st, dst_shape, dt = s.read(1), s.transform, d.shape, d.transform
    assert dst_shape == (src.shape[0] * 2, src.shape[1] * 2)
    ref = gdal_resample(src, st, dst_shape, dt, "nearest", 0)
    assert np.array_equal(R.upsample(src, 2, "nearest", 0), ref)
    ref = gdal_resample(src, st, dst_shape, dt, "bilinear", 0)
    ours = R.upsample(src, 2, "bilinear", 0)
    assert np.abs(ours.astype(int) - ref).max() <= 1
    # we round exact halves up; GDAL's weights on this grid carry floating-point noise, so its ties
    # go either way: every difference is at an exact .5 (x2 weights are dyadic: float32 is exact here)
    exact = R.upsample(src.astype(np.float32), 2, "bilinear", 0).astype(np.float64)
    tie = (exact * 2) % 2 == 1
    assert not (ours != ref)[~tie].any()
    assert np.array_equal(ours, np.floor(exact + 0.5))
    ref = gdal_resample(src, st, dst_shape, dt, "cubic", 0)
    assert np.abs(R.upsample(src, 2, "cubic", 0).astype(int) - ref).max() <= 1


def test_real_l2a_b01_x6_and_x3_match_gdal(realdata):
    folder = realdata / L2A
    with rasterio.open(folder / "B01.tif") as s, rasterio.open(folder / "B04.tif") as d10, rasterio.open(folder / "B05.tif") as d20:
        src, st = s.read(1), s.transform
        grids = {6: (d10.shape, d10.transform), 3: (d20.shape, d20.transform)}
    for f, (shape, transform) in grids.items():
        for method in ("bilinear", "cubic", "nearest"):
            ref = gdal_resample(src, st, shape, transform, method, 0)
            ours = R.upsample(src, f, method, 0)
            diff = np.abs(ours.astype(int) - ref)
            if method == "cubic":
                diff[gdal_ties(src, f, 0)] = 0
            assert diff.max() <= 1, (f, method)


def test_real_l2a_with_nodata_holes_matches_gdal(realdata):
    with rasterio.open(realdata / L2A / "B8A.tif") as s:
        src = s.read(1, window=Window(100, 200, 60, 50))
    src[10:20, 5:30] = 0
    src[:, 40] = 0
    for method in ("bilinear", "cubic"):
        ref = gdal_up(src, 2, method, 0)
        ours = R.upsample(src, 2, method, 0)
        np.testing.assert_array_equal(ours == 0, ref == 0)
        assert np.abs(ours.astype(int) - ref).max() <= (0 if method == "bilinear" else 1)


def test_real_l2a_downsample_matches_gdal_average(realdata):
    with rasterio.open(realdata / L2A / "B04.tif") as s, rasterio.open(realdata / L2A / "B05.tif") as d:
        src, st, shape, dt = s.read(1), s.transform, d.shape, d.transform
    ref = gdal_resample(src, st, shape, dt, "average", 0)
    ours = R.downsample_mean(src, 2, 0)
    assert ours.shape == ref.shape
    assert np.abs(ours.astype(int) - ref).max() <= 1


# --------------------------------------------------------------------------------------------
# Windows: strips and odd windows equal the whole-band result exactly


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("factor", [2, 3, 6])
@pytest.mark.parametrize("method", ["nearest", "bilinear", "cubic"])
def test_windows_equal_whole_band(dtype, factor, method):
    src = np.stack([synthetic((31, 26), dtype, 0, seed=1), synthetic((31, 26), dtype, None, seed=2)])
    whole = R.upsample(src, factor, method, 0)
    H, W = whole.shape[1:]
    reads: list[Window] = []

    def read_src(win: Window) -> np.ndarray:
        reads.append(win)
        assert win.row_off >= 0 and win.col_off >= 0
        assert win.row_off + win.height <= src.shape[1] and win.col_off + win.width <= src.shape[2]
        return crop(src, win)

    halo = {"nearest": 0, "bilinear": 1, "cubic": 2}[method]
    windows = [Window(0, r, W, min(7, H - r)) for r in range(0, H, 7)]  # strips of 7 rows
    windows += [Window(5, 3, 11, 13), Window(W - 4, H - 9, 4, 9), Window(1, 17, W - 1, 1), Window(W - 1, H - 1, 1, 1)]
    windows += [Window(c, r, 5, 3) for r in range(0, H - 3, 5) for c in range(0, W - 5, 7)]
    for win in windows:
        reads.clear()
        part = R.read_resampled(read_src, src.shape[1:], factor, win, method, 0)
        assert np.array_equal(part, crop(whole, win), equal_nan=True), win
        (sw,) = reads
        # only the needed source pixels plus the halo are read
        assert sw.height <= int(win.height) // factor + 2 + 2 * halo
        assert sw.width <= int(win.width) // factor + 2 + 2 * halo


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("factor", [2, 3, 6])
def test_downsample_windows_equal_whole_band(dtype, factor):
    src = synthetic((37, 44), dtype, 0, seed=3)
    whole = R.downsample_mean(src, factor, 0)
    H, W = whole.shape
    for win in [Window(0, 0, W, H), Window(1, 1, W - 2, H - 1), Window(W - 1, H - 1, 1, 1)]:
        sw = R.source_window(src.shape, 1 / factor, win)
        assert (sw.col_off, sw.row_off, sw.width, sw.height) == (win.col_off * factor, win.row_off * factor, win.width * factor, win.height * factor)
        part = R.read_resampled(lambda w: crop(src, w), src.shape, 1 / factor, win, "average", 0)
        assert np.array_equal(part, crop(whole, win))


def test_threads_and_channels_are_consistent():
    src = np.stack([synthetic((40, 33), np.uint16, 0, seed=s) for s in range(3)])
    for method in ("bilinear", "cubic", "nearest"):
        stacked = R.upsample(src, 2, method, 0, threads=2)
        single = np.stack([R.upsample(b, 2, method, 0, threads=1) for b in src])
        assert np.array_equal(stacked, single)


def test_portable_path_equals_avx2_path():
    from nimbus import _kernels

    src = np.stack([synthetic((45, 38), np.uint16, 0, seed=4), synthetic((45, 38), np.uint16, None, seed=5)])
    fast = R.upsample(src, 2, "bilinear", 0)
    before = _kernels._use_avx2(False)
    try:
        portable = R.upsample(src, 2, "bilinear", 0)
        part = R.read_resampled(lambda w: crop(src, w), src.shape[1:], 2, Window(3, 5, 41, 17), "bilinear", 0)
    finally:
        _kernels._use_avx2(before)
    assert np.array_equal(fast, portable)
    assert np.array_equal(part, crop(fast, Window(3, 5, 41, 17)))


# --------------------------------------------------------------------------------------------
# Nodata rules


@pytest.mark.parametrize("dtype,nodata", [(np.uint16, 0), (np.uint16, 65535), (np.float32, 0.0), (np.float32, np.nan)])
@pytest.mark.parametrize("factor", [2, 3, 6])
@pytest.mark.parametrize("method", ["nearest", "bilinear", "cubic"])
def test_nodata_never_bleeds(dtype, nodata, factor, method):
    rng = np.random.default_rng(factor)
    src = np.full((20, 24), 1234, dtype=dtype)
    invalid = rng.random(src.shape) < 0.25
    invalid[5:9, 3:15] = True
    src[invalid] = nodata
    out = R.upsample(src, factor, method, nodata)
    out_invalid = np.isnan(out) if np.isnan(nodata) else out == nodata
    # nodata exactly where the nearest source pixel is nodata ...
    np.testing.assert_array_equal(out_invalid, np.kron(invalid, np.ones((factor, factor), bool)))
    # ... and every valid pixel is computed from valid inputs only: a constant stays constant
    assert np.allclose(out[~out_invalid], 1234, rtol=0, atol=1e-3)


def test_valid_result_never_equals_nodata():
    # cubic undershoots to 0 next to a bright edge; 0 is nodata, so the valid pixel becomes 1
    src = np.ones((12, 12), np.uint16)
    src[:, 6:] = 30000
    out = R.upsample(src, 2, "cubic", 0)
    assert (out > 0).all()
    assert (R.upsample(src, 2, "cubic", None) == 0).any()  # without nodata the clamp to 0 stays


def test_downsample_mean_nodata_rules():
    src = np.array([[1, 2, 0, 0, 7, 8], [3, 0, 0, 0, 9, 10]], dtype=np.uint16)
    np.testing.assert_array_equal(R.downsample_mean(src, 2, 0), [[2, 0, 9]])  # (1+2+3)/3, all nodata, 8.5 -> 9
    np.testing.assert_array_equal(R.downsample_mean(src, 2, None), [[2, 0, 9]])  # (1+2+3+0)/4 = 1.5 -> 2
    f = src.astype(np.float32)
    f[f == 0] = np.nan
    out = R.downsample_mean(f, 2, np.nan)
    np.testing.assert_allclose(out[0, [0, 2]], [2.0, 8.5])
    assert np.isnan(out[0, 1])
    rng = np.random.default_rng(0)
    big = rng.integers(0, 5, (3, 36, 42)).astype(np.uint16)
    for f in (2, 3, 6):
        blocks = big[:, : 36 // f * f, : 42 // f * f].reshape(3, 36 // f, f, 42 // f, f).astype(np.float64)
        valid = blocks != 0
        n = valid.sum(axis=(2, 4))
        mean = np.where(n > 0, (blocks * valid).sum(axis=(2, 4)) / np.maximum(n, 1), 0)
        expected = np.floor(mean + 0.5).astype(np.uint16)
        np.testing.assert_array_equal(R.downsample_mean(big, f, 0), expected)


def test_downsample_valid_mean_never_equals_nodata():
    src = np.array([[100, 102, 7, 7], [100, 98, 7, 7]], dtype=np.uint16)
    np.testing.assert_array_equal(R.downsample_mean(src, 2, 100), [[101, 7]])  # (102 + 98 + 100) / 3 = 100 -> 101
    np.testing.assert_array_equal(R.downsample_mean(src, 2, 7), [[100, 7]])  # block of nodata stays nodata
    src = np.array([[99, 101], [100, 100]], dtype=np.uint16)
    np.testing.assert_array_equal(R.downsample_mean(src, 2, 5), [[100]])
    np.testing.assert_array_equal(R.downsample_mean(src, 2, 100), [[101]])  # 99 and 101 average to nodata


def test_downsample_nearest_and_other_dtypes():
    scl = np.arange(36, dtype=np.uint8).reshape(6, 6)
    np.testing.assert_array_equal(R.downsample(scl, 3, "nearest"), scl[1::3, 1::3])
    np.testing.assert_array_equal(R.upsample(scl, 2, "nearest"), np.kron(scl, np.ones((2, 2), np.uint8)))
    part = R.read_resampled(lambda w: crop(scl, w), scl.shape, 3, Window(4, 5, 7, 6), "nearest", 0)
    np.testing.assert_array_equal(part, np.kron(scl, np.ones((3, 3), np.uint8))[5:11, 4:11])


def test_out_buffers():
    src = np.stack([synthetic((21, 17), np.uint16, 0, seed=s) for s in range(2)])
    stack = np.zeros((3, 42, 34), np.uint16)
    res = R.upsample(src[0], 2, "bilinear", 0, out=stack[1])
    assert res is stack[1] or np.shares_memory(res, stack)
    assert np.array_equal(stack[1], R.upsample(src[0], 2, "bilinear", 0))
    assert not stack[0].any() and not stack[2].any()
    win = Window(3, 4, 20, 11)
    part = np.empty((2, 11, 20), np.uint16)
    R.read_resampled(lambda w: crop(src, w), src.shape[1:], 2, win, "cubic", 0, out=part)
    assert np.array_equal(part, crop(R.upsample(src, 2, "cubic", 0), win))
    down = np.empty((5, 4), np.uint16)
    R.read_resampled(lambda w: crop(src[0], w), src.shape[1:], 0.25, Window(0, 0, 4, 5), "average", 0, out=down)
    assert np.array_equal(down, R.downsample_mean(src[0], 4, 0))
    with pytest.raises(ResampleError, match="out must be a uint16 array of shape"):
        R.upsample(src[0], 2, out=np.empty((42, 34), np.float32))
    with pytest.raises(ResampleError, match="C-contiguous"):
        R.upsample(src[0], 2, out=np.empty((42, 68), np.uint16)[:, ::2])


# --------------------------------------------------------------------------------------------
# Errors


def test_errors_are_clear():
    a = np.zeros((4, 4), np.uint16)
    with pytest.raises(ResampleError, match="positive integer"):
        R.upsample(a, 2.5)
    with pytest.raises(ResampleError, match="positive integer"):
        R.upsample(a, 0)
    with pytest.raises(ResampleError, match="positive integer"):
        R.upsample(a, True)
    with pytest.raises(ResampleError, match="dimensions"):
        R.upsample(np.zeros(4, np.uint16), 2)
    with pytest.raises(ResampleError, match="dimensions"):
        R.downsample_mean(np.zeros((1, 1, 4, 4), np.uint16), 2)
    with pytest.raises(ResampleError, match="int32 is not supported"):
        R.upsample(a.astype(np.int32), 2, "bilinear")
    with pytest.raises(ResampleError, match="unknown method"):
        R.upsample(a, 2, "lanczos")
    with pytest.raises(ResampleError, match="not a uint16 value"):
        R.upsample(a, 2, nodata=-1)
    with pytest.raises(ResampleError, match="neither an integer nor 1/integer"):
        R.read_resampled(lambda w: a, a.shape, 0.4, Window(0, 0, 1, 1))
    with pytest.raises(ResampleError, match="outside the destination grid"):
        R.read_resampled(lambda w: crop(a, w), a.shape, 2, Window(0, 0, 9, 1))
    with pytest.raises(ResampleError, match="read_src returned shape"):
        R.read_resampled(lambda w: a, a.shape, 2, Window(0, 0, 2, 2))
    assert issubclass(ResampleError, NimbusError) and issubclass(ResampleError, ValueError)


@pytest.mark.parametrize("factor", [2, 3, 6, 1 / 2, 1 / 3, 1 / 6])
@pytest.mark.parametrize("method", ["nearest", "bilinear", "cubic"])
def test_destination_window_inverts_source_window(factor, method):
    shape = (40, 37)
    dh, dw = R.destination_shape(shape, factor)
    for sw in [Window(0, 0, 37, 40), Window(0, 10, 37, 12), Window(5, 0, 13, 40), Window(3, 7, 9, 11)]:
        dwin = R.destination_window(shape, factor, sw, method)
        if dwin is None:
            continue
        back = R.source_window(shape, factor, dwin, method)
        assert back.row_off >= sw.row_off and back.col_off >= sw.col_off
        assert back.row_off + back.height <= sw.row_off + sw.height and back.col_off + back.width <= sw.col_off + sw.width
        # maximal: one more destination row or column would need pixels outside the source window
        r0, c0, h, w = int(dwin.row_off), int(dwin.col_off), int(dwin.height), int(dwin.width)
        for grown in [Window(c0, r0, w, h + 1), Window(c0, r0, w + 1, h), Window(c0 - 1, r0, w + 1, h), Window(c0, r0 - 1, w, h + 1)]:
            if grown.row_off < 0 or grown.col_off < 0 or grown.row_off + grown.height > dh or grown.col_off + grown.width > dw:
                continue
            g = R.source_window(shape, factor, grown, method)
            assert not (g.row_off >= sw.row_off and g.col_off >= sw.col_off and g.row_off + g.height <= sw.row_off + sw.height and g.col_off + g.width <= sw.col_off + sw.width)
    assert R.destination_window(shape, 2, Window(0, 0, 37, 40)) == Window(0, 0, 74, 80)


def test_parse_factor_and_shapes():
    assert R.parse_factor(2) == ("up", 2)
    assert R.parse_factor(60 / 10) == ("up", 6)
    assert R.parse_factor(10 / 20) == ("down", 2)
    assert R.parse_factor(10 / 60) == ("down", 6)
    assert R.parse_factor(1) == ("same", 1)
    assert R.destination_shape((1830, 1830), 6) == (10980, 10980)
    assert R.destination_shape((10980, 10980), 1 / 6) == (1830, 1830)
    assert R.source_window((100, 100), 2, Window(10, 20, 30, 40)) == Window(4, 9, 17, 22)


@pytest.mark.parametrize("nodata", [0, 7, None])
def test_downsample_half_avx2_matches_portable_and_numpy(nodata):
    """The AVX2 /2 area mean (16 outputs a step, nodata test in the same pass) == the portable path ==
    the numpy definition, on widths with tails and rows with and without nodata."""
    from nimbus import _kernels

    rng = np.random.default_rng(11)
    src = rng.integers(1, 65535, (2, 38, 2 * 37 + 1), dtype=np.uint16)  # odd width: the last column is dropped
    src[0, 5, 40] = 0  # nodata (0) in one row pair, at an odd position
    src[1, 20, 3] = 7  # nodata (7) in another
    src[1, 30:32, :] = 0  # a whole row pair of zeros
    got = R.downsample_mean(src, 2, nodata, threads=2)
    before = _kernels._use_avx2(False)
    try:
        portable = R.downsample_mean(src, 2, nodata, threads=2)
    finally:
        _kernels._use_avx2(before)
    np.testing.assert_array_equal(got, portable)
    blocks = src[:, :, :74].reshape(2, 19, 2, 37, 2).astype(np.int64)
    valid = np.ones_like(blocks, bool) if nodata is None else blocks != nodata
    n = valid.sum(axis=(2, 4))
    s = np.where(valid, blocks, 0).sum(axis=(2, 4))
    ref = np.where(n > 0, (2 * s + n) // (2 * np.maximum(n, 1)), 0 if nodata is None else nodata)
    ok = n > 0
    same = ok if nodata is None else ok & (ref != nodata)  # a mean equal to nodata is moved to the next value
    np.testing.assert_array_equal(got[same], ref[same])
    if nodata is not None:
        assert (got[~ok] == nodata).all()
