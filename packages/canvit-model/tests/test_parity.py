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
        from canvit_model.hub import pretraining_config_dict

        assert pretraining_config_dict(m) == layouts[variant]["config.json"], variant
        ours = {k: [list(v.shape), str(v.dtype)] for k, v in m.state_dict().items()}
        assert ours == layouts[variant]["keys"], variant
    # and a real file written by our save_pretrained parses back to the same layout
    small = CanViTForPretraining(CanViTConfig(backbone_name="vits16", canvas_num_heads=2), teacher_patch_grid=4)
    small.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "model.safetensors")) == set(small.state_dict())
