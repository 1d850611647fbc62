"""``nimbus demo``: the whole deployment path on a synthetic product with the built-in default model.

Makes a synthetic Sentinel-2 L1C product (real SAFE layout, with its auxiliary layers and the
generator's true class map), segments it with the default model (:func:`nimbus.models.default_model_path`)
into a Cloud-Optimized GeoTIFF class map and a quicklook PNG, and scores the map against the truth.
Runs in well under a minute on two CPU cores; needs no download and no torch.

Example:
    >>> result = run_demo("nimbus-demo")          # doctest: +SKIP
    >>> print(result.report())
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nimbus.errors import NimbusError

__all__ = ["DEMO_SEED", "DemoResult", "run_demo", "score_map"]

#: Seed of the demo product (no training product of the default model uses it).
DEMO_SEED: int = 2026


@dataclass
class DemoResult:
    """What the demo wrote and how good the map is.

    Attributes:
        product: the synthetic product.
        truth: the generator's true class map (10 m GeoTIFF).
        classes: the class map written by the segmenter (COG).
        quicklook: the quicklook PNG.
        style: the QGIS style beside the class map (class names and colours), when written.
        model: the model file used.
        accuracy: share of pixels with data whose class equals the truth.
        iou: per-class IoU ``{name: value}`` (NaN when a class is in neither map).
        miou: mean of the IoUs of the classes present.
        confusion: 4x4 pixel counts, rows truth, columns prediction.
        seconds: ``{"product": ..., "segment": ...}`` wall times.
    """

    product: Path
    truth: Path
    classes: Path
    quicklook: Path | None
    model: Path
    accuracy: float
    style: Path | None = None
    iou: dict[str, float] = field(default_factory=dict)
    miou: float = float("nan")
    confusion: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        """The lines ``nimbus demo`` prints."""
        ious = ", ".join(f"{k} {v:.3f}" for k, v in self.iou.items() if not np.isnan(v))
        return "\n".join(
            [
                f"product    {self.product}",
                f"truth      {self.truth}",
                f"model      {self.model}",
                f"class map  {self.classes}",
                f"quicklook  {self.quicklook}" if self.quicklook else "quicklook  (not written)",
                *([f"QGIS style {self.style} (open the class map in QGIS: classes by name)"] if self.style else []),
                f"accuracy   {100 * self.accuracy:.1f} % of pixels with data agree with the generator's truth",
                f"IoU        {ious}; mean {self.miou:.3f}",
                f"time       product {self.seconds.get('product', 0):.1f} s, segmentation {self.seconds.get('segment', 0):.1f} s",
            ]
        )


def score_map(pred: np.ndarray, truth: np.ndarray, class_values: tuple[int, ...]) -> tuple[float, list[float], np.ndarray]:
    """Accuracy, per-class IoU and confusion matrix of a class map against the truth.

    A map coarser than the truth by an integer factor (a 20 m map, 10 m truth) is compared at the
    truth's resolution (each map pixel repeated). Pixels that are 255 in either map are ignored.

    Args:
        pred: predicted class values (h, w), 255 = no data.
        truth: true class values (H, W) with H = k h, W = k w; 255 = no data.
        class_values: the class values, in confusion-matrix order.

    Returns:
        ``(accuracy, IoUs in class order (NaN when absent from both), confusion counts)``.

    Raises:
        NimbusError: when the grids do not nest.
    """
    if pred.shape != truth.shape:
        fy, fx = truth.shape[0] / pred.shape[0], truth.shape[1] / pred.shape[1]
        if fy != fx or fy != int(fy) or fy < 1:
            raise NimbusError(f"class map {pred.shape} and truth {truth.shape} are not on nested grids")
        k = int(fy)
        pred = np.repeat(np.repeat(pred, k, axis=0), k, axis=1)
    ok = (pred != 255) & (truth != 255)
    p, t = pred[ok].astype(np.int64), truth[ok].astype(np.int64)
    n = len(class_values)
    lut = np.full(256, n, np.int64)
    lut[list(class_values)] = np.arange(n)
    cm = np.bincount(lut[t] * (n + 1) + lut[p], minlength=(n + 1) ** 2).reshape(n + 1, n + 1)[:n, :n]
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    ious = []
    for i in range(n):
        union = cm[i, :].sum() + cm[:, i].sum() - cm[i, i]
        ious.append(float(cm[i, i] / union) if union else float("nan"))
    return acc, ious, cm


def run_demo(
    out: str | os.PathLike[str] = "nimbus-demo",
    model: str | os.PathLike[str] | None = None,
    size: int = 1098,
    seed: int = DEMO_SEED,
    threads: int = 0,
    overwrite: bool = True,
) -> DemoResult:
    """Make a synthetic product, segment it with the default model and score it against the truth.

    Args:
        out: output folder (product, truth, auxiliary layers, class map, quicklook).
        model: a Nimbus ONNX model (default: the built-in default model).
        size: product side in 10 m pixels (a multiple of 6).
        seed: the product's random seed.
        threads: CPU threads (0 = all cores).
        overwrite: redo the segmentation when its outputs exist.

    Returns:
        Paths, scores and timings.

    Raises:
        ModelError: when no model is given and the default model is missing.
        UsageError: when ``size`` is not a multiple of 6 of at least 96 pixels.
    """
    import rasterio

    from nimbus.errors import UsageError

    if isinstance(size, bool) or not isinstance(size, int) or size < 96 or size % 6:
        raise UsageError(f"--size {size!r}: the demo product side must be a multiple of 6 (10/20/60 m grids nest), at least 96")

    from nimbus.legend import Legend
    from nimbus.models import default_model_path
    from nimbus.qgis import qml_path
    from nimbus.segmenter import Segmenter
    from nimbus.synthetic import make_product

    model_path = Path(model) if model is not None else default_model_path()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    product = make_product(out, size=size, seed=seed, level="L1C", baseline="05.10")
    t1 = time.perf_counter()
    seg = Segmenter(model_path, threads=threads, aux_dir=product.aux_dir, progress=False)
    res = seg.segment(product.path, out=out, quicklook=True, overwrite=overwrite)
    t2 = time.perf_counter()
    with rasterio.open(res.classes) as src:
        pred = src.read(1)
    legend = Legend.of(seg.spec.classes)  # the model's classes: the truth uses the same codes (DEFAULT_LEGEND)
    acc, ious, cm = score_map(pred, np.asarray(product.truth), legend.values)
    present = [v for v in ious if not np.isnan(v)]
    return DemoResult(
        product=Path(product.path),
        truth=Path(product.truth_path),
        classes=Path(res.classes),
        quicklook=Path(res.quicklook) if res.quicklook else None,
        model=model_path,
        accuracy=acc,
        iou=dict(zip(legend.names, ious)),
        miou=float(np.mean(present)) if present else float("nan"),
        confusion=cm,
        seconds={"product": t1 - t0, "segment": t2 - t1},
        style=qml_path(res.classes) if qml_path(res.classes).is_file() else None,
    )
