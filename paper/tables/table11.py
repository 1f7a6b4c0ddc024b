"""Table 11: DINOv3 ViT-B architecture, read off canvit_model's DINOv3 configuration (BACKBONES["vitb16"])."""

from __future__ import annotations

from canvit_eval import flops
from canvit_model import BACKBONES
from canvit_model.dinov3 import NUM_REGISTERS

from paper.tablelib import Table

BACKBONE = "vitb16"
# The paper's Table 11 (and the G.4 text: 1029 tokens, ~215.2 GFLOPs at 512 px); None = not printed.
PAPER = {"d": "768", "L": "12", "p": "16", "N_regs": "4", "RoPE": "yes", "Heads": None, "MLP hidden": None,
         "Tokens at 512 px": "1029", "GFLOPs at 512 px": "215.2"}


def ours() -> dict[str, str]:
    cfg = BACKBONES[BACKBONE]
    n512 = 1 + NUM_REGISTERS + (512 // cfg.patch_size) ** 2
    return {
        "d": str(cfg.dim), "L": str(cfg.depth), "p": str(cfg.patch_size), "N_regs": str(NUM_REGISTERS),
        "RoPE": "yes" if cfg.rope_base else "no", "Heads": str(cfg.num_heads),
        "MLP hidden": f"{cfg.ffn_hidden} ({cfg.mlp.upper()})", "Tokens at 512 px": str(n512),
        "GFLOPs at 512 px": f"{flops.round_half_up(flops.dinov3(BACKBONE, 512, convention='paper').gflops, 1):.1f}",
    }


def build() -> list[Table]:
    mine = ours()
    rows = [[k, v, "—" if PAPER[k] is None else PAPER[k]] for k, v in mine.items()]
    cfg = BACKBONES[BACKBONE]
    notes = [
        f"Ours: canvit_model.BACKBONES[{BACKBONE!r}] and canvit_model.dinov3.NUM_REGISTERS (the teacher the "
        f"pretraining distills); RoPE base period {cfg.rope_base:g}, LayerScale init {cfg.layerscale_init:g}.",
        "Tokens at R x R px = 1 CLS + N_regs + (R/p)^2; GFLOPs from canvit_eval.flops.dinov3 "
        "(Appendix G, convention='paper').",
    ]
    return [Table.from_rows(11, "DINOv3 ViT-B architecture", ["Parameter", "Value", "Paper"], rows, notes,
                            ours=["Value"])]
