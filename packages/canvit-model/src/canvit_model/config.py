"""Configurations as small code: ViT backbones (shared by CanViT and DINOv3) and CanViT itself.

Field names of `CanViTConfig` follow the `canvit_config` block of the official (canvit-pytorch 0.2)
`config.json`, so a config round-trips through the published checkpoints unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

MlpKind = Literal["gelu", "swiglu"]
CanvasProjections = Literal["asymmetric", "qkvo"]


def check_field_types(obj: Any) -> None:
    """Type-check a config dataclass's fields against their annotations, naming the field on error.

    Booleans must be bools (the JSON string "false" is not false), ints must be ints (bools are not
    ints here, and 3.7 is never truncated to 3), floats may be given as ints (stored as float), and
    Literal fields must hold one of their values.
    """
    cls = type(obj).__name__
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v, t = getattr(obj, f.name), hints[f.name]
        where = f"{cls}.{f.name}"
        if typing.get_origin(t) is Literal:
            valid = typing.get_args(t)
            if not isinstance(v, str) or v not in valid:
                raise ValueError(f"{where} must be one of {list(valid)}, got {v!r}")
        elif t is bool:
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{where} must be a bool (true/false), got {v!r} ({type(v).__name__})")
            object.__setattr__(obj, f.name, bool(v))
        elif t is int:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{where} must be an int, got {v!r} ({type(v).__name__})")
            object.__setattr__(obj, f.name, int(v))  # numpy integers become plain ints
        elif t is float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"{where} must be a number, got {v!r} ({type(v).__name__})")
            if not math.isfinite(v):
                raise ValueError(f"{where} must be finite, got {v!r}")
            object.__setattr__(obj, f.name, float(v))
        elif t is str:
            if not isinstance(v, str):
                raise TypeError(f"{where} must be a str, got {v!r} ({type(v).__name__})")


def config_from_dict(cls: type, d: Any, source: str, what: str) -> Any:
    """`cls(**d)` for a dict read from a file: unknown fields and bad values raise naming `source`."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: {what} must be a JSON object, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{source}: {what} has unknown fields {unknown}; known fields: {sorted(known)}")
    try:
        return cls(**d)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{source}: {what}: {e}") from None


@dataclass(frozen=True)
class ViTConfig:
    """A DINOv3-style pre-norm ViT: LayerScale, k-bias masked fused qkv, RoPE over patch tokens."""

    dim: int
    num_heads: int
    depth: int
    patch_size: int = 16
    ffn_ratio: float = 4.0
    mlp: MlpKind = "gelu"
    rope_base: float = 100.0
    layerscale_init: float = 1e-5
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def ffn_hidden(self) -> int:
        """MLP width; SwiGLU takes 2/3 of it, rounded up to a multiple of 8 (DINOv3's "swiglu")."""
        hidden = int(self.dim * self.ffn_ratio)
        if self.mlp == "swiglu":
            hidden = int(hidden * 2 / 3)
            hidden = (hidden + 7) // 8 * 8
        return hidden

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("dim", "num_heads", "depth", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ViTConfig.{name}={getattr(self, name)} must be >= 1")
        for name in ("ffn_ratio", "rope_base", "layerscale_init", "norm_eps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ViTConfig.{name}={getattr(self, name)} must be > 0")
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"head_dim={self.head_dim} must be a multiple of 4 for 2D RoPE")


# The backbone registry shared by CanViT (as its backbone) and DINOv3 (as the teacher / baseline).
BACKBONES: dict[str, ViTConfig] = {
    "vits16": ViTConfig(dim=384, num_heads=6, depth=12),
    "vits16plus": ViTConfig(dim=384, num_heads=6, depth=12, ffn_ratio=6.0, mlp="swiglu"),
    "vitb16": ViTConfig(dim=768, num_heads=12, depth=12),
    "vitl16": ViTConfig(dim=1024, num_heads=16, depth=24),
    "vith16plus": ViTConfig(dim=1280, num_heads=20, depth=32, ffn_ratio=6.0, mlp="swiglu"),
    # not a released model: the tiny backbone of smoke runs and tests (canvit-train's `smoke` preset)
    "test-tiny": ViTConfig(dim=64, num_heads=2, depth=2),
}


def backbone_config(name: str) -> ViTConfig:
    if not isinstance(name, str):
        raise TypeError(f"backbone_name must be a str (one of {sorted(BACKBONES)}), got {name!r}")
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"backbone_name={name!r} is unknown; valid names: {sorted(BACKBONES)}") from None


@dataclass(frozen=True)
class CanViTConfig:
    """CanViT architecture (paper Table 1 defaults = CanViT-B)."""

    backbone_name: str = "vitb16"
    canvas_num_heads: int = 8
    canvas_head_dim: int = 128
    num_canvas_registers: int = 16
    num_backbone_registers: int = 5
    rw_stride: int = 2
    enable_reads: bool = True
    enable_vpe: bool = True
    canvas_projections: CanvasProjections = "asymmetric"
    vpe_seed: int = 42  # seed of the fixed random Fourier feature matrix (stored in checkpoints anyway)

    def __post_init__(self) -> None:
        check_field_types(self)
        backbone_config(self.backbone_name)
        if self.canvas_head_dim % 4:
            raise ValueError(f"canvas_head_dim={self.canvas_head_dim} must be a multiple of 4 for 2D RoPE")
        for name in ("canvas_num_heads", "canvas_head_dim", "rw_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("num_canvas_registers", "num_backbone_registers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.rw_stride > self.backbone.depth:
            raise ValueError(f"rw_stride={self.rw_stride} must be in [1, {self.backbone.depth}] (backbone depth)")

    @property
    def backbone(self) -> ViTConfig:
        return backbone_config(self.backbone_name)

    @property
    def canvas_dim(self) -> int:
        return self.canvas_num_heads * self.canvas_head_dim

    @property
    def num_local_prefix(self) -> int:
        """Tokens before the glimpse patches: [VPE?, recurrent CLS, backbone registers]."""
        return int(self.enable_vpe) + 1 + self.num_backbone_registers

    def schedule(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(blocks followed by a Canvas Read, blocks followed by a Canvas Write), 0-based.

        Candidates are every `rw_stride`-th block; they alternate read, write, read, ...; the last
        block always ends with a write so that every glimpse updates the canvas.
        """
        depth = self.backbone.depth
        candidates = list(range(self.rw_stride - 1, depth, self.rw_stride))
        reads = candidates[0::2]
        writes = candidates[1::2]
        if not writes or writes[-1] != depth - 1:
            writes.append(depth - 1)
        if not self.enable_reads:
            reads = []
        return tuple(reads), tuple(writes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("vpe_seed")  # not part of the published config; the matrix itself is stored
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> CanViTConfig:
        """From a config.json `canvit_config` block; errors name `source` (the file) and the field."""
        return config_from_dict(cls, d, source, "canvit_config")
