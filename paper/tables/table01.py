"""Table 1: CanViT-B architecture, read off the CanViT-B preset (not typed in)."""

from __future__ import annotations

from canvit_model import preset
from tablelib import Table


_SIZE_LETTER = {384: "S", 768: "B", 1024: "L", 1280: "H"}


def build() -> list[Table]:
    cfg = preset("canvitb16").config
    bb = cfg.backbone
    reads, writes = cfg.schedule()
    rows = [
        ["Backbone", f"ViT-{_SIZE_LETTER.get(bb.dim, '?')}/{bb.patch_size}"],
        ["Backbone embedding dim", bb.dim],
        ["Backbone registers (ephemeral)", cfg.num_backbone_registers],
        ["Glimpse patch size", f"{bb.patch_size}^2 px"],
        ["Canvas embedding dim", cfg.canvas_dim],
        ["Canvas registers (persistent)", cfg.num_canvas_registers],
        ["Canvas Attention heads", cfg.canvas_num_heads],
        ["Canvas Attention head dim.", cfg.canvas_head_dim],
        ["Canvas Attention R/W stride", cfg.rw_stride],
        ["RoPE base period", f"{bb.rope_base:g}"],
        ["RoPE precision", "float32"],
        ["VPE token", "Enabled" if cfg.enable_vpe else "Disabled"],
        ["VPE RFF standard deviation sigma", 1],
    ]
    notes = [
        f"Reads follow blocks {list(reads)} and writes follow blocks {list(writes)} (0-based).",
        "RoPE precision and the RFF sigma are properties of the code (float32 tables; standard-normal "
        "frequency matrix), not configuration fields.",
    ]
    return [Table(1, "CanViT-B architecture", ["Hyperparameter", "Value"], rows, notes)]
