"""Check our 0.1 -> 0.2 key renaming against the authors' canvit-pytorch 0.1.x, and record the 0.1 layout.

Runs in a Python >= 3.12 environment with canvit-pytorch 0.1.x (never in CI):

    PYENV_VERSION=3.11.7:3.12.1 uv venv -p 3.12 /tmp/ref01 && uv pip install -p /tmp/ref01 canvit-pytorch==0.1.10
    /tmp/ref01/bin/python packages/canvit-model/tests/parity/make_v01_fixtures.py

For each variant it builds the 0.1 hub class, fills it with the same seeded values as the 0.2 fixtures
(each 0.1 key gets the value of its renamed 0.2 key), runs the same rollouts and asserts the outputs
equal the 0.2 golden fixtures: so the renaming is right in meaning, not only in names. It then writes
fixtures/reference_layout_v01.json (config.json + key shapes as canvit-pytorch 0.1 saves them).
"""

from __future__ import annotations

import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import scenario  # noqa: E402
from canvit_model.convert import rename_v01_key  # noqa: E402
from canvit_pytorch import CanViTForPretrainingHFHub, Viewpoint, sample_at_viewpoint  # noqa: E402

V01_FIELDS = {  # 0.2 canvit_config fields -> 0.1 model_config fields
    "canvas_num_heads": "canvas_num_heads", "enable_reads": "enable_reads", "enable_vpe": "enable_vpe",
    "rw_stride": "rw_stride",
}


class V02Surface:
    """Present a 0.1 model through the 0.2 inference surface the scenarios use."""

    def __init__(self, m):
        self.m = m
        self.teacher_cls_standardizer, self.teacher_patch_standardizer = m.standardizers(32)

    def init_state(self, **kw):
        return self.m.init_state(**kw)

    def __call__(self, *, glimpse, state, viewpoint):
        o = self.m(glimpse=glimpse, state=state, viewpoint=viewpoint)
        return type("Out", (), {"state": o.state, "glimpse_patches": o.local_patches, "vpe": o.vpe})

    def predict_teacher_patches(self, canvas):
        return self.m.predict_teacher_scene(canvas)

    def predict_teacher_cls(self, cls):
        return self.m.predict_scene_teacher_cls(cls)


@torch.no_grad()
def fill_like_v02(model) -> None:
    """Give each 0.1 tensor the seeded value its 0.2 name gets (scenario.fill_)."""
    class Named(torch.nn.Module):
        def __init__(self, sd):
            super().__init__()
            self.sd = sd

        def state_dict(self):
            return self.sd

    renamed = {rename_v01_key(k): v for k, v in model.state_dict().items()}
    scenario.fill_(Named(renamed))


def main() -> None:
    torch.set_num_threads(2)
    layouts = {}
    for name, fields in scenario.VARIANTS.items():
        mc = {"teacher_dim": 768}
        for k, v in fields.items():
            if k == "canvas_projections":
                mc["canvas_proj_mode"] = {"qkvo": "full"}.get(v, v)
            elif k != "backbone_name":
                mc[V01_FIELDS[k]] = v
        torch.manual_seed(0)
        m = CanViTForPretrainingHFHub(
            backbone_name=fields.get("backbone_name", "vitb16"), model_config=mc, canvas_patch_grid_sizes=[32]
        ).eval()
        fill_like_v02(m)
        ours = {}
        for r in scenario.rollouts_for(name):
            ours.update(scenario.run(V02Surface(m), Viewpoint, sample_at_viewpoint, r, name))
        ref = load_file(HERE / "fixtures" / f"{name}.safetensors")
        worst = max(float((ours[k] - ref[k]).abs().max()) for k in ours)
        assert set(ours) == set(ref) - {f"{name}/weights_sum"}, name
        assert worst == 0.0, (name, worst)
        with tempfile.TemporaryDirectory() as d:
            m.save_pretrained(d)
            sd = load_file(Path(d) / "model.safetensors")
            layouts[name] = {
                "config.json": json.loads((Path(d) / "config.json").read_text()),
                "keys": {k: list(v.shape) for k, v in sorted(sd.items())},
            }
        print(f"{name}: 0.1 rollouts equal the 0.2 fixtures ({len(ours)} tensors)")
    meta = {"canvit_pytorch": version("canvit-pytorch"), "torch": torch.__version__}
    (HERE / "fixtures" / "reference_layout_v01.json").write_text(json.dumps({"meta": meta, "layouts": layouts}, indent=1))


if __name__ == "__main__":
    main()
