"""Table 7: ImageNet-1k top-1 (%) by policy and timestep, from the `in1k` runs: mean over runs ±
half-width of the 95% bootstrap CI; bold = best policy at that timestep (ours and the paper's each)."""

from __future__ import annotations

from paper import sources
from paper.tablelib import Context, Table, default_results

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
    paper = {(p, SCENE, GRID): v for p, v in PAPER.items()}
    order = list(paper) + sorted({k[:3] for k in summ} - set(paper), key=lambda k: (k[1], k[2], k[0]))
    configs = sorted(order, key=lambda k: ((k[1], k[2]), order.index(k)))  # grouped by resolution, as Table 6
    notes = [
        f"Ours: the `in1k` runs in {ctx.where} (T = 21 glimpses; recurrent CLS -> destandardized -> DINOv3 "
        "ViT-B/16 IN1k probe); cells = top-1 mean x100 ± half-width of the 95% percentile-bootstrap CI over "
        f"n runs (paper: n = {PAPER_N}). Bold = best policy at that timestep within a resolution.",
        *model_notes,
    ]
    return [sources.policy_timestep_table(
        7, "ImageNet-1k top-1 accuracy (%) by policy and timestep", summ, "top1", configs, TIMESTEPS, paper,
        lambda c: sources.in1k(*c, n=PAPER_N), notes, digits=2,
        labels={**sources.POLICY_LABELS, "c2f": sources.POLICY_LABELS["c2f"] + " (naive)"})]
