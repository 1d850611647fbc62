"""The options of a training run (``nimbus train``): :class:`TrainConfig`, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from nimbus.errors import TrainingError

__all__ = ["RESUME_OVERRIDES", "TrainConfig"]

#: Options a resumed run takes from the call rather than from the checkpoint.
RESUME_OVERRIDES: tuple[str, ...] = ("epochs", "out", "workers", "device", "progress", "resume")


@dataclass
class TrainConfig:
    """Every option of a training run (saved to ``config.json`` and in each checkpoint).

    Attributes:
        arrays: the arrays folder (``ARRAYS_DIR/<product_id>/...``).
        out: output folder (checkpoints, metrics, split, statistics).
        model: architecture (segnet, deeplabv3, unet, unetplusplus, fpn, psp).
        encoder: smp encoder (ignored by segnet).
        epochs: total number of epochs.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup: fraction of the steps with a linear warm-up before the cosine decay.
        batch: patches per step (per process under DDP).
        patch: patch side in pixels.
        dropout: dropout probability of the model.
        channels: input channel names (None: the 13 bands + altitude + treecover).
        classes: number of classes.
        resolution: expected pixel size of the arrays in metres (None: take the arrays').
        seed: random seed (split, statistics, initial weights, patches).
        patches_per_epoch: random training patches per epoch (None: cover the area once).
        val_stride: stride of the validation grid (None: the patch size).
        split: a split.json to reuse instead of splitting afresh.
        fractions: train/val/test shares of the products for a fresh split.
        dice: weight of a Dice loss term (0: none).
        lovasz: weight of a Lovasz-softmax term (0: none).
        stats_windows: random windows per training product for the statistics.
        amp: mixed precision on GPU.
        channels_last: channels-last memory format.
        workers: DataLoader worker processes.
        device: "cpu", "cuda", "cuda:1" ... (None: the GPU of this rank if there is one).
        progress: show progress bars (only on a terminal, only on rank 0).
        resume: checkpoint to resume from.
        al_labels: samples folder(s) with hand labels (active learning; :mod:`nimbus.train.handlabels`).
        al_weight: loss weight of hand-labelled pixels.
        al_fraction: share of random training patches drawn around hand-labelled samples.
    """

    arrays: str
    out: str
    model: str = "segnet"
    encoder: str = "resnet18"
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    batch: int = 8
    patch: int = 512
    dropout: float = 0.2
    channels: list[str] | None = None
    classes: int = 4
    resolution: float | None = None
    seed: int = 0
    patches_per_epoch: int | None = None
    val_stride: int | None = None
    split: str | None = None
    fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    dice: float = 0.0
    lovasz: float = 0.0
    stats_windows: int = 32
    amp: bool = True
    channels_last: bool = True
    workers: int = 0
    device: str | None = None
    progress: bool = True
    resume: str | None = None
    al_labels: str | None = None
    al_weight: float = 1.0
    al_fraction: float = 0.0

    def validate(self) -> None:
        """Raise :class:`TrainingError` for values that cannot work."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (self.patch >= 16, f"patch must be >= 16 px, got {self.patch}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.al_weight >= 0, f"al_weight must be >= 0, got {self.al_weight}"),
            (0 <= self.al_fraction <= 1, f"al_fraction must be in [0, 1], got {self.al_fraction}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise TrainingError(msg)
        if self.batch < 2 and self.model in ("deeplabv3", "psp"):
            raise TrainingError(f"model {self.model} batch-normalises image-level pooled features and needs --batch >= 2")
        if self.model != "segnet" and self.patch % 32:
            raise TrainingError(f"model {self.model} needs a patch divisible by 32, got {self.patch}")
