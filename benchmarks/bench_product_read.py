"""Reading all 13 bands of a product onto the 10 m grid: ``Product.read`` vs plain rasterio + GDAL's warper.

Same product, same run: a synthetic L1C product (lossless JPEG2000, real SAFE layout) of ``--size``
pixels at 10 m, as a folder and as a zip.

* baseline  for each band ``rasterio.open(...).read(1)`` then, for 20/60 m bands,
            ``rasterio.warp.reproject(..., Resampling.bilinear)`` onto the 10 m grid (what a script
            without Nimbus does);
* nimbus    ``open_product(path).read(BANDS, res=10, kind="dn")`` (JPEG2000 decoding + the C++
            resampling kernels), whole tile and as strips of ``--strip`` rows (how the segmenter reads);
* zip       the same from the zipped SAFE through ``/vsizip/`` (no extraction).

Prints seconds (best of ``--repeat``) and megapixels of the 10 m grid per second; checks that the
strips equal the whole read and that Nimbus and GDAL agree within 1 DN away from the band edges.

Usage:
    python benchmarks/bench_product_read.py                 # 1098 x 1098 (a tenth of a tile side)
    python benchmarks/bench_product_read.py --size 5490     # half a tile side (slow to generate)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import best_of


def main() -> None:
    """Run the benchmark and print a small table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1098, help="10 m pixels a side (multiple of 6)")
    ap.add_argument("--strip", type=int, default=256, help="rows per strip for the strip-wise read")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import rasterio
    from rasterio.warp import Resampling, reproject
    from rasterio.windows import Window

    from nimbus.bands import BANDS
    from nimbus.product import open_product
    from nimbus.synthetic import make_product

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        folder = make_product(Path(tmp) / "f", size=args.size, seed=0)
        zipped = make_product(Path(tmp) / "z", size=args.size, seed=0, zipped=True)
        print(f"generated 2 synthetic products of {args.size}x{args.size} in {time.perf_counter() - t:.1f} s")
        p = open_product(folder.path)
        h, w = p.shape(10)
        mpix = h * w / 1e6

        def gdal() -> np.ndarray:
            out = np.zeros((len(BANDS), h, w), np.uint16)
            for i, b in enumerate(BANDS):
                with rasterio.open(p.band_file(b)) as src:
                    if src.shape == (h, w):
                        out[i] = src.read(1)
                    else:
                        reproject(src.read(1), out[i], src_transform=src.transform, src_crs=src.crs,
                                  dst_transform=p.transform(10), dst_crs=p.crs, resampling=Resampling.bilinear)  # fmt: skip
            return out

        # every run opens the product afresh, so no decoded block comes from GDAL's cache of a previous run
        def whole() -> np.ndarray:
            with open_product(folder.path) as q:
                return q.read(list(BANDS), res=10, kind="dn")[0]

        def strips() -> np.ndarray:
            with open_product(folder.path) as q:
                return np.concatenate(
                    [q.read(list(BANDS), res=10, kind="dn", window=Window(0, r, w, min(args.strip, h - r)))[0] for r in range(0, h, args.strip)],
                    axis=1,
                )

        def from_zip() -> np.ndarray:
            with open_product(zipped.path) as q:
                return q.read(list(BANDS), res=10, kind="dn")[0]

        rows = []
        for name, fn in (("baseline rasterio+reproject", gdal), ("nimbus read (whole)", whole), ("nimbus read (strips)", strips), ("nimbus read (zip)", from_zip)):
            sec, out = best_of(fn, args.repeat)
            rows.append((name, sec, out))
        ref = rows[0][2]
        inner = (slice(None), slice(6, -6), slice(6, -6))
        print(f"{'method':<30} {'seconds':>8} {'MPix/s':>8}")
        for name, sec, _ in rows:
            print(f"{name:<30} {sec:8.3f} {mpix / sec:8.1f}")
        np.testing.assert_array_equal(rows[1][2], rows[2][2])
        np.testing.assert_array_equal(rows[1][2], rows[3][2])
        diff = np.abs(rows[1][2][inner].astype(int) - ref[inner].astype(int)).max()
        print(f"strips == whole == zip: yes; max |nimbus - GDAL| inside the edges: {diff} DN")


if __name__ == "__main__":
    main()
