"""nimbus.train.validation: hand-labelled products never become the validation set (``--al-labels``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_train_handlabels import BANDS13, add_sample
from train_fixtures import make_arrays

from nimbus.errors import TrainingError
from nimbus.samples import SampleSet
from nimbus.train.checkpoint import read_checkpoint
from nimbus.train.split import save_split
from nimbus.train.validation import plan_validation

DATES = {"a": "2024-01-01", "b": "2024-01-11", "c": "2024-01-21", "d": "2024-01-31", "e": "2024-02-10", "b2": "2024-01-11"}


def test_without_hand_labels_nothing_changes() -> None:
    split = {"train": ["a", "c"], "val": ["b"], "test": ["d"]}
    plan = plan_validation(split, None, DATES)
    assert plan.split == split and plan.validation == ["b"] and not plan.on_training
    alone = plan_validation({"train": ["a"], "val": [], "test": []}, {}, DATES)
    assert alone.on_training and alone.validation == ["a"] and "validating on the training products" in alone.note()


def test_labelled_validation_products_train_and_the_rest_validate() -> None:
    split = {"train": ["a"], "val": ["b", "b2", "c"], "test": ["d"]}
    plan = plan_validation(split, {"b": []}, DATES)
    # b is hand-labelled; b2 shares its date (one pass): both train, c still validates
    assert plan.split == {"train": ["a", "b", "b2"], "val": ["c"], "test": ["d"]}
    assert plan.moved_to_train == ["b", "b2"] and plan.moved_to_val == []
    assert "1 product(s) (b) hand-labelled" in plan.note() and "validation on 1 product(s) (c) without hand labels" in plan.note()
    # resuming with the plan's own split changes nothing
    again = plan_validation(plan.split, ["b"], DATES)
    assert again.split == plan.split and again.moved_to_train == [] and again.moved_to_val == []


def test_emptied_validation_is_refilled_from_training_without_hand_labels() -> None:
    split = {"train": ["a", "c", "e"], "val": ["b"], "test": ["d"]}
    plan = plan_validation(split, ["b"], DATES, seed=0)
    assert plan.split["val"] and not set(plan.split["val"]) & {"b", "b2"}
    assert set(plan.split["val"]) < {"a", "c", "e"} and plan.moved_to_val == plan.split["val"]
    assert "b" in plan.split["train"] and len(plan.split["train"]) == 3  # two of a, c, e stay (one date moved)
    assert "taken from training" in plan.note()
    record = plan.to_json()
    assert record["products"] == plan.split["val"] and record["hand_labelled"] == ["b"] and record["note"] == plan.note()


def test_no_product_left_without_hand_labels_is_an_error() -> None:
    with pytest.raises(TrainingError, match="no validation set without hand labels"):
        plan_validation({"train": ["a"], "val": ["b"], "test": ["d"]}, ["a", "b"], DATES)
    with pytest.raises(TrainingError, match="test split"):
        plan_validation({"train": ["a"], "val": ["b"], "test": ["d"]}, ["d"], DATES)


def test_al_labels_run_validates_without_hand_labels_and_says_so(tmp_path, capsys) -> None:
    """A real (tiny) training with --al-labels: every validation product was hand-labelled."""
    from nimbus.cli import main

    arrays = make_arrays(tmp_path / "arrays", n_products=4, size=64, aux=False)
    ids = sorted(p.name for p in arrays.iterdir())
    split = {"train": [ids[0], ids[1]], "val": [ids[2]], "test": [ids[3]]}
    save_split(split, tmp_path / "split.json")
    ss = SampleSet(tmp_path / "samples", create=True)
    sid = add_sample(ss, arrays, ids[2])  # nimbus uncertain's pool: the validation product
    ss.save_label(sid, np.full((32, 32), 3, np.uint8), 0, status="done")
    out = tmp_path / "run"
    main([
        "train", "--arrays", str(arrays), "--out", str(out), "--split", str(tmp_path / "split.json"),
        "--al-labels", str(ss.root), "--al-weight", "2", "--epochs", "1", "--patch", "32", "--batch", "2",
        "--patches-per-epoch", "4", "--channels", ",".join(BANDS13), "--device", "cpu", "--seed", "0",
    ])
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "--al-labels" in ln)
    assert f"({ids[2]}) hand-labelled" in line and "without hand labels" in line and "taken from training" in line
    used = json.loads((out / "split.json").read_text())
    assert ids[2] in used["train"] and ids[2] not in used["val"] and used["val"] and used["test"] == [ids[3]]
    assert set(used["val"]) <= {ids[0], ids[1]}
    config = json.loads((out / "config.json").read_text())
    assert config["validation"]["products"] == used["val"] and config["validation"]["hand_labelled"] == [ids[2]]
    assert config["validation"]["moved_to_val"] == used["val"] and config["validation"]["note"] == line
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["validation"]["products"] == used["val"] and ckpt["split"]["val"] == used["val"]
    row = ckpt["history"][-1]
    assert row["val_patches"] == 4  # a 2x2 grid of 32 px patches over the one 64 px validation product
