"""Parity of an exported ONNX model with its reference: max |difference| and argmax agreement.

The PyTorch reference runs in float64 (on a copy of the module): architectures with pooling
indices (SegNet) flip an index wherever two activations of a pooling window are within float32
rounding of each other, and such a flip moves a value to another pixel. Measured on the default
model, onnxruntime (float32) agrees with the float64 reference to 6e-7 while PyTorch float32 itself
differs from it by 5e-2 at 34 of 65,536 pixels. For the same reason the check allows a tiny share of
pixels (``max_outliers``, default 0.1 %) above the tolerance (exact ties in flat or quantised
regions of real data do the same); the report gives the maximum anyway.

The inputs are of two kinds: *random* (independent noise spanning each channel's mean +- 3 std, at
a few batch sizes and, for dynamic graphs, non-square sizes) and *real-shaped* (one full window of
spatially smooth fields around each channel's mean, like an image, with a nodata corner of zeros as
products have). Real patches from training arrays can be added. The reference is the PyTorch
module that was exported, or another ONNX file (the fp32 model when checking an fp16 one).

Example:
    >>> report = check_parity(module, "model.onnx", spec)     # doctest: +SKIP
    >>> print(report.summary())
    parity: max |diff| 3.1e-07, 0.0000 % of pixels above 1e-04, argmax agreement 100.000 % on 3 inputs (...)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nimbus.errors import ModelError
from nimbus.modelspec import ModelSpec

__all__ = ["ParityReport", "check_parity", "compare_outputs", "onnx_runner", "parity_inputs"]

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class ParityReport:
    """The outcome of a parity check.

    Attributes:
        max_abs_diff: largest |reference - candidate| over every output value.
        mean_abs_diff: mean |reference - candidate|.
        argmax_agreement: fraction of pixels whose most probable class is the same.
        outliers: fraction of pixels where some class differs by more than ``tolerance``.
        shapes: the input shapes compared.
        tolerance: the |diff| allowed.
        min_agreement: the agreement required.
        max_outliers: the largest share of pixels allowed above ``tolerance``.
    """

    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    outliers: float = 0.0
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    tolerance: float = 1e-4
    min_agreement: float = 0.999
    max_outliers: float = 1e-3

    @property
    def passed(self) -> bool:
        """Whether all but ``max_outliers`` of the pixels are within tolerance and the argmax agrees."""
        return self.outliers <= self.max_outliers and self.argmax_agreement >= self.min_agreement

    def summary(self) -> str:
        """One line for logs and model cards."""
        shapes = ", ".join("x".join(str(d) for d in s) for s in self.shapes)
        return (
            f"parity: max |diff| {self.max_abs_diff:.2e}, {100 * self.outliers:.4f} % of pixels above {self.tolerance:.0e}, "
            f"argmax agreement {100 * self.argmax_agreement:.3f} % on {len(self.shapes)} inputs ({shapes})"
        )


def parity_inputs(spec: ModelSpec, seed: int = 0, extra: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Random and real-shaped float32 inputs (N, C, H, W) for ``spec``'s graph.

    Args:
        spec: the model description (channels, normalisation, window, dynamic height/width).
        seed: random seed.
        extra: further inputs (e.g. real patches from training arrays), each (N, C, H, W).

    Returns:
        The inputs: two random batches and one real-shaped window, plus ``extra``.
    """
    rng = np.random.default_rng(seed)
    c = len(spec.channels)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, c, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, c, 1, 1)
    w = int(spec.window)
    shapes = [(2, c, 64, 96), (1, c, 96, 64)] if spec.dynamic_hw else [(2, c, w, w)]
    inputs = [(mean + std * rng.uniform(-3.0, 3.0, size=s)).astype(np.float32) for s in shapes]
    # Real-shaped: one window of smooth fields (sums of a few random plane waves) around the mean.
    yy, xx = np.mgrid[0:w, 0:w].astype(np.float32) / w
    field_ = np.zeros((1, c, w, w), dtype=np.float32)
    for k in range(c):
        for _ in range(3):
            fy, fx, ph = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
            field_[0, k] += np.sin(2 * np.pi * (fy * yy + fx * xx) + ph).astype(np.float32)
    real = np.maximum(mean + std * field_, 0.0).astype(np.float32)
    real[:, :, : w // 4, : w // 4] = 0.0  # a nodata corner, as at a swath edge
    inputs.append(real)
    inputs.extend(np.ascontiguousarray(e, dtype=np.float32) for e in extra)
    return inputs


def onnx_runner(path: str | os.PathLike[str], threads: int = 0) -> Runner:
    """A function running the ONNX file on CPU with onnxruntime (float32 in, float32 out).

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (0: onnxruntime's default).

    Returns:
        ``run(x) -> probabilities`` for a float32 (N, C, H, W) array.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    try:
        sess = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelError(f"{path}: onnxruntime cannot load the exported model: {exc}") from exc
    inp = sess.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run(None, {inp.name: x.astype(dtype, copy=False)})[0], dtype=np.float32)

    return run


def _torch_runner(module: object, float64: bool = True) -> Runner:
    import copy

    import torch

    if float64:
        module = copy.deepcopy(module).double()  # type: ignore[attr-defined]

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x))
        with torch.no_grad():
            return module(t.double() if float64 else t).float().numpy()  # type: ignore[operator]

    return run


def compare_outputs(
    reference: Runner,
    candidate: Runner,
    inputs: Sequence[np.ndarray],
    tolerance: float = 1e-4,
    min_agreement: float = 0.999,
    max_outliers: float = 1e-3,
) -> ParityReport:
    """Run both on every input and measure how far apart their outputs are.

    Args:
        reference: the trusted implementation.
        candidate: the implementation under test.
        inputs: float32 (N, C, H, W) arrays.
        tolerance: max |diff| allowed (recorded in the report).
        min_agreement: argmax agreement required (recorded in the report).
        max_outliers: share of pixels allowed above ``tolerance`` (recorded in the report).

    Returns:
        The report (not raised on failure; see :attr:`ParityReport.passed`).
    """
    max_d, sum_d, n_val, agree, n_px, n_out = 0.0, 0.0, 0, 0, 0, 0
    shapes: list[tuple[int, ...]] = []
    for x in inputs:
        ref = reference(x)
        got = candidate(x)
        if ref.shape != got.shape:
            raise ModelError(f"parity: output shapes differ for input {x.shape}: reference {ref.shape}, candidate {got.shape}")
        d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
        max_d = max(max_d, float(d.max()) if d.size else 0.0)
        sum_d += float(d.sum())
        n_val += d.size
        agree += int((ref.argmax(axis=1) == got.argmax(axis=1)).sum())
        n_out += int((d.max(axis=1) > tolerance).sum()) if d.size else 0
        n_px += ref.shape[0] * ref.shape[2] * ref.shape[3]
        shapes.append(tuple(int(s) for s in x.shape))
    return ParityReport(
        max_abs_diff=max_d,
        mean_abs_diff=sum_d / max(n_val, 1),
        argmax_agreement=agree / max(n_px, 1),
        outliers=n_out / max(n_px, 1),
        shapes=shapes,
        tolerance=tolerance,
        min_agreement=min_agreement,
        max_outliers=max_outliers,
    )


def check_parity(
    reference: object,
    onnx_path: str | os.PathLike[str],
    spec: ModelSpec,
    *,
    tolerance: float = 1e-4,
    min_agreement: float = 0.999,
    max_outliers: float = 1e-3,
    seed: int = 0,
    extra: Sequence[np.ndarray] = (),
    raise_on_failure: bool = True,
) -> ParityReport:
    """Compare an ONNX file with its reference on random and real-shaped inputs.

    Args:
        reference: the exported ``torch.nn.Module`` (raw input -> probabilities; run in float64 on
            a copy), another ONNX file's path, or a ``run(x) -> probabilities`` callable.
        onnx_path: the file under test.
        spec: its description (decides the input shapes and value ranges).
        tolerance: largest allowed max |probability difference|.
        min_agreement: smallest allowed fraction of pixels with the same argmax class.
        max_outliers: largest allowed share of pixels with a difference above ``tolerance``.
        seed: random seed of the inputs.
        extra: real patches (N, C, H, W) to compare on as well.
        raise_on_failure: raise :class:`ModelError` when the check fails.

    Returns:
        The report.

    Raises:
        ModelError: when the outputs differ beyond tolerance (and ``raise_on_failure``).
    """
    if isinstance(reference, (str, os.PathLike)):
        ref_run = onnx_runner(reference)
    elif hasattr(reference, "state_dict"):
        ref_run = _torch_runner(reference)
    else:
        ref_run = reference  # type: ignore[assignment]
    report = compare_outputs(ref_run, onnx_runner(onnx_path), parity_inputs(spec, seed, extra), tolerance, min_agreement, max_outliers)
    if raise_on_failure and not report.passed:
        raise ModelError(f"{onnx_path}: exported model disagrees with its reference; {report.summary()}")
    return report
