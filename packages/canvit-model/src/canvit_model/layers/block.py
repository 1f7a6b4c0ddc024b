"""The DINOv3-style ViT block, one implementation for the CanViT backbone and the DINOv3 teacher.

Pre-norm: x += ls1 * Attn(LN1(x)); x += ls2 * MLP(LN2(x)). The fused qkv has its key bias masked to
zero at run time (DINOv3's "mask_k_bias"); RoPE rotates queries and keys of positioned tokens only.
Parameter names follow the official DINOv3 / CanViT checkpoints (norm1, attn.qkv, ls1.gamma, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ViTConfig
from .fast import FastLinear
from .rope import Rope, apply_rope


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = FastLinear(dim, hidden)
        self.fc2 = FastLinear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.fc1.fast_mode(x)
        if mode is not None and self.fc2.fast_mode(x) == mode:  # CPU inference: GELU fused into fc1, and
            # in bf16 mode the [B, N, 4D] hidden stays bfloat16 between the two packed GEMMs
            return self.fc2.packed_forward(self.fc1.packed_forward(x, mode, post="gelu"), mode).float()
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """w3(silu(w1 x) * w2 x): DINOv3 S+/H+ feed-forward."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = FastLinear(dim, hidden)
        self.w2 = FastLinear(dim, hidden)
        self.w3 = FastLinear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = FastLinear(dim, 3 * dim)
        self.proj = FastLinear(dim, dim)
        mask = torch.ones(3 * dim)
        mask[dim : 2 * dim] = 0  # the key bias never contributes
        self.register_buffer("k_bias_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        b, n, d = x.shape  # [B, N, D]
        qkv = self.qkv(x, bias=self.qkv.bias * self.k_bias_mask)  # [B, N, 3D]
        q, k, v = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, h, N, hd]
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.num_heads)
        self.ls1 = LayerScale(cfg.dim, cfg.layerscale_init)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = (SwiGLU if cfg.mlp == "swiglu" else Mlp)(cfg.dim, cfg.ffn_hidden)
        self.ls2 = LayerScale(cfg.dim, cfg.layerscale_init)

    def forward(self, x: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        # x + gamma * f(x) as one fused op (same as x + ls(f(x)), one fewer [B, N, D] temporary)
        x = torch.addcmul(x, self.attn(self.norm1(x), rope), self.ls1.gamma)
        return torch.addcmul(x, self.mlp(self.norm2(x)), self.ls2.gamma)


class PatchEmbed(nn.Module):
    """Conv2d(3, D, k=p, s=p), flattened row-major: [B, 3, H, W] -> [B, (H/p)(W/p), D]."""

    def __init__(self, dim: int, patch_size: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)
