"""Resident memory while training from large memory-mapped arrays (target: <= 4 GB from >= 20 GB).

Builds an arrays folder in the ``nimbus.arrays`` format (bands.npy uint16 (13, H, W), aux.npy
float32 (2, H, W), meta.json, labels.tif) of ``--gb`` gigabytes without writing them all: the
.npy files are sparse (``np.lib.format.open_memmap``) and only ``--fill`` of their row strips get
a cheap spectral pattern (the rest reads as nodata, which the sampler skips or ignores). Then it
runs ``nimbus.train.loop.train`` on it and samples the resident set size (RSS, and its file-backed
part) of the process and its DataLoader workers every 0.2 s.

Baseline ("persistent-mmap"): reading the same number of random windows through one long-lived
``np.load(mmap_mode="r")`` per product, the obvious implementation, whose RSS grows with every page
it has touched.

Usage (full size; needs ~--gb of free disk for the sparse files' apparent size, little real)::

    python benchmarks/bench_train_memory.py --gb 20 --work /tmp/nimbus_bench_mem
    python benchmarks/bench_train_memory.py --gb 0.5 --steps 20          # quick check

Writes a JSON summary to ``--work/result.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
BYTES_PER_PIXEL = 13 * 2 + 2 * 4


def _rss(pid: int) -> tuple[int, int]:
    """(RSS, file-backed RSS) in bytes of a process, from /proc."""
    rss = file = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssFile:"):
                    file = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, file


def _pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages divided among their users), from /proc."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class RssMonitor:
    """Samples the peak RSS of this process and of its children (DataLoader workers).

    ``peak_total`` sums RSS over the processes (counts pages shared after fork once per process:
    an upper bound); ``peak_pss`` sums their proportional set sizes (the real combined footprint).
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_main = self.peak_total = self.peak_file = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            rss, file = _rss(me)
            kids = _children(me)
            total = rss + sum(_rss(c)[0] for c in kids)
            self.peak_pss = max(self.peak_pss, _pss(me) + sum(_pss(c) for c in kids))
            self.peak_main = max(self.peak_main, rss)
            self.peak_file = max(self.peak_file, file)
            self.peak_total = max(self.peak_total, total)
            time.sleep(self.interval)

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_big_arrays(root: Path, gb: float, products: int, fill: float, strip: int = 256, seed: int = 0) -> dict:
    """Sparse arrays of about ``gb`` GB over ``products`` square products; returns a description."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    side = int(math.sqrt(gb * 1e9 / BYTES_PER_PIXEL / products))
    side -= side % strip
    spectra = np.array([[5000] * 13, [1200, 900, 1000, 1100, 1500, 2200, 2500, 2800, 2900, 900, 1020, 2400, 1600]], dtype=np.uint16)
    written = 0
    for i in range(products):
        day = date(2024, 1, 1) + timedelta(days=7 * i)
        folder = root / f"S2B_MSIL1C_{day:%Y%m%d}T103021_N0510_R108_T32TMS_{day:%Y%m%d}T120000"
        folder.mkdir(parents=True, exist_ok=True)
        bands = np.lib.format.open_memmap(folder / "bands.npy", mode="w+", dtype=np.uint16, shape=(13, side, side))
        aux = np.lib.format.open_memmap(folder / "aux.npy", mode="w+", dtype=np.float32, shape=(2, side, side))
        profile = dict(driver="GTiff", width=side, height=side, count=1, dtype="uint8", crs="EPSG:32632", transform=Affine(10, 0, 300000, 0, -10, 5000040), nodata=255, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
        n_strips = side // strip
        chosen = set(rng.choice(n_strips, size=max(1, int(round(fill * n_strips))), replace=False).tolist())
        with rasterio.open(folder / "labels.tif", "w", **profile) as lab:
            for s in range(n_strips):
                r0 = s * strip
                labels = np.full((strip, side), 255, np.uint8)
                if s in chosen:
                    cls = ((np.arange(side) // 512) % 2).astype(np.uint8)  # cloud / ground stripes
                    labels[:] = cls[None, :]
                    for b in range(13):
                        bands[b, r0 : r0 + strip] = spectra[cls, b][None, :]
                    aux[0, r0 : r0 + strip] = 500.0
                    aux[1, r0 : r0 + strip] = 20.0
                    written += strip * side * BYTES_PER_PIXEL
                lab.write(labels, 1, window=rasterio.windows.Window(0, r0, side, strip))
        bands.flush()
        aux.flush()
        del bands, aux
        meta = {"product_id": folder.name, "tile": "32TMS", "date": day.isoformat(), "crs": "EPSG:32632", "transform": [10, 0, 300000, 0, -10, 5000040], "resolution": 10, "bands": list(BANDS), "aux": ["altitude", "treecover"], "nodata": 0}
        (folder / "meta.json").write_text(json.dumps(meta))
    apparent = products * side * side * BYTES_PER_PIXEL
    return {"products": products, "side": side, "apparent_gb": apparent / 1e9, "written_gb": written / 1e9}


def baseline_persistent_mmap(root: Path, reads: int, patch: int, seed: int = 0) -> dict:
    """RSS after ``reads`` random windows through long-lived np.load(mmap_mode="r") arrays."""
    rng = np.random.default_rng(seed)
    maps = [(np.load(p / "bands.npy", mmap_mode="r"), np.load(p / "aux.npy", mmap_mode="r")) for p in sorted(root.iterdir()) if p.is_dir()]
    before = _rss(os.getpid())[0]
    with RssMonitor() as mon:
        t0 = time.time()
        for _ in range(reads):
            bands, aux = maps[int(rng.integers(len(maps)))]
            H = bands.shape[1]
            r, c = (int(v) for v in rng.integers(0, H - patch, 2))
            np.asarray(bands[:, r : r + patch, c : c + patch], dtype=np.float32).sum()
            np.asarray(aux[:, r : r + patch, c : c + patch]).sum()
        seconds = time.time() - t0
    return {"reads": reads, "rss_before_gb": before / 1e9, "peak_rss_gb": mon.peak_main / 1e9, "peak_rss_file_gb": mon.peak_file / 1e9, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=20.0, help="apparent size of the arrays (GB)")
    ap.add_argument("--products", type=int, default=6)
    ap.add_argument("--fill", type=float, default=0.05, help="fraction of row strips really written")
    ap.add_argument("--work", default="/tmp/nimbus_bench_train_memory")
    ap.add_argument("--model", default="segnet")
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200, help="training steps (one epoch)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the arrays for another run")
    ap.add_argument("--baseline-reads", type=int, default=None, help="random reads of the persistent-mmap baseline (default: patches trained)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from nimbus.train.loop import train

    work = Path(args.work)
    arrays = work / "arrays"
    t0 = time.time()
    if not (arrays.is_dir() and args.keep and any(arrays.iterdir())):
        shutil.rmtree(work, ignore_errors=True)
        info = make_big_arrays(arrays, args.gb, args.products, args.fill)
    else:
        info = {"reused": True}
    info["build_seconds"] = round(time.time() - t0, 1)
    print(f"arrays: {info}", file=sys.stderr)

    patches = args.steps * args.batch
    t0 = time.time()
    with RssMonitor() as mon:
        summary = train(
            arrays, work / "run", model=args.model, epochs=1, patch=args.patch, batch=args.batch, patches_per_epoch=patches,
            workers=args.workers, val_stride=max(args.patch, 4096), fractions=[0.7, 0.15, 0.15], stats_windows=16, progress=False, amp=True,
        )
    train_seconds = time.time() - t0
    result = {
        "arrays": info,
        "config": {k: getattr(args, k) for k in ("model", "patch", "batch", "steps", "workers", "threads")},
        "train": {
            "peak_rss_main_gb": round(mon.peak_main / 1e9, 3),
            "peak_rss_total_gb": round(mon.peak_total / 1e9, 3),
            "peak_rss_file_gb": round(mon.peak_file / 1e9, 3),
            "peak_pss_total_gb": round(mon.peak_pss / 1e9, 3),
            "seconds": round(train_seconds, 1),
            "patches": patches,
            "final_train_loss": summary["history"][-1]["train_loss"] if summary["history"] else None,
        },
        "limit_gb": 4.0,
    }
    # The criterion: the combined footprint of trainer + workers (PSS) and the trainer's own RSS.
    result["train"]["within_limit"] = result["train"]["peak_pss_total_gb"] <= 4.0 and result["train"]["peak_rss_main_gb"] <= 4.0
    reads = args.baseline_reads if args.baseline_reads is not None else patches
    if reads:
        result["baseline_persistent_mmap"] = baseline_persistent_mmap(arrays, reads, args.patch)
    (work / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(arrays, ignore_errors=True)


if __name__ == "__main__":
    main()
