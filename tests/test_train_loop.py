"""The training loop on tiny synthetic arrays: learning, outputs, resume, CLI values, DDP on CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import make_arrays

from nimbus.errors import TrainingError
from nimbus.train.checkpoint import load_checkpoint, read_checkpoint
from nimbus.train.loop import train
from nimbus.train.models import dropout_layers

torch.set_num_threads(2)

#: Small and fast: SegNet on 16 px patches of 64 px products, a few steps per epoch.
FAST = dict(model="segnet", patch=16, batch=4, patches_per_epoch=8, lr=3e-3, stats_windows=8, progress=False)


@pytest.fixture(scope="module")
def arrays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_arrays(tmp_path_factory.mktemp("arrays"), n_products=4, size=64)


def _constant_miou(arrays: Path, products: list[str]) -> float:
    """mIoU of the best constant predictor (the majority class) on these products."""
    import rasterio

    labels = []
    for p in products:
        with rasterio.open(arrays / p / "labels.tif") as ds:
            labels.append(ds.read(1).ravel())
    lab = np.concatenate(labels)
    counts = np.bincount(lab[lab < 4], minlength=4)
    return float(counts.max() / counts.sum() / np.count_nonzero(counts))


def test_short_run_learns_and_writes_everything(arrays, tmp_path) -> None:
    out = tmp_path / "run"
    # Enough steps (48) for batch-norm running statistics to settle: validation runs in eval mode.
    summary = train(arrays, out, epochs=3, seed=0, **{**FAST, "batch": 8, "patches_per_epoch": 128})
    hist = summary["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 2 and len(split["val"]) == 1 and len(split["test"]) == 1
    const = _constant_miou(arrays, split["val"])
    assert summary["best_miou"] > const + 0.1, (summary["best_miou"], const)
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "stats.json", "config.json", "test_metrics.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 3
    for key in ("miou", "accuracy", "iou_cloud", "iou_ground", "iou_snow", "iou_water", "train_loss", "val_loss", "lr", "confusion"):
        assert key in rows[0], key
    assert np.array(json.loads(rows[-1]["confusion"])).shape == (4, 4)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, meta = load_checkpoint(out / "best.pt")
    assert meta["epoch"] == summary["best_epoch"] and meta["metrics"]["miou"] == pytest.approx(summary["best_miou"])
    assert meta["window"] == 16 and meta["resolution"] == 10.0 and len(meta["channels"]) == 15
    stats = json.loads((out / "stats.json").read_text())
    np.testing.assert_allclose(meta["mean"], stats["mean"], rtol=1e-6)
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["products"] == split["test"] and 0 <= test["miou"] <= 1


def test_resume_continues_exactly(arrays, tmp_path, monkeypatch) -> None:
    import nimbus.train.loop as loop

    straight = train(arrays, tmp_path / "a", epochs=2, seed=1, **FAST)
    # The same run, interrupted (Ctrl-C) right after its first epoch was written.
    real_plot = loop.plot_curves

    def plot_then_interrupt(*args, **kwargs):
        real_plot(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "plot_curves", plot_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(arrays, tmp_path / "b", epochs=2, seed=1, **FAST)
    monkeypatch.setattr(loop, "plot_curves", real_plot)
    assert read_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = train(resume=str(tmp_path / "b" / "last.pt"))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["out"] == str(tmp_path / "b")
    a, b = read_checkpoint(tmp_path / "a" / "last.pt"), read_checkpoint(tmp_path / "b" / "last.pt")
    assert b["epoch"] == 2
    for ha, hb in zip(a["history"], b["history"]):
        assert hb["lr"] == pytest.approx(ha["lr"]) and hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-4)
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert straight["best_miou"] == pytest.approx(resumed["best_miou"], abs=1e-4)
    # Extending a finished run: a third epoch on top, with the schedule stretched to 3 epochs.
    more = train(resume=str(tmp_path / "a" / "last.pt"), epochs=3)
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3]
    with pytest.raises(TrainingError, match="cannot resume"):
        train(resume=str(tmp_path / "a" / "best.pt"), epochs=3)


def test_cli_values_reach_the_loop(arrays, tmp_path) -> None:
    from nimbus.cli import main

    out = tmp_path / "cli"
    main([
        "train", "--arrays", str(arrays), "--out", str(out), "--model", "fpn", "--encoder", "mobilenet_v2",
        "--epochs", "1", "--lr", "0.0042", "--batch", "3", "--patch", "32", "--dropout", "0.33",
        "--channels", "B02,B03,B04,B08,B11,altitude", "--resolution", "10", "--seed", "7",
        "--al-weight", "2.5", "--al-fraction", "0.25", "--patches-per-epoch", "8", "--weight-decay", "0.02",
    ])
    ck = read_checkpoint(out / "last.pt")
    cfg = json.loads((out / "config.json").read_text())
    assert ck["arch"] == "fpn" and ck["encoder"] == "mobilenet_v2"
    assert any(k.startswith("encoder.features.") for k in ck["state_dict"])  # a MobileNetV2 encoder
    assert ck["channels"] == ["B02", "B03", "B04", "B08", "B11", "altitude"] and ck["in_channels"] == 6
    assert ck["window"] == 32 and ck["resolution"] == 10.0 and ck["dropout"] == 0.33
    model, _ = load_checkpoint(out / "last.pt")
    assert {round(m.p, 6) for m in dropout_layers(model)} == {0.33}
    group = ck["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == 0.0042 and group["weight_decay"] == 0.02
    hist = ck["history"][0]
    assert hist["batch"] == 3 and hist["train_patches"] == 8 and hist["steps"] == 3  # ceil(8 / 3)
    assert cfg["seed"] == 7 and cfg["al_weight"] == 2.5 and cfg["al_fraction"] == 0.25 and cfg["patches_per_epoch"] == 8
    assert json.loads((out / "split.json").read_text())["seed"] == 7


def test_cli_errors_are_clean(arrays, tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "nimbus", "train", "--arrays", str(arrays), "--out", str(tmp_path / "x"), "--resolution", "20", "--epochs", "1", "--patch", "16"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "--resolution 20" in res.stderr and "10 m" in res.stderr and str(arrays) in res.stderr
    with pytest.raises(TrainingError, match="al-labels"):
        try:
            import nimbus.train.handlabels  # noqa: F401
        except ImportError:
            train(arrays, tmp_path / "y", al_labels=str(tmp_path / "samples"), epochs=1, **FAST)
        else:  # the active-learning reader exists: a missing folder must still be an error
            train(arrays, tmp_path / "y", al_labels=str(tmp_path / "samples"), epochs=1, **FAST)
            pytest.fail("a missing --al-labels folder was accepted")
    with pytest.raises(TrainingError, match="unknown training option"):
        train(arrays, tmp_path / "z", learning_rate=1.0)


def test_ddp_two_cpu_processes(arrays, tmp_path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "nimbus", "train",
        "--arrays", str(arrays), "--out", str(out), "--epochs", "2", "--patch", "16", "--batch", "4",
        "--patches-per-epoch", "16", "--seed", "3", "--device", "cpu",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    ck = read_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2
    for row in ck["history"]:
        assert row["world_size"] == 2
        assert row["train_patches"] == 16 and row["steps"] == 2  # each process: 8 patches in 2 steps of 4
    assert ck["history"][-1]["train_loss"] < ck["history"][0]["train_loss"] * 1.05
    model, meta = load_checkpoint(out / "best.pt")
    assert not any(k.startswith("module.") for k in read_checkpoint(out / "best.pt")["state_dict"])
