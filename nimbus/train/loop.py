"""The training loop behind ``nimbus train``: AdamW, warm-up + cosine schedule, AMP, DDP, resume.

One call, :func:`train`, does the whole run:

1. split the products of ``ARRAYS_DIR`` by date (:mod:`nimbus.train.split`); with hand labels
   (``al_labels``) choose a validation set without them (:mod:`nimbus.train.validation`, one printed
   line and a ``validation`` record); the split used is saved as ``split.json``;
2. estimate the normalisation and class frequencies from the training products
   (``stats.json``), giving cross-entropy weights 1/sqrt(frequency);
3. train on random patches (flips, 90-degree rotations), validate on a grid over the validation
   products each epoch (:mod:`nimbus.train.evaluation`): per-class IoU, mIoU, accuracy and the
   confusion matrix go to ``metrics.csv`` and ``curves.png`` (:mod:`nimbus.train.records`);
   ``last.pt`` every epoch and ``best.pt`` at the best mIoU;
4. evaluate ``best.pt`` on the test products (``test_metrics.json``).

Channels-last memory format everywhere; mixed precision (bfloat16, or float16 with a gradient
scaler) on a GPU. Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains data-parallel with NCCL on GPUs
or gloo on CPUs (:mod:`nimbus.train.distributed`): each process reads its own shard of the patches
and only rank 0 writes files.

Resuming (``resume=".../last.pt"``) restores the model, optimizer, schedule, scaler, split,
statistics, history and every option from the checkpoint; only ``epochs`` (the new total),
``out``, ``workers``, ``device`` and ``progress`` come from the call. The options are
:class:`nimbus.train.config.TrainConfig`; ``CLASS_NAMES``, ``TrainConfig`` and ``evaluate`` are
importable from here as before.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from nimbus.errors import TrainingError
from nimbus.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from nimbus.train.config import RESUME_OVERRIDES, TrainConfig
from nimbus.train.dataset import DEFAULT_CHANNELS, HandLabels, PatchDataset, ProductArrays, ShardSampler, compute_statistics
from nimbus.train.distributed import Dist, all_sum, broadcast, setup_distributed
from nimbus.train.evaluation import CLASS_NAMES, better, class_names, evaluate
from nimbus.train.losses import SegmentationLoss, class_weights
from nimbus.train.models import create_model
from nimbus.train.progress import progress_bar
from nimbus.train.records import plot_curves, write_json, write_metrics_csv
from nimbus.train.schedule import warmup_cosine
from nimbus.train.split import list_products, load_split, save_split, split_products
from nimbus.train.validation import ValidationPlan, plan_validation

__all__ = ["CLASS_NAMES", "TrainConfig", "evaluate", "train"]


def _amp(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    if not (cfg.amp and device.type == "cuda"):
        return False, torch.float32
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _load_hand_labels(cfg: TrainConfig) -> dict[str, HandLabels] | None:
    """Hand labels of ``--al-labels`` (:func:`nimbus.train.handlabels.load_hand_labels`), or None."""
    if not cfg.al_labels:
        return None
    from nimbus.train.handlabels import load_hand_labels

    return load_hand_labels(cfg.al_labels, cfg.arrays)  # type: ignore[return-value]


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
        for k in RESUME_OVERRIDES:
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
    d = setup_distributed(cfg.device)
    try:
        return _run(cfg, ckpt, d, hand_labels)
    finally:
        if d.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _run(cfg: TrainConfig, ckpt: dict[str, Any] | None, d: Dist, hand_labels: Mapping[str, HandLabels] | None) -> dict[str, Any]:
    out = Path(cfg.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    channels = list(cfg.channels or DEFAULT_CHANNELS)
    names = class_names(cfg.classes)

    # Hand labels, the split and its validation set, then statistics of the training products:
    # decided on rank 0 (or restored), shared with the others.
    if hand_labels is None:
        hand_labels = _load_hand_labels(cfg)
    if d.main:
        dates = list_products(cfg.arrays)
        if ckpt is not None:
            first = ckpt["split"]
        else:
            first = load_split(cfg.split) if cfg.split else split_products(dates, cfg.fractions, cfg.seed)
            unknown = sorted(set(sum(first.values(), [])) - set(dates))
            if unknown:
                raise TrainingError(f"{cfg.split}: products not in {cfg.arrays}: {', '.join(unknown[:5])}")
        plan = plan_validation(first, hand_labels, dates, cfg.fractions, cfg.seed)
        if ckpt is not None:
            stats = ckpt["stats"]
        else:
            train_products = [ProductArrays(Path(cfg.arrays) / p) for p in plan.split["train"]]
            st = compute_statistics(train_products, channels, cfg.classes, cfg.stats_windows, seed=cfg.seed)
            stats = st.to_json()
            stats["class_weights"] = class_weights(st.class_counts).tolist()
            write_json(out / "stats.json", stats)
        save_split(plan.split, out / "split.json", seed=cfg.seed, fractions=cfg.fractions,
                   dates={p: dates[p] for p in sorted(dates)}, validation=plan.to_json())
        print(plan.note(), file=sys.stderr)
    else:
        plan = stats = None
    plan, stats = broadcast((plan, stats), d)
    assert isinstance(plan, ValidationPlan) and stats is not None
    split = plan.split

    train_products = [ProductArrays(Path(cfg.arrays) / p) for p in split["train"]]
    val_products = [ProductArrays(Path(cfg.arrays) / p) for p in plan.validation]
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
    scheduler = warmup_cosine(optimizer, total_steps, cfg.warmup)
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
        write_json(out / "config.json", {**asdict(cfg), "world_size": d.world, "resolution_used": resolution, "channels_used": channels,
                                         "validation": plan.to_json()})

    meta = dict(arch=cfg.model, channels=channels, mean=stats["mean"], std=stats["std"], encoder=cfg.encoder, classes=cfg.classes, dropout=cfg.dropout, resolution=resolution, window=cfg.patch)
    progress = cfg.progress and d.main
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, seen, steps = 0.0, 0, 0
        lr_epoch = optimizer.param_groups[0]["lr"]
        bar = progress_bar(loader, progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
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
        loss_sum, seen = all_sum([loss_sum, seen], d)
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
        improved = better(float(metrics["miou"]), best)
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
                validation=plan.to_json(),
                stats=stats,
                best_miou=best,
                best_epoch=best_epoch,
                class_names=names,
                rng={"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(d.device) if d.device.type == "cuda" else None},
            )
            save_checkpoint(out / "last.pt", model, epoch=epoch + 1, metrics=metrics, **meta, **state)
            if improved:
                save_checkpoint(out / "best.pt", model, epoch=epoch + 1, metrics=metrics, **meta, **{k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "scaler", "rng")})
            write_metrics_csv(out / "metrics.csv", history)
            plot_curves(out / "curves.png", history, names)
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
            write_json(out / "test_metrics.json", {"checkpoint": str(best_path), "epoch": best_epoch, "products": split["test"], **test_metrics})
    return {
        "out": str(out),
        "best": str(best_path),
        "last": str(out / "last.pt"),
        "best_epoch": best_epoch,
        "best_miou": best,
        "history": history,
        "test": test_metrics,
        "validation": plan.to_json(),
        "world_size": d.world,
        "rank": d.rank,
    }
