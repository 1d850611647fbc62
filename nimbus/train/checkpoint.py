"""Checkpoints: one ``torch.save`` dict that rebuilds the model and says how to feed it.

Keys (DEVELOPERS.md contract): ``arch``, ``encoder``, ``in_channels``, ``classes``, ``dropout``,
``channels`` (names, in input order), ``mean`` and ``std`` (per channel, applied as
``(x - mean) / std`` to harmonised DN / raw auxiliary values), ``resolution`` (m), ``window`` (px),
``state_dict``, ``epoch``, ``metrics``. Training adds ``optimizer``, ``scheduler``, ``scaler``,
``config`` and ``history`` for resuming; readers ignore keys they do not know.

Example:
    >>> model, meta = load_checkpoint("runs/x/best.pt")        # doctest: +SKIP
    >>> logits = model((x - meta["mean"][:, None, None]) / meta["std"][:, None, None])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nimbus.atomic import atomic_path
from nimbus.errors import ModelError
from nimbus.train.models import create_model

__all__ = ["CHECKPOINT_KEYS", "load_checkpoint", "read_checkpoint", "save_checkpoint", "unwrap"]

#: Keys every checkpoint holds.
CHECKPOINT_KEYS: tuple[str, ...] = (
    "arch",
    "channels",
    "classes",
    "dropout",
    "encoder",
    "epoch",
    "in_channels",
    "mean",
    "metrics",
    "resolution",
    "state_dict",
    "std",
    "window",
)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel / DataParallel / compiled wrapper."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str,
    channels: Sequence[str],
    mean: Sequence[float] | np.ndarray,
    std: Sequence[float] | np.ndarray,
    encoder: str = "resnet18",
    classes: int = 4,
    dropout: float = 0.2,
    resolution: float = 10.0,
    window: int = 512,
    epoch: int = 0,
    metrics: Mapping[str, Any] | None = None,
    **extra: Any,
) -> str:
    """Write a checkpoint atomically.

    Args:
        path: the ``.pt`` file to write.
        model: the model (a DDP wrapper is unwrapped); its weights are stored on the CPU.
        arch: registry name (:data:`nimbus.train.models.ARCHITECTURES`).
        channels: input channel names in order; ``in_channels`` is their number.
        mean: per-channel mean subtracted before the model.
        std: per-channel standard deviation divided after subtracting the mean.
        encoder: smp encoder name (kept for segnet too, where it is unused).
        classes: number of output classes.
        dropout: dropout probability the model was built with.
        resolution: pixel size in metres of the training arrays.
        window: patch size in pixels used in training (the export's default window).
        epoch: number of completed epochs.
        metrics: validation metrics of that epoch (plain numbers / lists).
        **extra: further picklable entries (optimizer state, config, history, ...).

    Returns:
        The path written.

    Raises:
        ModelError: when the channel count, mean and std disagree.
    """
    channels = [str(c) for c in channels]
    mean_a = np.asarray(mean, dtype=np.float32).reshape(-1)
    std_a = np.asarray(std, dtype=np.float32).reshape(-1)
    if not (len(channels) == mean_a.size == std_a.size):
        raise ModelError(f"{path}: {len(channels)} channels but {mean_a.size} means and {std_a.size} stds")
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    ckpt: dict[str, Any] = {
        "arch": str(arch),
        "encoder": str(encoder),
        "in_channels": len(channels),
        "classes": int(classes),
        "dropout": float(dropout),
        "channels": channels,
        "mean": mean_a.tolist(),
        "std": std_a.tolist(),
        "resolution": float(resolution),
        "window": int(window),
        "state_dict": state,
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
    }
    ckpt.update(extra)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return str(path)


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, checked for the contract's keys.

    Raises:
        ModelError: when the file is missing, unreadable or lacks keys.
    """
    if not os.path.isfile(path):
        raise ModelError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict):
        raise ModelError(f"{path}: not a Nimbus checkpoint (a {type(ckpt).__name__}, expected a dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ModelError(f"{path}: not a Nimbus checkpoint, missing {', '.join(missing)}; write it with nimbus train")
    return ckpt


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint, with its weights, in evaluation mode.

    Args:
        path: a checkpoint written by :func:`save_checkpoint` (``nimbus train``'s best.pt/last.pt).
        map_location: device for the weights.

    Returns:
        ``(model, meta)``: meta is the checkpoint dict without ``state_dict``, with ``mean`` and
        ``std`` as float32 numpy arrays.

    Raises:
        ModelError: when the file is not a valid checkpoint or its weights do not fit the model.
    """
    ckpt = read_checkpoint(path, map_location)
    model = create_model(ckpt["arch"], in_channels=ckpt["in_channels"], classes=ckpt["classes"], encoder=ckpt["encoder"], dropout=ckpt["dropout"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit a {ckpt['arch']} model ({exc})") from exc
    model.to(map_location).eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["mean"] = np.asarray(meta["mean"], dtype=np.float32)
    meta["std"] = np.asarray(meta["std"], dtype=np.float32)
    return model, meta
