"""Reduced-precision variants of an exported model: fp16 (for GPUs) and static int8 QDQ (for CPUs).

* :func:`convert_fp16` stores weights and computes in float16 but **keeps the graph's input and
  output float32** (``keep_io_types``): callers feed the same harmonised DN and read the same
  probabilities as with the fp32 file (DN up to 65535 do not fit float16's precision anyway; the
  cast happens after normalisation would lose nothing, before it loses < 0.05 %).
* :func:`quantize_int8` is onnxruntime's static quantization in QDQ format: weights int8 per output
  channel, activations uint8 with ranges calibrated on real patches from training arrays. The input
  normalisation (Sub, Mul), whose input channels span very different ranges (DN in thousands, tree
  cover in percent) and so cannot share one uint8 scale, and the final Softmax stay float32.
* :func:`evaluate_variants` measures each variant's mIoU against labels on held-out patches, its
  agreement with the fp32 model and its speed (onnxruntime, CPU), for the model card.

Example:
    >>> patches = load_patches("arrays/", spec, count=16)                      # doctest: +SKIP
    >>> quantize_int8("model.onnx", "model-int8.onnx", [p.x for p in patches])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from nimbus.atomic import atomic_path
from nimbus.errors import ModelError, NimbusError
from nimbus.export.parity import onnx_runner
from nimbus.modelspec import ModelSpec

__all__ = [
    "Patch",
    "VariantScore",
    "convert_fp16",
    "evaluate_variants",
    "load_patches",
    "mean_iou",
    "product_folders",
    "quantize_int8",
    "split_products",
]


@dataclass
class Patch:
    """One window of a training-arrays product.

    Attributes:
        x: float32 (1, C, h, w): the model's channels (0 where there is no data).
        labels: uint8 (h, w) class values, 255 = no label / no data; None when unlabelled.
        product: the product id.
        window: (row, col, h, w).
    """

    x: np.ndarray
    labels: np.ndarray | None
    product: str
    window: tuple[int, int, int, int]


@dataclass
class VariantScore:
    """How one model file does on held-out patches.

    Attributes:
        name: "fp32", "fp16", "int8" ...
        path: the file.
        miou: mean IoU over the classes present, against the labels.
        iou: per-class IoU (NaN for classes absent from both labels and predictions).
        accuracy: pixel accuracy against the labels.
        agreement: fraction of labelled pixels where the argmax equals the fp32 model's.
        seconds_per_mpix: inference seconds per megapixel (onnxruntime CPU, median of repeats).
        size_bytes: file size.
    """

    name: str
    path: Path
    miou: float
    iou: list[float] = field(default_factory=list)
    accuracy: float = float("nan")
    agreement: float = float("nan")
    seconds_per_mpix: float = float("nan")
    size_bytes: int = 0


def _toposort(graph: onnx.GraphProto) -> None:
    """Sort ``graph.node`` topologically (float16 conversion appends its input casts at the end)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ModelError(f"graph {graph.name!r} has a cycle or an undefined input: {rest[0].name} needs {list(rest[0].input)}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _copy_props(src: onnx.ModelProto, dst: onnx.ModelProto, changes: Mapping[str, str]) -> None:
    props = {p.key: p.value for p in src.metadata_props}
    props.update(changes)
    del dst.metadata_props[:]
    onnx.helper.set_model_props(dst, props)


def _variant_spec(src: str | os.PathLike[str], suffix: str) -> dict[str, str]:
    """Metadata changes of a variant: the model version gets a suffix (output names differ)."""
    spec = ModelSpec.from_onnx(src)
    version = f"{spec.version}-{suffix}" if spec.version else suffix
    return {k: v for k, v in spec.replace(version=version).to_metadata().items() if k == "nimbus.model_version"}


def convert_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write a float16 copy of an fp32 Nimbus model whose input and output stay float32.

    Args:
        src: the fp32 ``.onnx`` file (from :func:`nimbus.export.onnx_export.export_onnx`).
        dst: the file to write (atomically).

    Returns:
        ``dst``.

    Raises:
        ModelError: when the converted graph fails the ONNX checker.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(os.fspath(src))
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    _toposort(half.graph)
    half.ir_version = model.ir_version
    _copy_props(model, half, _variant_spec(src, "fp16"))
    try:
        onnx.checker.check_model(half)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{src}: the float16 conversion fails onnx.checker: {exc}") from exc
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save_model(half, str(tmp))
    return dst


def _keep_float_nodes(model: onnx.ModelProto, input_name: str) -> list[str]:
    """Names of the input-normalisation nodes (Sub/Mul/Div after the graph input) and of Softmax."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    keep: list[str] = []
    frontier = [input_name]
    while frontier:
        name = frontier.pop()
        for node in consumers.get(name, []):
            if node.op_type in ("Sub", "Mul", "Div", "Add") and node.name not in keep:
                keep.append(node.name)
                frontier.extend(node.output)
    keep += [n.name for n in model.graph.node if n.op_type == "Softmax"]
    return keep


class _Reader:
    """An onnxruntime ``CalibrationDataReader`` over a list of arrays."""

    def __init__(self, name: str, arrays: Iterable[np.ndarray]) -> None:
        self._it = iter([{name: np.ascontiguousarray(a, dtype=np.float32)} for a in arrays])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not called by MinMax calibration
        pass


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    *,
    per_channel: bool = True,
    method: str = "minmax",
) -> Path:
    """Static int8 quantization (QDQ) of an fp32 Nimbus model, calibrated on real patches.

    Args:
        src: the fp32 ``.onnx`` file.
        dst: the file to write (atomically).
        calibration: float32 inputs (N, C, h, w) of the model (harmonised DN / raw auxiliary
            values), e.g. ``[p.x for p in load_patches(...)]``.
        per_channel: per-output-channel weight scales.
        method: calibration method: "minmax", "percentile" or "entropy".

    Returns:
        ``dst``.

    Raises:
        ModelError: with no calibration data or when quantization fails.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ModelError(f"{src}: int8 quantization needs calibration patches (--calibration ARRAYS)")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ModelError(f"unknown calibration method {method!r}; choose {', '.join(methods)}")
    original = onnx.load(os.fspath(src))
    input_name = original.graph.input[0].name
    dst = Path(dst)
    with tempfile.TemporaryDirectory(dir=dst.parent if dst.parent.exists() else None) as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        try:
            quant_pre_process(os.fspath(src), os.fspath(pre), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - symbolic shape inference is optional; plain shape inference suffices
            quant_pre_process(os.fspath(src), os.fspath(pre), skip_symbolic_shape=True)
        keep = _keep_float_nodes(onnx.load(os.fspath(pre)), input_name)
        q = Path(tmpdir) / "q.onnx"
        try:
            quantize_static(
                os.fspath(pre),
                os.fspath(q),
                _Reader(input_name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                nodes_to_exclude=keep,
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises many types
            raise ModelError(f"{src}: int8 quantization failed: {type(exc).__name__}: {exc}") from exc
        model = onnx.load(os.fspath(q))
    model.ir_version = min(model.ir_version, original.ir_version)
    _copy_props(original, model, _variant_spec(src, "int8"))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{src}: the int8 model fails onnx.checker: {exc}") from exc
    with atomic_path(dst) as tmp:
        onnx.save_model(model, str(tmp))
    return dst


def product_folders(arrays: str | os.PathLike[str]) -> list[Path]:
    """The product folders of an arrays folder (or the one product folder given), by sensing time.

    Args:
        arrays: ``ARRAYS_DIR`` (holding ``<product_id>/meta.json``) or one product's folder.

    Returns:
        The folders, earliest first.

    Raises:
        NimbusError: when the folder holds no arrays.
    """
    import json

    root = Path(arrays)
    folders = [root] if (root / "meta.json").is_file() else sorted(p.parent for p in root.glob("*/meta.json"))
    if not folders:
        raise NimbusError(f"{root}: no training arrays (<product_id>/meta.json) found; run `nimbus arrays` first")

    def when(p: Path) -> str:
        try:
            return str(json.loads((p / "meta.json").read_text()).get("sensing_time") or "") + p.name
        except (OSError, ValueError):
            return p.name

    return sorted(folders, key=when)


def split_products(arrays: str | os.PathLike[str], heldout_fraction: float = 0.34) -> tuple[list[Path], list[Path]]:
    """Split the products of an arrays folder by date into calibration and held-out parts.

    Args:
        arrays: ``ARRAYS_DIR`` or one product's folder.
        heldout_fraction: share of the products (the latest dates; at least one when there are two
            or more) kept for evaluation.

    Returns:
        ``(calibration folders, held-out folders)``.

    Raises:
        NimbusError: when the folder holds no arrays.
    """
    folders = product_folders(arrays)
    if len(folders) < 2 or heldout_fraction <= 0:
        return folders, []
    n_held = min(len(folders) - 1, max(1, int(round(len(folders) * heldout_fraction))))
    return folders[:-n_held], folders[-n_held:]


def load_patches(
    folders: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    spec: ModelSpec,
    count: int = 32,
    size: int | None = None,
    seed: int = 0,
    min_valid: float = 0.5,
) -> list[Patch]:
    """Random windows of the model's channels (and labels, where present) from arrays folders.

    Args:
        folders: product folders (``ARRAYS_DIR/<product_id>``) or one ``ARRAYS_DIR``.
        spec: the model (channels; window size and fixed/dynamic height and width).
        count: number of patches in all (spread evenly over the products).
        size: patch side in pixels (default: the model's window, at most 256 for dynamic graphs).
        seed: random seed of the positions.
        min_valid: smallest share of pixels with data a patch must have (tried 20 times).

    Returns:
        The patches.

    Raises:
        NimbusError: when the folders hold no arrays, or lack a channel the model needs.
    """
    from nimbus.arrays import ArrayStack

    if isinstance(folders, (str, os.PathLike)):
        folders = product_folders(folders)
    folders = [Path(f) for f in folders]
    if not folders:
        raise NimbusError("no arrays folders given for the patches")
    if size is None:
        size = spec.window if not spec.dynamic_hw else min(spec.window, 256)
    if not spec.dynamic_hw:
        size = spec.window
    rng = np.random.default_rng(seed)
    out: list[Patch] = []
    for k, folder in enumerate(folders):
        stack = ArrayStack(folder)
        h, w = stack.shape
        side = min(size, h, w) // 32 * 32 if spec.dynamic_hw else size
        if side < 32:
            continue
        labels_src = None
        if stack.labels_path.is_file():
            import rasterio

            labels_src = rasterio.open(stack.labels_path)
        try:
            n = count // len(folders) + (1 if k < count % len(folders) else 0)
            for _ in range(n):
                for _attempt in range(20):
                    r = int(rng.integers(0, max(h - side, 0) + 1))
                    c = int(rng.integers(0, max(w - side, 0) + 1))
                    x, valid = stack.read(list(spec.channels), (r, c, side, side))
                    if valid.mean() >= min_valid:
                        break
                lab = None
                if labels_src is not None:
                    from rasterio.windows import Window

                    lab = labels_src.read(1, window=Window(c, r, side, side)).astype(np.uint8)
                    lab[~valid] = 255
                out.append(Patch(x=x[None], labels=lab, product=folder.name, window=(r, c, side, side)))
        finally:
            if labels_src is not None:
                labels_src.close()
    return out


def mean_iou(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int]) -> tuple[float, list[float], float]:
    """Mean IoU, per-class IoU and accuracy of class values ``pred`` against ``truth`` (255 ignored).

    Args:
        pred: predicted class values.
        truth: true class values, 255 where unknown.
        classes: the class values to score.

    Returns:
        ``(miou over classes present in truth or pred, per-class IoU (NaN when absent), accuracy)``.
    """
    m = truth != 255
    p, t = pred[m], truth[m]
    ious = []
    for c in classes:
        inter = np.count_nonzero((p == c) & (t == c))
        union = np.count_nonzero((p == c) | (t == c))
        ious.append(inter / union if union else float("nan"))
    present = [v for v in ious if not np.isnan(v)]
    acc = float(np.count_nonzero(p == t) / max(t.size, 1))
    return (float(np.mean(present)) if present else float("nan")), ious, acc


def _speed(run: object, x: np.ndarray, repeats: int) -> float:
    run(x)  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / (x.shape[0] * x.shape[2] * x.shape[3] / 1e6)


def evaluate_variants(
    variants: Mapping[str, str | os.PathLike[str]],
    patches: Sequence[Patch],
    spec: ModelSpec,
    *,
    threads: int = 0,
    repeats: int = 3,
    speed_size: int | None = None,
) -> list[VariantScore]:
    """Score model files (fp32 first) on labelled held-out patches, and time them on the CPU.

    Args:
        variants: ``{name: path}``; the first entry is the reference for ``agreement``.
        patches: labelled patches (:func:`load_patches` on held-out products).
        spec: the model description (class values, window).
        threads: onnxruntime intra-op threads (0: its default).
        repeats: timed runs per variant (the median is kept).
        speed_size: side of the timing input (default: the model's window, at most 512).

    Returns:
        One score per variant, in the given order.
    """
    classes = list(spec.class_values)
    values = np.asarray(classes, dtype=np.uint8)
    labelled = [p for p in patches if p.labels is not None]
    side = spec.window if not spec.dynamic_hw else min(spec.window, speed_size or 512)
    rng = np.random.default_rng(0)
    timing_x = labelled[0].x if labelled and labelled[0].x.shape[-1] == side else None
    if timing_x is None:
        mean = np.asarray(spec.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(spec.std, np.float32).reshape(1, -1, 1, 1)
        timing_x = np.maximum(mean + std * rng.standard_normal((1, len(spec.channels), side, side)).astype(np.float32), 0)
    scores: list[VariantScore] = []
    reference: list[np.ndarray] = []
    for k, (name, path) in enumerate(variants.items()):
        run = onnx_runner(path, threads=threads)
        preds = [values[run(p.x)[0].argmax(axis=0)] for p in labelled]
        if k == 0:
            reference = preds
        if labelled:
            truth = np.concatenate([p.labels.ravel() for p in labelled])  # type: ignore[union-attr]
            pred = np.concatenate([q.ravel() for q in preds])
            ref = np.concatenate([q.ravel() for q in reference])
            miou, iou, acc = mean_iou(pred, truth, classes)
            agreement = float(np.mean(pred[truth != 255] == ref[truth != 255])) if (truth != 255).any() else float("nan")
        else:
            miou, iou, acc, agreement = float("nan"), [], float("nan"), float("nan")
        scores.append(
            VariantScore(
                name=name,
                path=Path(path),
                miou=miou,
                iou=iou,
                accuracy=acc,
                agreement=agreement,
                seconds_per_mpix=_speed(run, timing_x, repeats),
                size_bytes=Path(path).stat().st_size,
            )
        )
    return scores
