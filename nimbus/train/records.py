"""The files a training run keeps of itself: ``metrics.csv``, ``curves.png`` and JSON records.

Every file is written to a temporary name and renamed (:func:`nimbus.atomic.atomic_path`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nimbus.atomic import atomic_path

__all__ = ["plot_curves", "write_json", "write_metrics_csv"]


def write_metrics_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """``metrics.csv``: one row per epoch, every key seen, the confusion matrix as JSON (last column)."""
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


def plot_curves(path: Path, history: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """``curves.png``: training and validation loss (left); mIoU, accuracy and per-class IoU (right)."""
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


def write_json(path: Path, doc: Any) -> None:
    """A JSON record (sorted keys, indented; anything unknown as its ``str``)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
