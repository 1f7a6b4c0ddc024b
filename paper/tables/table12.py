"""Tables 12 and 14: the AME and AdaGlimpse architectures, read off the configurations the FLOP module
uses (canvit_eval.flops.AME / ADAGLIMPSE), next to the paper's values."""

from __future__ import annotations

from canvit_eval import flops
from canvit_model import BACKBONES

from paper.tablelib import Table

_VIT_NAMES = {"vits16": "ViT-S", "vitb16": "ViT-B", "vitl16": "ViT-L", "vith16plus": "ViT-H+"}
# The paper's Tables 12 and 14: parameter -> (encoder, decoder); "" = blank in the paper.
PAPER_12 = {"d": ("1024", "512"), "Depth": ("24", "8"), "Backbone": ("ViT-L", "—"), "Image size": ("128 × 256", ""),
            "Patch size": ("16", ""), "Patches/glimpse": ("9 (3×3)", ""), "Total patches": ("128", "")}
PAPER_14 = {"d": ("768", "512"), "Depth": ("12", "8"), "Backbone": ("ViT-B", "—"), "Image size": ("224 × 224", ""),
            "Patch size": ("16", ""), "Patches/glimpse": ("9 (3×3)", ""), "Total patches": ("196", ""),
            "CNN head": ("—", "6 layers (14 × 14 → 224 × 224)")}


def backbone_name(d: int, depth: int) -> str:
    """The standard ViT of that width and depth (canvit_model.BACKBONES), e.g. 1024 / 24 -> ViT-L."""
    for key, cfg in BACKBONES.items():
        if cfg.dim == d and cfg.depth == depth and key in _VIT_NAMES:
            return _VIT_NAMES[key]
    return f"ViT (d = {d}, depth = {depth})"


def architecture(arch: dict, cnn_head: bool = False) -> dict[str, tuple[str, str]]:
    h, w = arch["image_hw"]
    p = arch["patch_size"]
    g = arch["patches_per_glimpse"]
    side = int(round(g ** 0.5))
    out = {
        "d": (str(arch["d_enc"]), str(arch["d_dec"])),
        "Depth": (str(arch["depth_enc"]), str(arch["depth_dec"])),
        "Backbone": (backbone_name(arch["d_enc"], arch["depth_enc"]), "—"),
        "Image size": (f"{h} × {w}", ""),
        "Patch size": (str(p), ""),
        "Patches/glimpse": (f"{g} ({side}×{side})" if side * side == g else str(g), ""),
        "Total patches": (str((h // p) * (w // p)), ""),
    }
    if cnn_head:
        layers = len(flops.adaglimpse_cnn_head(arch["num_classes"]))
        out["CNN head"] = ("—", f"{layers} layers ({h // p} × {w // p} → {h} × {w})")
    return out


def table(number: int, name: str, arch: dict, paper: dict, cnn_head: bool, var: str) -> Table:
    mine = architecture(arch, cnn_head)
    rows = [[k, enc, dec, *paper.get(k, ("—", "—"))] for k, (enc, dec) in mine.items()]
    notes = [f"Ours: canvit_eval.flops.{var} (the configuration Tables 13, 15 and 16 and Figure 7 are computed "
             "from); backbone named by matching (d, depth) against canvit_model.BACKBONES."]
    if cnn_head:
        notes.append("CNN head: our reconstruction (canvit_eval.flops.adaglimpse_cnn_head; the paper gives only "
                     "the layer count, the resolutions and the per-step cost).")
    return Table.from_rows(number, f"{name} architecture", ["Parameter", "Encoder", "Decoder", "Encoder (paper)",
                                                            "Decoder (paper)"], rows, notes,
                           ours=["Encoder", "Decoder"])


def build() -> list[Table]:
    return [table(12, "AME", flops.AME, PAPER_12, False, "AME")]
