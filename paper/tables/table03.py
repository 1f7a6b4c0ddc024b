"""Table 3: ablation variants; parameter counts computed from the presets."""

from __future__ import annotations

from canvit_model import PRESETS
from tablelib import Table


def build() -> list[Table]:
    rows = []
    for p in PRESETS.values():
        row = "" if p.table3_row == "baseline" else p.table3_row
        n = p.num_params()
        rows.append([row, p.label, p.name, f"{n / 1e6:.1f}M", n, "needs GPU + IN21k + ADE20K (ablation pretraining: canvit-train, not yet implemented)"])
    notes = [
        "Params = base CanViT (backbone, Canvas Attention, initial tokens, VPE LayerNorm); readout heads "
        "and buffers excluded, as in the paper.",
        "Rows f-i differ only in the pretraining recipe, so their parameter counts equal CanViT-B's.",
        "The Delta-cosine columns need the 12 ablation pretraining runs and an ADE20K evaluation; not produced here.",
    ]
    cols = ["Row", "Variant", "Preset", "Params", "Params (exact)", "Delta Sp./CLS Cos"]
    return [Table(3, "Ablation study (architecture columns)", cols, rows, notes)]
