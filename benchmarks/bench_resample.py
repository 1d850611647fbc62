"""Band resampling throughput: Nimbus kernels vs OpenCV and GDAL's warper, in the same run.

Headline: bilinear x2 of a 5490 x 5490 uint16 band (a 20 m band of a full tile onto the 10 m grid)
with ``nimbus.resample.upsample`` against ``cv2.resize(INTER_LINEAR)`` (benchmark-only dependency)
and ``rasterio.warp.reproject(Resampling.bilinear)`` (GDAL's warper, same number of threads),
beside the bandwidth floor: filling / copying an array of the output's size (fresh allocation, as
every resampler returns a new array, whose page faults cost about as much as the copy itself), and
the same three into a preallocated output (``out=`` / ``dst=``). Also: nearest and cubic x2, x6 (60 -> 10 m) and x3
(60 -> 20 m), area-average downsampling (10 -> 20/60 m), a band with a nodata swath, and strip-wise
windowed reads. Throughput is megapixels of *output* per second, median of ``--repeat`` runs. The area-average /2
case is also run interleaved with ``cv2.resize(INTER_AREA)`` (3 x ``--repeat`` runs each, min and
median), the figure to quote on a shared machine.

Agreement is printed beside: max |difference| to GDAL for the headline case (bilinear x2 matches
GDAL exactly up to GDAL's floating-point tie-breaking at exact .5, i.e. within 1 DN).

Usage:
    python benchmarks/bench_resample.py                  # full size (5490), writes benchmarks/results/resample.md
    python benchmarks/bench_resample.py --size 1098 --repeat 3 --out /tmp/resample.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up (page cache, thread start, lazy imports)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _band(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A uint16 band with spatial structure (reflectance-like DN 300..9000) and no nodata."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy = np.linspace(0, 12 * np.pi, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 9 * np.pi, w, dtype=np.float32)[None, :]
    smooth = 3000 + 2000 * np.sin(yy) * np.cos(xx)
    noise = rng.integers(0, 2000, (h, w), dtype=np.uint16)
    return (smooth + noise).astype(np.uint16)


def _gdal_up(src: np.ndarray, f: int, method: str, threads: int) -> np.ndarray:
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    h, w = src.shape
    dst = np.zeros((h * f, w * f), src.dtype)
    reproject(
        src,
        dst,
        src_transform=Affine(20.0, 0, 300000.0, 0, -20.0, 5000000.0),
        src_crs="EPSG:32632",
        dst_transform=Affine(20.0 / f, 0, 300000.0, 0, -20.0 / f, 5000000.0),
        dst_crs="EPSG:32632",
        resampling=getattr(Resampling, method),
        src_nodata=0,
        dst_nodata=0,
        num_threads=threads,
    )
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=5490, help="side of the 20 m band (x2 input); 5490 = full tile")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (median reported)")
    parser.add_argument("--gdal-repeat", type=int, default=3, help="timed runs for GDAL's (slow) warper")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every library")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "resample.md"))
    args = parser.parse_args(argv)

    import cv2
    from rasterio.windows import Window

    from nimbus import resample as R
    from nimbus.atomic import atomic_path

    cv2.setNumThreads(args.threads)
    n, rep, T = args.size, args.repeat, args.threads
    n60 = max(3, n // 3)  # a 60 m band of the same tile (1830 for n = 5490)
    n10 = 2 * n  # the 10 m grid (10980 for n = 5490)
    b20 = _band((n, n), 1)
    b60 = _band((n60, n60), 2)
    b10 = _band((n10, n10), 3)
    swath = b20.copy()
    swath[np.add.outer(np.arange(n), np.arange(n)) < n * 0.6] = 0  # a diagonal nodata swath edge (18% nodata)

    rows: list[tuple[str, str, float, int]] = []  # case, implementation, seconds, output pixels

    def case(name: str, impl: str, fn, out_pixels: int, repeat: int = rep) -> float:
        t = _median_time(fn, repeat)
        rows.append((name, impl, t, out_pixels))
        print(f"{name:<44} {impl:<40} {t * 1e3:9.1f} ms {out_pixels / t / 1e6:9.0f} MPix/s", flush=True)
        return t

    x2 = f"bilinear x2 {n}² uint16 -> {n10}²"
    out_px = n10 * n10
    other = np.ones((n10, n10), np.uint16)
    case(x2, "floor: np.full (alloc + write output)", lambda: np.full((n10, n10), 7, np.uint16), out_px)
    case(x2, "floor: memcpy (alloc + copy output)", lambda: other.copy(), out_px)
    t_nimbus = case(x2, "nimbus upsample (nodata=0)", lambda: R.upsample(b20, 2, "bilinear", 0, threads=T), out_px)
    case(x2, "nimbus upsample (nodata=None)", lambda: R.upsample(b20, 2, "bilinear", None, threads=T), out_px)
    t_cv2 = case(x2, "cv2.resize INTER_LINEAR", lambda: cv2.resize(b20, (n10, n10), interpolation=cv2.INTER_LINEAR), out_px)
    pre = np.empty((n10, n10), np.uint16)
    case(x2, "floor: memcpy into preallocated output", lambda: np.copyto(pre, other), out_px)
    case(x2, "nimbus upsample into preallocated out", lambda: R.upsample(b20, 2, "bilinear", 0, threads=T, out=pre), out_px)
    case(x2, "cv2.resize INTER_LINEAR into preallocated dst", lambda: cv2.resize(b20, (n10, n10), dst=pre, interpolation=cv2.INTER_LINEAR), out_px)
    t_gdal = case(x2, f"rasterio.warp.reproject bilinear ({T} thr)", lambda: _gdal_up(b20, 2, "bilinear", T), out_px, args.gdal_repeat)
    case(x2 + ", 18% nodata swath", "nimbus upsample (nodata=0)", lambda: R.upsample(swath, 2, "bilinear", 0, threads=T), out_px)

    strip = 1024
    def strips() -> None:
        for r in range(0, n10, strip):
            win = Window(0, r, n10, min(strip, n10 - r))
            R.read_resampled(lambda w: b20[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width], (n, n), 2, win, "bilinear", 0, T)
    case(x2 + f", {strip}-row strips", "nimbus read_resampled", strips, out_px)

    ours = R.upsample(b20, 2, "bilinear", 0, threads=T)
    ref = _gdal_up(b20, 2, "bilinear", T)
    diff_gdal = int(np.abs(ours.astype(np.int32) - ref).max())
    diff_cv2 = int(np.abs(ours.astype(np.int32) - cv2.resize(b20, (n10, n10), interpolation=cv2.INTER_LINEAR)).max())
    del ours, ref

    case(f"nearest x2 {n}² -> {n10}²", "nimbus upsample", lambda: R.upsample(b20, 2, "nearest", 0, threads=T), out_px)
    case(f"nearest x2 {n}² -> {n10}²", "cv2.resize INTER_NEAREST", lambda: cv2.resize(b20, (n10, n10), interpolation=cv2.INTER_NEAREST), out_px)
    case(f"cubic x2 {n}² -> {n10}²", "nimbus upsample", lambda: R.upsample(b20, 2, "cubic", 0, threads=T), out_px)
    case(f"cubic x2 {n}² -> {n10}²", "cv2.resize INTER_CUBIC (a=-0.75)", lambda: cv2.resize(b20, (n10, n10), interpolation=cv2.INTER_CUBIC), out_px)
    m6 = n60 * 6
    case(f"bilinear x6 {n60}² -> {m6}²", "nimbus upsample", lambda: R.upsample(b60, 6, "bilinear", 0, threads=T), m6 * m6)
    case(f"bilinear x6 {n60}² -> {m6}²", "cv2.resize INTER_LINEAR", lambda: cv2.resize(b60, (m6, m6), interpolation=cv2.INTER_LINEAR), m6 * m6)
    case(f"nearest x6 {n60}² -> {m6}²", "nimbus upsample", lambda: R.upsample(b60, 6, "nearest", 0, threads=T), m6 * m6)
    case(f"cubic x6 {n60}² -> {m6}²", "nimbus upsample", lambda: R.upsample(b60, 6, "cubic", 0, threads=T), m6 * m6)
    m3 = n60 * 3
    case(f"bilinear x3 {n60}² -> {m3}²", "nimbus upsample", lambda: R.upsample(b60, 3, "bilinear", 0, threads=T), m3 * m3)
    case(f"bilinear x3 {n60}² -> {m3}²", "cv2.resize INTER_LINEAR", lambda: cv2.resize(b60, (m3, m3), interpolation=cv2.INTER_LINEAR), m3 * m3)
    for f in (2, 6):
        m = n10 // f
        name = f"average /{f} {n10}² -> {m}²"
        case(name, "nimbus downsample_mean (nodata=0)", lambda f=f: R.downsample_mean(b10, f, 0, threads=T), m * m)
        case(name, "nimbus downsample_mean (nodata=None)", lambda f=f: R.downsample_mean(b10, f, None, threads=T), m * m)
        case(name, "cv2.resize INTER_AREA", lambda m=m: cv2.resize(b10, (m, m), interpolation=cv2.INTER_AREA), m * m)

    # the /2 area average against cv2, interleaved (nimbus, cv2, nimbus, ...): a shared machine's
    # noisy phases hit both; min and median of each, and the ratio of the medians
    m2 = n10 // 2
    pairs = {"nimbus downsample_mean (nodata=0)": lambda: R.downsample_mean(b10, 2, 0, threads=T),
             "nimbus downsample_mean (nodata=None)": lambda: R.downsample_mean(b10, 2, None, threads=T),
             "cv2.resize INTER_AREA": lambda: cv2.resize(b10, (m2, m2), interpolation=cv2.INTER_AREA)}
    inter: dict[str, list[float]] = {k: [] for k in pairs}
    for fn in pairs.values():
        fn()
    for _ in range(max(rep, 3) * 3):
        for name, fn in pairs.items():
            t = time.perf_counter()
            fn()
            inter[name].append(time.perf_counter() - t)
    ref = np.asarray(cv2.resize(b10, (m2, m2), interpolation=cv2.INTER_AREA), np.int32)
    diff_area = int(np.abs(R.downsample_mean(b10, 2, None, threads=T).astype(np.int32) - ref).max())
    med_cv2 = statistics.median(inter["cv2.resize INTER_AREA"])
    inter_lines = [
        "",
        f"Area average /2 ({n10}² -> {m2}² uint16), interleaved, {len(inter['cv2.resize INTER_AREA'])} runs each "
        f"(max |nimbus - cv2| = {diff_area} DN):",
        "",
        "| implementation | min ms | median ms | vs cv2 (median) |",
        "|---|---:|---:|---:|",
    ]
    for name, ts in inter.items():
        med = statistics.median(ts)
        inter_lines.append(f"| {name} | {min(ts) * 1e3:.1f} | {med * 1e3:.1f} | {med_cv2 / med:.2f}x |")
        print(f"interleaved average /2: {name:<40} min {min(ts) * 1e3:7.1f} ms  median {med * 1e3:7.1f} ms  {med_cv2 / med:.2f}x cv2", flush=True)

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Band resampling",
        "",
        f"`python benchmarks/bench_resample.py --size {n} --repeat {rep} --threads {T}` on {os.cpu_count()} cores ({cpu}),"
        f" load average {load:.1f} at the end; median of {rep} runs ({args.gdal_repeat} for GDAL), MPix/s of output.",
        "",
        f"Headline (bilinear x2, {n}² uint16): nimbus {out_px / t_nimbus / 1e6:.0f} MPix/s = "
        f"{t_cv2 / t_nimbus:.2f}x cv2.resize and {t_gdal / t_nimbus:.1f}x GDAL's warper. "
        f"Max |nimbus - GDAL| = {diff_gdal} DN (any difference is GDAL's floating-point tie-breaking at exact .5), "
        f"max |nimbus - cv2| = {diff_cv2} DN.",
        "",
        "| case | implementation | ms | MPix/s |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {c} | {impl} | {t * 1e3:.1f} | {px / t / 1e6:.0f} |" for c, impl, t, px in rows]
    lines += inter_lines
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
