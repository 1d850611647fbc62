"""Products per hour on Dask distributed (LocalCluster, 1 and 2 worker processes) against the
single-process path, and the Dask overhead for a batch of small products.

Every mode runs the real CLI in a fresh process (``python -m nimbus segment ...``), on the same
synthetic products, into its own output folder; the wall time includes starting Python, loading
the model and (for Dask) starting the LocalCluster. Modes are interleaved over the repeats and the
fastest run of each is kept.

Run: ``python benchmarks/bench_dask.py [--products 8] [--size 1098] [--model rules] [--repeat 2]``
Writes ``benchmarks/results/dask.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(args: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "nimbus", "segment", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=8)
    ap.add_argument("--size", type=int, default=1098, help="product size in 10 m pixels")
    ap.add_argument("--model", default="rules")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dask.json"))
    a = ap.parse_args()

    from nimbus.synthetic import make_product

    tmp = Path(tempfile.mkdtemp(prefix="nimbus-bench-dask-"))
    try:
        prods = [str(make_product(tmp / "p", size=a.size, seed=s, date=f"2023-06-{1 + s:02d}").path) for s in range(a.products)]
        modes = {
            "single process": [],
            "dask LocalCluster, 1 worker": ["--workers", "1"],
            "dask LocalCluster, 2 workers": ["--workers", "2"],
        }
        best: dict[str, float] = {m: float("inf") for m in modes}
        one: dict[str, float] = {m: float("inf") for m in modes}
        for rep in range(a.repeat):
            for mode, extra in modes.items():
                for n, key in ((len(prods), best), (1, one)):
                    out = tmp / f"o-{rep}-{len(key)}-{mode.replace(' ', '_').replace(',', '')}-{n}"
                    secs = _run([*prods[:n], "--model", a.model, "--out", str(out), "--nostac_item", *extra])
                    key[mode] = min(key[mode], secs)
                    shutil.rmtree(out, ignore_errors=True)
                    print(f"repeat {rep}: {mode:32s} {n:2d} product(s) {secs:7.2f} s", flush=True)
        base = best["single process"]
        rows = []
        for mode in modes:
            per = (best[mode] - one[mode]) / max(1, len(prods) - 1)  # marginal seconds per product
            rows.append({
                "mode": mode, "seconds": round(best[mode], 2), "products": len(prods),
                "products_per_hour": round(3600 * len(prods) / best[mode], 1),
                "marginal_seconds_per_product": round(per, 3), "seconds_one_product": round(one[mode], 2),
                "vs_single_process": round(base / best[mode], 3),
            })  # fmt: skip
        result = {
            "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "command": "python benchmarks/bench_dask.py " + " ".join(sys.argv[1:]),
            "model": a.model, "size_10m": a.size, "load_average_at_end": os.getloadavg()[0], "rows": rows,
        }  # fmt: skip
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2))
        print(f"\n{'mode':32s} {'s':>8s} {'products/h':>11s} {'s/product (marginal)':>21s} {'1 product s':>12s} {'vs single':>10s}")
        for r in rows:
            print(f"{r['mode']:32s} {r['seconds']:8.2f} {r['products_per_hour']:11.1f} {r['marginal_seconds_per_product']:21.3f} "
                  f"{r['seconds_one_product']:12.2f} {r['vs_single_process']:10.3f}")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
