"""nimbus.train.handlabels: hand labels from a samples folder back into the training loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window, transform as window_transform
from train_fixtures import make_arrays

import nimbus.train  # noqa: F401
import nimbus.train.loop as loop
from nimbus.errors import TrainingError
from nimbus.samples import Sample, SampleSet, sample_id
from nimbus.train.checkpoint import read_checkpoint
from nimbus.train.dataset import PatchDataset, ProductArrays
from nimbus.train.handlabels import include_in_training, load_hand_labels
from nimbus.train.split import save_split

BANDS13 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
WIN = (16, 16, 32, 32)  # col, row, width, height (the samples' order)


def add_sample(ss: SampleSet, arrays, pid: str, win=WIN, shift: float = 0.0) -> str:
    meta = json.loads((arrays / pid / "meta.json").read_text())
    col, row, w, h = win
    transform = window_transform(Window(col, row, w, h), Affine(*meta["transform"]))
    auto = ProductArrays(arrays / pid).read_labels((row, col, h, w))
    s = Sample(id=sample_id(pid, win), product_id=pid, window=win, date=meta["date"], tile="32TMS", score=0.5)
    ss.add(s, {"auto_label": auto}, meta["crs"], transform * Affine.translation(shift, 0))
    return s.id


@pytest.fixture()
def data(tmp_path):
    arrays = make_arrays(tmp_path / "arrays", n_products=3, size=64, aux=False)
    ids = sorted(p.name for p in arrays.iterdir())
    split = {"train": [ids[0]], "val": [ids[1]], "test": [ids[2]]}
    ss = SampleSet(tmp_path / "samples", create=True)
    done = add_sample(ss, arrays, ids[1])
    hand = np.full((32, 32), 3, np.uint8)  # water everywhere ...
    hand[:4, :4] = 255  # ... except a corner the labeller marked no data
    ss.save_label(done, hand, 0, status="done")
    todo = add_sample(ss, arrays, ids[1], win=(0, 32, 16, 16))
    ss.save_label(todo, np.zeros((16, 16), np.uint8), 0)  # autosaved, not done: not used
    return arrays, ids, split, ss, hand


def test_load_hand_labels(data) -> None:
    arrays, ids, split, ss, hand = data
    hl = load_hand_labels(ss.root, arrays)
    assert list(hl) == [ids[1]] and len(hl[ids[1]]) == 1
    window, label = hl[ids[1]][0]
    assert window == (16, 16, 32, 32) and (label == hand).all()
    assert len(load_hand_labels(str(ss.root), arrays, include_todo=True)[ids[1]]) == 2


def test_pieces_are_checked_against_the_arrays(data, tmp_path) -> None:
    arrays, ids, split, ss, hand = data
    bad = SampleSet(tmp_path / "bad", create=True)
    sid = add_sample(bad, arrays, ids[1], shift=3)  # georeferencing 3 px off the product grid
    bad.save_label(sid, hand, 0, status="done")
    with pytest.raises(TrainingError, match="georeferencing"):
        load_hand_labels(bad.root, arrays)
    with pytest.raises(TrainingError, match="not in"):
        load_hand_labels(ss.root, tmp_path / "arrays_elsewhere")
    with pytest.raises(TrainingError, match="no samples manifest"):
        load_hand_labels(tmp_path / "nothing", arrays)


def test_include_in_training() -> None:
    split = {"train": ["a"], "val": ["b", "c"], "test": ["d"]}
    assert include_in_training(split, {"b": []}) == {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    assert include_in_training(split, ["e"])["train"] == ["a", "e"]
    with pytest.raises(TrainingError, match="test split"):
        include_in_training(split, ["d"])


def test_hand_label_changes_the_targets_the_loop_sees(data, tmp_path, monkeypatch) -> None:
    arrays, ids, split, ss, hand = data
    seen: list[dict] = []

    class Recording(PatchDataset):
        """The loop's own dataset, recording what it hands to the model (training set only)."""

        def __getitem__(self, index):
            item = super().__getitem__(index)
            if self.sampler == "random":
                seen.append({**item, "product": self.products[item["product"]].product_id})
            return item

    monkeypatch.setattr(loop, "PatchDataset", Recording)
    save_split(split, tmp_path / "split.json")
    res = loop.train(arrays, tmp_path / "run", model="segnet", channels=BANDS13, epochs=1, patch=32, batch=2,
                     patches_per_epoch=6, split=str(tmp_path / "split.json"), stats_windows=2, device="cpu",
                     progress=False, amp=False, channels_last=False, al_labels=str(ss.root), al_weight=5.0,
                     al_fraction=1.0, seed=0)
    ckpt = read_checkpoint(res["last"])
    assert ids[1] in ckpt["split"]["train"] and ids[1] not in ckpt["split"]["val"]  # hand labels train
    with rasterio.open(arrays / ids[1] / "labels.tif") as src:
        auto = src.read(1)
    assert (auto[20:48, 20:48] != 3).mean() > 0.3  # the automatic labels there are mostly not water
    checked = 0
    for item in seen:
        if item["product"] != ids[1]:
            continue
        r, c, h, w = item["window"].tolist()
        r0, r1, c0, c1 = max(r, 20), min(r + h, 48), max(c, 20), min(c + w, 48)
        if r1 <= r0 or c1 <= c0:
            continue
        # undo the augmentation: find the rotation/flip under which the hand-labelled block matches
        target, weight = item["target"].numpy(), item["weight"].numpy()
        ok = False
        for k in range(4):
            for flip in (False, True):
                t = np.rot90(target[:, ::-1] if flip else target, -k)
                wgt = np.rot90(weight[:, ::-1] if flip else weight, -k)
                block, wblock = t[r0 - r:r1 - r, c0 - c:c1 - c], wgt[r0 - r:r1 - r, c0 - c:c1 - c]
                ok |= bool((block == 3).all() and (wblock == 5.0).all())
        assert ok, f"hand label not applied to the patch at {(r, c, h, w)}"
        checked += 1
    assert checked >= 3, f"only {checked} training patches touched the hand-labelled window"
    assert torch.isfinite(torch.tensor(res["history"][-1]["train_loss"]))
