"""nimbus.composite: labels match what was composited, reproducible, and the arrays folders open for training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nimbus.composite import BANDS12, CLOUD_OPACITY, composite, fbm, fill_missing_bands, to_l1c, to_l2a

NONE = dict(p_cloud=0.0, p_cirrus=0.0, p_snow=0.0, p_water=0.0, p_terrain=0.0, p_swap=0.0)


@pytest.fixture(scope="module")
def library(realdata):
    from nimbus.composite import build_library
    from nimbus.realscenes import list_scenes

    scenes = [s for s in list_scenes(realdata) if s.id in ("hydro-patch1", "hydro-patch10000", "hydro-patch100", "majortom-48QUE-20200223", "ssl4eo-43RCP-l1c-20200823")]
    if len(scenes) < 5:
        pytest.skip("real scenes for the spectral library are missing")
    return build_library(scenes, per_scene=500)


@pytest.fixture(scope="module")
def background(realdata):
    from nimbus.realscenes import get_scene

    s = get_scene("majortom-48QUE-20200223", realdata)
    d, v = s.read(20)
    return {b: a[:160, :160] for b, a in d.items()}, v[:160, :160], s.level


def test_library_levels(library):
    assert set(library.cloud) == {"L1C", "L2A"} and "L2A" in library.snow
    x = library.sample("cloud", "L2A", np.random.default_rng(0), 50)
    assert x.shape == (50, 12) and (np.median(x[:, 1]) > 0.2)
    assert 0.05 < library.b09_ratio("L1C") < 0.6 < 1.0 < library.b09_ratio("L2A")


def test_thick_cloud_and_shadow(library, background):
    bg, valid, level = background
    for seed in range(20):  # a scene with cloud shadows on clear ground (not hidden under a deck)
        c = composite(bg, valid, level, library, seed=seed, **{**NONE, "p_cloud": 1.0}, sun=(150.0, 35.0))
        if ((c.layers["shadow"] > 0.6) & (c.layers["cloud"] < 0.02)).sum() > 20 and (c.layers["cloud"] > 0.8).sum() > 50:
            break
    a = c.layers["cloud"]
    thick = (a > 0.8) & valid
    assert thick.sum() > 50
    assert (c.labels[thick] == 0).all()
    assert (c.bands["B02"][thick] > bg["B02"][thick]).mean() > 0.99
    thin = (a < CLOUD_OPACITY - 0.1) & (c.layers["background_labels"] != 0)
    assert (c.labels[thin] != 0).all()
    sh = (c.layers["shadow"] > 0.6) & (a < 0.02)
    assert sh.sum() > 20
    assert (c.bands["B08"][sh] < bg["B08"][sh]).mean() > 0.95
    bgl = c.layers["background_labels"]
    assert not ((c.labels[sh] == 3) & (bgl[sh] != 3)).any()  # a shadow never becomes water


def test_snow_labels_have_snow_spectra(library, background):
    bg, valid, level = background
    c = composite(bg, valid, level, library, seed=5, **{**NONE, "p_snow": 1.0})
    snow = c.labels == 2
    assert snow.sum() > 100
    ndsi = (c.bands["B03"] - c.bands["B11"]) / (c.bands["B03"] + c.bands["B11"])
    assert (ndsi[snow] > 0.4).mean() > 0.97
    assert (c.layers["snow"][snow] >= 0.5).all()


def test_water_inserted(library, background):
    bg, valid, level = background
    c = composite(bg, valid, level, library, seed=11, **{**NONE, "p_water": 1.0})
    new = (c.layers["water"] >= 0.5) & (c.layers["background_labels"] == 1)
    assert new.sum() > 20 and (c.labels[new] == 3).all()
    assert np.median(c.bands["B8A"][new]) < np.median(bg["B8A"][new])


def test_reproducible_and_valid(library, background):
    bg, valid, level = background
    v = valid.copy()
    v[:10] = False
    a = composite(bg, v, level, library, seed=7)
    b = composite(bg, v, level, library, seed=7)
    c = composite(bg, v, level, library, seed=8)
    assert np.array_equal(a.array(), b.array()) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.array(), c.array())
    assert (a.labels[:10] == 255).all() and (a.array()[:, :10] == 0).all()
    assert (a.array()[:, 10:] > 0).all()
    assert set(a.bands) == set(BANDS12)


def test_level_swap(library, background):
    bg, valid, level = background
    c = composite(bg, valid, level, library, seed=1, **{**NONE, "p_swap": 1.0})
    assert level == "L2A" and c.level == "L1C"
    assert np.median(c.bands["B02"][valid]) > np.median(bg["B02"][valid])  # path radiance in the blue
    assert np.median(c.bands["B09"][valid]) < np.median(bg["B09"][valid])  # water-vapour absorption
    x = np.full((12, 2, 2), 0.2, np.float32)
    assert np.allclose(to_l2a(to_l1c(x, 0.7, 0.2), 0.7, 0.2), x, atol=1e-5)


def test_proxies_and_noise():
    d = {b: np.full((4, 4), 0.1, np.float32) for b in ("B02", "B8A")}
    out, filled = fill_missing_bands(d, "L1C")
    assert filled == ["B01", "B09"] and out["B09"][0, 0] < out["B8A"][0, 0]
    n = fbm((64, 96), np.random.default_rng(0), 3.0)
    assert n.shape == (64, 96) and abs(float(n.std()) - 1.0) < 1e-3


def test_arrays_folder_opens(library, realdata, tmp_path):
    from export.make_training_data import _crop, write_folder
    from nimbus.arrays import ArrayStack
    from nimbus.realscenes import get_scene
    from nimbus.validate import is_valid

    s = get_scene("majortom-48QUE-20200223", realdata)
    canvas = _crop(s, 20, 0, 0, "t", s.date)
    c = composite(canvas.bands, canvas.valid, canvas.level, library, seed=0)
    folder = write_folder(tmp_path, "t-c0", canvas, c.bands, c.labels, c.valid, c.level, "composite", {})
    assert is_valid(folder)
    st = ArrayStack(folder)
    assert st.channels == list(BANDS12) and st.shape == (256, 256)
    x, ok = st.read(["B02", "B8A"], (0, 0, 32, 32))
    assert ok.all() and np.allclose(x[0] / 1e4, c.bands["B02"][:32, :32], atol=1e-4)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["resolution"] == 20 and meta["aux"] == [] and meta["date"] == "2020-02-23"
    torch = pytest.importorskip("torch")
    from nimbus.train.dataset import PatchDataset, ProductArrays

    ds = PatchDataset([ProductArrays(folder)], list(BANDS12), [1000.0] * 12, [1000.0] * 12, 128, "random", 2, seed=0)
    item = ds[0]
    assert tuple(item["image"].shape) == (12, 128, 128) and item["target"].dtype == torch.int64
