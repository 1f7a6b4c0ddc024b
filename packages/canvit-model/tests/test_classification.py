"""CanViTForImageClassification: the fused DINOv3-probe head equals the unfused float64 chain."""

import json

import pytest
import torch
from canvit_model import (
    BACKBONES,
    CanViTConfig,
    CanViTForImageClassification,
    CanViTForPretraining,
    LinearProbe,
    Viewpoint,
    ViTConfig,
    fuse_probe,
    load_linear_probe,
    save_linear_probe,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the CI box has 2 shared cores, and oversubscribed torch threads crawl."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TEACHER_DIM = 24
NUM_CLASSES = 7


@pytest.fixture
def tiny(monkeypatch):
    """A tiny pretraining model (2 blocks, D = 32) with fitted, non-trivial CLS statistics."""
    monkeypatch.setitem(BACKBONES, "test-tiny", ViTConfig(dim=32, num_heads=2, depth=2))
    torch.manual_seed(0)
    cfg = CanViTConfig(backbone_name="test-tiny", canvas_num_heads=2, canvas_head_dim=16, num_canvas_registers=2)
    m = CanViTForPretraining(cfg, teacher_dim=TEACHER_DIM, teacher_patch_grid=4)
    with torch.no_grad():
        for p in m.parameters():  # no zero / one inits left, so every term of the chain matters
            p.add_(torch.randn_like(p) * 0.05)
        std = m.teacher_cls_standardizer
        std.mean.copy_(torch.randn_like(std.mean) * 3)
        std.var.copy_(torch.rand_like(std.var) * 4 + 0.1)
        std.fitted.fill_(True)
    return m.eval()


def _probe(seed=1):
    g = torch.Generator().manual_seed(seed)
    return LinearProbe(torch.randn(NUM_CLASSES, TEACHER_DIM, generator=g),
                       torch.randn(NUM_CLASSES, generator=g), {})


@torch.no_grad()
def _unfused_f64(m, probe, cls):
    """readout LN -> proj -> destandardize -> probe, every step in float64."""
    ro, std = m.teacher_cls_readout, m.teacher_cls_standardizer
    x = torch.nn.functional.layer_norm(cls.double(), (cls.shape[-1],), ro.norm.weight.double(),
                                       ro.norm.bias.double(), ro.norm.eps)
    t = x @ ro.proj.weight.double().T + ro.proj.bias.double()
    raw = t * torch.sqrt(std.var[0].double() + 1e-6) + std.mean[0].double()
    return raw @ probe.weight.double().T + probe.bias.double()


@torch.no_grad()
def test_fused_head_equals_unfused_chain(tiny):
    probe = _probe()
    head = fuse_probe(tiny.teacher_cls_readout, tiny.teacher_cls_standardizer, probe)
    cls = torch.randn(16, 32) * 2
    ref = _unfused_f64(tiny, probe, cls)
    out = head(cls)
    assert out.dtype == torch.float32 and out.shape == (16, NUM_CLASSES)
    scale = ref.abs().max()
    assert (out.double() - ref).abs().max() / scale < 1e-5
    # and the chain as the model runs it (standardizer's own destandardize, float32) agrees too
    f32 = probe.weight @ tiny.teacher_cls_standardizer.destandardize(tiny.predict_teacher_cls(cls[:, None]))[..., None]
    assert torch.allclose(out, f32[..., 0] + probe.bias, atol=1e-3 * float(scale))
    assert torch.equal(head(cls).argmax(-1), ref.argmax(-1))


def test_head_stays_float32_under_bf16_autocast(tiny):
    head = fuse_probe(tiny.teacher_cls_readout, tiny.teacher_cls_standardizer, _probe())
    cls = torch.randn(4, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(cls.bfloat16())
    assert out.dtype == torch.float32
    assert torch.allclose(out, head(cls.bfloat16().float()), atol=0, rtol=0)


def test_fuse_rejects_unfitted_stats_and_wrong_probe_width(tiny):
    with pytest.raises(ValueError, match="probe weight"):
        fuse_probe(tiny.teacher_cls_readout, tiny.teacher_cls_standardizer, (torch.zeros(3, 5), torch.zeros(3)))
    tiny.teacher_cls_standardizer.fitted.fill_(False)
    with pytest.raises(ValueError, match="not fitted"):
        fuse_probe(tiny.teacher_cls_readout, tiny.teacher_cls_standardizer, _probe())


def test_probe_layout_roundtrip_and_errors(tmp_path):
    p = _probe()
    save_linear_probe(tmp_path / "probe", p.weight, p.bias, {"config_metadata": {"image_size": 512}})
    cfg = json.loads((tmp_path / "probe" / "config.json").read_text())
    assert cfg["in_features"] == TEACHER_DIM and cfg["out_features"] == NUM_CLASSES
    q = load_linear_probe(tmp_path / "probe")
    assert torch.equal(q.weight, p.weight) and torch.equal(q.bias, p.bias)
    assert q.config["config_metadata"] == {"image_size": 512}
    cfg["in_features"] = 5
    (tmp_path / "probe" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="in_features=5"):
        load_linear_probe(tmp_path / "probe")


def test_classifier_rollout_from_pretrained_with_probe_and_save_roundtrip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "pre")
    probe = _probe()
    save_linear_probe(tmp_path / "probe", probe.weight, probe.bias)
    clf = CanViTForImageClassification.from_pretrained_with_probe(tmp_path / "pre", tmp_path / "probe")
    assert clf.num_classes == NUM_CLASSES
    img = torch.randn(2, 3, 32, 32)
    vp = Viewpoint.full_scene(batch_size=2)
    with torch.inference_mode():
        s = clf.init_state(2, 4)
        out = clf(img, s, vp)
        s2 = tiny.init_state(2, 4)
        ref_state = tiny(img, s2, vp).state
    assert torch.equal(out.state.recurrent_cls, ref_state.recurrent_cls)
    ref = _unfused_f64(tiny, probe, ref_state.recurrent_cls[:, 0])
    assert (out.logits.double() - ref).abs().max() / ref.abs().max() < 1e-5

    clf.save_pretrained(tmp_path / "clf")
    back = CanViTForImageClassification.from_pretrained(tmp_path / "clf")
    with torch.inference_mode():
        out2 = back(img, back.init_state(2, 4), vp)
    assert torch.equal(out2.logits, out.logits)
    keys = set(back.state_dict())
    assert {"readout.norm.weight", "readout.proj.weight", "readout.proj.bias"} <= keys
    assert all(k.startswith(("canvit.", "readout.")) for k in keys)


def test_v01_classifier_layout_loads(tiny, tmp_path):
    """A canvit-pytorch 0.1 classifier directory ({backbone_name, model_config, n_classes}; keys canvit.<0.1>,
    norm.*, head.*) loads into the same model as its 0.2 twin."""
    from pathlib import Path

    from canvit_model.convert import rename_v01_key
    from canvit_model.io import save_atomic

    probe = _probe()
    clf = CanViTForImageClassification.from_pretraining_model(tiny, probe)
    layout = json.loads((Path(__file__).parent / "parity" / "fixtures" / "reference_layout_v01.json").read_text())
    to_v01 = {rename_v01_key(k): k for k in layout["layouts"]["canvitb16"]["keys"]}
    sd = {}
    for k, v in clf.state_dict().items():
        if k.startswith("canvit."):
            sd["canvit." + to_v01[k]] = v
        else:
            sd[{"readout.norm.weight": "norm.weight", "readout.norm.bias": "norm.bias",
                "readout.proj.weight": "head.weight", "readout.proj.bias": "head.bias"}[k]] = v
    cfg = {"backbone_name": "test-tiny", "n_classes": NUM_CLASSES,
           "model_config": {"canvas_num_heads": 2, "canvas_head_dim": 16, "n_canvas_registers": 2}}
    save_atomic(tmp_path / "v01", cfg, sd)
    back = CanViTForImageClassification.from_pretrained(tmp_path / "v01")
    img, vp = torch.randn(2, 3, 32, 32), Viewpoint.full_scene(batch_size=2)
    with torch.inference_mode():
        a = clf(img, clf.init_state(2, 4), vp).logits
        b = back(img, back.init_state(2, 4), vp).logits
    assert torch.equal(a, b)


@torch.no_grad()
def test_fused_fp32_head_flips_no_predictions_at_canvitb_size():
    """CanViT-B sizes (D = 768 -> 1000 classes), teacher-like statistics: the fp32 fused head picks the
    same class as the float64 chain for every one of 2048 inputs (a bf16 head flips ~0.4%)."""
    from canvit_model.layers.heads import PositionStandardizer, Readout

    g = torch.Generator().manual_seed(0)
    ro, std = Readout(768, 768), PositionStandardizer(1, 768)
    ro.norm.weight.copy_(1 + 0.1 * torch.randn(768, generator=g))
    ro.norm.bias.copy_(0.1 * torch.randn(768, generator=g))
    ro.proj.weight.copy_(torch.randn(768, 768, generator=g) / 768**0.5)
    ro.proj.bias.copy_(0.1 * torch.randn(768, generator=g))
    std.mean.copy_(torch.randn(1, 768, generator=g))
    std.var.copy_(torch.rand(1, 768, generator=g) * 4 + 0.01)
    std.fitted.fill_(True)
    probe = LinearProbe(torch.randn(1000, 768, generator=g) * 0.05, torch.randn(1000, generator=g) * 0.1, {})
    head = fuse_probe(ro, std, probe)
    cls = torch.randn(2048, 768, generator=g) * 3
    x = torch.nn.functional.layer_norm(cls.double(), (768,), ro.norm.weight.double(), ro.norm.bias.double(), 1e-5)
    raw = (x @ ro.proj.weight.double().T + ro.proj.bias.double()) * torch.sqrt(std.var[0].double() + 1e-6)
    ref = (raw + std.mean[0].double()) @ probe.weight.double().T + probe.bias.double()
    out = head(cls)
    assert torch.equal(out.argmax(-1), ref.argmax(-1))
    assert (out.double() - ref).abs().max() < 1e-4 * ref.abs().max()


def test_loaders_dtype_casts_the_canvit_and_keeps_the_head_float32(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "pre")
    probe = _probe()
    save_linear_probe(tmp_path / "probe", probe.weight, probe.bias)
    fused = CanViTForImageClassification.from_pretrained_with_probe(tmp_path / "pre", tmp_path / "probe",
                                                                     dtype=torch.bfloat16)
    fused.save_pretrained(tmp_path / "clf")  # readout float32, CanViT bfloat16
    for clf in (fused, CanViTForImageClassification.from_pretrained(tmp_path / "clf", dtype="bf16")):
        assert {p.dtype for p in clf.canvit.parameters()} == {torch.bfloat16}
        assert {p.dtype for p in clf.readout.parameters()} == {torch.float32}
        assert not clf.training
        with torch.inference_mode():
            logits = clf(torch.randn(1, 3, 32, 32), clf.init_state(1, 4), Viewpoint.full_scene(batch_size=1)).logits
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
