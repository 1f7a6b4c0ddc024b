"""Probe training on synthetic class-conditional Gaussian features (the feature-store layout of `extract`)."""

import math

import pytest
import torch

from dinov3_probes.data import load_probe_data
from dinov3_probes.features import load_split
from dinov3_probes.probe import make_probe
from dinov3_probes.synthetic import write_gaussian_features
from dinov3_probes.train import ProbeParams, Schedule, fit, loss_fn, lr_factor, split_holdout

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    torch.set_num_threads(1)
    return write_gaussian_features(tmp_path_factory.mktemp("gauss"), n_train=600, n_val=300, dim=16, num_classes=4,
                                   separation=3.0, aug_epochs=2)


def test_store_layout_loads(feats):
    tr = load_split(feats, "train")
    va = load_split(feats, "val")
    assert len(tr.sets) == 2 and tr.sets[0].x.shape == (600, 16) and tr.sets[0].x.dtype == torch.float32
    assert tr.sets[0].y.dtype == torch.int64 and torch.equal(tr.sets[0].index, tr.sets[1].index)
    assert not torch.equal(tr.sets[0].x, tr.sets[1].x)  # each augmentation epoch is its own draw
    assert va.real is not None and len(va.real) == 300 and va.real[3] == [] and len(va.real[0]) == 2


def test_fitted_probe_reaches_stated_accuracy(feats):
    data, _ = load_probe_data(feats, selection_fraction=0.05, select_on="holdout", seed=0, device=CPU)
    res = fit(ProbeParams("adamw", ref_lr=2e-4, batch_size=64, init="dinov3", loss="softmax"), data, Schedule(2))
    last = res.history[-1]
    assert len(res.history) == 4 and [r["epoch"] for r in res.history] == [1, 2, 3, 4]
    # Bayes accuracy of these Gaussians is ~0.95; a linear probe must get close.
    assert last["val_top1"] >= 0.9, last
    assert last["select_top1"] >= 0.85, last
    assert last["val_real_top1"] >= last["val_top1"] - 0.02  # ReaL lists contain the true label
    assert last["val_loss"] < res.initial["val_loss"]
    assert res.total_steps == 4 * math.ceil(data.train[0].x.shape[0] / 64) and res.warmup_steps == int(0.1 * res.total_steps)


def test_sigmoid_loss_is_mean_over_batch_and_classes():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    y = torch.tensor([0])
    t = torch.tensor([[1.0, 0.0, 0.0]])
    ref = -(t * torch.log(torch.sigmoid(logits)) + (1 - t) * torch.log(1 - torch.sigmoid(logits))).mean()
    assert torch.allclose(loss_fn(logits, y, "sigmoid"), ref)
    assert torch.allclose(loss_fn(logits, y, "softmax"), -torch.log_softmax(logits, 1)[0, 0])


def test_lr_schedule_warmup_then_cosine_to_zero():
    total, warm = 100, 10
    f = [lr_factor(s, total, warm) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] < 0.001 and f[55] == pytest.approx(0.5, abs=0.02)
    assert lr_factor(0, 5, 0) == pytest.approx(1.0)  # no warmup: plain cosine


def test_holdout_excludes_the_same_images_from_every_epoch(feats):
    tr = load_split(feats, "train")
    kept, sel = split_holdout(tr.sets, 0.1, seed=3)
    held = set(sel.index.tolist())
    assert len(held) == 60 and sel.x.shape[0] == 120  # 60 images x 2 augmentation epochs
    for k in kept:
        assert held.isdisjoint(k.index.tolist()) and k.x.shape[0] == 540
    kept2, sel2 = split_holdout(tr.sets, 0.1, seed=3)
    assert torch.equal(sel.index, sel2.index)
    with pytest.raises(ValueError, match="selection-fraction"):
        split_holdout(tr.sets, 1.0, seed=0)


def test_inits():
    a = make_probe(64, 10, "dinov3", seed=1)
    assert torch.all(a.bias == 0) and abs(a.weight.std().item() - 0.01) < 0.002
    b = make_probe(64, 10, "pytorch", seed=1)
    assert b.weight.abs().max() <= 1 / 8 + 1e-6 and b.bias.abs().max() > 0  # U(-1/sqrt(D), 1/sqrt(D))
    assert torch.equal(make_probe(64, 10, "pytorch", seed=1).weight, b.weight)
    with pytest.raises(ValueError, match="init"):
        make_probe(4, 2, "xavier", seed=0)


def test_bad_params_are_named():
    with pytest.raises(ValueError, match="optimizer"):
        ProbeParams(optimizer="lamb")
    with pytest.raises(ValueError, match="loss"):
        ProbeParams(loss="hinge")
