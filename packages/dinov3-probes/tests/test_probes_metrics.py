"""ReaL labels (public real.json format), top-k accuracy and the Inception-crop sampler."""

import json

import numpy as np
import pytest
import torch

from dinov3_probes.augment import crop_rng, inception_crop, random_resized_crop_box
from dinov3_probes.metrics import align_real_labels, read_real_json, real_correct, real_tensor, topk_correct


def test_real_json_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="real-labels"):
        read_real_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_real_json(bad)
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="JSON list"):
        read_real_json(bad)
    bad.write_text(json.dumps([[1], "x"]))
    with pytest.raises(ValueError, match="entry 1"):
        read_real_json(bad)
    bad.write_text(json.dumps([[1], [5]]))
    with pytest.raises(ValueError, match="outside"):
        read_real_json(bad, num_classes=4)


def test_alignment_by_imagenet_number_sorted_name_and_row():
    real = [[0], [1, 2], [], [3]]
    keys = ["n02/ILSVRC2012_val_00000004.JPEG", "n01/ILSVRC2012_val_00000002.JPEG"]
    assert align_real_labels(real, keys) == [[3], [1, 2]]  # subsets work via the number in the name
    keys = ["b/z.png", "a/x.png", "c/y.png", "a/w.png"]  # sorted filename order: w, x, y, z
    assert align_real_labels(real, keys) == [[3], [1, 2], [], [0]]
    assert align_real_labels(real, ["row:2", "row:0"]) == [[], [0]]
    with pytest.raises(ValueError, match="4 entries but the validation set has 2"):
        align_real_labels(real, ["a/x.png", "a/y.png"])


def test_real_accuracy_skips_empty_lists_and_topk():
    real = real_tensor([[0, 1], [], [2]])
    pred = torch.tensor([1, 0, 0])
    assert real_correct(pred, real) == (1, 2)
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    assert topk_correct(logits, torch.tensor([0, 0]), (1, 5)) == {1: 1, 5: 2}


def test_random_resized_crop_box_law():
    areas, ratios = [], []
    for i in range(400):
        t, l, h, w = random_resized_crop_box(300, 400, crop_rng(0, 0, i))
        assert 0 <= t and t + h <= 300 and 0 <= l and l + w <= 400
        areas.append(h * w / 120000)
        ratios.append(w / h)
    assert min(areas) >= 0.07 and max(areas) <= 1.0 and np.median(areas) > 0.3
    assert min(ratios) >= 0.74 and max(ratios) <= 1.35
    # A very wide image fails every attempt: centre crop clamped to ratio 4/3.
    assert random_resized_crop_box(3, 1000, crop_rng(0, 0, 0)) == (0, 498, 3, 4)
    assert random_resized_crop_box(300, 400, crop_rng(1, 2, 3)) == random_resized_crop_box(300, 400, crop_rng(1, 2, 3))


def test_inception_crop_output_and_seeding():
    img = (torch.rand(3, 60, 90) * 255).to(torch.uint8)
    a = inception_crop(img, 32, crop_rng(0, 0, 5))
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, inception_crop(img, 32, crop_rng(0, 0, 5)))
    assert not torch.equal(a, inception_crop(img, 32, crop_rng(0, 1, 5)))  # another augmentation epoch
    flips = sum(crop_rng(0, 0, i).uniform() >= 0 and _flipped(i) for i in range(200))
    assert 70 < flips < 130


def _flipped(i: int) -> bool:
    rng = crop_rng(0, 0, i)
    random_resized_crop_box(60, 90, rng)
    return rng.uniform() < 0.5
