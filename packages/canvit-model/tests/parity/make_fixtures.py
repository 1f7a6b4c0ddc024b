"""Generate the golden parity fixtures from the authors' reference package (canvit-pytorch).

canvit-pytorch needs Python >= 3.12, so this runs in a separate environment, never in CI:

    PYENV_VERSION=3.11.7:3.12.1 uv venv -p 3.12 /tmp/ref && uv pip install -p /tmp/ref canvit-pytorch==0.2.1
    /tmp/ref/bin/python packages/canvit-model/tests/parity/make_fixtures.py

It writes tests/parity/fixtures/<variant>.safetensors (reduced outputs at every step, see scenario.py)
and reference_layout.json (the config.json and state-dict keys canvit-pytorch writes).
"""

from __future__ import annotations

import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scenario  # noqa: E402
from canvit_pytorch import CanViTConfig, CanViTForPretraining, Viewpoint, sample_at_viewpoint  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    out_dir = HERE / "fixtures"
    out_dir.mkdir(exist_ok=True)
    meta = {
        "canvit_pytorch": version("canvit-pytorch"),
        "torch": torch.__version__,
        "seed": str(scenario.SEED),
    }
    layouts = {}
    for name, fields in scenario.VARIANTS.items():
        torch.manual_seed(0)
        ref = CanViTForPretraining(
            canvit_config=CanViTConfig(**fields), teacher_dim=768, teacher_patch_grid=32
        ).eval()
        scenario.fill_(ref)
        tensors = {}
        for r in scenario.rollouts_for(name):
            tensors.update(scenario.run(ref, Viewpoint, sample_at_viewpoint, r, name))
        # a checksum of the filled weights, so a drift in the fill shows up as such
        tensors[f"{name}/weights_sum"] = torch.tensor(
            [sum(float(v.double().sum()) for v in ref.state_dict().values() if v.is_floating_point())],
            dtype=torch.float64,
        )
        save_file(tensors, out_dir / f"{name}.safetensors", metadata={**meta, "variant": name})
        with tempfile.TemporaryDirectory() as d:
            ref.save_pretrained(d)
            sd = load_file(Path(d) / "model.safetensors")
            layouts[name] = {
                "config.json": json.loads((Path(d) / "config.json").read_text()),
                "keys": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(sd.items())},
            }
        print(f"{name}: {len(tensors)} tensors")
    (out_dir / "reference_layout.json").write_text(json.dumps({"meta": meta, "layouts": layouts}, indent=1))


if __name__ == "__main__":
    main()
