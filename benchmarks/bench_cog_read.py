"""Read speed of one Sentinel-2 band: the product's JPEG2000 vs the COG (ZSTD + predictor) of `nimbus extract --cog`.

Baseline: reading the JPEG2000 band as delivered by ESA (GDAL's JP2OpenJPEG driver). Candidate: the
same band transcoded by :func:`nimbus.extract.transcode_to_cog`. Both are read whole and as a strip
of 1024-row windows (how the segmenter reads), each timed as the best of ``--repeat`` runs. Pixels
are checked to be identical.

The real band is B01 of the eodag-cube product (1830 x 1830, 60 m). ``--scale 6`` upsamples it to a
10 m band's size (10980 x 10980) and encodes that as lossless JPEG2000 with ESA's 1024-pixel tiles
first (slow: minutes), which is the size that matters for a 10 m band.

Usage:
    python benchmarks/bench_cog_read.py                 # real 1830 x 1830 band
    python benchmarks/bench_cog_read.py --scale 6       # 10980 x 10980, like B02/B03/B04/B08
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from _timing import best_of
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("NIMBUS_REALDATA", ROOT.parent / "shared" / "realdata"))


def _read_whole(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _read_strips(path: Path, rows: int = 1024) -> int:
    total = 0
    with rasterio.open(path) as src:
        for r0 in range(0, src.height, rows):
            total += int(src.read(1, window=Window(0, r0, src.width, min(rows, src.height - r0))).size)
    return total


def _source_band(tmp: Path, scale: int) -> Path:
    zpath = next((REALDATA / "eodag-cube_S2A_MSIL1C_T31TDH_20180101").glob("*.zip"))
    with zipfile.ZipFile(zpath) as zf:
        name = next(n for n in zf.namelist() if n.endswith("_B01.jp2"))
        jp2 = tmp / "B01.jp2"
        jp2.write_bytes(zf.read(name))
    if scale == 1:
        return jp2
    with rasterio.open(jp2) as src:
        data = src.read(1)
        profile = src.profile
    big = np.repeat(np.repeat(data, scale, 0), scale, 1)
    # a little texture so the upsampled band does not compress unrealistically well
    rng = np.random.default_rng(0)
    big = np.where(big > 0, big + rng.integers(0, 64, big.shape, dtype=np.uint16), 0).astype(np.uint16)
    out = tmp / f"B01x{scale}.jp2"
    t = profile["transform"]
    prof = dict(driver="JP2OpenJPEG", width=big.shape[1], height=big.shape[0], count=1, dtype="uint16", crs=profile["crs"],
                transform=rasterio.Affine(t.a / scale, 0, t.c, 0, t.e / scale, t.f), REVERSIBLE="YES", QUALITY="100",
                BLOCKXSIZE="1024", BLOCKYSIZE="1024", NBITS="15", RESOLUTIONS="6")
    print(f"encoding a {big.shape[1]} x {big.shape[0]} lossless JPEG2000 (slow)...", flush=True)
    with rasterio.open(out, "w", **prof) as dst:
        dst.write(big, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table row per read mode."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=1, help="upsample the real 1830^2 band by this factor (6 -> 10980^2)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case (best is reported)")
    args = ap.parse_args(argv)
    if not REALDATA.is_dir():
        print(f"real data not found at {REALDATA}", file=sys.stderr)
        return 2
    from nimbus.extract import transcode_to_cog

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        jp2 = _source_band(tmp, args.scale)
        cog = tmp / "band.tif"
        t = time.perf_counter()
        transcode_to_cog(jp2, cog)
        transcode_s = time.perf_counter() - t
        assert np.array_equal(_read_whole(jp2), _read_whole(cog)), "COG pixels differ from the JPEG2000"
        with rasterio.open(jp2) as src:
            shape = src.shape
        threads = os.environ.get("GDAL_NUM_THREADS", "GDAL default")
        print(f"band {shape[1]} x {shape[0]} uint16; JPEG2000 {jp2.stat().st_size / 1e6:.1f} MB, "
              f"COG {cog.stat().st_size / 1e6:.1f} MB; transcoding {transcode_s:.2f} s; GDAL_NUM_THREADS={threads}; "
              f"best of {args.repeat}")
        print("| read | JPEG2000 (s) | COG ZSTD (s) | speed-up |")
        print("|---|---|---|---|")
        for label, fn in (("whole band", _read_whole), ("1024-row strips", _read_strips)):
            a = best_of(lambda: fn(jp2), args.repeat)[0]
            b = best_of(lambda: fn(cog), args.repeat)[0]
            print(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
