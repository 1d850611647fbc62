"""Whole-scene cloud masking: Nimbus vs ukis-csmask and s2cloudless, same scene, same threads.

Scene: the real L1C of tile 19UDP (2017-07-29) from ``../shared/realdata``
(``rio-tiler-pds_S2_L1C_19UDP_20170729_900m/preview/``: all 13 bands, real JPEG2000, 687² at
about 160 m), resampled bilinearly (OpenCV) onto an ``N x N`` grid standing for 20 m pixels
(``--sizes 1830 3660``: a 36.6 km and a 73.2 km square). The pixel values are real top-of-atmosphere
DN; the resolution is not (the content is smoother than a true 20 m scene), which changes no
tool's speed: every tool does the same work per pixel whatever the pixels hold. The stacked scene
(uint16 ``(13, N, N)``) is written once to ``--workdir`` (never into the repository).

Tools, each in its **own process** (imports and model loading timed apart from the masking), with
the same thread count (``--threads``; ``OMP_NUM_THREADS`` etc. set too), at their default settings:

* ``nimbus-rules``    ``Segmenter(export/nimbus-rules.onnx).predict``: what ``nimbus segment`` uses
  without ``--model`` (per-pixel spectral rules, 8 bands as harmonised DN);
* ``nimbus-default``  ``Segmenter(export/nimbus-default.onnx).predict``: the shipped SegNet (15
  channels; the two auxiliary layers, altitude and tree cover, are 0 here: speed only);
* ``ukis-csmask``     ``CSmask(img, ["blue", "green", "red", "nir", "swir16", "swir22"], "l1c")``: its
  6-band L1C U-Net (EfficientNet-B4) on 256² tiles with 20 % overlap and smooth blending, reflectance
  in; ``pip install ukis-csmask`` (benchmark-only dependency; it ships its ONNX files);
* ``s2cloudless``     ``S2PixelCloudDetector(threshold=0.4, average_over=2, dilation_size=1)
  .get_cloud_masks`` on its ten bands (LightGBM per pixel, then averaging and dilation; the
  settings scaled to 20 m as in ``bench_realdata.py``).

Each repeat runs every tool once, one after another (interleaved: tool A, B, C, D, A, B, ...), so a
slow phase of a shared machine hits all of them. Printed per tool: masking seconds (min / median),
Mpix/s (from the median), process wall (imports + model load + masking), peak RSS of the process,
and the share of the scene called cloud (a plausibility check: the tools' cloud definitions differ).

Usage:
    python benchmarks/bench_competitors.py                          # 1830 and 3660, 3 repeats, 2 threads
    python benchmarks/bench_competitors.py --sizes 1830 --repeat 5 --tools nimbus-rules ukis-csmask
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENE_DIR = ROOT.parent / "shared" / "realdata" / "rio-tiler-pds_S2_L1C_19UDP_20170729_900m" / "preview"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
TOOLS = ("nimbus-rules", "nimbus-default", "ukis-csmask", "s2cloudless")
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
CSMASK_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def make_scene(workdir: Path, size: int) -> Path:
    """Write (once) the ``(13, size, size)`` uint16 scene resampled from the real 19UDP bands."""
    import cv2
    import rasterio

    path = workdir / f"scene_19UDP_{size}.npy"
    if path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    out = np.empty((len(BANDS), size, size), np.uint16)
    for i, band in enumerate(BANDS):
        with rasterio.open(SCENE_DIR / f"{band}.jp2") as src:
            data = src.read(1).astype(np.float32)
        out[i] = np.clip(np.rint(cv2.resize(data, (size, size), interpolation=cv2.INTER_LINEAR)), 0, 65535)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return path


def _nimbus(model: str, scene: np.ndarray, threads: int) -> tuple[float, float, float]:
    from nimbus.segmenter import Segmenter

    t = time.perf_counter()
    seg = Segmenter(ROOT / model, provider="cpu", threads=threads, progress=False)
    chans = seg.spec.channels
    load = time.perf_counter() - t
    t = time.perf_counter()
    idx = {b: i for i, b in enumerate(BANDS)}
    x = np.zeros((len(chans), scene.shape[1], scene.shape[2]), np.float32)
    for j, ch in enumerate(chans):
        if ch in idx:
            x[j] = scene[idx[ch]]
    classes = seg.predict(x)
    sec = time.perf_counter() - t
    return load, sec, float((classes == 0).mean())


def _csmask(scene: np.ndarray, threads: int) -> tuple[float, float, float]:
    t = time.perf_counter()
    from ukis_csmask.mask import CSmask

    load = time.perf_counter() - t
    t = time.perf_counter()
    idx = [BANDS.index(b) for b in CSMASK_BANDS]
    img = np.moveaxis(scene[idx], 0, -1).astype(np.float32) / np.float32(10000)
    cs = CSmask(img, band_order=["blue", "green", "red", "nir", "swir16", "swir22"], product_level="l1c",
                intra_op_num_threads=threads, inter_op_num_threads=1, providers=["CPUExecutionProvider"])
    sec = time.perf_counter() - t
    return load, sec, float((cs.csm == 1).mean())


def _s2cloudless(scene: np.ndarray, threads: int) -> tuple[float, float, float]:
    t = time.perf_counter()
    from s2cloudless import S2PixelCloudDetector

    det = S2PixelCloudDetector(threshold=0.4, average_over=2, dilation_size=1, all_bands=False)
    load = time.perf_counter() - t
    t = time.perf_counter()
    idx = [BANDS.index(b) for b in S2CLOUDLESS_BANDS]
    data = (np.moveaxis(scene[idx], 0, -1).astype(np.float32) / np.float32(10000))[None]
    mask = det.get_cloud_masks(data, num_threads=threads)
    sec = time.perf_counter() - t
    return load, sec, float(mask.mean())


def run_tool(tool: str, scene_path: str, threads: int) -> dict:
    """In the measuring subprocess: load the scene, load the tool, mask; report JSON."""
    scene = np.load(scene_path)
    if tool == "nimbus-rules":
        load, sec, cloud = _nimbus("export/nimbus-rules.onnx", scene, threads)
    elif tool == "nimbus-default":
        load, sec, cloud = _nimbus("export/nimbus-default.onnx", scene, threads)
    elif tool == "ukis-csmask":
        load, sec, cloud = _csmask(scene, threads)
    elif tool == "s2cloudless":
        load, sec, cloud = _s2cloudless(scene, threads)
    else:
        raise SystemExit(f"unknown tool {tool}; choose from {', '.join(TOOLS)}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"load": load, "seconds": sec, "peak_rss_mb": rss, "cloud": cloud}


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1830, 3660], help="scene sides (pixels at 20 m)")
    ap.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    ap.add_argument("--repeat", type=int, default=3, help="processes per tool and size (interleaved)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "nimbus-bench-competitors")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "competitors.md")
    ap.add_argument("--_run", help=argparse.SUPPRESS)
    ap.add_argument("--_scene", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._run:
        print("RESULT " + json.dumps(run_tool(args._run, args._scene, args.threads)))
        return 0

    table: list[str] = []
    raw: dict = {}
    for size in args.sizes:
        scene = make_scene(args.workdir, size)
        runs: dict[str, list[dict]] = {t: [] for t in args.tools}
        for rep in range(args.repeat):
            for tool in args.tools:
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--_run", tool, "--_scene", str(scene), "--threads", str(args.threads)],
                                      capture_output=True, text=True, env=_env(args.threads))
                wall = time.perf_counter() - t
                if proc.returncode:
                    print(proc.stdout, proc.stderr, file=sys.stderr)
                    return proc.returncode
                r = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
                r["wall"] = wall
                runs[tool].append(r)
                print(f"{size}² rep {rep + 1} {tool:<15s} mask {r['seconds']:7.2f} s  process {wall:7.2f} s  "
                      f"peak RSS {r['peak_rss_mb']:6.0f} MB  cloud {100 * r['cloud']:5.1f} %  (load average {os.getloadavg()[0]:.1f})", flush=True)
        raw[size] = runs
        mpix = size * size / 1e6
        ref = statistics.median(r["seconds"] for r in runs.get("ukis-csmask", [])) if "ukis-csmask" in runs else None
        table.append(f"\n{size}² at 20 m ({mpix:.2f} Mpix), {args.repeat} processes per tool, {args.threads} threads\n")
        table.append("| tool | mask s (min / median) | Mpix/s | vs ukis-csmask | process wall s (median) | peak RSS MB | cloud % |")
        table.append("|---|---:|---:|---:|---:|---:|---:|")
        for tool, rs in runs.items():
            secs = [r["seconds"] for r in rs]
            med = statistics.median(secs)
            vs = f"{ref / med:.2f}x" if ref else ""
            table.append(f"| {tool} | {min(secs):.2f} / {med:.2f} | {mpix / med:.2f} | {vs} | {statistics.median(r['wall'] for r in rs):.2f} "
                         f"| {max(r['peak_rss_mb'] for r in rs):.0f} | {100 * rs[-1]['cloud']:.1f} |")
    cpu = platform.machine()
    try:
        cpu = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    head = (f"# Whole-scene cloud masking\n\n`python benchmarks/bench_competitors.py --sizes {' '.join(map(str, args.sizes))} "
            f"--repeat {args.repeat} --threads {args.threads}` on {os.cpu_count()} cores ({cpu}), "
            f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f} at the end.\n")
    text = head + "\n".join(table) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
