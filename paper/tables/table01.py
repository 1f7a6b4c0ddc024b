"""Table 1: CanViT-B architecture, read off the CanViT-B preset (not typed in)."""

from __future__ import annotations

from canvit_model import preset

from paper.tablelib import Table


_SIZE_LETTER = {384: "S", 768: "B", 1024: "L", 1280: "H"}
# The paper's Table 1, as printed (for the side-by-side column).
PAPER = {
    "Backbone": "ViT-B/16", "Backbone embedding dim": "768", "Backbone registers (ephemeral)": "5",
    "Glimpse patch size": "16^2 px", "Canvas embedding dim": "1024", "Canvas registers (persistent)": "16",
    "Canvas Attention heads": "8", "Canvas Attention head dim.": "128", "Canvas Attention R/W stride": "2",
    "RoPE base period": "100", "RoPE precision": "float32", "VPE token": "Enabled",
    "VPE RFF standard deviation sigma": "1",
}


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
    rows = [[k, v, PAPER[k]] for k, v in rows]
    return [Table.from_rows(1, "CanViT-B architecture", ["Hyperparameter", "Value", "Paper"], rows, notes,
                            ours=["Value"])]
