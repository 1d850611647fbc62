"""Training losses: class-weighted cross-entropy (weights 1/sqrt(pixel frequency)), optional Dice/Lovasz.

Pixels labelled ``ignore_index`` (255, nodata) count nowhere. An optional per-pixel weight map
(e.g. extra weight on hand-labelled pixels, see :mod:`nimbus.train.dataset`) scales each pixel's
cross-entropy term.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import nimbus.train  # noqa: F401  (torchvision shim before smp)

__all__ = ["SegmentationLoss", "class_weights"]


def class_weights(counts: np.ndarray | list[int]) -> np.ndarray:
    """Cross-entropy class weights 1/sqrt(pixel frequency), scaled to mean 1 over present classes.

    Args:
        counts: labelled pixel count per class.

    Returns:
        float32 weights; a class with no pixels gets the largest weight of the others (so hand
        labels of a class missing from the automatic labels still count fully).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        return np.ones(counts.shape, dtype=np.float32)
    freq = counts / counts.sum()
    w = np.zeros_like(freq)
    w[present] = 1.0 / np.sqrt(freq[present])
    w[present] /= w[present].mean()
    w[~present] = w[present].max()
    return w.astype(np.float32)


class SegmentationLoss(nn.Module):
    """Weighted cross-entropy + ``dice`` * Dice + ``lovasz`` * Lovasz-softmax.

    Args:
        weights: per-class cross-entropy weights (None: unweighted).
        ignore_index: label of pixels without a class.
        dice: weight of the multiclass Dice loss (0 disables it).
        lovasz: weight of the Lovasz-softmax loss (0 disables it).
    """

    def __init__(self, weights: np.ndarray | torch.Tensor | None = None, ignore_index: int = 255, dice: float = 0.0, lovasz: float = 0.0) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.register_buffer("weights", None if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32))
        self.dice_weight = float(dice)
        self.lovasz_weight = float(lovasz)
        self.dice = self.lovasz = None
        if self.dice_weight > 0 or self.lovasz_weight > 0:
            from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss

            if self.dice_weight > 0:
                self.dice = DiceLoss("multiclass", ignore_index=self.ignore_index)
            if self.lovasz_weight > 0:
                self.lovasz = LovaszLoss("multiclass", ignore_index=self.ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of logits (N, C, H, W) against targets (N, H, W) (uint8/long, 255 = ignore).

        Args:
            logits: raw model outputs (computed in float32 whatever the autocast dtype).
            target: class per pixel.
            pixel_weight: optional float (N, H, W) weight per pixel for the cross-entropy term.

        Returns:
            A scalar; 0 (with a gradient) when no pixel is labelled.
        """
        logits = logits.float()
        target = target.long()
        valid = target != self.ignore_index
        ce = F.cross_entropy(logits, target, weight=self.weights, ignore_index=self.ignore_index, reduction="none")
        w = self.weights[target.clamp(0, logits.shape[1] - 1)] if self.weights is not None else torch.ones_like(ce)
        w = w * valid
        if pixel_weight is not None:
            w = w * pixel_weight.float()
            ce = ce * pixel_weight.float()
        denom = w.sum()
        loss = ce.sum() / denom.clamp_min(1e-12) if bool(denom > 0) else logits.sum() * 0.0
        if self.dice is not None:
            loss = loss + self.dice_weight * self.dice(logits, target)
        if self.lovasz is not None:
            loss = loss + self.lovasz_weight * self.lovasz(logits, target)
        return loss
