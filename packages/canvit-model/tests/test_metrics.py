"""The reconstruction metric (`canvit_model.metrics`) on fixed tensors, checked against a hand computation."""

import math

import pytest
import torch

from canvit_model.layers.heads import PositionStandardizer
from canvit_model.metrics import reconstruction_cosines


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_cosines_equal_a_hand_computation():
    # 2 positions, 2 dims; per-position statistics.
    mean = [[1.0, -2.0], [0.5, 0.0]]
    var = [[4.0, 1.0], [0.25, 9.0]]
    cls_mean, cls_var = [[3.0, 1.0]], [[1.0, 16.0]]
    pred = [[0.5, 1.0], [-1.0, 2.0]]
    teacher = [[2.0, -1.0], [0.0, 7.0]]
    pred_cls, teacher_cls = [0.25, -0.5], [4.0, -3.0]
    ps, cs = PositionStandardizer(2, 2), PositionStandardizer(1, 2)
    ps.mean.copy_(torch.tensor(mean)); ps.var.copy_(torch.tensor(var))
    cs.mean.copy_(torch.tensor(cls_mean)); cs.var.copy_(torch.tensor(cls_var))

    sd = lambda v: math.sqrt(v + 1e-6)
    destd = [[pred[n][d] * sd(var[n][d]) + mean[n][d] for d in range(2)] for n in range(2)]
    std_t = [[(teacher[n][d] - mean[n][d]) / sd(var[n][d]) for d in range(2)] for n in range(2)]
    expect = {
        "cos_patch_raw": (_cos(destd[0], teacher[0]) + _cos(destd[1], teacher[1])) / 2,
        "cos_patch_std": (_cos(pred[0], std_t[0]) + _cos(pred[1], std_t[1])) / 2,
        "cos_cls_raw": _cos([pred_cls[d] * sd(cls_var[0][d]) + cls_mean[0][d] for d in range(2)], teacher_cls),
        "cos_cls_std": _cos(pred_cls, [(teacher_cls[d] - cls_mean[0][d]) / sd(cls_var[0][d]) for d in range(2)]),
    }
    got = reconstruction_cosines(torch.tensor([pred]), torch.tensor([pred_cls]), torch.tensor([teacher]),
                                     torch.tensor([teacher_cls]), ps, cs)
    for k, v in expect.items():
        assert got[k].shape == (1,)
        assert got[k].item() == pytest.approx(v, abs=1e-6), k
    # "raw" is not the mixed reading cos(standardized prediction, raw teacher)
    mixed = (_cos(pred[0], teacher[0]) + _cos(pred[1], teacher[1])) / 2
    assert abs(mixed - expect["cos_patch_raw"]) > 0.1


def test_cosines_reject_shape_mismatch():
    ps, cs = PositionStandardizer(4, 3), PositionStandardizer(1, 3)
    with pytest.raises(ValueError, match="differ in shape"):
        reconstruction_cosines(torch.zeros(1, 4, 3), torch.zeros(1, 3), torch.zeros(1, 9, 3), torch.zeros(1, 3), ps, cs)
