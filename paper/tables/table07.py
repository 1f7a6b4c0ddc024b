"""Table 7: ImageNet-1k top-1 (%) by policy and timestep, from the `in1k` runs: mean over runs ±
half-width of the 95% bootstrap CI; bold = best policy at that timestep (ours and the paper's each)."""

from __future__ import annotations

import sources
from tablelib import Context, Table, default_results

TIMESTEPS = (0, 1, 2, 3, 4, 5, 9, 15, 20)
SCENE, GRID = 512, 32
PAPER_N = 5
# The paper's Table 7: policy -> ([mean at TIMESTEPS], [CI half-width at TIMESTEPS]).
PAPER = {
    "c2f": ([76.8, 78.66, 79.57, 80.21, 80.77, 80.82, 80.97, 81.11, 81.15],
            [0, 0.03, 0.02, 0.03, 0.02, 0.03, 0.04, 0.04, 0.02]),
    "f2c": ([32.25, 48.98, 58.38, 64.24, 68.11, 70.76, 75.95, 78.55, 79.77],
            [0.12, 0.15, 0.09, 0.14, 0.1, 0.06, 0.11, 0.1, 0.02]),
    "f-iid": ([76.8, 78.53, 79.29, 79.79, 80.12, 80.36, 80.86, 81.08, 81.14],
              [0, 0.05, 0.05, 0.05, 0.04, 0.01, 0.03, 0.04, 0.04]),
    "r-iid": ([47.62, 65.14, 72.33, 75.59, 77.26, 78.25, 79.84, 80.43, 80.59],
              [0.07, 0.19, 0.07, 0.1, 0.04, 0.06, 0.08, 0.05, 0.03]),
}
META = ["extra.model", "extra.policy", "extra.scene_size", "extra.canvas_grid"]
BY = ["extra.policy", "extra.scene_size", "extra.canvas_grid", "t"]


def build(ctx: Context | None = None) -> list[Table]:
    ctx = ctx or Context(results=default_results())
    df, model_notes = sources.pick_model(sources.runs(ctx, "in1k", META))
    summ = sources.summary(df, BY, ["top1"])
    configs = [(p, SCENE, GRID) for p in PAPER]
    configs += sorted({k[:3] for k in summ} - set(configs), key=lambda k: (k[1], k[2], k[0]))
    cells: dict[tuple, object] = {}
    for t in TIMESTEPS:
        for res in dict.fromkeys((c[1], c[2]) for c in configs):
            group = [c for c in configs if (c[1], c[2]) == res]
            ours, paper = {}, {}
            for c in group:
                s = summ.get((*c, t))
                ours[c] = (s["top1"], sources.pct_ci(s, "top1", 2)) if s else (None, sources.in1k(*c, n=PAPER_N))
                if c in configs[:len(PAPER)]:
                    m, hw = PAPER[c[0]][0][TIMESTEPS.index(t)], PAPER[c[0]][1][TIMESTEPS.index(t)]
                    paper[c] = (m, f"{m:g} ±{hw:g}")
                else:
                    paper[c] = (None, "—")
            cells.update({(c, t, "ours"): v for c, v in sources.bold_max(ours).items()})
            cells.update({(c, t, "paper"): v for c, v in sources.bold_max(paper).items()})
    cols = ["Policy", "Res.", "n"]
    for t in TIMESTEPS:
        cols += [f"t = {t}", f"t = {t} (paper)"]
    rows = []
    for c in configs:
        n = max((summ[(*c, t)]["n"] for t in TIMESTEPS if (*c, t) in summ), default=0)
        label = sources.POLICY_LABELS.get(c[0], c[0]) + (" (naive)" if c[0] == "c2f" else "")
        row = [label, f"{c[1]}/{c[2]}²", n or "—"]
        for t in TIMESTEPS:
            row += [cells[(c, t, "ours")], cells[(c, t, "paper")]]
        rows.append(row)
    notes = [
        f"Ours: the `in1k` runs in {ctx.where} (T = 21 glimpses; recurrent CLS -> destandardized -> DINOv3 "
        "ViT-B/16 IN1k probe); cells = top-1 mean x100 ± half-width of the 95% percentile-bootstrap CI over "
        f"n runs (paper: n = {PAPER_N}). Bold = best policy at that timestep within a resolution.",
        *model_notes,
    ]
    return [Table.from_rows(7, "ImageNet-1k top-1 accuracy (%) by policy and timestep", cols, rows, notes,
                            ours=[f"t = {t}" for t in TIMESTEPS])]
