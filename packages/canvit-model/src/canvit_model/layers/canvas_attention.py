"""Canvas Attention (paper §4, Appendix B): cross-attention between glimpse tokens and the canvas.

Read: glimpse tokens query the canvas. Write: canvas tokens query the glimpse. In the "asymmetric"
design the learned projections sit on the glimpse (backbone) side only; the canvas side gets just
LayerNorm and RoPE. The "qkvo" ablation adds the canvas-side projections back (paper Table 3 b, c).
Both return a residual for the querying stream; `CanvasWrite.update` returns the updated canvas.

CPU inference (`cpu_fast_mode`, asymmetric design, fixed canvas tables) takes a fast path over the
canvas-sized work, the part that decides latency at large canvases: RoPE in three passes straight into
a head-major layout, both products arranged so the long canvas axis is a GEMM's wide dimension
(write scores as k q^T, [h, Nl, Nc], softmax over the 71-odd glimpse keys), and the write's second
product accumulated straight into the new canvas (baddbmm: no head merge, no separate residual add),
and the canvas-sized temporaries written into reused per-thread buffers (`fast.workspace`).
fp32 mode equals the eager path to float rounding (~1e-7 relative). bf16 mode keeps LayerNorm, RoPE,
the probabilities that meet the canvas, and the canvas itself in float32, and runs the read's products
and the write's scores in bfloat16 (paper D.3 lets attention follow autocast rules). Graphs and
training never take this path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fast import FastLinear, cpu_fast_mode, workspace
from .rope import Rope, apply_rope, rope_to_heads


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n, d = x.shape  # [B, N, D] -> [B, h, N, D/h]
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, hd = x.shape  # [B, h, N, hd] -> [B, N, h*hd]
    return x.transpose(1, 2).reshape(b, n, h * hd)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, training: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v for q [B, h, Nq, hd], k and v [B, h, Nk, hd].

    CPU inference (`cpu_fast_mode`): two plain GEMMs around a softmax, which run the canvas-sized
    products far faster than the fused kernel's small fp32 blocks. Everywhere else: SDPA.
    """
    if cpu_fast_mode(q, training) is not None and k.dtype == v.dtype == q.dtype:
        scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))  # [B, h, Nq, Nk]
        return torch.matmul(scores.softmax(dim=-1), v)  # [B, h, Nq, hd]
    # K/V follow Q's dtype: under autocast the canvas side is float32 while Q comes out of a Linear.
    return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype))


def _fast_canvas(module: nn.Module, canvas: torch.Tensor, canvas_rope: Rope) -> str | None:
    """The CPU mode ("fp32" / "bf16") when the canvas-side fast path applies, else None: CPU inference, no
    canvas-side projections (the asymmetric design: read has no k/v maps, write no q/o maps), the fixed
    [N, hd] canvas tables, float32 throughout."""
    canvas_side = (module.k_map, module.v_map) if isinstance(module, CanvasRead) else (module.q_map, module.o_map)
    if any(m is not None for m in canvas_side) or canvas_rope.cos.ndim != 2 or canvas_rope.cos.dtype != torch.float32:
        return None
    return cpu_fast_mode(canvas, module.training)


def _softmax_into(scores: torch.Tensor, dim: int, to_float: bool = False) -> torch.Tensor:
    """softmax(scores, dim) into the workspace buffer "probs" (same bits as Tensor.softmax); `to_float`:
    float32 probabilities from bfloat16 scores."""
    if to_float and scores.dtype != torch.float32:  # (aten has no bf16 -> fp32 softmax on CPU)
        scores = workspace("scores", tuple(scores.shape), scores, dtype=torch.float32).copy_(scores)
    out = workspace("probs", tuple(scores.shape), scores)
    return torch.ops.aten._softmax.out(scores, dim, False, out=out)


def _bf16_into(x: torch.Tensor, name: str) -> torch.Tensor:
    """x rounded to bfloat16 into the workspace buffer `name` (same strides as x)."""
    return workspace(name, tuple(x.shape), x, dtype=torch.bfloat16).copy_(x)


def _fast_read(q: torch.Tensor, ln_kv: nn.LayerNorm, canvas: torch.Tensor, canvas_rope: Rope, mode: str) -> torch.Tensor:
    """softmax(q RoPE(LN(canvas))^T / sqrt(hd)) LN(canvas) for q [B, h, Nl, hd] -> [B, h, Nl, hd] float32.

    "bf16": LayerNorm and RoPE in float32, the two products and the softmax in bfloat16 (paper D.3: the
    attention may run in bf16 under autocast rules; coordinates and RoPE may not)."""
    b, h, nl, hd = q.shape
    n = canvas.shape[1]
    kv = ln_kv(canvas)  # [B, Nc, Dc]
    k = rope_to_heads(kv, canvas_rope, h, out=workspace("canvas_rope", (b, h, n, hd), kv))  # [B, h, Nc, hd]
    q = q * hd**-0.5
    if mode == "bf16":
        q, k, kv = q.to(torch.bfloat16), _bf16_into(k, "canvas_rope"), _bf16_into(kv, "canvas_ln")
    scores = torch.matmul(q, k.transpose(-2, -1), out=workspace("scores", (b, h, nl, n), q))  # [B, h, Nl, Nc]
    return torch.matmul(_softmax_into(scores, dim=-1), split_heads(kv, h)).float()  # [B, h, Nl, hd]


class CanvasRead(nn.Module):
    """local += o_map(SDPA(q_map(LN(local)), LN(canvas), LN(canvas))) with RoPE on q and k."""

    def __init__(self, local_dim: int, canvas_dim: int, num_heads: int, qkvo: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_q = nn.LayerNorm(local_dim, eps=eps)
        self.ln_kv = nn.LayerNorm(canvas_dim, eps=eps)
        self.q_map = FastLinear(local_dim, canvas_dim)
        self.o_map = FastLinear(canvas_dim, local_dim)
        self.k_map = FastLinear(canvas_dim, canvas_dim) if qkvo else None
        self.v_map = FastLinear(canvas_dim, canvas_dim) if qkvo else None

    def forward(self, local: torch.Tensor, canvas: torch.Tensor, local_rope: Rope, canvas_rope: Rope) -> torch.Tensor:
        h = self.num_heads
        q = apply_rope(split_heads(self.q_map(self.ln_q(local)), h), local_rope)  # [B, h, Nl, hd]
        mode = _fast_canvas(self, canvas, canvas_rope)
        if mode is not None:
            return self.o_map(merge_heads(_fast_read(q, self.ln_kv, canvas, canvas_rope, mode)))
        kv = self.ln_kv(canvas)  # [B, Nc, Dc]
        k = split_heads(self.k_map(kv) if self.k_map is not None else kv, h)
        v = split_heads(self.v_map(kv) if self.v_map is not None else kv, h)
        out = _attend(q, apply_rope(k, canvas_rope), v, self.training)  # [B, h, Nl, hd]
        return self.o_map(merge_heads(out))


class CanvasWrite(nn.Module):
    """canvas += SDPA(LN(canvas), k_map(LN(local)), v_map(LN(local))) with RoPE on q and k."""

    def __init__(self, local_dim: int, canvas_dim: int, num_heads: int, qkvo: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_q = nn.LayerNorm(canvas_dim, eps=eps)
        self.ln_kv = nn.LayerNorm(local_dim, eps=eps)
        self.k_map = FastLinear(local_dim, canvas_dim)
        self.v_map = FastLinear(local_dim, canvas_dim)
        self.q_map = FastLinear(canvas_dim, canvas_dim) if qkvo else None
        self.o_map = FastLinear(canvas_dim, canvas_dim) if qkvo else None

    def forward(self, canvas: torch.Tensor, local: torch.Tensor, canvas_rope: Rope, local_rope: Rope) -> torch.Tensor:
        """The residual for the canvas, [B, Nc, Dc]."""
        h = self.num_heads
        q = self.ln_q(canvas)  # [B, Nc, Dc]
        q = apply_rope(split_heads(self.q_map(q) if self.q_map is not None else q, h), canvas_rope)
        kv = self.ln_kv(local)  # [B, Nl, Dl]
        k = apply_rope(split_heads(self.k_map(kv), h), local_rope)
        v = split_heads(self.v_map(kv), h)
        out = merge_heads(_attend(q, k, v, self.training))  # [B, Nc, Dc]
        return self.o_map(out) if self.o_map is not None else out

    def update(self, canvas: torch.Tensor, local: torch.Tensor, canvas_rope: Rope, local_rope: Rope) -> torch.Tensor:
        """The updated canvas, canvas + forward(...) (a new tensor: the old canvas is left as it was).

        CPU fast path: in "bf16" mode LayerNorm and RoPE run in float32 and the scores in bfloat16; the
        softmax gives float32 probabilities, and the value product accumulates into the float32 canvas."""
        mode = _fast_canvas(self, canvas, canvas_rope)
        if mode is None:
            return canvas + self(canvas, local, canvas_rope, local_rope).to(canvas.dtype)
        h = self.num_heads
        canvas = canvas.contiguous()  # (a no-op for the canvases this model makes; views below need it)
        b, n, d = canvas.shape
        hd = d // h
        q = rope_to_heads(self.ln_q(canvas), canvas_rope, h,
                          out=workspace("canvas_rope", (b, h, n, hd), canvas))  # [B, h, Nc, hd]
        kv = self.ln_kv(local)  # [B, Nl, Dl]
        k = apply_rope(split_heads(self.k_map(kv), h), local_rope) * hd**-0.5  # [B, h, Nl, hd] (scale on the short side)
        v = split_heads(self.v_map(kv), h)  # [B, h, Nl, hd]
        if mode == "bf16":  # bf16 scores; the float32 probabilities meet v and the canvas in float32
            q, k = _bf16_into(q, "canvas_rope"), k.to(torch.bfloat16)
        scores = torch.matmul(k, q.transpose(-2, -1), out=workspace("scores", (b, h, k.shape[2], n), q))
        probs = _softmax_into(scores, dim=-2, to_float=mode == "bf16")  # [B, h, Nl, Nc]: over the glimpse keys
        new = torch.empty_like(canvas, memory_format=torch.contiguous_format)
        for i in range(b):  # new[i] = canvas[i] + probs^T v, written head by head into the token-major canvas
            heads = (canvas[i].view(n, h, hd).transpose(0, 1), new[i].view(n, h, hd).transpose(0, 1))
            torch.baddbmm(heads[0], probs[i].transpose(-2, -1), v[i], out=heads[1])
        return new
