"""The frozen DINOv3 teacher: loading, target computation, and a tiny random teacher for tests.

- `load_teacher(id_or_dir, device)` -> a frozen `canvit_model.DINOv3` in eval mode (hub id such as
  `canvit_model.releases.TEACHER`, or a local directory in the transformers layout).
- `teacher_targets(teacher, scenes)` -> (patches [B, G², D], cls [B, D]) after the final LayerNorm,
  registers dropped; bf16 autocast on CUDA, fp32 elsewhere, no grad. Outputs stay on the scenes' device.
- `write_tiny_teacher(dir, seed)`: a tiny random DINOv3 (dim 32, 2 blocks, patch 16) saved with
  `save_pretrained`, for tests and smoke runs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from canvit_model import releases

DEFAULT_TEACHER = releases.TEACHER


def load_teacher(teacher: str | os.PathLike[str], device: str | torch.device = "cpu"):
    from canvit_model import DINOv3

    model = DINOv3.from_pretrained(teacher).to(device).eval()
    model.requires_grad_(False)
    return model


def autocast_for(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the authors' export), full fp32 elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def teacher_targets(teacher, scenes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scenes [B, 3, R, R] normalized -> patches [B, (R/16)², D], cls [B, D] (final LayerNorm outputs)."""
    with autocast_for(scenes.device):
        feats = teacher.forward_features(scenes)
    return feats.patches, feats.cls


def write_tiny_teacher(
    directory: str | os.PathLike[str],
    seed: int = 0,
    *,
    dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    patch_size: int = 16,
) -> Path:
    """A tiny random DINOv3 in the transformers layout (config.json + model.safetensors)."""
    from canvit_model import DINOv3
    from canvit_model.convert import make_vit_config

    cfg = make_vit_config(
        dim=dim, num_heads=num_heads, depth=depth, ffn_hidden=2 * dim, mlp="gelu", patch_size=patch_size
    )
    gen = torch.Generator().manual_seed(seed)
    model = DINOv3(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):  # LayerScale: make the blocks matter
                p.fill_(0.5)
            elif p.ndim >= 2 or "token" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.save_pretrained(directory)
