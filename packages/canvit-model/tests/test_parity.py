"""Parity with the authors' canvit-pytorch 0.2 on golden fixtures (see parity/make_fixtures.py).

Same seeded weights on both sides; every step of several rollouts (different viewpoints per batch
element, scales down to 0.05, canvas grids 8/16/32/64, non-square scenes) must agree to 1e-5 relative.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from canvit_model import CanViTConfig, CanViTForPretraining, Viewpoint, sample_at_viewpoint

PARITY = Path(__file__).resolve().parent / "parity"
_spec = importlib.util.spec_from_file_location("parity_scenario", PARITY / "scenario.py")
scenario = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenario)

RTOL = 1e-5


def build(variant: str) -> CanViTForPretraining:
    torch.manual_seed(0)
    m = CanViTForPretraining(CanViTConfig(**scenario.VARIANTS[variant]), teacher_dim=768, teacher_patch_grid=32).eval()
    scenario.fill_(m)
    return m


def load_fixture(variant: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(PARITY / "fixtures" / f"{variant}.safetensors", framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.mark.parametrize("variant", list(scenario.VARIANTS))
def test_rollouts_match_canvit_pytorch(variant):
    ref, meta = load_fixture(variant)
    assert meta["variant"] == variant
    model = build(variant)
    weights_sum = sum(float(v.double().sum()) for v in model.state_dict().values() if v.is_floating_point())
    assert weights_sum == pytest.approx(float(ref.pop(f"{variant}/weights_sum")), rel=1e-9), "weight fill drifted"
    ours: dict[str, torch.Tensor] = {}
    for r in scenario.rollouts_for(variant):
        ours.update(scenario.run(model, Viewpoint, sample_at_viewpoint, r, variant))
    assert sorted(ours) == sorted(ref)
    worst = 0.0
    for k, expected in ref.items():
        got = ours[k]
        assert got.shape == expected.shape, k
        scale = expected.abs().max().clamp_min(1e-12)
        err = float((got - expected).abs().max() / scale)
        worst = max(worst, err)
        assert err <= RTOL, f"{k}: max |ours - reference| / max|reference| = {err:.3g}"
    print(f"{variant}: {len(ref)} compared, worst relative error {worst:.2e}")


def test_checkpoint_layout_matches_canvit_pytorch(tmp_path):
    """save_pretrained writes exactly canvit-pytorch's config.json and key set; its files load in ours."""
    from safetensors.torch import load_file

    layouts = json.loads((PARITY / "fixtures" / "reference_layout.json").read_text())["layouts"]
    for variant, fields in scenario.VARIANTS.items():
        with torch.device("meta"):
            m = CanViTForPretraining(CanViTConfig(**fields), teacher_dim=768, teacher_patch_grid=32)
        assert m.config_dict() == layouts[variant]["config.json"], variant
        ours = {k: [list(v.shape), str(v.dtype)] for k, v in m.state_dict().items()}
        assert ours == layouts[variant]["keys"], variant
    # and a real file written by our save_pretrained parses back to the same layout
    small = CanViTForPretraining(CanViTConfig(backbone_name="vits16", canvas_num_heads=2), teacher_patch_grid=4)
    small.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "model.safetensors")) == set(small.state_dict())


def test_v01_layouts_rename_onto_ours():
    """Every 0.1 checkpoint layout (as canvit-pytorch 0.1.10 saves it) maps key-for-key onto our model."""
    from canvit_model.convert import parse_pretraining_config, rename_v01_key

    layouts = json.loads((PARITY / "fixtures" / "reference_layout_v01.json").read_text())["layouts"]
    assert set(layouts) == set(scenario.VARIANTS)
    for variant, layout in layouts.items():
        cfg, teacher_dim, grid, kind = parse_pretraining_config(layout["config.json"])
        assert kind == "0.1" and cfg == CanViTConfig(**scenario.VARIANTS[variant]), variant
        with torch.device("meta"):
            m = CanViTForPretraining(cfg, teacher_dim=teacher_dim, teacher_patch_grid=grid)
        renamed = {rename_v01_key(k): shape for k, shape in layout["keys"].items()}
        assert renamed == {k: list(v.shape) for k, v in m.state_dict().items()}, variant


def test_v01_checkpoint_directory_loads_and_matches_reference(tmp_path):
    """A directory in the real 0.1 layout loads through from_pretrained and reproduces the golden rollout."""
    from safetensors.torch import save_file

    from canvit_model.convert import rename_v01_key

    variant = "vit-s"
    layout = json.loads((PARITY / "fixtures" / "reference_layout_v01.json").read_text())["layouts"][variant]
    sd = build(variant).state_dict()
    save_file({k01: sd[rename_v01_key(k01)].contiguous() for k01 in layout["keys"]}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(layout["config.json"]))
    model = CanViTForPretraining.from_pretrained(tmp_path)
    ref, _ = load_fixture(variant)
    ours = scenario.run(model, Viewpoint, sample_at_viewpoint, "abl", variant)
    for k, v in ours.items():
        assert torch.allclose(v, ref[k], rtol=RTOL, atol=RTOL * float(ref[k].abs().max())), k
