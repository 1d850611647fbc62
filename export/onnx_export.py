"""PyTorch checkpoint -> self-describing ONNX model file.

The exported graph is :class:`DeployableModel`: the trained network with the per-channel
normalisation ``(x - mean) / std`` in front and a softmax over the class axis behind. Every consumer
(``nimbus segment``, QGIS Deepness, a user's own script) therefore feeds harmonised DN / raw
auxiliary values and gets class probabilities; training and deployment cannot disagree on scaling.
The model's :class:`nimbus.modelspec.ModelSpec` is written into the file's ``metadata_props``.

Graph: input ``input`` float32 (N, C, H, W), output ``probabilities`` float32 (N, classes, H, W).
Batch, height and width are dynamic (H and W multiples of 32) except for PSPNet, whose adaptive
pooling bins only export for one input size: it gets a fixed window (its training window unless
told otherwise). The torch.export-based exporter writes opset 18; the file is stamped IR version 9
so onnxruntime >= 1.17 loads it, and ``onnx.checker`` must pass.

Example:
    >>> result = export_onnx("runs/x/best.pt", "model.onnx")      # doctest: +SKIP
    >>> result.parity.max_abs_diff < 1e-4
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

import nimbus.train  # noqa: F401  (torchvision shim before smp)
from nimbus.atomic import atomic_path
from nimbus.errors import ModelError, TrainingError
from nimbus.export.parity import ParityReport, check_parity
from nimbus.modelspec import ModelSpec
from nimbus.train.checkpoint import load_checkpoint

__all__ = [
    "FIXED_WINDOW_ARCHS",
    "INPUT_NAME",
    "IR_VERSION",
    "OPSET",
    "OUTPUT_NAME",
    "DeployableModel",
    "ExportResult",
    "export_model",
    "export_onnx",
    "spec_from_checkpoint",
]

#: Architectures exported with a fixed height/width (adaptive pooling bins depend on the size).
FIXED_WINDOW_ARCHS: frozenset[str] = frozenset({"psp"})

#: ONNX opset written (onnxruntime 1.17 runs opsets up to 20).
OPSET: int = 18

#: ONNX IR version stamped on the file (onnxruntime 1.17 reads IR versions up to 9).
IR_VERSION: int = 9

#: Name of the graph input (harmonised DN / raw auxiliary values).
INPUT_NAME: str = "input"

#: Name of the graph output (softmax probabilities).
OUTPUT_NAME: str = "probabilities"

#: Height/width of an exported graph must be a multiple of this (smp encoders' output stride).
_STRIDE = 32


class DeployableModel(nn.Module):
    """A trained network with its input normalisation and the softmax baked in.

    Args:
        model: maps normalised (N, C, H, W) inputs to logits (N, classes, H, W).
        mean: per-channel mean subtracted from the raw input.
        std: per-channel standard deviation the centred input is divided by.
    """

    def __init__(self, model: nn.Module, mean: Any, std: Any) -> None:
        super().__init__()
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(1, -1, 1, 1)
        if mean_t.shape != std_t.shape:
            raise ModelError(f"normalisation has {mean_t.shape[1]} means but {std_t.shape[1]} stds")
        if not bool((std_t > 0).all()):
            raise ModelError("every normalisation std must be > 0")
        self.model = model
        self.register_buffer("mean", mean_t)
        self.register_buffer("inv_std", 1.0 / std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes, H, W) of raw inputs (N, C, H, W)."""
        return torch.softmax(self.model((x - self.mean) * self.inv_std), dim=1)


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        path: the ONNX file.
        spec: the model description written into its metadata.
        parity: ONNX-vs-PyTorch comparison (None when skipped).
        seconds: wall time of the export.
        size_bytes: file size.
        checkpoint: the checkpoint dict without weights (arch, encoder, metrics, ...).
    """

    path: Path
    spec: ModelSpec
    parity: ParityReport | None
    seconds: float
    size_bytes: int
    checkpoint: dict[str, Any] = field(default_factory=dict)


def spec_from_checkpoint(
    meta: dict[str, Any],
    *,
    name: str | None = None,
    version: str = "1",
    window: int | None = None,
    overlap: float = 0.5,
    dynamic_hw: bool = True,
    description: str = "",
) -> ModelSpec:
    """The :class:`ModelSpec` of an exported checkpoint (normalisation and softmax in the graph).

    Args:
        meta: checkpoint dict (as returned by ``load_checkpoint``).
        name: model name for output file names (default ``nimbus-<arch>-<encoder>``).
        version: model version.
        window: window size in pixels (default: the training window).
        overlap: default overlap fraction of the sliding windows.
        dynamic_hw: whether the graph accepts any height/width.
        description: free text stored in the metadata.

    Returns:
        The model description.
    """
    arch = str(meta.get("arch", "model"))
    encoder = str(meta.get("encoder", ""))
    if name is None:
        name = f"nimbus-{arch}" if arch == "segnet" or not encoder else f"nimbus-{arch}-{encoder}"
    return ModelSpec(
        channels=tuple(meta["channels"]),
        mean=tuple(float(v) for v in np.asarray(meta["mean"]).reshape(-1)),
        std=tuple(float(v) for v in np.asarray(meta["std"]).reshape(-1)),
        resolution=float(meta.get("resolution", 10.0)),
        window=int(window or meta.get("window", 256)),
        overlap=float(overlap),
        dynamic_hw=bool(dynamic_hw),
        normalization_in_graph=True,
        softmax_in_graph=True,
        name=name,
        version=str(version),
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        description=description,
    )


def _check_window(window: int, arch: str) -> int:
    window = int(window)
    if window < _STRIDE or window % _STRIDE:
        raise TrainingError(f"export of {arch}: window {window} must be a positive multiple of {_STRIDE}")
    return window


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """Silence the exporter's progress prints, warnings and info/warning logs (errors still raise)."""
    names = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._export", "torch.fx.experimental")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _to_proto(module: nn.Module, example: torch.Tensor, dynamic: bool) -> onnx.ModelProto:
    """Trace ``module`` with the torch.export-based exporter into an ONNX ModelProto."""
    auto = torch.export.Dim.DYNAMIC
    dynamic_shapes = ({0: auto, 2: auto, 3: auto},) if dynamic else ({0: auto},)
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - torch always returns the program for dynamo=True
        raise ModelError("torch.onnx.export returned no program")
    return program.model_proto


def _name_dims(proto: onnx.ModelProto, dynamic: bool) -> None:
    """Give the dynamic graph dimensions readable names: batch, height, width."""
    names = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, dim_name in names.items():
            if axis < len(dims) and not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = dim_name


def _finish(proto: onnx.ModelProto, spec: ModelSpec, producer: str) -> onnx.ModelProto:
    """Stamp IR version, producer and metadata on ``proto`` and run the ONNX checker."""
    proto.ir_version = min(int(proto.ir_version), IR_VERSION)
    proto.producer_name = "nimbus"
    proto.producer_version = producer
    proto.doc_string = (
        f"{spec.name}: Sentinel-2 segmentation into {', '.join(spec.class_names)}. Input: harmonised DN / raw "
        f"auxiliary values of {', '.join(spec.channels)}; output: softmax probabilities."
    )
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, spec.to_metadata())
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"exported graph of {spec.name} fails onnx.checker: {exc}") from exc
    return proto


def _nimbus_version() -> str:
    try:
        from importlib.metadata import version

        return version("nimbus-s2")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0"


def export_model(
    model: nn.Module,
    spec: ModelSpec,
    out: str | os.PathLike[str],
    *,
    arch: str = "model",
    parity: bool = True,
    tolerance: float = 1e-4,
    min_agreement: float = 0.999,
    seed: int = 0,
) -> tuple[Path, ParityReport | None]:
    """Export a logits model plus ``spec``'s normalisation as a Nimbus ONNX file.

    Args:
        model: network mapping normalised inputs to logits (put in evaluation mode here).
        spec: the description to write; its ``mean``/``std`` are baked into the graph and its
            ``dynamic_hw`` and ``window`` decide the graph's input shape.
        out: the ``.onnx`` file to write (atomically).
        arch: architecture name, for messages.
        parity: compare ONNX and PyTorch outputs after export (raises above tolerance).
        tolerance: largest allowed max |probability difference|.
        min_agreement: smallest allowed fraction of pixels with the same argmax class.
        seed: seed of the parity inputs.

    Returns:
        ``(path, parity report or None)``.

    Raises:
        ModelError: when the exporter, the checker or the parity check fails.
    """
    out = Path(out)
    window = _check_window(spec.window, arch)
    module = DeployableModel(model, spec.mean, spec.std).eval()
    batch = 2
    example = torch.as_tensor(np.asarray(spec.mean, dtype=np.float32)).reshape(1, -1, 1, 1)
    size = window if not spec.dynamic_hw else min(window, 64)
    example = example + torch.rand(batch, len(spec.channels), size, size) * torch.as_tensor(
        np.asarray(spec.std, dtype=np.float32)
    ).reshape(1, -1, 1, 1)
    try:
        with torch.no_grad():
            proto = _to_proto(module, example, spec.dynamic_hw)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many unrelated types
        hint = "; try a fixed window (dynamic=False)" if spec.dynamic_hw else ""
        raise ModelError(f"ONNX export of {arch} to {out} failed: {type(exc).__name__}: {str(exc)[:600]}{hint}") from exc
    _name_dims(proto, spec.dynamic_hw)
    proto = _finish(proto, spec, _nimbus_version())
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
        report = None
        if parity:
            try:
                report = check_parity(module, tmp, spec, tolerance=tolerance, min_agreement=min_agreement, seed=seed)
            except ModelError as exc:
                raise ModelError(str(exc).replace(str(tmp), str(out))) from exc
    return out, report


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str = "1",
    window: int | None = None,
    overlap: float = 0.5,
    dynamic: bool | None = None,
    description: str = "",
    parity: bool = True,
    tolerance: float = 1e-4,
    min_agreement: float = 0.999,
) -> ExportResult:
    """Export a ``nimbus train`` checkpoint to a self-describing ONNX file.

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` written by ``nimbus train``.
        out: the ``.onnx`` file to write.
        name: model name written into the metadata (default ``nimbus-<arch>-<encoder>``).
        version: model version written into the metadata.
        window: window size in pixels (default: the training window); the fixed input size of
            architectures that cannot have a dynamic height/width (PSPNet).
        overlap: default overlap fraction the segmenter uses.
        dynamic: dynamic height/width; default True except for PSPNet.
        description: free text for the metadata (training data, licence).
        parity: run the ONNX-vs-PyTorch parity check (fails above tolerance).
        tolerance: largest allowed max |probability difference| in the parity check.
        min_agreement: smallest allowed argmax agreement in the parity check.

    Returns:
        What was written and measured.

    Raises:
        ModelError: unreadable checkpoint, failed export, checker or parity.
        TrainingError: a window that is not a positive multiple of 32, or dynamic PSPNet.
    """
    t0 = time.perf_counter()
    model, meta = load_checkpoint(checkpoint)
    arch = str(meta.get("arch", "model"))
    if dynamic is None:
        dynamic = arch not in FIXED_WINDOW_ARCHS
    elif dynamic and arch in FIXED_WINDOW_ARCHS:
        raise TrainingError(f"{checkpoint}: {arch} cannot be exported with a dynamic height/width; drop --dynamic")
    spec = spec_from_checkpoint(
        meta, name=name, version=version, window=window, overlap=overlap, dynamic_hw=dynamic, description=description
    )
    path, report = export_model(model, spec, out, arch=arch, parity=parity, tolerance=tolerance, min_agreement=min_agreement)
    return ExportResult(
        path=path,
        spec=spec,
        parity=report,
        seconds=time.perf_counter() - t0,
        size_bytes=path.stat().st_size,
        checkpoint=meta,
    )
