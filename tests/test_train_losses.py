"""Losses: class weights 1/sqrt(frequency), ignore_index 255, pixel weights, Dice/Lovasz."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nimbus.train.losses import SegmentationLoss, class_weights


def test_class_weights_inverse_sqrt_frequency() -> None:
    w = class_weights([400, 100, 25, 0])
    assert w[0] / w[1] == pytest.approx(0.5) and w[1] / w[2] == pytest.approx(0.5)
    assert w[:3].mean() == pytest.approx(1.0)
    assert w[3] == pytest.approx(w[:3].max())
    np.testing.assert_allclose(class_weights([0, 0]), [1, 1])


def test_weighted_ce_matches_torch_and_ignores_255() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[0, :3] = 255
    w = class_weights([10, 20, 30, 40])
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=255)
    assert float(SegmentationLoss(w)(logits, target)) == pytest.approx(float(ref), rel=1e-5)
    # Changing logits under ignored pixels changes nothing.
    logits2 = logits.clone()
    logits2[0, :, :3] = 100
    assert float(SegmentationLoss(w)(logits2, target)) == pytest.approx(float(ref), rel=1e-5)


def test_pixel_weights() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 4, 4, 4)
    target = torch.randint(0, 4, (1, 4, 4))
    loss = SegmentationLoss(None)
    assert float(loss(logits, target, torch.ones(1, 4, 4))) == pytest.approx(float(loss(logits, target)), rel=1e-6)
    pw = torch.zeros(1, 4, 4)
    pw[0, 0, 0] = 3.0
    single = F.cross_entropy(logits[:, :, :1, :1], target[:, :1, :1])
    assert float(loss(logits, target, pw)) == pytest.approx(float(single), rel=1e-5)


def test_all_ignored_gives_zero_with_gradient() -> None:
    logits = torch.randn(1, 4, 4, 4, requires_grad=True)
    out = SegmentationLoss(class_weights([1, 1, 1, 1]), dice=0.5)(logits, torch.full((1, 4, 4), 255))
    assert torch.isfinite(out)
    out.backward()
    assert logits.grad is not None


def test_dice_and_lovasz_add_terms_that_fall_for_right_predictions() -> None:
    target = torch.randint(0, 4, (2, 16, 16))
    good = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 10
    bad = torch.roll(good, 1, dims=1)
    for kw in ({"dice": 1.0}, {"lovasz": 1.0}):
        loss = SegmentationLoss(None, **kw)
        assert float(loss(good, target)) < float(loss(bad, target))
        assert float(loss(good, target)) > float(SegmentationLoss(None)(good, target)) - 1e-6
