"""Viewpoint Encoding token (paper §4, Appendix C).

(y/s, x/s, log s) is scale-, translation- and rotation-friendly; it is lifted by fixed random
Fourier features (sigma = 1) to D dims, [cos, sin], then LayerNorm'ed. Always float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Viewpoint


class ViewpointEncoding(nn.Module):
    def __init__(self, dim: int, seed: int = 42, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"VPE dim={dim} must be even")
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(dim // 2, 3, generator=gen, dtype=torch.float32))
        self.norm = nn.LayerNorm(dim, eps=eps)
        nn.init.constant_(self.norm.weight, 1 / math.sqrt(dim))

    def forward(self, viewpoint: Viewpoint) -> torch.Tensor:
        """[B, D] float32 encoding of each viewpoint."""
        with torch.autocast(device_type=self.frequencies.device.type, enabled=False):
            c, s = viewpoint.centers.float(), viewpoint.scales.float()
            z = torch.stack([c[:, 0] / s, c[:, 1] / s, torch.log(s)], dim=-1)  # [B, 3]
            phases = z @ self.frequencies.float().T  # [B, D/2]
            enc = torch.cat([phases.cos(), phases.sin()], dim=-1)  # [B, D]
            n = self.norm
            return F.layer_norm(enc, n.normalized_shape, n.weight.float(), n.bias.float(), n.eps)
