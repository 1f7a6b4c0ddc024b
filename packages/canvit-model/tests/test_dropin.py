"""canvit-pytorch drop-in gaps: the classifier's `n_classes`, and `preprocess.preprocess_labels(size)`.

Reference outputs come from canvit-pytorch 0.2.1 itself (dropin_parity/make_fixture.py, not run in CI).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from canvit_model import BACKBONES, CanViTConfig, CanViTForImageClassification, Viewpoint, ViTConfig
from canvit_model.preprocess import (
    center_crop_labels,
    center_crop_transform,
    preprocess,
    preprocess_labels,
)

FIXTURES = Path(__file__).parent / "dropin_parity" / "fixtures"
LABELS = load_file(FIXTURES / "labels.safetensors")
MAPS = {"l_37x53": "L", "p_64x45": "P", "i_20x20": "I", "l_9x31": "L"}  # as in make_fixture.MAPS
SIZES = [7, 16, 31, 40]


def _label_image(arr: np.ndarray, mode: str) -> Image.Image:
    h, w = arr.shape
    return Image.frombytes(mode, (w, h), arr.astype(np.int32 if mode == "I" else np.uint8).tobytes())


# -- n_classes ---------------------------------------------------------------------------------------


@pytest.fixture
def tiny_cfg(monkeypatch):
    monkeypatch.setitem(BACKBONES, "test-tiny", ViTConfig(dim=32, num_heads=2, depth=2))
    return CanViTConfig(backbone_name="test-tiny", canvas_num_heads=2, canvas_head_dim=16, num_canvas_registers=2)


def test_classifier_takes_the_authors_keyword_and_ours(tiny_cfg):
    torch.manual_seed(0)
    a = CanViTForImageClassification(canvit_config=tiny_cfg, n_classes=7)
    b = CanViTForImageClassification(tiny_cfg, num_classes=7)
    for m in (a, b):
        assert m.n_classes == 7 and m.num_classes == 7 and m.readout.proj.out_features == 7
    assert isinstance(type(a).n_classes, property)  # read-only, from the readout: it cannot drift
    with pytest.raises(AttributeError):
        a.n_classes = 3
    assert CanViTForImageClassification(tiny_cfg).n_classes == 1000  # our default
    with pytest.raises(ValueError, match="disagree"):
        CanViTForImageClassification(canvit_config=tiny_cfg, n_classes=7, num_classes=8)
    with pytest.raises(ValueError, match="n_classes must be an int >= 1"):
        CanViTForImageClassification(canvit_config=tiny_cfg, n_classes=0)
    with pytest.raises(TypeError, match="n_classes must be an int"):
        CanViTForImageClassification(canvit_config=tiny_cfg, n_classes=7.0)
    with pytest.raises(TypeError):  # keyword-only, as in canvit-pytorch
        CanViTForImageClassification(tiny_cfg, None, 7)


def test_classifier_checkpoint_round_trip_keeps_n_classes(tiny_cfg, tmp_path):
    torch.manual_seed(0)
    clf = CanViTForImageClassification(canvit_config=tiny_cfg, n_classes=7).eval()
    clf.save_pretrained(tmp_path / "clf")
    cfg = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert cfg["n_classes"] == 7 and "num_classes" not in cfg
    back = CanViTForImageClassification.from_pretrained(tmp_path / "clf")
    assert back.n_classes == 7 and back.config == tiny_cfg
    x, vp = torch.randn(2, 3, 32, 32), Viewpoint.full_scene(batch_size=2)
    with torch.no_grad():
        a, b = clf(x, clf.init_state(2, 3), vp).logits, back(x, back.init_state(2, 3), vp).logits
    assert a.shape == (2, 7) and torch.equal(a, b)


def test_classifier_layout_is_the_authors():
    """Same config.json and state-dict keys/shapes as canvit-pytorch's save of n_classes=7 (ViT-S)."""
    ref = json.loads((FIXTURES / "classifier_layout.json").read_text())
    raw = ref["config.json"]
    with torch.device("meta"):
        ours = CanViTForImageClassification(canvit_config=CanViTConfig.from_dict(raw["canvit_config"]),
                                            n_classes=raw["n_classes"])
    assert ours.n_classes == ref["n_classes_property"] == 7
    got = {k: [list(v.shape), str(v.dtype)] for k, v in ours.state_dict().items()}
    assert got == ref["keys"]
    assert set(raw) == {"canvit_config", "n_classes"}


# -- preprocess_labels ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MAPS))
@pytest.mark.parametrize("size", SIZES)
def test_preprocess_labels_equals_the_authors(name, size):
    arr = LABELS[f"{name}/input"].numpy()
    ref = LABELS[f"{name}/{size}"]
    out = preprocess_labels(size)(_label_image(arr, MAPS[name]))
    assert out.shape == (1, size, size) and out.dtype == ref.dtype
    assert torch.equal(out, ref)
    # the tensor path: the same pixels from an integer [H, W] tensor, its dtype kept
    t = center_crop_labels(torch.from_numpy(arr), size)
    assert t.dtype == torch.int32 and torch.equal(t.long(), ref.long())


@pytest.mark.parametrize("hw", [(37, 53), (64, 45), (9, 31), (20, 20)])
@pytest.mark.parametrize("size", [7, 31])
def test_label_geometry_is_the_image_geometry(hw, size):
    """A label map whose value is its pixel's own index: each output label must be the source pixel that
    the image transform centres on, i.e. the same resize sizes and crop offsets as `preprocess(size)`."""
    h, w = hw
    idx = np.arange(h * w, dtype=np.int32).reshape(h, w)
    out = preprocess_labels(size)(_label_image(idx, "I"))[0].long()  # [S, S]
    assert set(out.unique().tolist()) <= set(range(h * w))  # values copied, never mixed
    rows, cols = out // w, out % w
    # resampled positions (pixel centres) fall where the image transform's pixels come from
    scale = min(h, w) / size
    rh, rw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    top, left = int(round((rh - size) / 2)), int(round((rw - size) / 2))
    yc = (torch.arange(size) + top + 0.5) * (h / rh)  # source row coordinate of each output row
    xc = (torch.arange(size) + left + 0.5) * (w / rw)
    # the picked source pixel contains the output pixel's centre (ties on a pixel edge may go either way)
    assert ((rows + 0.5 - yc[:, None]).abs() <= 0.5 + 1e-9).all()
    assert ((cols + 0.5 - xc[None, :]).abs() <= 0.5 + 1e-9).all()
    assert (rows == rows[:, :1]).all() and (cols == cols[:1, :]).all()  # separable: a resize, then a crop
    # and the image transform on an image of the same (h, w) has the same output size
    img = Image.fromarray(np.zeros((h, w, 3), np.uint8))
    assert preprocess(size)(img).shape == (3, size, size) and scale > 0


def test_preprocess_is_center_crop_transform():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8))
    assert torch.equal(preprocess(16)(img), center_crop_transform(img, 16))


def test_preprocess_labels_rejects_bad_input():
    with pytest.raises(ValueError, match="size must be a positive int"):
        preprocess_labels(0)
    with pytest.raises(ValueError, match="size must be a positive int"):
        preprocess_labels(7.5)
    with pytest.raises(ValueError, match="single-channel"):
        preprocess_labels(8)(Image.new("RGB", (10, 10)))
    with pytest.raises(ValueError, match="integer label map"):
        preprocess_labels(8)(torch.zeros(10, 10))
    with pytest.raises(ValueError, match="integer label map"):
        preprocess_labels(8)(torch.zeros(3, 10, 10, dtype=torch.long))


def test_tensor_label_resize_picks_pils_pixels():
    """`resize_labels` (the tensor path) picks PIL NEAREST's source pixels, boundary ties included."""
    from canvit_model.preprocess import resize_labels

    for n_in in range(1, 50):
        row = np.arange(n_in, dtype=np.int32)[None]
        img = Image.frombytes("I", (n_in, 1), row.tobytes())
        for n_out in range(1, 50):
            pil = torch.from_numpy(np.array(img.resize((n_out, 1), Image.Resampling.NEAREST)))
            assert torch.equal(resize_labels(torch.from_numpy(row), (1, n_out)), pil), (n_in, n_out)
