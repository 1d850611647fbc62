"""Confusion matrix, per-class IoU, mIoU, accuracy."""

from __future__ import annotations

import math

import numpy as np
import torch

from nimbus.train.metrics import ConfusionMatrix, accuracy, confusion_matrix, iou_per_class, mean_iou, summarize


def test_confusion_matrix_counts_and_ignores() -> None:
    target = np.array([0, 0, 1, 1, 2, 255, 3])
    pred = np.array([0, 1, 1, 1, 0, 2, 3])
    cm = confusion_matrix(pred, target, 4)
    expected = np.zeros((4, 4), int)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 0), (3, 3)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(cm, expected)
    logits = torch.nn.functional.one_hot(torch.as_tensor(pred).clamp(max=3), 4).T[None, :, :, None].float()
    np.testing.assert_array_equal(confusion_matrix(logits, torch.as_tensor(target)[None, :, None], 4), expected)


def test_iou_miou_accuracy() -> None:
    cm = np.array([[3, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    iou = iou_per_class(cm)
    np.testing.assert_allclose(iou[:3], [3 / 5, 2 / 3, 0.0])
    assert math.isnan(iou[3])  # absent from truth and prediction
    assert mean_iou(cm) == np.mean([3 / 5, 2 / 3, 0.0])
    assert accuracy(cm) == 5 / 7
    s = summarize(cm, ["cloud", "ground", "snow", "water"])
    assert s["iou_ground"] == 2 / 3 and s["confusion"] == cm.tolist()
    assert math.isnan(mean_iou(np.zeros((4, 4)))) and math.isnan(accuracy(np.zeros((4, 4))))


def test_accumulator() -> None:
    acc = ConfusionMatrix(4)
    acc.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    acc.update(torch.tensor([2, 2]), torch.tensor([3, 255]))
    acc.all_reduce()  # no process group: no-op
    assert acc.matrix.sum() == 3 and acc.compute()["accuracy"] == 2 / 3
