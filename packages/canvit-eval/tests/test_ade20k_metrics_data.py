"""ADE20K pieces: global mIoU vs a hand-computed confusion matrix, data sources, squish, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canvit_data.synthetic import write_ade20k, write_dataset
from canvit_eval.ade20k.data import EvalSet, TrainSet, batch_positions, labels_to_grid, open_ade20k
from canvit_eval.ade20k.metrics import ConfusionMatrix
from canvit_model import ade20k_targets


def test_miou_against_a_hand_computed_confusion_matrix():
    # 3 classes; two "images" accumulated into one dataset-level matrix; 255 ignored.
    t1 = torch.tensor([0, 0, 1, 1, 2, 255])
    p1 = torch.tensor([0, 1, 1, 1, 0, 2])
    t2 = torch.tensor([2, 2, 0])
    p2 = torch.tensor([2, 2, 0])
    cm = ConfusionMatrix(3)
    cm.update(p1, t1)
    cm.update(p2.view(1, 3), t2.view(1, 3))
    expected = torch.tensor([[2, 1, 0],   # target 0: pred 0 twice (one per image), pred 1 once
                             [0, 2, 0],   # target 1
                             [1, 0, 2]])  # target 2
    assert torch.equal(cm.counts[0], expected)
    # IoU_0 = 2 / (3 + 3 - 2) = 0.5 ; IoU_1 = 2 / (2 + 3 - 2) = 2/3 ; IoU_2 = 2 / (3 + 2 - 2) = 2/3
    assert cm.miou() == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3, abs=1e-7)  # up to the 1e-8 union epsilon
    # dataset-level, not the mean of per-image mIoUs
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(p1, t1)
    b.update(p2, t2)
    assert cm.miou() != pytest.approx((a.miou() + b.miou()) / 2)


def test_miou_skips_absent_classes_and_checks_labels():
    cm = ConfusionMatrix(5, streams=2)
    cm.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), stream=1)
    assert cm.miou(1) == pytest.approx(1.0)  # classes 2-4 absent from both: not counted
    assert np.isnan(cm.miou(0))
    with pytest.raises(ValueError, match="num-classes"):
        cm.update(torch.tensor([0]), torch.tensor([7]))


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade")
    return write_ade20k(root, 6, 4, seed=1)


def test_folder_source_pairs_and_splits(ade):
    val = open_ade20k(ade, "validation")
    assert len(val) == 4 and val.key(0) == "ADE_val_00000001"
    assert len(open_ade20k(ade.parent, "val")) == 4  # the parent folder and the short split name work
    assert len(open_ade20k(ade, "train")) == 6
    image, mask = val.load(0)
    assert image.mode == "RGB" and mask.mode == "L" and image.size == mask.size
    with pytest.raises(ValueError, match="split"):
        open_ade20k(ade, "test")


def test_datasets_source_and_eval_squish(tmp_path):
    d = write_dataset(tmp_path / "ds", 3, with_masks=True, splits=("train", "validation"), seed=2)
    val = open_ade20k(d, "val")
    assert len(val) == 3
    image, mask = val.load(1)
    ds = EvalSet(val, 40)
    x, y = ds[1]
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32
    assert y.shape == (40, 40) and y.dtype == torch.int64
    assert torch.equal(y, ade20k_targets(mask, 40))
    assert set(y.unique().tolist()) <= {0, 1, 2, 3, 255}
    assert len(EvalSet(val, 40, limit=2)) == 2


def test_train_stream_is_seeded_and_augmented(ade):
    pairs = open_ade20k(ade, "train")
    a, b, c = TrainSet(pairs, 32, seed=0), TrainSet(pairs, 32, seed=0), TrainSet(pairs, 32, seed=1)
    xa, ya = a[5]
    xb, yb = b[5]
    assert xa.shape == (3, 32, 32) and ya.shape == (32, 32)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[3][0], c[3][0])
    # every image once per epoch
    assert sorted(a.image_index(p) for p in range(6)) == list(range(6))
    assert batch_positions(2, 4, 3) == [[6, 7, 8], [9, 10, 11]]


def test_labels_to_grid_takes_block_centres():
    labels = torch.arange(16).view(1, 4, 4)
    assert labels_to_grid(labels, 2).tolist() == [[[5, 7], [13, 15]]]


def test_hsv_round_trip_and_colorsys_agreement():
    import colorsys

    from canvit_eval.ade20k.data import _hsv_to_rgb, _rgb_to_hsv, photometric_distortion

    x = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    h, s, v = _rgb_to_hsv(x)
    assert torch.allclose(_hsv_to_rgb(h, s, v), x, atol=1e-6)
    for i, j in [(0, 0), (2, 3), (4, 6)]:
        ref = colorsys.rgb_to_hsv(*x[:, i, j].tolist())
        assert torch.allclose(torch.tensor([h[i, j], s[i, j], v[i, j]]), torch.tensor(ref), atol=1e-6)
    y = photometric_distortion(x, np.random.default_rng(3))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
