"""Table 6: ADE20K mIoU (%) by policy, resolution (scene px / canvas grid) and timestep, from the
`ade20k` runs: mean over runs ± half-width of the 95% bootstrap CI, n runs; bold = best policy at that
timestep within a resolution (ours and the paper's columns each). Configurations in the store beyond
the paper's 12 (e.g. 512 px with a 64x64 canvas) get rows of their own."""

from __future__ import annotations

from canvit_eval import flops
from canvit_model import CanViTConfig

from paper import sources
from paper.tablelib import Context, Table, default_results

TIMESTEPS = (0, 1, 2, 3, 4, 9, 16, 20)
# The paper's Table 6: (policy, scene, grid) -> (n, [mean at TIMESTEPS], [CI half-width at TIMESTEPS]).
PAPER = {
    ("c2f", 512, 32): (9, [38.5, 40.2, 41.4, 42.4, 43.2, 43.5, 44, 44.2], [0, 0.1, 0.06, 0.06, 0.03, 0.04, 0.04, 0.04]),
    ("eg-c2f", 512, 32): (9, [38.5, 41.1, 42, 42.7, 43.2, 43.9, 44.2, 44.1], [0] * 8),
    ("f-iid", 512, 32): (9, [38.5, 40, 40.7, 41.3, 41.7, 42.7, 43.3, 43.4], [0, 0.07, 0.09, 0.09, 0.1, 0.1, 0.09, 0.08]),
    ("r-iid", 512, 32): (9, [18.2, 26.1, 30.7, 33.5, 35.3, 39.3, 41.2, 41.7],
                         [0.28, 0.47, 0.3, 0.22, 0.17, 0.19, 0.21, 0.19]),
    ("f2c", 512, 32): (9, [10.7, 17.8, 22.1, 25.2, 27.6, 34.1, 38.4, 41.1],
                       [0.19, 0.16, 0.24, 0.2, 0.15, 0.16, 0.11, 0.08]),
    ("rfs", 512, 32): (3, [38.5, 40, 40, 39.9, 39.8, 39.1, 38.5, 38.2], [0] * 8),
    ("c2f", 1024, 64): (9, [39.7, 41.4, 42.6, 43.7, 44.7, 45.1, 45.6, 45.9],
                        [0, 0.15, 0.11, 0.06, 0.06, 0.05, 0.05, 0.04]),
    ("eg-c2f", 1024, 64): (5, [39.7, 41.9, 43.1, 44.1, 44.7, 45.6, 45.9, 45.8], [0] * 8),
    ("f-iid", 1024, 64): (7, [39.7, 41.3, 42.1, 42.6, 43, 44.2, 44.8, 45],
                          [0, 0.1, 0.11, 0.13, 0.12, 0.13, 0.09, 0.07]),
    ("r-iid", 1024, 64): (9, [18.2, 26.9, 31.6, 34.5, 36.4, 40.7, 42.7, 43.3],
                          [0.5, 0.43, 0.33, 0.27, 0.3, 0.2, 0.14, 0.15]),
    ("f2c", 1024, 64): (9, [10.7, 17.9, 22.8, 26.1, 28.6, 35.4, 39.9, 42.7],
                        [0.25, 0.16, 0.26, 0.21, 0.2, 0.16, 0.14, 0.11]),
    ("rfs", 1024, 64): (2, [39.7, 41, 41, 40.9, 40.8, 40.1, 39.5, 39.2], [0] * 8),
}
META = ["extra.model", "extra.policy", "extra.scene_size", "extra.canvas_grid"]
BY = ["extra.policy", "extra.scene_size", "extra.canvas_grid", "t"]


def g_per_step(grid: int) -> float:
    return flops.canvit_glimpse(CanViTConfig(), glimpse_px=128, canvas_grid=grid, convention="paper",
                                seg_head=True).gflops


def configurations(summ: dict) -> list[tuple[str, int, int]]:
    """The paper's rows, then any other (policy, scene, grid) found in the store, by resolution."""
    extra = sorted({k[:3] for k in summ} - set(PAPER), key=lambda k: (k[1], k[2], k[0]))
    order = list(PAPER) + extra
    return sorted(order, key=lambda k: ((k[1], k[2]), order.index(k)))


def build(ctx: Context | None = None) -> list[Table]:
    ctx = ctx or Context(results=default_results())
    df, model_notes = sources.pick_model(sources.runs(ctx, "ade20k", META))
    summ = sources.summary(df, BY, ["miou"])
    notes = [
        f"Ours: the `ade20k` runs in {ctx.where} (T = 21 glimpses), per run the dataset-level mIoU per timestep; "
        "cells = mean x100 ± half-width of the 95% percentile-bootstrap CI over the n runs "
        "(canvit_results.summarize; ±0.00 for n = 1). Bold = best policy at that timestep within a resolution.",
        "G/step: one 128 px glimpse + the ADE20K probe at that canvas grid (canvit_eval.flops, convention='paper').",
        "Policies: C2F = c2f, Entropy C2F = eg-c2f, F-IID = f-iid, R-IID = r-iid, F2C = f2c, "
        "Rep. full = rfs (canvit-eval --policy).",
        *model_notes,
    ]
    return [sources.policy_timestep_table(
        6, "ADE20K mIoU (%) by policy and timestep (T = 21)", summ, "miou", configurations(summ), TIMESTEPS,
        {c: (means, hws) for c, (_, means, hws) in PAPER.items()},
        lambda c: sources.ade20k(*c, n=PAPER[c][0] if c in PAPER else None), notes,
        extra={"n (paper)": lambda c: PAPER[c][0] if c in PAPER else "—",
               "G/step": lambda c: f"{flops.round_half_up(g_per_step(c[2]), 1):.1f}"})]
