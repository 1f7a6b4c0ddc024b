"""Table 13: AME cost at T = 8 glimpses (cumulative re-encoding).

Convention: "paper" with LayerNorm (AME uses sinusoidal positions: no RoPE term). Matmuls only the
encoder would be 202.72 -> 202.7, not the printed 202.8.
"""

from __future__ import annotations

from canvit_eval import flops

from paper.tablelib import Table

PAPER = {"Encoder (cumulative re-encoding)": 202.8, "Decoder (9x)": 106.2, "Total": 309.0}


def components(num_glimpses: int = 8, convention: str = "paper") -> dict[str, float]:
    a = flops.ame(num_glimpses, convention).g()
    return {
        "Encoder (cumulative re-encoding)": a["encoder_patch_embed"] + a["encoder_blocks"],
        f"Decoder ({num_glimpses + 1}x)": a["decoder_blocks"] + a["decoder_head"],
        "Total": sum(a.values()),
    }


def build() -> list[Table]:
    rows = [[k, f"{flops.round_half_up(v, 1):.1f}", f"{v:.4f}", f"{PAPER[k]:.1f}"] for k, v in components().items()]
    a = flops.ame(8, "paper").g()
    notes = [
        "canvit_eval.flops.ame(8, convention='paper'): encoder = sum over t = 0..7 of PatchEmbed(9(t+1)) + "
        "24 ViTBlock(9(t+1) + 1, 1024); decoder = 9 x [8 ViTBlock(129, 512) + 128 Linear(512, 256*150)].",
        f"Decoder split: ViT blocks {a['decoder_blocks']:.2f} G + per-patch head {a['decoder_head']:.2f} G "
        "(ADE20K, 150 classes, 16x16 px per patch).",
        "LayerNorm is counted (5d per token, 2 per block); matmuls only the encoder is 202.72 (prints 202.7).",
    ]
    return [Table.from_rows(13, "AME cost at T = 8 glimpses", ["Component (T = 8)", "GFLOPs", "GFLOPs (exact)",
                                                              "GFLOPs (paper)"], rows, notes, ours=["GFLOPs"])]
