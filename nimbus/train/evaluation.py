"""Evaluating a model over a patch dataset: the validation of every epoch and the final test.

Class names come from the legend (:data:`nimbus.legend.DEFAULT_LEGEND`) when the model has its
classes; metrics are those of :mod:`nimbus.train.metrics` (per-class IoU, mIoU, accuracy, confusion).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from nimbus.legend import DEFAULT_LEGEND
from nimbus.train.dataset import PatchDataset, ShardSampler
from nimbus.train.distributed import Dist, all_sum
from nimbus.train.metrics import ConfusionMatrix
from nimbus.train.progress import progress_bar

__all__ = ["CLASS_NAMES", "better", "class_names", "evaluate"]

#: Class names of the Nimbus legend (value = index): cloud, ground, snow, water.
CLASS_NAMES: tuple[str, ...] = DEFAULT_LEGEND.names


def class_names(classes: int) -> list[str]:
    """The legend's class names for a ``classes``-class model, else ``class0`` ... ``class<n-1>``."""
    if classes == len(CLASS_NAMES) and DEFAULT_LEGEND.values == tuple(range(classes)):
        return list(CLASS_NAMES)
    return [f"class{i}" for i in range(classes)]


def better(new: float, best: float | None) -> bool:
    """Whether a validation mIoU ``new`` beats ``best`` (None: nothing yet; NaN never wins over a number)."""
    if best is None:
        return True
    if math.isnan(new):
        return False
    return math.isnan(best) or new > best


def evaluate(
    model: nn.Module,
    dataset: PatchDataset,
    loss_fn: nn.Module | None = None,
    batch: int = 8,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
    amp: bool = False,
    amp_dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world: int = 1,
    workers: int = 0,
    progress: bool = False,
) -> tuple[dict[str, Any], float]:
    """Metrics of ``model`` over every patch of ``dataset`` (this process's shard under DDP).

    Args:
        model: the model (evaluation mode is set here).
        dataset: patches to evaluate (normally a grid dataset).
        loss_fn: loss to average as well (None: loss reported as NaN).
        batch: patches per forward pass.
        device: where to run.
        channels_last: channels-last memory format for the inputs.
        amp: autocast on CUDA.
        amp_dtype: autocast dtype.
        rank: this process's rank.
        world: number of processes; the confusion matrix and loss are summed across them.
        workers: DataLoader workers.
        progress: show a progress bar.

    Returns:
        ``(metrics, mean loss)``; metrics as :func:`nimbus.train.metrics.summarize`.
    """
    device = torch.device(device)
    classes = int(getattr(loss_fn, "weights", None).numel()) if getattr(loss_fn, "weights", None) is not None else None
    sampler = ShardSampler(len(dataset), rank, world, shuffle=False, pad=False)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda")
    model.eval()
    cm: ConfusionMatrix | None = None
    loss_sum = 0.0
    n = 0
    mf = torch.channels_last if channels_last else torch.contiguous_format
    with torch.no_grad():
        for b in progress_bar(loader, progress, desc="validate"):
            x = b["image"].to(device, non_blocking=True).contiguous(memory_format=mf)
            y = b["target"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                logits = model(x)
            if cm is None:
                cm = ConfusionMatrix(classes or logits.shape[1])
            cm.update(logits.float().argmax(1), y)
            if loss_fn is not None and bool((y != 255).any()):
                loss_sum += float(loss_fn(logits, y)) * x.shape[0]
                n += x.shape[0]
    if cm is None:
        cm = ConfusionMatrix(classes or len(CLASS_NAMES))
    if world > 1:
        cm.all_reduce()
        loss_sum, n = all_sum([loss_sum, n], Dist(rank=rank, world=world, device=device))
    return cm.compute(class_names(cm.classes)), (loss_sum / n if n else float("nan"))
