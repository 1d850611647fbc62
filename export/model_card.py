"""Model cards: the Markdown file that ships beside every exported model (``<model>.md``).

A card says what the file is (architecture, inputs in order with their normalisation, classes,
resolution, window), how it was made (data, exact command lines), how good it is (training
metrics, held-out metrics, parity with PyTorch, reduced-precision variants and their speed) and,
plainly, its limits.

Example:
    >>> write_model_card("model.md", spec, model_path="model.onnx", commands=["nimbus train ..."])   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nimbus.atomic import atomic_path
from nimbus.modelspec import ModelSpec

__all__ = ["DEFAULT_LIMITS", "render_model_card", "write_model_card"]

#: What every card says unless told otherwise.
DEFAULT_LIMITS = (
    "Scores are only as good as the labels and scenes the model was trained on; check it on your own "
    "labelled scenes before relying on it. Pixels without input data are never classified (255)."
)


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _spec_section(spec: ModelSpec, path: Path | None, size: int | None, arch: str, encoder: str) -> list[str]:
    lines = ["## The file", ""]
    if path is not None:
        lines.append(f"- File: `{path.name}`" + (f" ({size / 1e6:.1f} MB)" if size else ""))
    lines += [
        f"- Name and version: `{spec.name}` v{spec.version} (output files are tagged `{spec.file_tag}`)",
        f"- Architecture: {arch}" + (f", encoder {encoder}" if encoder and arch != "segnet" else ""),
        f"- Pixel size: {spec.resolution:g} m; window {spec.window} px, default overlap {spec.overlap:g}; "
        + ("dynamic height/width (multiples of 32)" if spec.dynamic_hw else f"fixed input {spec.window}x{spec.window}"),
        "- Graph input `input`: float32 (N, C, H, W) harmonised DN (every processing baseline on the pre-04.00 "
        "scale, 0 = no data) and auxiliary layers in their units. The normalisation `(x - mean) / std` below is "
        "inside the graph: do not normalise again.",
        "- Graph output `probabilities`: float32 (N, classes, H, W) softmax probabilities.",
        "- Metadata: `nimbus.*` keys (read by `nimbus info` / `nimbus segment`) and the QGIS Deepness keys "
        "(mean 0, std 1/255 so Deepness' own scaling cancels).",
        "",
        "| # | channel | mean | std |",
        "|---|---------|-----:|----:|",
    ]
    lines += [f"| {i} | {c} | {m:.2f} | {s:.2f} |" for i, (c, m, s) in enumerate(zip(spec.channels, spec.mean, spec.std))]
    lines += ["", "| output | value | class | colour |", "|---|---|---|---|"]
    lines += [f"| {i} | {c.value} | {c.name} | rgb{tuple(c.color)} |" for i, c in enumerate(spec.classes)]
    lines += ["", "Class value 255 marks pixels without data.", ""]
    return lines


def render_model_card(
    spec: ModelSpec,
    *,
    title: str | None = None,
    summary: str = "",
    model_path: str | os.PathLike[str] | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    data: str = "",
    commands: Sequence[str] = (),
    parity: Any = None,
    variants: Sequence[Any] = (),
    sections: Mapping[str, str] | None = None,
    limits: str = DEFAULT_LIMITS,
) -> str:
    """The Markdown text of a model card.

    Args:
        spec: the model's description (as written into its metadata).
        title: heading (default: the model name).
        summary: a paragraph under the heading.
        model_path: the model file (name and size are listed).
        checkpoint: the checkpoint dict without weights (arch, encoder, epoch, metrics).
        data: what the model was trained on.
        commands: the exact command lines that produced it, in order.
        parity: a :class:`nimbus.export.parity.ParityReport`.
        variants: :class:`nimbus.export.quantize.VariantScore` rows (fp32 first).
        sections: further ``{heading: markdown}`` sections (e.g. held-out metrics, speed).
        limits: the limits, said plainly.

    Returns:
        The card.
    """
    ckpt = dict(checkpoint or {})
    p = Path(model_path) if model_path is not None else None
    size = p.stat().st_size if p is not None and p.exists() else None
    lines = [f"# {title or spec.name}", ""]
    if summary:
        lines += [summary, ""]
    lines += _spec_section(spec, p, size, str(ckpt.get("arch", "unknown")), str(ckpt.get("encoder", "")))
    if data:
        lines += ["## Training data", "", data, ""]
    if commands:
        lines += ["## How it was made", "", "```bash", *commands, "```", ""]
    metrics = ckpt.get("metrics") or {}
    if metrics:
        lines += [f"## Validation metrics of the checkpoint (epoch {ckpt.get('epoch', '?')})", ""]
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                lines.append(f"- {k}: {_fmt(float(v))}")
            elif isinstance(v, (list, tuple)) and len(v) <= 8 and all(isinstance(x, (int, float)) for x in v):
                lines.append(f"- {k}: " + ", ".join(_fmt(float(x)) for x in v))
        lines.append("")
    for heading, body in (sections or {}).items():
        lines += [f"## {heading}", "", body.rstrip(), ""]
    if parity is not None:
        lines += ["## Export parity (ONNX vs PyTorch)", "", f"- {parity.summary()}", ""]
    if variants:
        lines += [
            "## Precision variants",
            "",
            "mIoU and accuracy against the labels of held-out patches; agreement = share of labelled pixels "
            "whose class equals the fp32 model's; speed with onnxruntime on the CPU of the export machine.",
            "",
            "| variant | file | size | mIoU | accuracy | agreement with fp32 | s / Mpix | speed-up |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        base = variants[0]
        for v in variants:
            d = v.miou - base.miou
            speed_up = base.seconds_per_mpix / v.seconds_per_mpix if v.seconds_per_mpix > 0 else float("nan")
            lines.append(
                f"| {v.name} | `{v.path.name}` | {v.size_bytes / 1e6:.1f} MB | {_fmt(v.miou)}"
                + (f" ({d:+.4f})" if v is not base else "")
                + f" | {_fmt(v.accuracy)} | {_fmt(v.agreement)} | {_fmt(v.seconds_per_mpix, 3)} | {speed_up:.2f}x |"
            )
        lines += [
            "",
            "The fp16 file keeps float32 input and output (feed it exactly as the fp32 one); it is meant for "
            "GPUs, where it halves weight memory and traffic; on CPUs onnxruntime gains nothing from it (see the table). The int8 file "
            "(static QDQ, weights per channel, input normalisation and softmax kept in float32) is the fast "
            "one on CPUs with integer dot-product instructions.",
            "",
        ]
    lines += ["## Limits", "", limits, ""]
    return "\n".join(lines)


def write_model_card(path: str | os.PathLike[str], spec: ModelSpec, **kwargs: Any) -> Path:
    """Write :func:`render_model_card`'s text to ``path`` (atomically).

    Args:
        path: the ``.md`` file (by convention the model's name with ``.md``).
        spec: the model's description.
        **kwargs: the other arguments of :func:`render_model_card`.

    Returns:
        ``path``.
    """
    path = Path(path)
    text = render_model_card(spec, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
