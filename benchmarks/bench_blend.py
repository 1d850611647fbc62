"""Sliding-window blending throughput: Nimbus vs MONAI's ``sliding_window_inference``.

Same input, same run, same settings: a (K, H, W) float32 array of positive values, windows of
``--window`` pixels, overlap 0.5, Gaussian weights (sigma = window / 8), a trivial model.

* baseline  MONAI ``sliding_window_inference(x, window, batch, predictor=identity, overlap=0.5,
  mode="gaussian")`` on CPU (torch), returning the blended (1, K, H, W) tensor;
* nimbus    ``Segmenter.predict`` with a trivial ONNX model (per-pixel normalisation of the
  input: the cheapest "model" that still returns probabilities), i.e. window extraction,
  onnxruntime, the C++ blend kernel and the arg-max class map;
* kernel    the C++ blend alone (``nimbus.blend.accumulate`` + ``finalize``) on the same windows
  (the windows cut beforehand), i.e. what replaces MONAI's aggregation.

MONAI and ``Segmenter.predict`` run alternately (``--repeat`` times each, after one warm-up
each), so a noisy phase of a shared machine hits both; min and median are printed. Throughput is
megapixels of the input per second (best of ``--repeat``). Results agree: the
blended probabilities of all three are compared (max abs difference printed).

Usage:
    python benchmarks/bench_blend.py                    # 2048 x 2048, 4 channels, window 256
    python benchmarks/bench_blend.py --size 4096 --threads 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import best_of


def _trivial_model(path: Path, k: int, window: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nimbus.modelspec import ModelSpec

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", k, "H", "W"])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k, "H", "W"])
    ax = numpy_helper.from_array(np.array([1], np.int64), "ax")
    nodes = [helper.make_node("ReduceSum", ["input", "ax"], ["tot"], keepdims=1), helper.make_node("Div", ["input", "tot"], ["probabilities"])]
    model = helper.make_model(helper.make_graph(nodes, "trivial", [x], [y], initializer=[ax]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    chans = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B11")[:k]
    spec = ModelSpec(channels=chans, mean=(0.0,) * k, std=(1.0,) * k, window=window, overlap=0.5, name="trivial")
    helper.set_model_props(model, spec.to_metadata())
    onnx.save(model, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="height and width of the input")
    ap.add_argument("--channels", type=int, default=4, help="channels = classes of the trivial model")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both (0 = all cores)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import torch
    from monai.inferers import sliding_window_inference

    from nimbus import blend
    from nimbus.segmenter import Segmenter
    from nimbus.windows import WindowLayout, window_weights

    if args.threads:
        torch.set_num_threads(args.threads)
    k, n = args.channels, args.size
    x = (np.random.default_rng(0).random((k, n, n), dtype=np.float32) + 0.05).astype(np.float32)
    mpix = n * n / 1e6

    # MONAI (baseline)
    xt = torch.from_numpy(x[None])

    def run_monai():
        with torch.no_grad():
            return sliding_window_inference(xt, args.window, args.batch, lambda t: t / t.sum(dim=1, keepdim=True), overlap=0.5, mode="gaussian")

    # MONAI and Nimbus end to end (windows + onnxruntime + blend + class map), interleaved
    with tempfile.TemporaryDirectory() as tmp:
        model = _trivial_model(Path(tmp) / "trivial.onnx", k, args.window)
        seg = Segmenter(model, batch=args.batch, weights="gaussian", threads=args.threads, progress=False)
        valid_all = np.ones((n, n), bool)
        run_monai()  # warm-up both (thread pools, first-touch of buffers)
        seg.predict(x, valid=valid_all, probabilities=True)
        times_monai, times_nimbus = [], []
        for _ in range(max(1, args.repeat)):
            t = time.perf_counter()
            out_monai = run_monai()
            times_monai.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = seg.predict(x, valid=valid_all, probabilities=True)
            times_nimbus.append(time.perf_counter() - t)
    p_monai = out_monai[0].numpy()
    p_nimbus = out[1]
    t_monai, t_nimbus = min(times_monai), min(times_nimbus)
    med_monai, med_nimbus = statistics.median(times_monai), statistics.median(times_nimbus)

    # the C++ blend kernel alone, on windows cut beforehand
    lay = WindowLayout(n, n, args.window, 0.5)
    wins = list(lay)
    tiles = np.stack([x[:, y : y + lay.win_h, c : c + lay.win_w] for y, c in wins])
    tiles /= tiles.sum(axis=1, keepdims=True)
    wts = window_weights((lay.win_h, lay.win_w), "gaussian")
    rows, cols = [y for y, _ in wins], [c for _, c in wins]
    valid = np.ones((n, n), bool)

    def run_kernel():
        acc = np.zeros((k, n, n), np.float32)
        wsum = np.zeros((n, n), np.float32)
        blend.accumulate(acc, wsum, tiles, wts, rows, cols, threads=args.threads)
        blend.finalize(acc, wsum, valid, list(range(k)), threads=args.threads)
        return acc

    t_kernel, p_kernel = best_of(run_kernel, args.repeat)
    # the same kernels on preallocated (already touched) buffers, as the segmenter reuses its strip buffer
    acc, wsum = np.zeros((k, n, n), np.float32), np.zeros((n, n), np.float32)
    t_acc, _ = best_of(lambda: blend.accumulate(acc, wsum, tiles, wts, rows, cols, threads=args.threads), args.repeat)
    t_fin, _ = best_of(lambda: blend.finalize(acc, wsum, valid, list(range(k)), threads=args.threads), args.repeat)
    t_copy, _ = best_of(tiles.copy, args.repeat)
    ref = x / x.sum(axis=0)
    print(f"input {k} x {n} x {n}, window {args.window}, overlap 0.5, gaussian, batch {args.batch}, {len(wins)} windows, "
          f"threads {args.threads or 'all'}, best of {args.repeat}, load average {os.getloadavg()[0]:.1f}")
    print(f"MONAI vs Segmenter.predict, interleaved, {len(times_monai)} runs each: MONAI min {t_monai:.3f} / median {med_monai:.3f} s, "
          f"nimbus min {t_nimbus:.3f} / median {med_nimbus:.3f} s -> {t_monai / t_nimbus:.2f}x (min), {med_monai / med_nimbus:.2f}x (median)")
    print(f"{'method':<34s}{'seconds':>9s}{'MPix/s':>10s}{'vs MONAI':>10s}{'max|p-ref|':>12s}")
    for name, t, p in (
        ("MONAI sliding_window_inference", t_monai, p_monai),
        ("nimbus Segmenter.predict", t_nimbus, p_nimbus),
        ("nimbus blend kernel only", t_kernel, p_kernel),
    ):
        print(f"{name:<34s}{t:9.3f}{mpix / t:10.1f}{t_monai / t:9.2f}x{np.abs(p - ref).max():12.2e}")
    t_pre = t_acc + t_fin
    print(f"{'nimbus blend, preallocated buffers':<34s}{t_pre:9.3f}{mpix / t_pre:10.1f}{t_monai / t_pre:9.2f}x"
          f"   (accumulate {1e3 * t_acc:.0f} ms, finalize {1e3 * t_fin:.0f} ms; copying the window probabilities alone {1e3 * t_copy:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
