"""`canvit-export onnx`: the glimpse step in onnxruntime (CPU) equals eager PyTorch over a 3-glimpse rollout."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from canvit_model import (
    BACKBONES,
    CanViTConfig,
    CanViTForPretraining,
    RecurrentState,
    Viewpoint,
    ViTConfig,
    random_viewpoints,
    sample_at_viewpoint,
)
from canvit_model import export as ex

GRID, PX = 4, 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint exported once by the command (with teacher predictions): (model, out dir)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BACKBONES, "test-tiny", ViTConfig(dim=32, num_heads=2, depth=2))
        cfg = CanViTConfig(backbone_name="test-tiny", canvas_num_heads=2, canvas_head_dim=16, num_canvas_registers=2)
        torch.manual_seed(0)
        model = CanViTForPretraining(cfg, teacher_dim=8, teacher_patch_grid=GRID)
        with torch.no_grad():  # no all-ones / all-zeros init left, so every weight matters
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        ckpt = tmp_path_factory.mktemp("ckpt")
        model.save_pretrained(ckpt)
        out = tmp_path_factory.mktemp("onnx") / "step"
        assert ex.main(["onnx", "--model", str(ckpt), "--canvas-grid", str(GRID), "--glimpse-px", str(PX),
                        "--out", str(out), "--teacher-predictions"]) == 0
        yield model.eval(), out


def test_graph_has_the_documented_interface(exported):
    _, out = exported
    m = onnx.load(out / ex.ONNX_NAME)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in m.graph.input}
    assert list(dims) == ["glimpse", "canvas", "recurrent_cls", "center", "scale"]
    batch = dims["glimpse"][0]
    assert isinstance(batch, str) and batch  # symbolic: the batch is dynamic
    assert dims == {"glimpse": [batch, 3, PX, PX], "canvas": [batch, 2 + GRID * GRID, 32],
                    "recurrent_cls": [batch, 1, 32], "center": [batch, 2], "scale": [batch]}
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in m.graph.input)
    assert [v.name for v in m.graph.output] == ["next_canvas", "next_recurrent_cls", "teacher_patches", "teacher_cls"]
    init = load_file(out / ex.INIT_STATE_NAME)
    assert set(init) == {"canvas", "recurrent_cls"}
    assert init["canvas"].shape == (1, 2 + GRID * GRID, 32) and init["recurrent_cls"].shape == (1, 1, 32)


@pytest.mark.parametrize("batch", [3, 1])
def test_onnxruntime_rollout_equals_eager(exported, batch):
    model, out = exported
    sess = ort.InferenceSession(str(out / ex.ONNX_NAME), providers=["CPUExecutionProvider"])
    init = load_file(out / ex.INIT_STATE_NAME)
    with torch.no_grad():
        ref0 = model.init_state(batch, GRID)
    assert torch.equal(init["canvas"].expand(batch, -1, -1), ref0.canvas)
    # the loop a user writes: state from init_state.safetensors, a glimpse per viewpoint, one step each
    canvas = np.repeat(init["canvas"].numpy(), batch, axis=0)
    cls = np.repeat(init["recurrent_cls"].numpy(), batch, axis=0)
    state = ref0
    g = torch.Generator().manual_seed(batch)
    scene = torch.randn(batch, 3, 96, 80, generator=g)
    for t in range(3):
        vp = Viewpoint.full_scene(batch_size=batch) if t == 0 else random_viewpoints(batch, generator=g)
        glimpse = sample_at_viewpoint(scene, vp, PX)
        canvas, cls, patches, tcls = sess.run(None, {
            "glimpse": glimpse.numpy(), "canvas": canvas, "recurrent_cls": cls,
            "center": vp.centers.numpy(), "scale": vp.scales.numpy()})
        with torch.no_grad():
            state = model(glimpse, state, vp).state
            ref_patches, ref_cls = model.predict_teacher_patches(state.canvas), model.predict_teacher_cls(state.recurrent_cls)
        for got, ref in ((canvas, state.canvas), (cls, state.recurrent_cls), (patches, ref_patches), (tcls, ref_cls)):
            assert got.dtype == np.float32 and got.shape == tuple(ref.shape)
            assert np.abs(got - ref.numpy()).max() <= 1e-4, (t, np.abs(got - ref.numpy()).max())
    assert np.abs(canvas - ref0.canvas.numpy()).max() > 1e-2  # the state did move


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        ex.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_bad_input_gets_a_one_line_error_naming_the_flag(exported, tmp_path, capsys):
    _, out = exported
    base = ["onnx", "--random-init", "canvitb16", "--out", str(tmp_path / "x")]
    assert "--canvas-grid must be in 1..256, got 0" in _error(capsys, base + ["--canvas-grid", "0", "--glimpse-px", "128"])
    assert "--glimpse-px must be a positive multiple of the patch size 16, got 100" in _error(
        capsys, base + ["--canvas-grid", "8", "--glimpse-px", "100"])
    assert "--glimpse-px" in _error(capsys, base + ["--canvas-grid", "8", "--glimpse-px", "-16"])
    assert "--random-init must be one of canvitb16" in _error(
        capsys, ["onnx", "--random-init", "nosuch", "--canvas-grid", "8", "--glimpse-px", "128", "--out", str(tmp_path)])
    msg = _error(capsys, ["onnx", "--model", str(tmp_path / "missing"), "--canvas-grid", "8", "--glimpse-px", "128",
                          "--out", str(tmp_path / "y"), "--local-files-only"])
    assert "--model" in msg and "missing" in msg
    before = (out / ex.ONNX_NAME).read_bytes()
    assert "already holds canvit_step.onnx; pass --force" in _error(
        capsys, ["onnx", "--random-init", "canvitb16", "--canvas-grid", "4", "--glimpse-px", "32", "--out", str(out)])
    assert (out / ex.ONNX_NAME).read_bytes() == before


def test_help_has_an_example_and_every_default(capsys):
    with pytest.raises(SystemExit):
        ex.main(["onnx", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "example:" in text and "canvit-export onnx --random-init" in text
    for flag in ("--teacher-predictions", "--force", "--opset", "--revision", "--local-files-only"):
        assert flag in text
    assert "(default: 18)" in text and "(default: refuse)" in text


def test_a_failed_export_leaves_no_partial_file(exported, tmp_path, monkeypatch):
    """Atomic writes: an export that dies half way leaves the old files as they were and no temporary."""
    model, out = exported
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(torch.onnx, "export", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        ex.export_onnx(model, out, canvas_grid=GRID, glimpse_px=PX, force=True)
    assert {p.name for p in out.iterdir()} == set(before)
    assert (out / ex.ONNX_NAME).read_bytes() == before[ex.ONNX_NAME]
    with pytest.raises(FileExistsError, match="force"):
        ex.export_onnx(model, out, canvas_grid=GRID, glimpse_px=PX)
    with pytest.raises(ValueError, match="glimpse_px must be a multiple of the patch size 16"):
        ex.export_onnx(model, tmp_path, canvas_grid=GRID, glimpse_px=40)


@torch.no_grad()
def test_glimpse_step_is_the_model_step(exported):
    """GlimpseStep (the exported module) = the model's own step on the same tensors, exactly."""
    from canvit_model import CanViT

    model, _ = exported
    state = model.init_state(2, GRID)
    vp = random_viewpoints(2, generator=torch.Generator().manual_seed(5))
    glimpse = torch.randn(2, 3, PX, PX)
    ref = model(glimpse, state, vp).state
    got = ex.GlimpseStep(model, teacher_predictions=True)(glimpse, state.canvas, state.recurrent_cls, vp.centers, vp.scales)
    assert len(got) == 4 and torch.equal(got[0], ref.canvas) and torch.equal(got[1], ref.recurrent_cls)
    assert torch.equal(got[3], model.predict_teacher_cls(ref.recurrent_cls))
    plain = ex.GlimpseStep(model.canvit)(glimpse, state.canvas, state.recurrent_cls, vp.centers, vp.scales)
    assert len(plain) == 2 and torch.equal(plain[0], ref.canvas)
    with pytest.raises(TypeError, match="CanViTForPretraining"):
        ex.GlimpseStep(model.canvit, teacher_predictions=True)
    assert isinstance(model.canvit, CanViT) and isinstance(state, RecurrentState)


def test_readme_loop_runs_and_equals_eager(exported):
    """The README's onnxruntime + numpy loop (its own numpy glimpse sampler included), run on this export,
    ends on the canvas that eager PyTorch reaches with `sample_at_viewpoint` and the same viewpoints."""
    import re
    from pathlib import Path

    model, out = exported
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S) if "sample_glimpse" in b]
    assert len(blocks) == 1
    code = blocks[0]
    assert 'OUT, P = "canvit-onnx", 128' in code
    ns: dict = {}
    exec(compile(code.replace('OUT, P = "canvit-onnx", 128', f'OUT, P = {str(out)!r}, {PX}'), str(readme), "exec"), ns)
    scene = torch.from_numpy(ns["scene"])[None]
    views = re.search(r"for center, scale in (\[.*?\]):", code).group(1)
    with torch.no_grad():
        state = model.init_state(1, GRID)
        for center, scale in eval(views):
            vp = Viewpoint(centers=torch.tensor([center]), scales=torch.tensor([float(scale)]))
            glimpse = sample_at_viewpoint(scene, vp, PX)
            ours = ns["sample_glimpse"](ns["scene"], center, scale, PX)
            assert np.abs(ours - glimpse[0].numpy()).max() < 1e-5  # the README's sampler is ours
            state = model(glimpse, state, vp).state
    assert np.abs(ns["canvas"] - state.canvas.numpy()).max() <= 1e-4
    assert np.abs(ns["recurrent_cls"] - state.recurrent_cls.numpy()).max() <= 1e-4
