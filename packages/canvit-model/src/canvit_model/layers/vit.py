"""The ViT trunk (patch embedding + blocks) shared by the CanViT backbone and DINOv3."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ViTConfig
from .block import Block, PatchEmbed
from .rope import Rope, rope_periods, rope_tables, unsqueeze_heads


class ViT(nn.Module):
    """Patch embedding + blocks: the trunk shared by the CanViT backbone and DINOv3."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.dim, cfg.patch_size)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))

    @property
    def config(self) -> ViTConfig:
        """The architecture (canvit-pytorch / transformers' name; `cfg` is the same object)."""
        return self.cfg

    def rope(self, positions: torch.Tensor, num_prefix: int) -> Rope:
        """RoPE tables for the blocks: positions [..., N, 2] in scene coordinates."""
        periods = rope_periods(self.cfg.head_dim, self.cfg.rope_base, device=positions.device)
        return unsqueeze_heads(rope_tables(positions, periods, num_prefix))
