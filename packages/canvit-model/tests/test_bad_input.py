"""Malformed input, table-driven: each case must raise the given exception type with a message that
names the argument (or field) and, for files, the file. Plus the dtype policy of the forward pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from canvit_model import (
    CanViTConfig,
    CanViTForImageClassification,
    CanViTForPretraining,
    CanViTForSemanticSegmentation,
    DINOv3,
    RecurrentState,
    SegmentationProbe,
    ViTConfig,
    Viewpoint,
    center_crop_transform,
    preset,
    sample_at_viewpoint,
    square_resize_transform,
)
from canvit_model.classification import load_linear_probe

SMALL = CanViTConfig(backbone_name="vits16", canvas_num_heads=2, canvas_head_dim=32)
TINY_VIT = ViTConfig(dim=32, num_heads=2, depth=1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CanViTForPretraining(SMALL, teacher_dim=48, teacher_patch_grid=4).eval()


@pytest.fixture(scope="module")
def dinov3():
    torch.manual_seed(0)
    return DINOv3(TINY_VIT).eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(d)
    return d


def edited_checkpoint(src: Path, dst: Path, *, config=None, config_text=None, weights_bytes=None, drop=None) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    if config is not None:
        cfg = json.loads((dst / "config.json").read_text())
        config(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
    if config_text is not None:
        (dst / "config.json").write_text(config_text)
    if weights_bytes is not None:
        data = (dst / "model.safetensors").read_bytes()
        (dst / "model.safetensors").write_bytes(weights_bytes(data))
    if drop:
        (dst / drop).unlink()
    return dst


def _set(path: str, value):
    def edit(cfg):
        *parents, leaf = path.split(".")
        d = cfg
        for p in parents:
            d = d[p]
        d[leaf] = value

    return edit


def _forward(model, **overrides):
    args = dict(
        glimpse=torch.zeros(1, 3, 32, 32),
        state=model.init_state(batch_size=1, canvas_grid_size=4),
        viewpoint=Viewpoint.full_scene(batch_size=1),
    )
    args.update(overrides)
    return model(**args)


# (id, call(model, dinov3, ckpt, tmp_path), exception type, substrings the message must contain)
CASES = [
    # -- configs, built in code
    ("cfg-bool-as-str", lambda m, d, c, t: CanViTConfig(enable_reads="false"), TypeError, ["enable_reads", "bool"]),
    ("cfg-float-for-int", lambda m, d, c, t: CanViTConfig(canvas_num_heads=3.7), TypeError, ["canvas_num_heads", "int"]),
    ("cfg-bool-for-int", lambda m, d, c, t: CanViTConfig(rw_stride=True), TypeError, ["rw_stride"]),
    ("cfg-backbone-type", lambda m, d, c, t: CanViTConfig(backbone_name=16), TypeError, ["backbone_name"]),
    ("cfg-literal", lambda m, d, c, t: CanViTConfig(canvas_projections="full"), ValueError, ["canvas_projections", "qkvo"]),
    ("vitcfg-float-dim", lambda m, d, c, t: ViTConfig(dim=64.0, num_heads=2, depth=1), TypeError, ["ViTConfig.dim"]),
    ("vitcfg-mlp", lambda m, d, c, t: ViTConfig(dim=64, num_heads=2, depth=1, mlp="relu"), ValueError, ["mlp"]),
    ("model-cfg-type", lambda m, d, c, t: CanViTForPretraining({"backbone_name": "vits16"}), TypeError, ["config"]),
    ("teacher-dim-bool", lambda m, d, c, t: CanViTForPretraining(SMALL, teacher_dim=True), TypeError, ["teacher_dim"]),
    ("preset-unknown", lambda m, d, c, t: preset("canvit-xl"), ValueError, ["canvit-xl", "canvitb16"]),
    ("from-preset-unknown", lambda m, d, c, t: CanViTForPretraining.from_preset("nope"), ValueError, ["nope"]),
    # -- configs read from config.json: the field and the file are named
    ("json-bool-as-str", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", config=_set("canvit_config.enable_vpe", "false"))),
     TypeError, ["enable_vpe", "config.json", "bool"]),
    ("json-float-for-int", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", config=_set("canvit_config.rw_stride", 2.5))),
     TypeError, ["rw_stride", "config.json"]),
    ("json-teacher-dim", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", config=_set("teacher_dim", 48.7))), TypeError, ["teacher_dim", "config.json"]),
    ("json-unknown-field", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", config=_set("canvit_config.canvas_heads", 2))),
     ValueError, ["canvas_heads", "config.json"]),
    ("json-invalid", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", config_text='{"canvit_config": {')), ValueError, ["config.json", "not valid JSON"]),
    ("json-not-object", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", config_text="[1, 2]")), ValueError, ["config.json", "JSON object"]),
    ("weights-truncated", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", weights_bytes=lambda b: b[: len(b) // 2])),
     ValueError, ["model.safetensors", "truncated or corrupt"]),
    ("weights-garbage", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", weights_bytes=lambda b: b"\x00\x01garbage" * 10)),
     ValueError, ["model.safetensors"]),
    ("weights-tiny", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", weights_bytes=lambda b: b"abc")), ValueError, ["model.safetensors", "header"]),
    ("weights-missing", lambda m, d, c, t: CanViTForPretraining.from_pretrained(
        edited_checkpoint(c, t / "x", drop="model.safetensors")), FileNotFoundError, ["model.safetensors"]),
    ("dinov3-json-str-int", lambda m, d, c, t: (d.save_pretrained(t / "d"), _edit_json(t / "d", hidden_size="32"),
                                                DINOv3.from_pretrained(t / "d")),
     TypeError, ["hidden_size", "config.json"]),
    ("dinov3-json-bool", lambda m, d, c, t: (d.save_pretrained(t / "d"), _edit_json(t / "d", use_gated_mlp="false"),
                                             DINOv3.from_pretrained(t / "d")),
     TypeError, ["use_gated_mlp", "config.json"]),
    ("dinov3-dir-without-weights", lambda m, d, c, t: DINOv3.from_pretrained(_mkdir(t / "empty")),
     FileNotFoundError, ["empty"]),
    # -- from_pretrained options: checked before any file is read
    ("dtype-int", lambda m, d, c, t: CanViTForPretraining.from_pretrained(c, dtype=torch.int8), TypeError, ["dtype"]),
    ("dtype-str", lambda m, d, c, t: CanViTForPretraining.from_pretrained(c, dtype="half-ish"), TypeError, ["dtype"]),
    ("map-location", lambda m, d, c, t: CanViTForPretraining.from_pretrained(c, map_location="gpu7"),
     ValueError, ["map_location", "gpu7"]),
    ("unknown-kwarg", lambda m, d, c, t: CanViTForPretraining.from_pretrained(c, revison="v1"),
     TypeError, ["from_pretrained", "revison"]),
    ("dinov3-unknown-kwarg", lambda m, d, c, t: DINOv3.from_pretrained(c, device="cpu"),
     TypeError, ["from_pretrained", "device"]),
    # -- the classification / segmentation loaders: the same options, checked before any file is read
    ("clf-dtype-int", lambda m, d, c, t: CanViTForImageClassification.from_pretrained(t / "nope", dtype=torch.int8),
     TypeError, ["dtype"]),
    ("clf-map-location", lambda m, d, c, t: CanViTForImageClassification.from_pretrained(t / "nope", map_location="gpu7"),
     ValueError, ["map_location", "gpu7"]),
    ("clf-unknown-kwarg", lambda m, d, c, t: CanViTForImageClassification.from_pretrained(c, revison="v1"),
     TypeError, ["from_pretrained", "revison"]),
    ("clf-probe-dtype-str", lambda m, d, c, t: CanViTForImageClassification.from_pretrained_with_probe(
        c, t / "nope", dtype="half-ish"), TypeError, ["dtype"]),
    ("clf-probe-map-location", lambda m, d, c, t: CanViTForImageClassification.from_pretrained_with_probe(
        c, t / "nope", map_location="gpu7"), ValueError, ["map_location", "gpu7"]),
    ("clf-probe-unknown-kwarg", lambda m, d, c, t: CanViTForImageClassification.from_pretrained_with_probe(
        c, t / "nope", device="cpu"), TypeError, ["from_pretrained_with_probe", "device"]),
    ("linear-probe-unknown-kwarg", lambda m, d, c, t: load_linear_probe(t / "nope", map_location="cpu"),
     TypeError, ["load_linear_probe", "map_location"]),
    ("seg-probe-map-location", lambda m, d, c, t: SegmentationProbe.from_pretrained(t / "nope", map_location="gpu7"),
     ValueError, ["map_location", "gpu7"]),
    ("seg-probe-no-dtype", lambda m, d, c, t: SegmentationProbe.from_pretrained(t / "nope", dtype=torch.bfloat16),
     TypeError, ["from_pretrained", "dtype"]),
    ("seg-dtype-int", lambda m, d, c, t: CanViTForSemanticSegmentation.from_pretrained_with_probe(
        c, t / "nope", dtype=torch.int8), TypeError, ["dtype"]),
    ("seg-map-location", lambda m, d, c, t: CanViTForSemanticSegmentation.from_pretrained_with_probe(
        c, t / "nope", map_location="gpu7"), ValueError, ["map_location", "gpu7"]),
    ("seg-unknown-kwarg", lambda m, d, c, t: CanViTForSemanticSegmentation.from_pretrained_with_probe(
        c, t / "nope", revison="v1"), TypeError, ["from_pretrained_with_probe", "revison"]),
    # -- the forward pass
    ("state-none", lambda m, d, c, t: _forward(m, state=None), TypeError, ["state", "None"]),
    ("viewpoint-none", lambda m, d, c, t: _forward(m, viewpoint=None), TypeError, ["viewpoint", "None"]),
    ("glimpse-none", lambda m, d, c, t: _forward(m, glimpse=None), TypeError, ["glimpse", "None"]),
    ("state-wrong-type", lambda m, d, c, t: _forward(m, state=(torch.zeros(1), torch.zeros(1))), TypeError, ["state"]),
    ("viewpoint-tuple", lambda m, d, c, t: _forward(m, viewpoint=(torch.zeros(1, 2), torch.ones(1))),
     TypeError, ["viewpoint"]),
    ("state-canvas-none", lambda m, d, c, t: _forward(m, state=RecurrentState(None, torch.zeros(1, 1, 384))),
     TypeError, ["state.canvas"]),
    ("grid-bool", lambda m, d, c, t: m.init_state(batch_size=1, canvas_grid_size=True), TypeError, ["canvas_grid_size"]),
    ("grid-float", lambda m, d, c, t: m.init_state(batch_size=1, canvas_grid_size=4.0), TypeError, ["canvas_grid_size"]),
    ("batch-bool", lambda m, d, c, t: m.init_state(batch_size=True, canvas_grid_size=4), TypeError, ["batch_size"]),
    ("grid-zero", lambda m, d, c, t: m.init_state(batch_size=1, canvas_grid_size=0), ValueError, ["canvas_grid_size"]),
    ("forward-grid-bool", lambda m, d, c, t: _forward(m, canvas_grid_size=True), TypeError, ["canvas_grid_size"]),
    ("glimpse-uint8", lambda m, d, c, t: _forward(m, glimpse=torch.zeros(1, 3, 32, 32, dtype=torch.uint8)),
     ValueError, ["glimpse", "uint8"]),
    # -- viewpoints and sampling
    ("full-scene-bool", lambda m, d, c, t: Viewpoint.full_scene(batch_size=True), TypeError, ["batch_size"]),
    ("vp-centers-none", lambda m, d, c, t: Viewpoint(centers=None, scales=torch.ones(1)), TypeError, ["centers"]),
    ("vp-scale-nan", lambda m, d, c, t: Viewpoint(torch.zeros(1, 2), torch.tensor([float("nan")])), ValueError, ["scales", "finite"]),
    ("vp-centre-inf", lambda m, d, c, t: Viewpoint(torch.tensor([[float("inf"), 0.0]]), torch.ones(1)), ValueError, ["centers", "finite"]),
    ("vp-scale-zero", lambda m, d, c, t: Viewpoint(torch.zeros(1, 2), torch.zeros(1)), ValueError, ["scales", "> 0"]),
    ("sample-viewpoint-none", lambda m, d, c, t: sample_at_viewpoint(torch.zeros(1, 3, 8, 8), None, 8), TypeError, ["viewpoint"]),
    ("sample-spatial-none", lambda m, d, c, t: sample_at_viewpoint(None, Viewpoint.full_scene(batch_size=1), 8), TypeError, ["spatial"]),
    ("sample-size-bool", lambda m, d, c, t: sample_at_viewpoint(torch.zeros(1, 3, 8, 8), Viewpoint.full_scene(batch_size=1), True),
     ValueError, ["glimpse_size_px"]),
    # -- images: 0..255 floats refused, uint8 must go through preprocessing
    ("dinov3-0-255-float", lambda m, d, c, t: d(torch.rand(1, 3, 32, 32) * 255), ValueError, ["images", "0..255"]),
    ("dinov3-uint8", lambda m, d, c, t: d(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)), ValueError, ["images", "uint8"]),
    ("dinov3-none", lambda m, d, c, t: d(None), TypeError, ["images"]),
    ("preprocess-0-255-float", lambda m, d, c, t: center_crop_transform(torch.rand(3, 40, 40) * 255, 32),
     ValueError, ["image", "0..255"]),
    ("preprocess-normalized", lambda m, d, c, t: square_resize_transform(torch.randn(3, 40, 40).clamp(-2, 1.2), 32),
     ValueError, ["image", "normalized"]),
    ("preprocess-none", lambda m, d, c, t: square_resize_transform(None, 32), TypeError, ["image"]),
    ("preprocess-size-bool", lambda m, d, c, t: center_crop_transform(torch.zeros(3, 8, 8), True), ValueError, ["size"]),
    ("preprocess-resize-size", lambda m, d, c, t: center_crop_transform(torch.zeros(3, 8, 8), 8, 2.5), ValueError, ["resize_size"]),
]


def _edit_json(directory: Path, **fields):
    p = directory / "config.json"
    cfg = json.loads(p.read_text())
    cfg.update(fields)
    p.write_text(json.dumps(cfg))


def _mkdir(p: Path) -> Path:
    p.mkdir()
    (p / "README.md").write_text("no weights here")
    return p


@pytest.mark.parametrize("call,exc,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_raises_a_clear_error(call, exc, needles, model, dinov3, ckpt, tmp_path):
    with pytest.raises(exc) as e:
        call(model, dinov3, ckpt, tmp_path)
    assert type(e.value) is exc, f"{type(e.value).__name__}: {e.value}"
    msg = str(e.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_uint8_images_are_converted_by_preprocessing():
    u8 = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    torch.testing.assert_close(square_resize_transform(u8, 32), square_resize_transform(u8.float() / 255, 32))


def _rollout(m, glimpse):
    state = m.init_state(batch_size=1, canvas_grid_size=4)
    vp = Viewpoint(centers=torch.tensor([[0.2, -0.1]]), scales=torch.tensor([0.6]))
    with torch.no_grad():
        return m(glimpse, state, vp)


def test_other_float_dtypes_are_cast_to_the_model_dtype(model):
    g = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = _rollout(model, g)
    out64 = _rollout(model, g.double())  # float64 -> float32 is exact for float32-born values
    assert out64.state.canvas.dtype == torch.float32 and torch.equal(out64.state.canvas, ref.state.canvas)
    out16 = _rollout(model, g.bfloat16())  # = casting it ourselves first; no conv-layer dtype error
    assert out16.state.canvas.dtype == torch.float32
    assert torch.equal(out16.state.canvas, _rollout(model, g.bfloat16().float()).state.canvas)


def test_a_bf16_model_takes_float32_glimpses_and_states(model):
    bf = CanViTForPretraining(SMALL, teacher_dim=48, teacher_patch_grid=4).eval()
    bf.load_state_dict(model.state_dict())
    bf = bf.to(torch.bfloat16)
    g = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    state = model.init_state(batch_size=1, canvas_grid_size=4)  # float32 state from the float32 twin
    vp = Viewpoint.full_scene(batch_size=1)
    with torch.no_grad():
        out = bf(g, state, vp)
        ref = model(g, state, vp)
    assert out.state.canvas.dtype == torch.bfloat16 and torch.isfinite(out.state.canvas.float()).all()
    cos = torch.nn.functional.cosine_similarity(out.state.canvas.float().flatten(), ref.state.canvas.flatten(), dim=0)
    assert cos > 0.99


def test_from_pretrained_dtype_and_map_location(ckpt, model):
    m = CanViTForPretraining.from_pretrained(ckpt, dtype=torch.bfloat16, map_location=torch.device("cpu"))
    assert all(p.dtype == torch.bfloat16 for p in m.parameters())
    m32 = CanViTForPretraining.from_pretrained(ckpt, dtype="float32")
    assert all(torch.equal(a, b) for a, b in zip(m32.state_dict().values(), model.state_dict().values()))


def test_out_of_scene_viewpoints_run_through_the_model(model):
    vp = Viewpoint(centers=torch.tensor([[0.9, -0.9], [4.0, 0.0]]), scales=torch.tensor([0.5, 2.0]))
    scene = torch.randn(2, 3, 64, 64)
    glimpse = sample_at_viewpoint(scene, vp, 32)
    with torch.no_grad():
        out = model(glimpse, model.init_state(batch_size=2, canvas_grid_size=4), vp)
    assert torch.isfinite(out.state.canvas).all() and torch.isfinite(out.vpe).all()
