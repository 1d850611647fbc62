"""MC-dropout scoring throughput of ``nimbus uncertain`` vs one-pass-at-a-time MC dropout.

Same product, same model, same windows and number of passes:

* baseline  the original's way: for each patch, ``passes`` separate forward calls of batch 1
  (dropout on), then the per-pixel std of the softmax averaged over classes;
* nimbus    :func:`nimbus.train.uncertainty.score_patches`: the patch repeated along the batch
  axis (``--batch`` passes per call), read window by window from the memory-mapped arrays.

Prints patches per second and megapixels per second for both, and the peak resident memory of
the process (the product is never loaded whole: the peak should not grow with ``--size``).

Usage:
    python benchmarks/bench_uncertain.py                          # 1024 x 1024, window 256, 16 passes
    python benchmarks/bench_uncertain.py --size 2048 --device cuda --batch 16
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def make_product(root: Path, size: int) -> Path:
    """An arrays product folder of random harmonised DN with smooth structure, and labels."""
    import rasterio
    from rasterio.transform import from_origin

    folder = root / "S2A_MSIL1C_20240105T102031_N0510_R001_T32TMS_20240105T112031"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    bands = np.lib.format.open_memmap(folder / "bands.npy", mode="w+", dtype=np.uint16, shape=(13, size, size))
    base = rng.integers(500, 8000, (13, size // 64 + 1, size // 64 + 1)).astype(np.float32)
    for i in range(13):
        up = np.kron(base[i], np.ones((64, 64), np.float32))[:size, :size]
        bands[i] = np.clip(up + rng.normal(0, 200, (size, size)), 1, 20000).astype(np.uint16)
    bands.flush()
    del bands
    meta = {"product_id": folder.name, "tile": "32TMS", "date": "2024-01-05", "crs": "EPSG:32632",
            "transform": [10, 0, 300000, 0, -10, 5000040], "resolution": 10, "bands": BANDS, "aux": [], "nodata": 0}
    (folder / "meta.json").write_text(json.dumps(meta))
    with rasterio.open(folder / "labels.tif", "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs="EPSG:32632", transform=from_origin(300000, 5000040, 10, 10), nodata=255) as dst:
        dst.write(rng.integers(0, 4, (1, size, size)).astype(np.uint8))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--passes", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="segnet")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-patches", type=int, default=0, help="score only this many patches (0: all)")
    args = ap.parse_args()

    import torch

    import nimbus.train  # noqa: F401
    from nimbus.train.dataset import ProductArrays, grid_windows
    from nimbus.train.models import create_model, set_mc_dropout
    from nimbus.train.uncertainty import score_patches

    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = create_model(args.model, in_channels=13, classes=4, dropout=0.2).to(dev)
    meta = {"channels": BANDS, "mean": np.full(13, 3000, np.float32), "std": np.full(13, 2000, np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        p = ProductArrays(make_product(Path(tmp), args.size))
        windows = grid_windows(p.shape, args.window)
        if args.max_patches:
            windows = windows[: args.max_patches]
        n = len(windows)
        mpix = n * args.window * args.window / 1e6

        # baseline: one forward call per pass
        set_mc_dropout(model, True)
        t = time.perf_counter()
        base_scores = []
        with torch.no_grad():
            for w in windows:
                data, valid = p.read(BANDS, w)
                x = torch.from_numpy((data - meta["mean"][:, None, None]) / meta["std"][:, None, None]).to(dev)[None]
                probs = torch.cat([torch.softmax(model(x), 1) for _ in range(args.passes)])
                base_scores.append(float(probs.std(0, correction=0).mean(0).cpu().numpy()[valid].mean()))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_base = time.perf_counter() - t
        set_mc_dropout(model, False)

        t = time.perf_counter()
        if args.max_patches:
            # score_patches walks the whole grid: restrict it by excluding the other windows
            rest = grid_windows(p.shape, args.window)[args.max_patches:]
            scores = score_patches(model, meta, [p], args.window, args.passes, "std", {p.product_id: rest}, 0.0, args.batch, dev)
        else:
            scores = score_patches(model, meta, [p], args.window, args.passes, "std", None, 0.0, args.batch, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_nimbus = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    corr = float(np.corrcoef(base_scores, [s.score for s in scores])[0, 1]) if n > 2 else float("nan")
    print(f"product {args.size}x{args.size}, {n} patches of {args.window}, {args.passes} passes, {args.model}, {dev}")
    print(f"baseline (1 pass per call): {t_base:8.2f} s  {n / t_base:7.2f} patches/s  {mpix / t_base:7.3f} Mpx/s")
    print(f"nimbus   (batch {args.batch:>2}):        {t_nimbus:8.2f} s  {n / t_nimbus:7.2f} patches/s  {mpix / t_nimbus:7.3f} Mpx/s"
          f"  speed-up {t_base / t_nimbus:.2f}x")
    print(f"score correlation baseline/nimbus (different dropout masks): {corr:.3f}; peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
