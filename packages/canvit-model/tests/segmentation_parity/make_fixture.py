"""Golden fixtures for the segmentation probe and EG-C2F tile entropies from the authors' canvit-pytorch.

canvit-pytorch needs Python >= 3.12, so this runs in a separate environment, never in CI:

    PYENV_VERSION=3.11.7:3.12.1 uv venv -p 3.12 /tmp/ref && uv pip install -p /tmp/ref canvit-pytorch==0.2.1
    /tmp/ref/bin/python packages/canvit-model/tests/segmentation_parity/make_fixture.py

Writes fixtures/probe_ln/ and fixtures/probe_noln/ (the reference's own save_pretrained output: the
published probe layout) and fixtures/io.safetensors (inputs, the reference's logits, and EG-C2F tile
mean entropies from the reference's tile masks).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

from canvit_pytorch.policies.entropy import predictive_entropy, tile_masks
from canvit_pytorch.policies.quadtree import quadtree_level
from canvit_pytorch.probes import SegmentationProbe

OUT = Path(__file__).resolve().parent / "fixtures"


def randomized(use_ln: bool) -> SegmentationProbe:
    p = SegmentationProbe(embed_dim=16, num_classes=5, dropout=0.1, use_ln=use_ln)
    with torch.no_grad():
        for prm in p.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
        p.bn.running_mean.normal_()
        p.bn.running_var.uniform_(0.5, 1.5)
        p.bn.num_batches_tracked.fill_(11)
    return p.eval()


def main() -> None:
    torch.set_num_threads(2)  # test_segmentation's FIXTURE_THREADS: CPU rounding depends on the thread count
    torch.manual_seed(0)
    OUT.mkdir(exist_ok=True)
    tensors = {"features": torch.randn(2, 3, 4, 16)}
    for name, use_ln in (("probe_ln", True), ("probe_noln", False)):
        p = randomized(use_ln)
        p.save_pretrained(OUT / name)
        (OUT / name / "README.md").unlink(missing_ok=True)  # the reference's model card: not needed
        with torch.no_grad():
            tensors[f"{name}.logits"] = p(tensors["features"])
    logits = torch.randn(3, 6, 8, 8) * 3
    tensors["seg_logits"] = logits
    ent = predictive_entropy(logits)  # [B, G, G]
    for level in (1, 2, 3):
        masks = tile_masks(quadtree_level(level), canvas_grid_size=8, device=torch.device("cpu")).float()
        tensors[f"tile_entropy.{level}"] = torch.einsum("bij,kij->bk", ent, masks) / masks.sum((1, 2))
    save_file(tensors, OUT / "io.safetensors", metadata={"canvit_pytorch": version("canvit-pytorch"),
                                                         "torch": torch.__version__,
                                                         "threads": str(torch.get_num_threads())})


if __name__ == "__main__":
    main()
