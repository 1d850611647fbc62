"""The training loop behind ``nimbus train``: AdamW, warm-up + cosine schedule, AMP, DDP, resume.

One call, :func:`train`, does the whole run:

1. split the products of ``ARRAYS_DIR`` by date (:mod:`nimbus.train.split`), saved as
   ``split.json``;
2. estimate the normalisation and class frequencies from the training products
   (``stats.json``), giving cross-entropy weights 1/sqrt(frequency);
3. train on random patches (flips, 90-degree rotations), validate on a grid over the validation
   products each epoch: per-class IoU, mIoU, accuracy and the confusion matrix go to
   ``metrics.csv`` and ``curves.png``; ``last.pt`` every epoch and ``best.pt`` at the best mIoU;
4. evaluate ``best.pt`` on the test products (``test_metrics.json``).

Channels-last memory format everywhere; mixed precision (bfloat16, or float16 with a gradient
scaler) on a GPU. Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains data-parallel with NCCL on GPUs
or gloo on CPUs: each process reads its own shard of the patches and only rank 0 writes files.

Resuming (``resume=".../last.pt"``) restores the model, optimizer, schedule, scaler, split,
statistics, history and every option from the checkpoint; only ``epochs`` (the new total),
``out``, ``workers``, ``device`` and ``progress`` come from the call.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from nimbus.atomic import atomic_path
from nimbus.errors import TrainingError
from nimbus.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from nimbus.train.dataset import DEFAULT_CHANNELS, HandLabels, PatchDataset, ProductArrays, ShardSampler, compute_statistics
from nimbus.train.losses import SegmentationLoss, class_weights
from nimbus.train.metrics import ConfusionMatrix
from nimbus.train.models import create_model
from nimbus.train.split import list_products, load_split, save_split, split_products

__all__ = ["CLASS_NAMES", "TrainConfig", "evaluate", "train"]

#: Class names of the 4-class Nimbus legend (value = index).
CLASS_NAMES: tuple[str, ...] = ("cloud", "ground", "snow", "water")

#: Options a resumed run takes from the call rather than from the checkpoint.
_RESUME_OVERRIDES = ("epochs", "out", "workers", "device", "progress", "resume")


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
        al_labels: samples folder with hand labels (active learning; see ``_load_hand_labels``).
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


# ----------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: str | None) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {device!r} asked for but no CUDA GPU is available")
    if world <= 1:
        dev = torch.device(device) if device else torch.device("cuda" if want_cuda else "cpu")
        return _Dist(device=dev)
    int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local_rank}") if want_cuda else torch.device("cpu")
    here = False
    if not dist.is_initialized():
        if want_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        here = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=dev, initialised_here=here)


def _broadcast(obj: Any, d: _Dist) -> Any:
    if d.world <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _all_sum(values: Sequence[float], d: _Dist) -> list[float]:
    if d.world <= 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.cpu().tolist()


# ----------------------------------------------------------------------------- pieces


def _progress(iterable: Any, enabled: bool, **kw: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled or not sys.stderr.isatty(), leave=False, dynamic_ncols=True, **kw)


def _schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _amp(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    if not (cfg.amp and device.type == "cuda"):
        return False, torch.float32
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _class_names(classes: int) -> list[str]:
    return list(CLASS_NAMES) if classes == len(CLASS_NAMES) else [f"class{i}" for i in range(classes)]


def _load_hand_labels(cfg: TrainConfig) -> dict[str, HandLabels] | None:
    """Hand labels for ``--al-labels``: ``{product_id: HandLabels}`` (see :mod:`nimbus.train.dataset`).

    The reader is ``nimbus.train.handlabels.load_hand_labels(samples_dir, arrays_dir)`` (the
    active-learning part); until it exists, asking for hand labels is an error, never a silent no-op.
    """
    if not cfg.al_labels:
        return None
    try:
        from nimbus.train.handlabels import load_hand_labels  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TrainingError(f"--al-labels {cfg.al_labels}: hand labels are not supported by this installation yet (nimbus.train.handlabels missing)") from exc
    return load_hand_labels(cfg.al_labels, cfg.arrays)


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
        for b in _progress(loader, progress, desc="validate"):
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
        cm = ConfusionMatrix(classes or 4)
    if world > 1:
        cm.all_reduce()
        loss_sum, n = _all_sum([loss_sum, n], _Dist(rank=rank, world=world, device=device))
    names = _class_names(cm.classes)
    return cm.compute(names), (loss_sum / n if n else float("nan"))


def _write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys and k != "confusion"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys + ["confusion"], extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({**row, "confusion": json.dumps(row.get("confusion", []))})
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buf.getvalue())


def _plot(path: Path, history: list[dict[str, Any]], names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(ep, [r["train_loss"] for r in history], "o-", label="train")
    a.plot(ep, [r["val_loss"] for r in history], "o-", label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(ep, [r["miou"] for r in history], "o-", lw=2, label="mIoU")
    b.plot(ep, [r["accuracy"] for r in history], "s--", label="accuracy")
    for n in names:
        b.plot(ep, [r.get(f"iou_{n}", float("nan")) for r in history], ".:", label=f"IoU {n}")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _write_json(path: Path, doc: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _better(new: float, best: float | None) -> bool:
    if best is None:
        return True
    if math.isnan(new):
        return False
    return math.isnan(best) or new > best


# ----------------------------------------------------------------------------- the run


def train(arrays: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] | None = None, hand_labels: Mapping[str, HandLabels] | None = None, **options: Any) -> dict[str, Any]:
    """Train a segmentation model on an arrays folder (see the module doc and :class:`TrainConfig`).

    Args:
        arrays: the arrays folder (may be omitted when resuming: taken from the checkpoint).
        out: output folder (may be omitted when resuming: the checkpoint's folder).
        hand_labels: ``{product_id: uint8 (H, W)}`` hand labels (255 = none) to overlay, with
            loss weight ``al_weight``; overrides ``al_labels``.
        **options: any other :class:`TrainConfig` field.

    Returns:
        A summary: ``out``, ``best`` / ``last`` checkpoint paths, ``best_epoch``, ``best_miou``,
        ``history`` (one dict per epoch), ``test`` metrics (or None), ``world_size``.

    Raises:
        TrainingError: for invalid options, unusable arrays or an unreadable checkpoint.
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TrainingError(f"unknown training option(s): {', '.join(unknown)}")
    ckpt: dict[str, Any] | None = None
    resume = options.get("resume")
    if resume:
        ckpt = read_checkpoint(resume)
        if "config" not in ckpt or "optimizer" not in ckpt:
            raise TrainingError(f"{resume}: cannot resume from it (no optimizer state); resume from a last.pt written by nimbus train")
        saved = dict(ckpt["config"])
        for k in _RESUME_OVERRIDES:
            if k in options and options[k] is not None:
                saved[k] = options[k]
        saved["resume"] = str(resume)
        if arrays is not None:
            saved["arrays"] = str(arrays)
        saved["out"] = str(out) if out is not None else saved.get("out") or str(Path(resume).parent)
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k in known})
    else:
        if arrays is None or out is None:
            raise TrainingError("train needs --arrays DIR and --out DIR (or --resume CHECKPOINT)")
        cfg = TrainConfig(arrays=str(arrays), out=str(out), **options)
    if cfg.channels is not None:
        cfg.channels = [str(c) for c in ([cfg.channels] if isinstance(cfg.channels, str) else cfg.channels)]
    cfg.fractions = [float(f) for f in cfg.fractions]
    cfg.validate()
    d = _setup_distributed(cfg.device)
    try:
        return _run(cfg, ckpt, d, hand_labels)
    finally:
        if d.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _run(cfg: TrainConfig, ckpt: dict[str, Any] | None, d: _Dist, hand_labels: Mapping[str, HandLabels] | None) -> dict[str, Any]:
    out = Path(cfg.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    channels = list(cfg.channels or DEFAULT_CHANNELS)
    names = _class_names(cfg.classes)

    # Split and statistics: computed on rank 0 (or restored), shared with the others.
    if ckpt is not None:
        split = ckpt["split"]
        stats = ckpt["stats"]
    elif d.main:
        dates = list_products(cfg.arrays)
        split = load_split(cfg.split) if cfg.split else split_products(dates, cfg.fractions, cfg.seed)
        unknown = sorted(set(sum(split.values(), [])) - set(dates))
        if unknown:
            raise TrainingError(f"{cfg.split}: products not in {cfg.arrays}: {', '.join(unknown[:5])}")
        train_products = [ProductArrays(Path(cfg.arrays) / p) for p in split["train"]]
        st = compute_statistics(train_products, channels, cfg.classes, cfg.stats_windows, seed=cfg.seed)
        stats = st.to_json()
        stats["class_weights"] = class_weights(st.class_counts).tolist()
        save_split(split, out / "split.json", seed=cfg.seed, fractions=cfg.fractions, dates={p: dates[p] for p in sorted(dates)})
        _write_json(out / "stats.json", stats)
    else:
        split = stats = None
    split, stats = _broadcast((split, stats), d)
    if hand_labels is None:
        hand_labels = _load_hand_labels(cfg)
    if hand_labels:
        # Hand labels come from nimbus uncertain's pool (products outside train and test): they train.
        from nimbus.train.handlabels import include_in_training

        split = include_in_training(split, hand_labels)

    train_products = [ProductArrays(Path(cfg.arrays) / p) for p in split["train"]]
    val_ids = split["val"] or split["train"]
    if not split["val"] and d.main:
        print("nimbus train: no validation products (one date?); validating on the training products", file=sys.stderr)
    val_products = [ProductArrays(Path(cfg.arrays) / p) for p in val_ids]
    res = {p.resolution for p in train_products + val_products} - {None}
    if len(res) > 1:
        raise TrainingError(f"{cfg.arrays}: products at different resolutions {sorted(res)}; build arrays at one resolution")
    arrays_res = res.pop() if res else cfg.resolution
    if cfg.resolution is not None and arrays_res is not None and abs(float(cfg.resolution) - float(arrays_res)) > 1e-6:
        raise TrainingError(f"{cfg.arrays}: arrays are at {arrays_res:g} m but --resolution {cfg.resolution:g} was asked; rebuild arrays at that resolution")
    resolution = float(arrays_res if arrays_res is not None else 10.0)

    train_ds = PatchDataset(train_products, channels, stats["mean"], stats["std"], cfg.patch, "random", cfg.patches_per_epoch, augment=True, seed=cfg.seed, hand_labels=hand_labels, hand_weight=cfg.al_weight, hand_fraction=cfg.al_fraction if hand_labels else 0.0)
    val_ds = PatchDataset(val_products, channels, stats["mean"], stats["std"], cfg.patch, "grid", stride=cfg.val_stride)
    sampler = ShardSampler(len(train_ds), d.rank, d.world, shuffle=True, seed=cfg.seed, pad=True)
    loader = DataLoader(train_ds, batch_size=cfg.batch, sampler=sampler, num_workers=cfg.workers, pin_memory=d.device.type == "cuda", drop_last=len(sampler) % cfg.batch == 1 and len(sampler) > 1)

    model = create_model(cfg.model, in_channels=len(channels), classes=cfg.classes, encoder=cfg.encoder, dropout=cfg.dropout)
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(d.device, memory_format=mf)
    net: nn.Module = model
    if d.world > 1:
        if d.device.type == "cuda":
            # Batch statistics over all GPUs (SyncBatchNorm needs CUDA; its state_dict keys are BatchNorm2d's).
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    loss_fn = SegmentationLoss(np.asarray(stats["class_weights"], dtype=np.float32), dice=cfg.dice, lovasz=cfg.lovasz).to(d.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * len(loader)
    scheduler = _schedule(optimizer, total_steps, cfg.warmup)
    use_amp, amp_dtype = _amp(cfg, d.device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    history: list[dict[str, Any]] = []
    best: float | None = None
    best_epoch = 0
    start = 0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        # The schedule spans the new total of epochs: set the rate it gives at the resumed step.
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * scheduler.lr_lambdas[0](scheduler.last_epoch)
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        history = list(ckpt.get("history", []))
        best = ckpt.get("best_miou")
        best_epoch = int(ckpt.get("best_epoch", 0))
        start = int(ckpt["epoch"])
        if ckpt.get("rng") is not None and d.world == 1:
            torch.set_rng_state(ckpt["rng"]["torch"])
            if ckpt["rng"].get("cuda") is not None and d.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"], d.device)
        if start >= cfg.epochs and d.main:
            print(f"nimbus train: {cfg.resume} already has {start} epochs (asked for {cfg.epochs}); nothing to train", file=sys.stderr)
    if d.main:
        _write_json(out / "config.json", {**asdict(cfg), "world_size": d.world, "resolution_used": resolution, "channels_used": channels})

    meta = dict(arch=cfg.model, channels=channels, mean=stats["mean"], std=stats["std"], encoder=cfg.encoder, classes=cfg.classes, dropout=cfg.dropout, resolution=resolution, window=cfg.patch)
    progress = cfg.progress and d.main
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, seen, steps = 0.0, 0, 0
        lr_epoch = optimizer.param_groups[0]["lr"]
        bar = _progress(loader, progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        for b in bar:
            x = b["image"].to(d.device, non_blocking=True).contiguous(memory_format=mf)
            y = b["target"].to(d.device, non_blocking=True)
            w = b["weight"].to(d.device, non_blocking=True)
            with torch.autocast(d.device.type, dtype=amp_dtype, enabled=use_amp):
                logits = net(x)
            loss = loss_fn(logits, y, w)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += float(loss.detach()) * x.shape[0]
            seen += x.shape[0]
            steps += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}")
        loss_sum, seen = _all_sum([loss_sum, seen], d)
        metrics, val_loss = evaluate(model, val_ds, loss_fn, cfg.batch, d.device, cfg.channels_last, use_amp, amp_dtype, d.rank, d.world, cfg.workers, progress)
        row = {
            "epoch": epoch + 1,
            "lr": lr_epoch,
            "train_loss": loss_sum / max(seen, 1),
            "val_loss": val_loss,
            **{k: v for k, v in metrics.items()},
            "steps": steps,
            "train_patches": int(seen),
            "val_patches": len(val_ds),
            "world_size": d.world,
            "batch": cfg.batch,
            "seconds": round(time.time() - t0, 3),
        }
        history.append(row)
        improved = _better(float(metrics["miou"]), best)
        if improved:
            best, best_epoch = float(metrics["miou"]), epoch + 1
        if d.main:
            state = dict(
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                config=asdict(cfg),
                history=history,
                split=split,
                stats=stats,
                best_miou=best,
                best_epoch=best_epoch,
                class_names=names,
                rng={"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(d.device) if d.device.type == "cuda" else None},
            )
            save_checkpoint(out / "last.pt", model, epoch=epoch + 1, metrics=metrics, **meta, **state)
            if improved:
                save_checkpoint(out / "best.pt", model, epoch=epoch + 1, metrics=metrics, **meta, **{k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "scaler", "rng")})
            _write_csv(out / "metrics.csv", history)
            _plot(out / "curves.png", history, names)
            print(
                f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f}, val loss {val_loss:.4f}, "
                f"mIoU {metrics['miou']:.4f}, accuracy {metrics['accuracy']:.4f}" + (" (best)" if improved else ""),
                file=sys.stderr,
            )
        if d.world > 1:
            dist.barrier()

    test_metrics = None
    best_path = out / "best.pt"
    if split["test"] and best_path.exists():
        if d.world > 1:
            dist.barrier()
        best_model, _ = load_checkpoint(best_path, map_location="cpu")
        best_model = best_model.to(d.device, memory_format=mf)
        test_ds = PatchDataset([ProductArrays(Path(cfg.arrays) / p) for p in split["test"]], channels, stats["mean"], stats["std"], cfg.patch, "grid", stride=cfg.val_stride)
        test_metrics, test_loss = evaluate(best_model, test_ds, loss_fn, cfg.batch, d.device, cfg.channels_last, use_amp, amp_dtype, d.rank, d.world, cfg.workers, progress)
        test_metrics["loss"] = test_loss
        if d.main:
            _write_json(out / "test_metrics.json", {"checkpoint": str(best_path), "epoch": best_epoch, "products": split["test"], **test_metrics})
    return {
        "out": str(out),
        "best": str(best_path),
        "last": str(out / "last.pt"),
        "best_epoch": best_epoch,
        "best_miou": best,
        "history": history,
        "test": test_metrics,
        "world_size": d.world,
        "rank": d.rank,
    }
