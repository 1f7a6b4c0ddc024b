"""2D rotary position embeddings over scene coordinates (SR-RoPE, shared by CanViT and DINOv3).

Per head of dimension hd there are nf = hd/4 periods base^(j/nf). A position p = (y, x) gets angles
2*pi*p/period laid out as [y-angles, x-angles, y-angles, x-angles] and rotates (i, i + hd/2) pairs
("rotate-half"). Tokens without a position (prefix tokens: CLS, registers, VPE) are left as they are.
Everything here is float32 regardless of autocast (paper D.3).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from ..geometry import grid_coords


def rope_periods(head_dim: int, base: float = 100.0, device: torch.device | str | None = None) -> torch.Tensor:
    """[hd/4] float32 periods base^(j/nf), j = 0..nf-1."""
    nf = head_dim // 4
    return base ** (torch.arange(nf, dtype=torch.float32, device=device) / nf)


class Rope(NamedTuple):
    """cos/sin tables [..., N_total, hd] covering every token; prefix rows are (1, 0): no rotation.

    `sin` carries the rotate-half sign: its first half is -sin, so rotating is x cos + swap_halves(x) sin
    with no negation of x (same bits as negating x: (-a) b == a (-b) exactly)."""

    cos: torch.Tensor
    sin: torch.Tensor


def rope_tables(positions: torch.Tensor, periods: torch.Tensor, num_prefix: int) -> Rope:
    """Tables for tokens [num_prefix unpositioned tokens, *positions]; positions: [..., N, 2] (y, x)."""
    with torch.autocast(device_type=positions.device.type, enabled=False):
        p = positions.float()
        angles = (2 * math.pi * p[..., None]) / periods  # [..., N, 2, nf]
        angles = angles.flatten(-2)  # [..., N, 2nf]: y-angles then x-angles
        angles = torch.cat([angles, angles], dim=-1)  # [..., N, hd]
        cos, sin = angles.cos(), angles.sin()
        if num_prefix:
            shape = (*cos.shape[:-2], num_prefix, cos.shape[-1])
            cos = torch.cat([cos.new_ones(shape), cos], dim=-2)
            sin = torch.cat([sin.new_zeros(shape), sin], dim=-2)
        half = sin.shape[-1] // 2
        sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)  # the rotate-half sign, folded in
    return Rope(cos, sin)


def grid_rope_tables(grid: int, head_dim: int, base: float, num_prefix: int, device: torch.device) -> Rope:
    """Tables for [num_prefix tokens, a fixed grid x grid canvas] ([N_total, hd]), cached per grid size.

    The canvas never moves, so its tables are the same every glimpse: built once (same bits as
    `rope_tables`), as ordinary constants even when first asked for inside `torch.inference_mode()`.
    While torch.compile / torch.export trace, they are computed in the graph instead.
    """
    from .fast import graph_capture

    if graph_capture():
        return _grid_rope_tables(grid, head_dim, base, num_prefix, device)
    return _cached_grid_rope_tables(grid, head_dim, base, num_prefix, torch.device(device))


def _grid_rope_tables(grid: int, head_dim: int, base: float, num_prefix: int, device: torch.device) -> Rope:
    positions = grid_coords(grid, device=device).reshape(grid * grid, 2)  # [G*G, 2]
    return rope_tables(positions, rope_periods(head_dim, base, device=device), num_prefix)


@functools.lru_cache(maxsize=16)
def _cached_grid_rope_tables(grid: int, head_dim: int, base: float, num_prefix: int, device: torch.device) -> Rope:
    with torch.inference_mode(False), torch.no_grad():
        return _grid_rope_tables(grid, head_dim, base, num_prefix, device)


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate x [B, heads, N, hd] by tables broadcastable to [B, 1, N, hd]; computed in float32."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = x.float()
        half = xf.shape[-1] // 2
        swapped = torch.cat([xf[..., half:], xf[..., :half]], dim=-1)  # (x2, x1); the sign lives in rope.sin
        if torch.broadcast_shapes(swapped.shape, rope.sin.shape) == swapped.shape:
            out = torch.addcmul(swapped * rope.sin, xf, rope.cos)  # rot(x) sin + x cos, as one fused op
        else:  # tables broadcast x up (e.g. x [1, ...] with [B, ...] tables)
            out = xf * rope.cos + swapped * rope.sin
    return out.to(x.dtype)


def rope_to_heads(x: torch.Tensor, rope: Rope, num_heads: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """CPU inference fast path: token-major x [B, N, h*hd] float32 -> rotated [B, h, N, hd] (head-major,
    contiguous; into `out` when given), for [N, hd] tables (the fixed canvas).

    Same rotation as `apply_rope(split_heads(x), rope)` (to float rounding) in three passes over the
    canvas instead of five and no [B, h, N, hd] temporaries: x cos into the output, then each half
    gets its partner half times sin added in place. Used only by the eager CPU fast path (never traced
    or exported: its in-place halves are what export handles badly).
    """
    b, n, d = x.shape
    hd = d // num_heads
    half = hd // 2
    xv = x.view(b, n, num_heads, 2, half).transpose(1, 2)  # [B, h, N, 2, hd/2] (a strided view)
    cos, sin = rope.cos.view(n, 2, half), rope.sin.view(n, 2, half)  # sin carries the rotate-half sign
    if out is None:
        out = torch.empty(b, num_heads, n, hd, dtype=x.dtype, device=x.device)
    halves = out.view(b, num_heads, n, 2, half)
    torch.mul(xv, cos, out=halves)  # x cos
    halves[..., 0, :].addcmul_(xv[..., 1, :], sin[:, 0])  # first half += x2 (-sin)
    halves[..., 1, :].addcmul_(xv[..., 0, :], sin[:, 1])  # second half += x1 sin
    return out


def unsqueeze_heads(rope: Rope) -> Rope:
    """[B, N, hd] tables -> [B, 1, N, hd] (broadcast over heads); [N, hd] tables pass through."""
    if rope.cos.ndim == 3:
        return Rope(rope.cos[:, None], rope.sin[:, None])
    return rope
