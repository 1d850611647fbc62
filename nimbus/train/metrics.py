"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

The confusion matrix has true classes in rows and predicted classes in columns; pixels whose
target is ``ignore_index`` (255, nodata) are not counted. :class:`ConfusionMatrix` accumulates
over batches and sums across DDP processes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "accuracy", "confusion_matrix", "iou_per_class", "mean_iou", "summarize"]


def confusion_matrix(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, classes: int, ignore_index: int = 255) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        pred: predicted class per pixel (any shape), or logits (N, classes, H, W) when target
            is (N, H, W).
        target: true class per pixel; ``ignore_index`` and values >= ``classes`` are skipped.
        classes: number of classes.
        ignore_index: the nodata label.

    Returns:
        int64 array (classes, classes): row = truth, column = prediction.
    """
    pred_t = torch.as_tensor(pred)
    target_t = torch.as_tensor(target)
    if pred_t.dim() == target_t.dim() + 1:
        pred_t = pred_t.argmax(1)
    pred_t = pred_t.reshape(-1).long()
    target_t = target_t.reshape(-1).long()
    keep = (target_t != ignore_index) & (target_t >= 0) & (target_t < classes)
    idx = target_t[keep] * classes + pred_t[keep].clamp(0, classes - 1)
    return torch.bincount(idx, minlength=classes * classes).reshape(classes, classes).cpu().numpy().astype(np.int64)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Intersection over union of each class (NaN for a class absent from truth and prediction)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction (NaN when nothing was counted)."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def accuracy(cm: np.ndarray) -> float:
    """Fraction of counted pixels predicted right (NaN when nothing was counted)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def summarize(cm: np.ndarray, names: list[str] | None = None) -> dict[str, Any]:
    """A flat dict of metrics: ``miou``, ``accuracy``, ``iou_<name>`` per class, ``confusion`` (lists).

    Args:
        cm: confusion matrix from :func:`confusion_matrix`.
        names: class names (default ``class0`` ...).
    """
    cm = np.asarray(cm)
    names = names or [f"class{i}" for i in range(cm.shape[0])]
    out: dict[str, Any] = {"miou": mean_iou(cm), "accuracy": accuracy(cm)}
    for name, v in zip(names, iou_per_class(cm)):
        out[f"iou_{name}"] = float(v)
    out["confusion"] = cm.astype(int).tolist()
    return out


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches (and over DDP processes with :meth:`all_reduce`).

    Args:
        classes: number of classes.
        ignore_index: the nodata label, not counted.
    """

    def __init__(self, classes: int, ignore_index: int = 255) -> None:
        self.classes = int(classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.classes, self.classes), dtype=np.int64)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add a batch: class predictions or logits, and targets (see :func:`confusion_matrix`)."""
        self.matrix += confusion_matrix(pred, target, self.classes, self.ignore_index)

    def all_reduce(self) -> None:
        """Sum the matrices of all processes of the default process group (no-op without one)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            t = torch.as_tensor(self.matrix, device=device)
            dist.all_reduce(t)
            self.matrix = t.cpu().numpy()

    def compute(self, names: list[str] | None = None) -> dict[str, Any]:
        """The metrics of the accumulated matrix (see :func:`summarize`)."""
        return summarize(self.matrix, names)
