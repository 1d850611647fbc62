"""Train / validation / test split by product date, reproducible with a seed, saved as JSON.

Whole products go to one split, and products sensed on the same date (neighbouring or
overlapping tiles of one pass) go to the same split, so overlapping patches never leak between
training and evaluation (the original split random patches). Dates are shuffled with the seed and
dealt out in order until each split has its share of products.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nimbus.atomic import atomic_path
from nimbus.errors import TrainingError

__all__ = ["SPLITS", "list_products", "load_split", "save_split", "split_products"]

#: Split names, in order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


def list_products(arrays_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Product folders of an arrays directory and their sensing dates.

    Args:
        arrays_dir: ``ARRAYS_DIR`` holding ``<product_id>/meta.json`` (and ``bands.npy`` ...).

    Returns:
        ``{product_id: "YYYY-MM-DD"}`` sorted by product id.

    Raises:
        TrainingError: when the folder holds no product or a meta.json has no date.
    """
    root = Path(arrays_dir)
    if not root.is_dir():
        raise TrainingError(f"{root}: arrays folder not found; build it with nimbus arrays")
    out: dict[str, str] = {}
    for meta_path in sorted(root.glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
            date = str(meta["date"])[:10]
        except (OSError, ValueError, KeyError) as exc:
            raise TrainingError(f"{meta_path}: unreadable or without 'date' ({exc}); rebuild with nimbus arrays") from exc
        out[meta_path.parent.name] = date
    if not out:
        raise TrainingError(f"{root}: no <product_id>/meta.json found; build arrays with nimbus arrays")
    return out


def split_products(dates: Mapping[str, str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict[str, list[str]]:
    """Split products into train / val / test by date.

    Args:
        dates: ``{product_id: date}`` (any string that identifies the date, e.g. ISO).
        fractions: target shares of products for train, val and test (normalised to sum 1).
        seed: random seed of the date shuffle; the same inputs and seed give the same split.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` (sorted product ids). With fewer dates
        than splits the later splits stay empty: one date -> all train; two -> train and val.

    Raises:
        TrainingError: for an empty input or invalid fractions.
    """
    if not dates:
        raise TrainingError("no products to split")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0 or fractions[0] <= 0:
        raise TrainingError(f"split fractions must be three non-negative numbers with train > 0, got {list(fractions)}")
    total = float(sum(fractions))
    share = [f / total for f in fractions]
    by_date: dict[str, list[str]] = {}
    for pid, date in sorted(dates.items()):
        by_date.setdefault(str(date), []).append(pid)
    order = sorted(by_date)
    random.Random(seed).shuffle(order)
    n = len(dates)
    targets = [share[0] * n, share[1] * n, share[2] * n]
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    # Guarantee train one date, then val and test one each (if they want any share and dates remain).
    queue = list(order)
    for i, s in enumerate(SPLITS):
        if queue and (i == 0 or share[i] > 0):
            out[s].extend(by_date[queue.pop(0)])
    for d in queue:
        # The split furthest below its target share takes the next date.
        gaps = [targets[i] - len(out[s]) if share[i] > 0 else float("-inf") for i, s in enumerate(SPLITS)]
        out[SPLITS[max(range(3), key=lambda i: gaps[i])]].extend(by_date[d])
    return {s: sorted(v) for s, v in out.items()}


def save_split(split: Mapping[str, Sequence[str]], path: str | os.PathLike[str], **info: Any) -> str:
    """Write a split (and extra info such as seed, fractions, dates) to JSON atomically."""
    doc = {s: list(split.get(s, [])) for s in SPLITS}
    doc.update(info)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2, sort_keys=True))
    return str(path)


def load_split(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read a split written by :func:`save_split`.

    Raises:
        TrainingError: when the file is missing or malformed.
    """
    try:
        doc = json.loads(Path(path).read_text())
        return {s: [str(p) for p in doc[s]] for s in SPLITS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path}: not a split file with train/val/test lists ({exc})") from exc
