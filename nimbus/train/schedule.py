"""The learning-rate schedule of ``nimbus train``: linear warm-up, then cosine decay to 2 % of the peak."""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine"]


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule: ``warmup`` (fraction of ``total_steps``) of linear warm-up, then cosine.

    Args:
        optimizer: the optimizer whose learning rates are the peaks.
        total_steps: steps of the whole run (epochs x steps per epoch).
        warmup: fraction of the steps spent warming up (0: none).

    Returns:
        The scheduler; call ``step()`` after every optimizer step.
    """
    warm = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
