"""What checking outputs before their rename costs: validation time against the write it guards.

A full-tile class map (5490 x 5490 at 20 m, uint8, COG with overviews) and its float16
probabilities (4 bands) are written once through :class:`nimbus.writers.SegmentationWriter` (which
validates both before committing them), then :func:`nimbus.validate.validate_raster` is timed
alone on each file. Baseline: the write itself in the same run.

Usage::

    python benchmarks/bench_validate.py [--size 5490] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import best_of  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from nimbus.modelspec import ModelSpec  # noqa: E402
from nimbus.validate import validate_raster  # noqa: E402
from nimbus.writers import SegmentationWriter  # noqa: E402


def scene(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Blocky class map and smooth probabilities (compress like real maps, unlike noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, (size // 64 + 1, size // 64 + 1)).astype(np.uint8)
    classes = np.kron(coarse, np.ones((64, 64), np.uint8))[:size, :size]
    probs = np.zeros((4, size, size), np.float32)
    for k in range(4):
        probs[k] = (classes == k) * 0.7 + 0.075
    return classes, probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=5490)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    spec = ModelSpec(channels=("B02",), mean=(0.0,), std=(1.0,), resolution=20.0)
    classes, probs = scene(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t = time.perf_counter()
        with SegmentationWriter(out / "c.tif", "EPSG:32632", from_origin(300000, 5000000, 20, 20), classes.shape, spec,
                                probabilities="float16", probabilities_path=out / "p.tif") as w:  # fmt: skip
            for r in range(0, args.size, 512):
                w.write_rows(r, classes[r : r + 512], probs[:, r : r + 512])
        write = time.perf_counter() - t
        v_cls, _ = best_of(lambda: validate_raster(out / "c.tif", shape=classes.shape, count=1, dtype="uint8"), args.repeat)
        v_prob, _ = best_of(lambda: validate_raster(out / "p.tif", shape=classes.shape, count=4), args.repeat)
        sizes = {p.name: p.stat().st_size / 1e6 for p in out.glob("*.tif")}
    print(f"full write (raw strips, 2 COG copies, validation, commit): {write:.2f} s for {args.size}x{args.size}")
    print(f"validate class map ({sizes['c.tif']:.1f} MB): {v_cls * 1000:.1f} ms ({100 * v_cls / write:.2f} % of the write)")
    print(f"validate probabilities float16 x4 ({sizes['p.tif']:.1f} MB): {v_prob * 1000:.1f} ms ({100 * v_prob / write:.2f} % of the write)")


if __name__ == "__main__":
    main()
