"""Golden fixtures for two canvit-pytorch drop-in behaviours, from the authors' package itself.

canvit-pytorch needs Python >= 3.12, so this runs in a separate environment, never in CI:

    PYENV_VERSION=3.11.7:3.12.1 uv venv -p 3.12 /tmp/ref && uv pip install -p /tmp/ref canvit-pytorch==0.2.1
    /tmp/ref/bin/python packages/canvit-model/tests/dropin_parity/make_fixture.py

Writes fixtures/labels.safetensors (label maps and what the reference's `preprocess_labels(size)`
returns for them, per PIL mode and size) and fixtures/classifier_layout.json (the config.json and
state-dict keys the reference's CanViTForImageClassification(canvit_config=..., n_classes=7) saves).
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from canvit_pytorch import CanViTConfig, CanViTForImageClassification
from canvit_pytorch.preprocess import preprocess_labels

OUT = Path(__file__).resolve().parent / "fixtures"

# (name, PIL mode, height, width): non-square maps both ways, a square one, one smaller than some sizes
MAPS = [("l_37x53", "L", 37, 53), ("p_64x45", "P", 64, 45), ("i_20x20", "I", 20, 20), ("l_9x31", "L", 9, 31)]
SIZES = [7, 16, 31, 40]


def label_image(arr: np.ndarray, mode: str) -> Image.Image:
    """The same bytes as a PIL image of `mode` (P: uint8 indices, I: native int32)."""
    h, w = arr.shape
    data = arr.astype(np.int32 if mode == "I" else np.uint8).tobytes()
    return Image.frombytes(mode, (w, h), data)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, mode, h, w in MAPS:
        hi = 70000 if mode == "I" else 151  # I maps carry labels beyond 16 bits: no value change allowed
        arr = rng.integers(0, hi, size=(h, w)).astype(np.int32)
        tensors[f"{name}/input"] = torch.from_numpy(arr)
        for size in SIZES:
            out = preprocess_labels(size)(label_image(arr, mode))
            tensors[f"{name}/{size}"] = out
    save_file(tensors, OUT / "labels.safetensors", metadata={"canvit_pytorch": version("canvit-pytorch"),
                                                             "torch": torch.__version__})
    torch.manual_seed(0)
    clf = CanViTForImageClassification(canvit_config=CanViTConfig(backbone_name="vits16"), n_classes=7)
    with tempfile.TemporaryDirectory() as d:
        clf.save_pretrained(d)
        sd = load_file(Path(d) / "model.safetensors")
        layout = {"meta": {"canvit_pytorch": version("canvit-pytorch")}, "n_classes_property": clf.n_classes,
                  "config.json": json.loads((Path(d) / "config.json").read_text()),
                  "keys": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(sd.items())}}
    (OUT / "classifier_layout.json").write_text(json.dumps(layout, indent=1))


if __name__ == "__main__":
    main()
