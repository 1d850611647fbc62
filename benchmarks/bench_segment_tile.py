"""Segment a whole Sentinel-2 tile: wall time per stage and peak memory (RSS).

Input: a synthetic-like L1C product as a folder of per-band COGs (13 bands at their native 10/20/60
m resolutions, ``B01.tif`` ... ``B12.tif``) plus two auxiliary layers (``altitude``,
``treecover`` at 10 m), ``--size`` pixels square at 10 m (10980 = a full tile). The pixels are
those of a ``nimbus.synthetic`` product of up to 1098 px, mirror-tiled up to ``--size`` (so every
10 m pixel is a real synthetic value, not an upsampled block). It is written once into
``--workdir`` and reused.

Model: an untrained U-Net with a ResNet-34 encoder (``--encoder``), 15 input channels, 4
classes, exported by ``nimbus.export`` with normalisation and softmax in the graph (the size and
cost of the shipped architecture; weights do not change the speed).

The segmentation runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is the segmenter's
alone (no torch, no generator). Stages (seconds, summed over the run; read and write run in
their own threads and overlap inference, so they do not add up to the wall time):

* read+resample  ``nimbus.inputs.assemble`` per chunk of rows: COG decoding, 20/60 m -> 10 m
  resampling, auxiliary layers;
* decode         a separate pass reading every band file at its native resolution in the same
  chunks (decoding alone); resample ~= read+resample - decode;
* inference      onnxruntime;  blend  C++ accumulate + finalize;  write  GeoTIFF rows + COG.

Usage:
    python benchmarks/bench_segment_tile.py                         # full tile (CPU: long)
    python benchmarks/bench_segment_tile.py --size 2196 --encoder resnet18    # reduced check
    python benchmarks/bench_segment_tile.py --height 300                      # full-width strip: peak RSS
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12", "altitude", "treecover")


def _mirror(n: int, src: int) -> np.ndarray:
    i = np.arange(n) % (2 * src)
    return np.where(i < src, i, 2 * src - 1 - i)


def _write_tiled(path: Path, src: np.ndarray, height: int, width: int, profile: dict) -> None:
    """Mirror-tile ``src`` to ``height x width`` in strips, then convert to a COG (ZSTD + predictor)."""
    import rasterio
    import rasterio.shutil

    rows, cols = _mirror(height, src.shape[0]), _mirror(width, src.shape[1])
    tmp = path.with_suffix(".tmp.tif")
    prof = dict(profile, driver="GTiff", height=height, width=width, count=1, tiled=True, blockxsize=512, blockysize=512, compress="zstd")
    with rasterio.open(tmp, "w", **prof) as dst:
        for r0 in range(0, height, 1024):
            r1 = min(height, r0 + 1024)
            dst.write(src[rows[r0:r1]][:, cols], 1, window=rasterio.windows.Window(0, r0, width, r1 - r0))
    pred = "2" if np.issubdtype(src.dtype, np.integer) else "3"
    rasterio.shutil.copy(tmp, path, driver="COG", COMPRESS="ZSTD", PREDICTOR=pred, BLOCKSIZE=512, NUM_THREADS="ALL_CPUS", BIGTIFF="IF_SAFER")
    tmp.unlink()


def prepare(workdir: Path, size: int, height: int) -> tuple[Path, Path]:
    """Write (once) the COG-folder product and its auxiliary folder; return their paths."""
    import rasterio
    from affine import Affine

    from nimbus.bands import BANDS, NATIVE_RESOLUTION
    from nimbus.product import open_product
    from nimbus.synthetic import make_product

    if size % 60 or height % 60:
        raise SystemExit("--size and --height must be multiples of 60 (10/20/60 m grids nest)")
    base = workdir / f"tile_{height}x{size}"
    done = base / "READY"
    if done.exists():
        prod = next(p for p in base.iterdir() if p.is_dir() and p.name.startswith("S2"))
        return prod, base / "aux"
    src_size = min(size, 1098)
    src_size -= src_size % 6
    syn = make_product(base / "src", size=src_size, seed=7, nodata_swath=False)
    sp = open_product(syn.path)
    prod = base / sp.product_id
    prod.mkdir(parents=True, exist_ok=True)
    aux = base / "aux"
    aux.mkdir(exist_ok=True)
    for band in BANDS:
        res = NATIVE_RESOLUTION[band]
        data = sp.read_band(band)
        t = sp.transform(res)
        prof = dict(crs=sp.crs, transform=Affine(t.a, 0, t.c, 0, t.e, t.f), dtype="uint16", nodata=0)
        _write_tiled(prod / f"{band}.tif", data, height * 10 // res, size * 10 // res, prof)
        print(f"  wrote {band} ({height * 10 // res} x {size * 10 // res} px)", file=sys.stderr)
    for layer in ("altitude", "treecover"):
        path = next(Path(syn.aux_dir).glob(f"*_{layer}_10m.tif"))
        with rasterio.open(path) as s:
            data, prof = s.read(1), dict(crs=s.crs, transform=s.transform, dtype=s.dtypes[0], nodata=s.nodata)
        _write_tiled(aux / path.name, data, height, size, prof)
    done.write_text("ok")
    return prod, aux


def export_model(workdir: Path, encoder: str, window: int, overlap: float) -> Path:
    """Export (once, in a subprocess: torch stays out of the measured process) the U-Net model."""
    out = workdir / f"unet_{encoder}_{window}.onnx"
    if out.exists():
        return out
    code = f"""
import nimbus.train  # torchvision compatibility first
from nimbus.train.models import create_model
from nimbus.export.onnx_export import export_model
from nimbus.modelspec import ModelSpec
ch = {CHANNELS!r}
spec = ModelSpec(channels=ch, mean=(1500.0,) * 13 + (1000.0, 30.0), std=(1000.0,) * 13 + (800.0, 30.0),
                 window={window}, overlap={overlap}, name="bench-unet-{encoder}", version="0")
export_model(create_model("unet", 15, 4, encoder="{encoder}").eval(), spec, r"{out}", arch="unet", parity=False)
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    return out


def run_segment(args: argparse.Namespace) -> dict:
    """In the measuring subprocess: segment, then a decode-only pass; report JSON."""
    import rasterio
    from rasterio.windows import Window

    from nimbus.segmenter import Segmenter, gdal_cache

    opts = {"batch": args.batch} if args.batch else {}
    seg = Segmenter(args.model, provider=args.provider, threads=args.threads, overlap=args.overlap,
                    aux_dir=args.aux, read_rows=args.read_rows or None, progress=False, **opts)
    t = time.perf_counter()
    res = seg.segment(args.product, out=args.out, overwrite=True)
    wall = time.perf_counter() - t
    rss_seg = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    chunk = seg.tiling.chunk
    t = time.perf_counter()
    with gdal_cache(seg.config.gdal_cache_mb):
        for f in sorted(Path(args.product).glob("B*.tif")):
            with rasterio.open(f) as src:
                step = max(1, chunk * src.width // args.size)
                for r0 in range(0, src.height, step):
                    src.read(1, window=Window(0, r0, src.width, min(step, src.height - r0)))
    decode = time.perf_counter() - t
    return {"wall": wall, "seconds": res.seconds, "decode": decode, "windows": res.windows, "peak_rss_mb": rss_seg,
            "providers": seg.session.providers, "window": seg.tiling.size, "overlap": seg.tiling.overlap, "read_rows": chunk,
            "batch": seg.tiling.batch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10980, help="tile size at 10 m (10980 = full tile; multiple of 60)")
    ap.add_argument("--height", type=int, default=0, help="rows at 10 m (default: --size); a full-width strip "
                    "(e.g. --height 300) shows the full tile's peak memory, which is set by the width, in little time")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "nimbus-bench-tile")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--overlap", type=float, default=None, help="window overlap (default: the model's; 0.5 for the U-Net)")
    ap.add_argument("--batch", type=int, default=0, help="windows per inference call (0: the segmenter's default, as nimbus segment)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--read-rows", type=int, default=0, help="rows read per chunk (0 = the window step)")
    ap.add_argument("--provider", default="auto")
    ap.add_argument("--onnx", type=Path, help="benchmark this Nimbus ONNX model (e.g. export/nimbus-default.onnx) instead of the U-Net")
    ap.add_argument("--_segment", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--product", help=argparse.SUPPRESS)
    ap.add_argument("--aux", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._segment:
        print("RESULT " + json.dumps(run_segment(args)))
        return 0

    args.workdir.mkdir(parents=True, exist_ok=True)
    height = args.height or args.size
    t = time.perf_counter()
    product, aux = prepare(args.workdir, args.size, height)
    print(f"input ready in {time.perf_counter() - t:.0f} s: {product}", file=sys.stderr)
    model = args.onnx or export_model(args.workdir, args.encoder, args.window, 0.5 if args.overlap is None else args.overlap)
    cmd = [sys.executable, __file__, "--_segment", "--size", str(args.size), "--model", str(model), "--product", str(product),
           "--aux", str(aux), "--out", str(args.workdir / "out"), "--batch", str(args.batch),
           "--threads", str(args.threads), "--read-rows", str(args.read_rows), "--provider", args.provider]
    if args.overlap is not None:
        cmd += ["--overlap", str(args.overlap)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        print(run.stdout, run.stderr, file=sys.stderr)
        return run.returncode
    r = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    s = r["seconds"]
    scale = 10980 * 10980 / (args.size * height)
    print(f"tile {height} x {args.size} at 10 m, 13 bands + 2 aux (COG), model {Path(model).name}, window {r['window']}, "
          f"overlap {r['overlap']}, batch {r['batch']}, read chunk {r['read_rows']} rows, providers {r['providers']}")
    print(f"windows {r['windows']}   wall {r['wall']:.1f} s   peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"  read+resample {s['read']:.1f} s (decode alone {r['decode']:.1f} s, resample+aux ~{max(0.0, s['read'] - r['decode']):.1f} s)")
    print(f"  inference     {s['infer']:.1f} s")
    print(f"  blend         {s['blend']:.1f} s")
    print(f"  write         {s['write']:.1f} s")
    non_inf = s["read"] + s["blend"] + s["write"]
    print(f"  non-inference stages {non_inf:.1f} s = {100 * non_inf / max(r['wall'], 1e-9):.1f} % of wall (upper bound: read/write overlap inference)")
    if (height, args.size) != (10980, 10980):
        print(f"  extrapolated to a full 10980 x 10980 tile: ~{r['wall'] * scale:.0f} s (area x {scale:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
