"""nimbus.train.uncertainty: MC-dropout measures, scoring, selection with spacing, samples written."""

from __future__ import annotations

import csv
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn
from train_fixtures import SPECTRA, make_arrays, make_product

import nimbus.train  # noqa: F401
from nimbus.errors import TrainingError
from nimbus.samples import SampleSet, context_window
from nimbus.train.dataset import ProductArrays
from nimbus.train.uncertainty import PatchScore, mc_dropout, pixel_uncertainty, select_samples, select_top

CHANNELS = ["B02", "B03", "B04", "B08", "B11", "B12"]
BAND_INDEX = [1, 2, 3, 7, 11, 12]


def test_measures_on_known_probabilities() -> None:
    agree = torch.tensor([[0.9, 0.1]] * 4).reshape(4, 2, 1, 1)
    assert pixel_uncertainty(agree, "std").item() == pytest.approx(0.0, abs=1e-7)
    assert pixel_uncertainty(agree, "mutual_information").item() == pytest.approx(0.0, abs=1e-6)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert pixel_uncertainty(agree, "entropy").item() == pytest.approx(h, rel=1e-5)
    flip = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 2).reshape(4, 2, 1, 1)
    assert pixel_uncertainty(flip, "std").item() == pytest.approx(0.5)  # population std, mean over classes
    assert pixel_uncertainty(flip, "entropy").item() == pytest.approx(math.log(2), rel=1e-5)
    assert pixel_uncertainty(flip, "mutual_information").item() == pytest.approx(math.log(2), rel=1e-5)
    with pytest.raises(TrainingError, match="unknown uncertainty method"):
        pixel_uncertainty(flip, "variance")


def test_spacing_rule() -> None:
    s = [PatchScore("a", (0, 0, 32, 32), 0.9, 1), PatchScore("a", (0, 32, 32, 32), 0.8, 1),
         PatchScore("a", (32, 32, 32, 32), 0.7, 1), PatchScore("a", (64, 64, 32, 32), 0.6, 1),
         PatchScore("b", (0, 32, 32, 32), 0.5, 1)]
    assert [x.score for x in select_top(s, 3, spacing=0)] == [0.9, 0.8, 0.7]
    # neighbours (also diagonal) of a chosen patch of the same product are skipped; other products are not
    assert [x.score for x in select_top(s, 3, spacing=2)] == [0.9, 0.6, 0.5]


class PixelNet(nn.Module):
    """A per-pixel classifier (1x1 convolutions) with dropout: a tiny real model for MC dropout."""

    def __init__(self, cin: int, classes: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, 48, 1), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(48, 48, 1), nn.ReLU(),
                                 nn.Dropout(0.5), nn.Conv2d(48, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def thin_cloud_product(root: Path) -> Path:
    """A product whose columns >= 48 are thin cloud: a 50/50 mixture of the cloud and ground spectra."""
    pid = "S2A_MSIL1C_20240415T103021_N0510_R108_T32TMS_20240415T120000"
    folder = make_product(root / pid, 96, 7, date(2024, 4, 15), aux=False, border=0, unlabelled=0.0)
    bands = np.load(folder / "bands.npy").astype(np.float32)
    rng = np.random.default_rng(3)
    mix = 0.5 * (SPECTRA[0] + SPECTRA[1])[:, None, None] * rng.normal(1, 0.03, (1, 96, 48))
    bands[:, :, 48:] = mix
    np.save(folder / "bands.npy", np.clip(bands, 1, 20000).astype(np.uint16))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    arrays = make_arrays(root / "arrays", n_products=2, size=96, aux=False)
    pool_pid = thin_cloud_product(arrays).name
    train_ids = sorted(p.name for p in arrays.iterdir() if p.name != pool_pid)
    # a model trained on the pure pixels of the training products only: thin cloud (a mixture of
    # two classes it never saw) is where it should doubt
    xs, ys = [], []
    for pid in train_ids:
        b = np.load(arrays / pid / "bands.npy")[BAND_INDEX].reshape(len(CHANNELS), -1).T.astype(np.float32)
        lab = rasterio.open(arrays / pid / "labels.tif").read(1).reshape(-1)
        ok = (lab < 4) & (b > 0).all(1)
        xs.append(b[ok]); ys.append(lab[ok])
    x = np.concatenate(xs); y = np.concatenate(ys).astype(np.int64)
    mean, std = x.mean(0), x.std(0)
    torch.manual_seed(0)
    model = PixelNet(len(CHANNELS))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xt = torch.from_numpy((x - mean) / std)[:, :, None, None]
    yt = torch.from_numpy(y)[:, None, None]
    for _ in range(60):
        idx = torch.randint(0, len(xt), (1024,))
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad(); loss.backward(); opt.step()
    model.eval()
    meta = {"channels": CHANNELS, "mean": mean, "std": std, "window": 32}
    split = {"train": train_ids, "val": [], "test": []}
    return arrays, pool_pid, model, meta, split


@pytest.mark.parametrize("method", ["std", "entropy", "mutual_information"])
def test_scores_higher_on_thin_cloud(setup, tmp_path, method) -> None:
    arrays, pool_pid, model, meta, split = setup
    out = tmp_path / "samples"
    res = select_samples(arrays, out, model=model, meta=meta, split=split, k=3, passes=8, method=method, spacing=0, seed=1)
    assert res["pool"] == [pool_pid] and res["scored"] == 9
    rows = list(csv.DictReader(open(res["scores"])))
    ambiguous = [float(r["score"]) for r in rows if int(r["col"]) >= 48]
    pure = [float(r["score"]) for r in rows if int(r["col"]) + int(r["width"]) <= 48]
    assert min(ambiguous) > 3 * max(pure), (method, ambiguous, pure)
    chosen = SampleSet(out).samples()
    assert len(chosen) == 3 and all(s.window[0] >= 48 for s in chosen)


def test_samples_written_georeferenced_and_manifest(setup, tmp_path) -> None:
    arrays, pool_pid, model, meta, split = setup
    out = tmp_path / "samples"
    res = select_samples(arrays, out, model=model, meta=meta, split=split, k=2, passes=6, spacing=2, seed=1)
    ss = SampleSet(out)
    samples = ss.samples()
    assert [s.id for s in samples] == res["selected"] and len(samples) == 2
    a, b = (s.window for s in samples)
    assert max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 64  # spacing 2 windows of 32
    s = samples[0]
    assert s.product_id == pool_pid and s.date == "2024-04-15" and s.tile == "32TMS" and s.status == "todo"
    assert ss.selection["method"] == "std" and ss.selection["passes"] == 6 and ss.selection["window"] == 32
    col, row, w, h = s.window
    p = ProductArrays(arrays / pool_pid)
    for layer in ("truecolor", "falsecolor", "auto_label", "prediction", "uncertainty"):
        with rasterio.open(ss.layer_path(s.id, layer)) as src:
            assert src.crs.to_epsg() == 32632 and src.shape == (h, w)
            assert tuple(src.transform)[:6] == pytest.approx((10, 0, 300000 + 10 * col, 0, -10, 5000040 - 10 * row))
    true = ss.read_layer(s.id, "truecolor")
    bands = np.load(arrays / pool_pid / "bands.npy", mmap_mode="r")
    assert (true == bands[[3, 2, 1], row:row + h, col:col + w]).all()
    assert (ss.read_layer(s.id, "auto_label") == p.read_labels((row, col, h, w))).all()
    unc = ss.read_layer(s.id, "uncertainty")
    assert float(np.nanmean(unc)) == pytest.approx(s.score, rel=1e-4)  # the map is the one that was scored
    assert s.method == "std"
    # the context: 3x the sample, centred and clipped to the 96 px product, georeferenced on its window
    cc, cr, cw, ch = s.context
    assert (cc, cr, cw, ch) == context_window(s.window, (96, 96)) and cw > w and ch > h
    assert cc <= col and cr <= row and cc + cw >= col + w and cr + ch >= row + h and cc + cw <= 96 and cr + ch <= 96
    for layer in ("context_truecolor", "context_falsecolor"):
        with rasterio.open(ss.layer_path(s.id, layer)) as src:
            assert src.shape == (ch, cw) and src.count == 3
            assert tuple(src.transform)[:6] == pytest.approx((10, 0, 300000 + 10 * cc, 0, -10, 5000040 - 10 * cr))
    ctx = ss.read_layer(s.id, "context_truecolor")
    assert (ctx == bands[[3, 2, 1], cr:cr + ch, cc:cc + cw]).all()
    assert (ctx[:, row - cr:row - cr + h, col - cc:col - cc + w] == true).all()
    for png in res["plots"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {Path(p).name for p in res["plots"]} == {"uncertainty_by_date.png", "uncertainty_map_32TMS.png"}
    # a second run extends the folder and never selects a patch that already is a sample
    ss.save_label(s.id, ss.read_label(s.id)[0], 0, status="done")
    res2 = select_samples(arrays, out, model=model, meta=meta, split=split, k=2, passes=6, spacing=2, seed=1)
    assert not set(res2["selected"]) & {x.id for x in samples}
    assert res2["scored"] == 9 - 2 and len(SampleSet(out).samples()) == 4
    assert SampleSet(out).get(s.id).status == "done"


def test_model_without_dropout_is_refused() -> None:
    with pytest.raises(TrainingError, match="no dropout"):
        mc_dropout(nn.Conv2d(3, 4, 1), np.zeros((3, 8, 8), np.float32))


def test_cli_uncertain_with_a_checkpoint(tmp_path) -> None:
    from nimbus.cli import main
    from nimbus.train.checkpoint import save_checkpoint
    from nimbus.train.models import create_model
    from nimbus.train.split import save_split

    arrays = make_arrays(tmp_path / "arrays", n_products=3, size=64, aux=False)
    ids = sorted(p.name for p in arrays.iterdir())
    torch.manual_seed(0)
    model = create_model("segnet", in_channels=13, classes=4, dropout=0.3)
    ckpt = save_checkpoint(tmp_path / "run" / "best.pt", model, arch="segnet", channels=[f"B{i:02d}" for i in range(1, 9)] + ["B8A", "B09", "B10", "B11", "B12"],
                           mean=[2000.0] * 13, std=[1500.0] * 13, dropout=0.3, window=32)
    save_split({"train": ids[:1], "val": ids[1:2], "test": ids[2:]}, tmp_path / "run" / "split.json")
    main(["uncertain", str(ckpt), str(arrays), str(tmp_path / "samples"), "--k", "2", "--passes", "3", "--method", "entropy", "--spacing", "0"])
    ss = SampleSet(tmp_path / "samples")
    assert len(ss.samples()) == 2 and {s.product_id for s in ss.samples()} == {ids[1]}  # the pool: val only
    assert ss.selection["method"] == "entropy" and ss.selection["checkpoint"] == str(ckpt)


def test_pool_and_labelled_windows(tmp_path) -> None:
    from _samples_data import make_samples

    from nimbus.train.uncertainty import labelled_windows, pool_products

    arrays = make_arrays(tmp_path / "arrays", n_products=3, size=32, aux=False)
    ids = sorted(p.name for p in arrays.iterdir())
    assert pool_products(arrays, {"train": [ids[0]], "val": [ids[1]], "test": [ids[2]]}) == [ids[1]]
    assert pool_products(arrays, None) == ids
    ss = make_samples(tmp_path / "s", n=2)
    got = labelled_windows([tmp_path / "s", tmp_path / "absent"])
    assert list(got) == [ss.samples()[0].product_id]
    assert got[ss.samples()[0].product_id] == [(2000, 1000, 64, 96), (2000, 1192, 64, 96)]  # row, col, h, w
