"""Table 15: AdaGlimpse cost at T = 8 glimpses (cumulative re-encoding, ViT + CNN decoder).

Convention: "paper" with LayerNorm (sinusoidal positions: no RoPE). The CNN head is our
reconstruction (see canvit_eval.flops.adaglimpse_cnn_head) at 84.31 G per step.
"""

from __future__ import annotations

from canvit_eval import flops

from paper.tablelib import Table

PAPER = {
    "Encoder (cumulative re-encoding)": 57.4,
    "Decoder - ViT (9x10.6)": 95.4,
    "Decoder - CNN (9x84.3)": 758.7,
    "Total": 911.3,
}
# Cells where the paper's own arithmetic disagrees with its exact totals (see notes).
INCONSISTENT = {"Decoder - ViT (9x10.6)", "Decoder - CNN (9x84.3)"}


def components(num_glimpses: int = 8, convention: str = "paper") -> dict[str, float]:
    a = flops.adaglimpse(num_glimpses, convention).g()
    k = num_glimpses + 1
    vit, cnn = a["decoder_vit"], a["decoder_cnn"]
    return {
        "Encoder (cumulative re-encoding)": a["encoder_patch_embed"] + a["encoder_blocks"],
        f"Decoder - ViT ({k}x{flops.round_half_up(vit / k, 1):.1f})": vit,
        f"Decoder - CNN ({k}x{flops.round_half_up(cnn / k, 1):.1f})": cnn,
        "Total": sum(a.values()),
    }


def build() -> list[Table]:
    rows = [[k, f"{flops.round_half_up(v, 1):.1f}", f"{v:.4f}", f"{PAPER[k]:.1f}"] for k, v in components().items()]
    a = flops.adaglimpse(8, "paper").g()
    notes = [
        "canvit_eval.flops.adaglimpse(8, convention='paper'): encoder = sum over t = 0..7 of "
        "PatchEmbed(9(t+1)) + 12 ViTBlock(9(t+1) + 1, 768); decoder = 9 x [8 ViTBlock(197, 512) + CNN].",
        "CNN head (not specified in the paper beyond '6 layers, 14x14 -> 224x224' and 84.3 G/step): "
        "conv3x3 512->512 @14^2, then x2 upsample + conv3x3 512->256 @28^2, 256->256 @56^2, @112^2, "
        "@224^2, then conv1x1 256->150 @224^2 = 84.31 G; this makes the decoder 853.9 and the total "
        "911.3 exactly as printed in Tables 15 and 16.",
        f"Paper inconsistency: the ViT decoder is 9 x {a['decoder_vit'] / 9:.3f} = {a['decoder_vit']:.2f} G; "
        "the paper prints 95.4 = 9 x 10.6 (the product of the rounded per-step value). Likewise the CNN "
        f"row prints 758.7 = 9 x 84.3, while 9 x 84.31 = {a['decoder_cnn']:.2f}. The printed rows sum to "
        "911.5, not the printed 911.3; the printed total 911.3 and decoder total 853.9 (Table 16) use the "
        "unrounded per-step costs, as we do.",
    ]
    return [Table.from_rows(15, "AdaGlimpse cost at T = 8 glimpses", ["Component (T = 8)", "GFLOPs",
                                                                     "GFLOPs (exact)", "GFLOPs (paper)"],
                            rows, notes, ours=["GFLOPs"])]
