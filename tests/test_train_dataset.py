"""Patch datasets over training arrays written in the nimbus.arrays format (tiny fixtures)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_fixtures import make_arrays

from nimbus.errors import TrainingError
from nimbus.train.dataset import (
    DEFAULT_CHANNELS,
    IGNORE_INDEX,
    PatchDataset,
    ProductArrays,
    ShardSampler,
    compute_statistics,
    grid_windows,
)


@pytest.fixture(scope="module")
def arrays(tmp_path_factory: pytest.TempPathFactory):
    return make_arrays(tmp_path_factory.mktemp("arrays"), n_products=2, size=80)


@pytest.fixture(scope="module")
def products(arrays) -> list[ProductArrays]:
    return [ProductArrays(p) for p in sorted(arrays.iterdir())]


def test_product_reads_the_exact_array_values(products) -> None:
    p = products[0]
    bands = np.load(p.folder / "bands.npy", mmap_mode="r")
    aux = np.load(p.folder / "aux.npy", mmap_mode="r")
    data, valid = p.read(["B12", "altitude", "B02"], (3, 7, 20, 30))
    np.testing.assert_array_equal(valid, (bands[:, 3:23, 7:37] != 0).all(0))
    assert not valid[0].any() and valid[1:].all()  # the fixture's nodata strip (rows 0-3)
    np.testing.assert_array_equal(data[0][valid], bands[12, 3:23, 7:37][valid])
    np.testing.assert_array_equal(data[1][valid], aux[0, 3:23, 7:37][valid])
    np.testing.assert_array_equal(data[2][valid], bands[1, 3:23, 7:37][valid])
    assert (data[:, ~valid] == 0).all()  # no data: 0 in every channel
    import rasterio

    with rasterio.open(p.labels_path) as ds:
        np.testing.assert_array_equal(p.read_labels((3, 7, 20, 30)), ds.read(1)[3:23, 7:37])


def test_missing_channel_and_files_are_clear_errors(products, tmp_path) -> None:
    with pytest.raises(TrainingError, match="no channel.*water"):
        products[0].read(["B02", "water"], (0, 0, 8, 8))
    with pytest.raises(TrainingError, match="outside"):
        products[0].read(["B02"], (75, 0, 8, 8))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "meta.json").write_text(json.dumps({"date": "2024-01-01", "bands": ["B02"]}))
    with pytest.raises(TrainingError, match="bands.npy"):
        ProductArrays(tmp_path / "p")


def test_grid_windows_cover_everything() -> None:
    wins = grid_windows((100, 70), 32)
    cover = np.zeros((100, 70), int)
    for r, c, h, w in wins:
        assert (h, w) == (32, 32) and r + h <= 100 and c + w <= 70
        cover[r : r + h, c : c + w] += 1
    assert cover.min() >= 1
    assert grid_windows((20, 50), 32) == [(0, 0, 20, 32), (0, 18, 20, 32)]


def test_statistics_match_the_valid_pixels(products) -> None:
    st = compute_statistics(products, ["B02", "altitude"], windows_per_product=8, window=80, seed=0)
    # Windows cover each whole 80x80 product: the estimate is exact.
    vals = []
    for p in products:
        d, v = p.read(["B02", "altitude"], (0, 0, 80, 80))
        vals.append(d[:, v])
    allv = np.concatenate(vals, axis=1).astype(np.float64)
    np.testing.assert_allclose(st.mean, allv.mean(1), rtol=1e-6)
    np.testing.assert_allclose(st.std, allv.std(1), rtol=1e-5)
    assert sum(st.class_counts) > 0.9 * allv.shape[1] and len(st.class_counts) == 4


def test_random_patches_normalised_with_nodata_ignored(products) -> None:
    st = compute_statistics(products, DEFAULT_CHANNELS, windows_per_product=16, window=32, seed=0)
    ds = PatchDataset(products, DEFAULT_CHANNELS, st.mean, st.std, patch=32, length=40, seed=3)
    assert len(ds) == 40
    item = ds[5]
    assert item["image"].shape == (15, 32, 32) and item["image"].dtype == torch.float32
    assert item["target"].shape == (32, 32) and item["target"].dtype == torch.int64
    assert set(item["target"].unique().tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}
    images = torch.stack([ds[i]["image"] for i in range(40)])
    assert abs(float(images.mean())) < 0.5 and 0.5 < float(images.std()) < 1.5  # roughly standardised
    # Same index and epoch -> same patch; another epoch -> another patch.
    torch.testing.assert_close(ds[5]["image"], item["image"])
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["image"], item["image"])
    # Pixels without data are labelled 255 and set to 0 (the mean).
    i, (r, c, h, w) = 0, (0, 0, 32, 32)
    image, target, _ = ds.read(i, (r, c, h, w))
    assert (target[:4] == IGNORE_INDEX).all() and (image[:, :4] == 0).all()


def test_augmentation_keeps_image_and_target_aligned(products) -> None:
    ones = [1.0] * 15
    zeros = [0.0] * 15
    plain = PatchDataset(products, DEFAULT_CHANNELS, zeros, ones, patch=32, length=30, seed=1)
    aug = PatchDataset(products, DEFAULT_CHANNELS, zeros, ones, patch=32, length=30, seed=1, augment=True)
    changed = 0
    for k in range(30):
        a = aug[k]
        window = tuple(a["window"].tolist())
        image, target, _ = plain.read(a["product"], window)
        variants = []
        for rot in range(4):
            for flip in (False, True):
                im, t = np.rot90(image, rot, (1, 2)), np.rot90(target, rot)
                if flip:
                    im, t = im[:, :, ::-1], t[:, ::-1]
                variants.append((im, t))
        match = [np.array_equal(a["image"].numpy(), im) and np.array_equal(a["target"].numpy(), t) for im, t in variants]
        assert any(match), "augmented patch is not a flip/rotation of its window"
        changed += not match[0]
    assert changed > 10


def test_grid_dataset_pads_small_products(tmp_path) -> None:
    root = make_arrays(tmp_path, n_products=1, size=40)
    p = ProductArrays(next(root.iterdir()))
    ds = PatchDataset([p], ["B02", "B03"], [0, 0], [1, 1], patch=64, sampler="grid")
    assert len(ds) == 1
    item = ds[0]
    assert item["image"].shape == (2, 64, 64)
    assert (item["target"][40:] == IGNORE_INDEX).all() and (item["target"][:, 40:] == IGNORE_INDEX).all()
    assert (item["target"][4:40, :40] != IGNORE_INDEX).float().mean() > 0.9


def test_hand_labels_override_and_weight(products) -> None:
    p = products[0]
    H, W = p.shape
    full = np.full((H, W), IGNORE_INDEX, np.uint8)
    full[10:20, 10:20] = 3
    piece = np.full((6, 6), 2, np.uint8)
    piece[0, 0] = IGNORE_INDEX
    hand = {p.product_id: full, products[1].product_id: [((50, 50, 6, 6), piece)]}
    ds = PatchDataset(products, ["B02"], [0], [1], patch=32, sampler="grid", hand_labels=hand, hand_weight=5.0)
    _, t, w = ds.read(0, (0, 0, 32, 32))
    assert (t[10:20, 10:20] == 3).all() and (w[10:20, 10:20] == 5.0).all() and (w[:10] == 1.0).all()
    _, t, w = ds.read(1, (48, 48, 32, 32))
    assert (t[2:8, 2:8][piece != IGNORE_INDEX] == 2).all()
    assert w[2, 2] == 1.0 and w[3, 3] == 5.0
    # hand_fraction=1: every random patch contains the piece's centre.
    rnd = PatchDataset(products, ["B02"], [0], [1], patch=32, length=20, hand_labels={products[1].product_id: [((50, 50, 6, 6), piece)]}, hand_fraction=1.0)
    for k in range(20):
        item = rnd[k]
        r, c, h, w = item["window"].tolist()
        assert item["product"] == 1 and r <= 53 < r + h and c <= 53 < c + w
    with pytest.raises(TrainingError, match="not in this dataset"):
        PatchDataset(products, ["B02"], [0], [1], patch=32, hand_labels={"nope": full})


def test_shard_sampler_partitions() -> None:
    a, b = ShardSampler(7, 0, 2, pad=False), ShardSampler(7, 1, 2, pad=False)
    assert sorted(list(a) + list(b)) == list(range(7)) and len(a) == 4 and len(b) == 3
    a, b = ShardSampler(7, 0, 2, shuffle=True, seed=1), ShardSampler(7, 1, 2, shuffle=True, seed=1)
    assert len(list(a)) == len(list(b)) == len(a) == 4
    assert set(a) | set(b) == set(range(7))
    a.set_epoch(1)
    assert list(a) != list(ShardSampler(7, 0, 2, shuffle=True, seed=1))


def test_patch_reads_do_not_keep_arrays_mapped(products) -> None:
    ds = PatchDataset(products, DEFAULT_CHANNELS, [0] * 15, [1] * 15, patch=32, length=10)
    for k in range(10):
        ds[k]
    with open("/proc/self/maps") as f:
        maps = f.read()
    assert "bands.npy" not in maps and "aux.npy" not in maps


def test_nan_auxiliary_is_nodata_and_channel_aliases(tmp_path) -> None:
    root = make_arrays(tmp_path, n_products=1, size=32)
    folder = next(root.iterdir())
    aux = np.load(folder / "aux.npy")
    aux[0, 10:12, 10:12] = np.nan  # nimbus.arrays writes NaN where an auxiliary layer has no data
    np.save(folder / "aux.npy", aux)
    p = ProductArrays(folder)
    data, valid = p.read(["b2", "DEM"], (8, 8, 8, 8))
    assert np.isfinite(data).all()
    assert not valid[2:4, 2:4].any() and valid[5:, 5:].all()
    assert (data[:, 2:4, 2:4] == 0).all()
    ds = PatchDataset([p], ["B02", "altitude"], [0, 0], [1, 1], patch=32, sampler="grid")
    item = ds[0]
    assert torch.isfinite(item["image"]).all() and (item["target"][10:12, 10:12] == IGNORE_INDEX).all()
    st = compute_statistics([p], ["altitude"], windows_per_product=2, window=32)
    assert np.isfinite(st.mean).all() and np.isfinite(st.std).all()
