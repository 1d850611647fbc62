"""``nimbus export``: checkpoint -> ONNX (+ fp16 / int8 variants) -> model card, in one call.

Files written next to ``OUT.onnx``:

* ``OUT.onnx``: the fp32 model (always), checked for parity with PyTorch;
* ``OUT-fp16.onnx`` with ``--fp16``: float16 weights and compute, float32 input/output;
* ``OUT-int8.onnx`` with ``--int8 --calibration ARRAYS``: static QDQ int8;
* ``OUT.md``: the model card, with the variants' mIoU change against fp32 on held-out patches and
  their speed-up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.errors import TrainingError
from nimbus.export.model_card import DEFAULT_LIMITS, write_model_card
from nimbus.export.onnx_export import ExportResult, export_onnx
from nimbus.export.parity import check_parity
from nimbus.export.quantize import (
    VariantScore,
    convert_fp16,
    evaluate_variants,
    load_patches,
    product_folders,
    quantize_int8,
    split_products,
)

__all__ = ["ExportOutputs", "run_export", "variant_path"]


@dataclass
class ExportOutputs:
    """Everything ``nimbus export`` wrote.

    Attributes:
        result: the fp32 export (path, spec, parity).
        variants: ``{"fp16": path, "int8": path}`` for the variants asked for.
        scores: held-out scores of fp32 and the variants (empty without labelled patches).
        card: the model card.
    """

    result: ExportResult
    variants: dict[str, Path] = field(default_factory=dict)
    scores: list[VariantScore] = field(default_factory=list)
    card: Path | None = None

    def lines(self) -> list[str]:
        """A short report, one line per fact."""
        r = self.result
        out = [f"{r.path}  ({r.size_bytes / 1e6:.1f} MB, {r.spec.name} v{r.spec.version}, exported in {r.seconds:.1f} s)"]
        if r.parity is not None:
            out.append(r.parity.summary())
        out += [f"{name}: {path}" for name, path in self.variants.items()]
        base = self.scores[0] if self.scores else None
        for s in self.scores:
            extra = ""
            if base is not None and s is not base:
                extra = f" (mIoU {s.miou - base.miou:+.4f} vs fp32, speed-up {base.seconds_per_mpix / s.seconds_per_mpix:.2f}x)"
            out.append(f"held-out {s.name}: mIoU {s.miou:.4f}, accuracy {s.accuracy:.4f}, {s.seconds_per_mpix:.3f} s/Mpix{extra}")
        if self.card is not None:
            out.append(f"model card: {self.card}")
        return out


def variant_path(out: str | os.PathLike[str], variant: str) -> Path:
    """``model.onnx`` -> ``model-<variant>.onnx``."""
    out = Path(out)
    return out.with_name(f"{out.stem}-{variant}{out.suffix or '.onnx'}")


def run_export(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str = "1",
    window: int | None = None,
    overlap: float = 0.5,
    dynamic: bool | None = None,
    fp16: bool = False,
    int8: bool = False,
    calibration: str | os.PathLike[str] | None = None,
    heldout: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    patches: int = 32,
    tolerance: float = 1e-4,
    card: bool = True,
    data: str = "",
    commands: Sequence[str] = (),
    sections: dict[str, str] | None = None,
    limits: str = DEFAULT_LIMITS,
    description: str = "",
    threads: int = 0,
) -> ExportOutputs:
    """Export a checkpoint, optionally its fp16/int8 variants, and write the model card.

    Args:
        checkpoint: the ``nimbus train`` checkpoint.
        out: the fp32 ``.onnx`` file.
        name: model name in the metadata (default ``nimbus-<arch>-<encoder>``).
        version: model version in the metadata.
        window: window size (default: the training window; the fixed size for PSPNet).
        overlap: default window overlap of the segmenter.
        dynamic: dynamic height/width (default: yes except PSPNet).
        fp16: also write ``OUT-fp16.onnx``.
        int8: also write ``OUT-int8.onnx`` (needs ``calibration``).
        calibration: arrays folder whose patches calibrate the int8 ranges; when ``heldout`` is not
            given its latest products (by date) are held out of calibration and used for scores.
        heldout: arrays folder(s) with labels for the held-out scores (never used to calibrate).
        patches: number of calibration patches (and of held-out patches).
        tolerance: parity tolerance of the fp32 export (probabilities).
        card: write ``OUT.md``.
        data: training-data paragraph of the card.
        commands: exact command lines for the card.
        sections: extra card sections.
        limits: the card's limits paragraph.
        description: free text for the metadata.
        threads: onnxruntime threads for the timings (0: default).

    Returns:
        What was written.

    Raises:
        TrainingError: ``--int8`` without ``--calibration``.
        ModelError: export, checker or parity failures.
    """
    if int8 and not calibration:
        raise TrainingError("--int8 needs --calibration ARRAYS (a `nimbus arrays` folder) to calibrate activation ranges")
    result = export_onnx(
        checkpoint, out, name=name, version=version, window=window, overlap=overlap, dynamic=dynamic,
        description=description, tolerance=tolerance,
    )
    spec = result.spec
    outputs = ExportOutputs(result=result)
    calib_folders: list[Path] = []
    held_folders: list[Path] = []
    if heldout is not None:
        for item in [heldout] if isinstance(heldout, (str, os.PathLike)) else list(heldout):
            held_folders += product_folders(item)
        calib_folders = product_folders(calibration) if calibration else []
    elif calibration:
        calib_folders, held_folders = split_products(calibration)
    if fp16:
        path = convert_fp16(result.path, variant_path(out, "fp16"))
        check_parity(result.path, path, spec, tolerance=5e-2, min_agreement=0.98, max_outliers=0.01)
        outputs.variants["fp16"] = path
    if int8:
        calib = load_patches(calib_folders, spec, count=patches, seed=1)
        outputs.variants["int8"] = quantize_int8(result.path, variant_path(out, "int8"), [p.x for p in calib])
    held = load_patches(held_folders, spec, count=patches, seed=2) if held_folders else []
    if any(p.labels is not None for p in held):
        outputs.scores = evaluate_variants({"fp32": result.path, **outputs.variants}, held, spec, threads=threads)
    if card:
        card_sections = dict(sections or {})
        if held_folders and outputs.scores:
            card_sections.setdefault(
                "Held-out patches",
                f"{len(held)} patches of {spec.window if not spec.dynamic_hw else held[0].x.shape[-1]} px from "
                + ", ".join(f"`{f.name}`" for f in held_folders)
                + (f"; calibration used {len(calib_folders)} other product(s)." if int8 else "."),
            )
        outputs.card = write_model_card(
            Path(out).with_suffix(".md"),
            spec,
            model_path=result.path,
            checkpoint=result.checkpoint,
            data=data,
            commands=commands,
            parity=result.parity,
            variants=outputs.scores,
            sections=card_sections,
            limits=limits,
        )
    return outputs
