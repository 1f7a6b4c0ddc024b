"""SegmentationProbe, CanViTForSemanticSegmentation and ade20k_targets (published probe layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from canvit_model import (
    BACKBONES,
    CanViTConfig,
    CanViTForPretraining,
    CanViTForSemanticSegmentation,
    SegmentationProbe,
    ViTConfig,
    Viewpoint,
    ade20k_targets,
    sample_at_viewpoint,
)
from canvit_model.segmentation import upsample_logits


def randomized_probe(embed_dim=16, num_classes=5, use_ln=True, seed=0) -> SegmentationProbe:
    torch.manual_seed(seed)
    p = SegmentationProbe(embed_dim, num_classes, dropout=0.1, use_ln=use_ln)
    with torch.no_grad():
        for prm in p.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
        p.bn.running_mean.normal_()
        p.bn.running_var.uniform_(0.5, 1.5)
        p.bn.num_batches_tracked.fill_(7)
    return p.eval()


def test_probe_layout_keys_and_config(tmp_path):
    p = randomized_probe(embed_dim=16, num_classes=5)
    p.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg == {"embed_dim": 16, "num_classes": 5, "dropout": 0.1, "use_ln": True}
    sd = load_file(tmp_path / "model.safetensors")
    assert set(sd) == {"ln.weight", "ln.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                       "bn.num_batches_tracked", "conv.weight", "conv.bias"}
    assert sd["conv.weight"].shape == (5, 16, 1, 1) and sd["bn.num_batches_tracked"].dtype == torch.int64
    # DINOv3-feature probes: no LayerNorm keys
    q = randomized_probe(use_ln=False)
    q.save_pretrained(tmp_path / "dv3")
    assert not any(k.startswith("ln.") for k in load_file(tmp_path / "dv3" / "model.safetensors"))


def test_probe_forward_matches_the_formula_and_round_trips(tmp_path):
    p = randomized_probe()
    x = torch.randn(2, 3, 4, 16)
    y = p(x)
    ref = torch.nn.functional.layer_norm(x, (16,), p.ln.weight, p.ln.bias, 1e-5).permute(0, 3, 1, 2)
    ref = (ref - p.bn.running_mean[:, None, None]) / torch.sqrt(p.bn.running_var[:, None, None] + 1e-5)
    ref = ref * p.bn.weight[:, None, None] + p.bn.bias[:, None, None]
    ref = torch.einsum("bdhw,cd->bchw", ref, p.conv.weight[:, :, 0, 0]) + p.conv.bias[:, None, None]
    assert y.shape == (2, 5, 3, 4) and torch.allclose(y, ref, atol=1e-5)
    p.hub_extra = {"metadata": {"steps": 3}}
    p.save_pretrained(tmp_path)
    q = SegmentationProbe.from_pretrained(tmp_path)
    assert not q.training and q.hub_extra == {"metadata": {"steps": 3}}
    assert torch.equal(q(x), y)


def test_probe_is_fp32_under_autocast():
    p = randomized_probe()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = p(torch.randn(1, 2, 2, 16).bfloat16())
    assert y.dtype == torch.float32


def test_probe_rejects_bad_input(tmp_path):
    p = randomized_probe()
    with pytest.raises(ValueError, match=r"\[B, H, W, 16\]"):
        p(torch.randn(1, 16, 2, 2))
    with pytest.raises(ValueError, match="dropout"):
        SegmentationProbe(8, 3, dropout=1.5)
    (tmp_path / "config.json").write_text('{"n_classes": 3}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a segmentation probe"):
        SegmentationProbe.from_pretrained(tmp_path)


@pytest.fixture
def tiny_dirs(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKBONES, "tiny", ViTConfig(dim=32, num_heads=2, depth=2, patch_size=8))
    cfg = CanViTConfig(backbone_name="tiny", canvas_num_heads=2, canvas_head_dim=8, num_canvas_registers=2,
                       num_backbone_registers=1, rw_stride=1)
    torch.manual_seed(0)
    model = CanViTForPretraining(cfg, teacher_dim=16, teacher_patch_grid=4).eval()
    model.save_pretrained(tmp_path / "model")
    probe = randomized_probe(embed_dim=16, num_classes=5)
    probe.save_pretrained(tmp_path / "probe")
    return model, probe, tmp_path


def test_from_pretrained_with_probe_matches_the_parts(tiny_dirs):
    model, probe, d = tiny_dirs
    seg = CanViTForSemanticSegmentation.from_pretrained_with_probe(d / "model", d / "probe")
    assert not seg.training and not seg.probe.training
    assert set(k.split(".")[0] for k in seg.state_dict()) == {"canvit", "probe"}
    scene = torch.randn(2, 3, 32, 32)
    vp = Viewpoint.full_scene(batch_size=2)
    g = sample_at_viewpoint(scene, vp, 16)
    with torch.no_grad():
        logits, state = seg(g, seg.init_state(2, 4), vp)
        ref_state = model(g, model.init_state(2, 4), vp).state
        ref = probe(model.canvit.canvas_patch_grid(ref_state.canvas))
        up, state2 = seg.predict(g, seg.init_state(2, 4), vp, target_size=(32, 32))
    assert torch.equal(logits, ref) and logits.shape == (2, 5, 4, 4) and seg.num_classes == 5
    assert torch.equal(state.canvas, ref_state.canvas) and torch.equal(state2.canvas, ref_state.canvas)
    assert torch.equal(seg.logits(state.canvas), ref)
    assert up.shape == (2, 5, 32, 32)
    assert torch.allclose(up, torch.nn.functional.interpolate(ref, size=(32, 32), mode="bilinear", align_corners=False))


def test_probe_for_another_canvas_width_is_refused(tiny_dirs, tmp_path):
    _, _, d = tiny_dirs
    randomized_probe(embed_dim=24).save_pretrained(tmp_path / "wrong")
    with pytest.raises(ValueError, match="not trained on this model"):
        CanViTForSemanticSegmentation.from_pretrained_with_probe(d / "model", tmp_path / "wrong")


def test_ade20k_targets_shift_and_ignore():
    m = torch.tensor([[0, 1], [150, 3]], dtype=torch.uint8)
    assert ade20k_targets(m).tolist() == [[255, 0], [149, 2]]
    with pytest.raises(ValueError, match="integer"):
        ade20k_targets(torch.zeros(2, 2))


@pytest.mark.parametrize("src,dst", [((37, 53), 32), ((20, 30), 64), ((512, 683), 512), ((7, 7), 5)])
def test_ade20k_targets_resize_is_pil_nearest(src, dst):
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 151, size=src, dtype=np.uint8)
    pil = Image.fromarray(arr, "L")
    ours_pil = ade20k_targets(pil, dst)
    ref = torch.from_numpy(np.asarray(pil.resize((dst, dst), Image.NEAREST)).astype(np.int64))
    ref = torch.where(ref == 0, 255, ref - 1)
    assert torch.equal(ours_pil, ref)  # exactly torchvision's PIL path (which calls PIL's resize)
    assert torch.equal(ade20k_targets(torch.from_numpy(arr), dst), ref)  # tensors: the same rule
    assert ours_pil.shape == (dst, dst) and ours_pil.dtype == torch.int64


def test_upsample_logits_bilinear():
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(upsample_logits(x, 8), torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear"))


# -- against the authors' canvit-pytorch (fixtures from tests/segmentation_parity/make_fixture.py) --------

PARITY = __import__("pathlib").Path(__file__).resolve().parent / "segmentation_parity" / "fixtures"


FIXTURE_THREADS = 2  # the fixture's logits were computed with 2 intra-op threads (the CI box's default)


@pytest.fixture
def threads():
    """Run the probe at a given intra-op thread count, restored after (CPU kernels pick their blocking,
    hence their rounding, by thread count: bit-exact holds at the fixture's count only)."""
    n = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["probe_ln", "probe_noln"])
def test_reference_probe_loads_and_matches_bit_exact(name, threads):
    io = load_file(PARITY / "io.safetensors")
    probe = SegmentationProbe.from_pretrained(PARITY / name)
    assert probe.config.use_ln == (name == "probe_ln") and not probe.training
    ref = io[f"{name}.logits"]
    with torch.no_grad():
        for n in (1, 4):  # any thread count: the same logits up to float32 rounding
            threads(n)
            torch.testing.assert_close(probe(io["features"]), ref, rtol=1e-6, atol=1e-6)
        threads(FIXTURE_THREADS)
        assert torch.equal(probe(io["features"]), ref)
