"""The validation set of a training run, kept apart from hand labels (``nimbus train --al-labels``).

``nimbus uncertain`` selects samples from the products outside the training and test splits, which
are the validation products: hand-labelled, they become training data
(:func:`nimbus.train.handlabels.include_in_training`), and left alone the validation set would
shrink to nothing and the run would silently validate on the training products, hand labels
included. :func:`plan_validation` decides instead, by rule, and says what it did:

1. hand-labelled products go to ``train``, with every validation product of the same date (the
   split is by date, so that overlapping tiles of one pass never sit on both sides);
2. the other validation products stay: validation never holds a hand-labelled product or date;
3. when no validation product is left, whole dates of training products without hand labels (and
   not sharing a date with any) move to ``val``: about the validation share of the products, at
   least one date, chosen with the seed; the training set keeps at least one such date when it has two;
4. when there is no such product either, the run stops with :class:`TrainingError` (no validation
   set without hand labels can be made) instead of validating on hand-labelled data.

The plan is printed as one line (:meth:`ValidationPlan.note`) and recorded in the run's
``config.json``, ``split.json`` and checkpoints (:meth:`ValidationPlan.to_json`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nimbus.errors import TrainingError
from nimbus.train.handlabels import include_in_training
from nimbus.train.split import SPLITS

__all__ = ["ValidationPlan", "plan_validation"]


@dataclass
class ValidationPlan:
    """Which products validate a run, and why.

    Attributes:
        split: the split the run uses (``train``, ``val``, ``test`` lists of product ids).
        hand_labelled: products with hand labels (all in ``train``).
        moved_to_train: validation products moved into training (hand-labelled, or of a hand-labelled date).
        moved_to_val: training products moved into validation because no validation product was left.
        on_training: no validation products at all (no hand labels, one date): the run validates on
            its training products, as it says.
    """

    split: dict[str, list[str]]
    hand_labelled: list[str] = field(default_factory=list)
    moved_to_train: list[str] = field(default_factory=list)
    moved_to_val: list[str] = field(default_factory=list)
    on_training: bool = False

    @property
    def validation(self) -> list[str]:
        """The products the run validates on."""
        return list(self.split["val"] or self.split["train"])

    def note(self) -> str:
        """One line saying what was done (printed by ``nimbus train``)."""
        if self.on_training:
            return "nimbus train: no validation products (one date?); validating on the training products"
        if not self.hand_labelled:
            return f"nimbus train: validation on {_few(self.split['val'])}"
        parts = [f"nimbus train: --al-labels: {_few(self.hand_labelled)} hand-labelled, in training"]
        if self.moved_to_train:
            parts.append(f"moved from validation: {_few(self.moved_to_train)}")
        line = "; ".join(parts) + f"; validation on {_few(self.split['val'])} without hand labels"
        if self.moved_to_val:
            line += " (taken from training: no validation product without hand labels was left)"
        return line

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON-ready record (the ``validation`` entry of config.json and split.json)."""
        return {
            "products": self.validation,
            "hand_labelled": list(self.hand_labelled),
            "moved_to_train": list(self.moved_to_train),
            "moved_to_val": list(self.moved_to_val),
            "on_training_products": bool(self.on_training),
            "note": self.note(),
        }


def _few(products: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(products[:n]) + (f" and {len(products) - n} more" if len(products) > n else "")
    return f"{len(products)} product(s) ({shown})" if products else "0 products"


def plan_validation(
    split: Mapping[str, Sequence[str]],
    hand_labels: Mapping[str, object] | Iterable[str] | None,
    dates: Mapping[str, str],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> ValidationPlan:
    """The split a run uses when ``hand_labels`` train, with a validation set free of them.

    Args:
        split: the split before hand labels (``split.json``, a ``--split`` file or a resumed run's).
        hand_labels: products with hand labels (a mapping's keys or ids); None or empty: none.
        dates: ``{product_id: date}`` of every product (:func:`nimbus.train.split.list_products`).
        fractions: the run's train/val/test shares (how many products validation takes in rule 3).
        seed: chooses the dates of rule 3.

    Returns:
        The plan (see the module doc).

    Raises:
        TrainingError: hand labels for a test product, or no product left to validate on without
            hand labels.
    """
    base = {s: sorted(split.get(s, [])) for s in SPLITS}
    labelled = sorted(set(hand_labels or ()))
    if not labelled:
        return ValidationPlan(split=base, on_training=not base["val"])
    out = include_in_training(base, labelled)  # raises for hand labels in the test split
    labelled_dates = {dates.get(p) for p in labelled} - {None}
    same_date = [p for p in out["val"] if dates.get(p) in labelled_dates]
    out["val"] = [p for p in out["val"] if p not in same_date]
    out["train"] = sorted(set(out["train"]) | set(same_date))
    moved_to_train = sorted((set(base["val"]) & set(labelled)) | set(same_date))
    moved_to_val: list[str] = []
    if not out["val"]:
        by_date: dict[str, list[str]] = {}
        for p in out["train"]:
            if p not in labelled and dates.get(p) not in labelled_dates:
                by_date.setdefault(str(dates.get(p)), []).append(p)
        if not by_date:
            raise TrainingError(
                f"--al-labels: every product outside the test split is hand-labelled or shares a date with one "
                f"({', '.join(labelled[:5])}); no validation set without hand labels is left. Add products "
                f"to the arrays, or pass --split with a 'val' list of products that have no hand labels"
            )
        order = sorted(by_date)
        random.Random(seed).shuffle(order)
        total = sum(float(f) for f in fractions) or 1.0
        non_test = len(out["train"]) + len(out["val"])
        want = max(1, round(float(fractions[1]) / total * non_test))
        keep_one = len(order) >= 2
        for d in order[: len(order) - 1 if keep_one else len(order)]:
            moved_to_val += by_date[d]
            if len(moved_to_val) >= want:
                break
        moved_to_val = sorted(moved_to_val)
        out["train"] = [p for p in out["train"] if p not in moved_to_val]
        out["val"] = moved_to_val
    return ValidationPlan(
        split={s: sorted(out[s]) for s in SPLITS},
        hand_labelled=labelled,
        moved_to_train=moved_to_train,
        moved_to_val=moved_to_val,
    )
