"""Figure 4: linear-probing results of a frozen CanViT-B, from the results store.

(A) ADE20K mIoU vs cumulative GFLOPs: our CanViT-B runs per policy ((t + 1) glimpses x G/step), the
    paper's Table 6 curves (dashed), and AME / AdaGlimpse at T = 8 glimpses (GFLOPs from
    canvit_eval.flops, mIoU as reported by the paper: 27.6% and 25.7%).
(B) ADE20K mIoU vs timestep per policy and resolution (ours: mean and 95% bootstrap CI band; paper: dashed).
(C) ImageNet-1k top-1 vs timestep per policy (same).
A panel without results says which command fills it; the paper's curves are drawn regardless.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from canvit_eval import flops  # noqa: E402

from paper import sources  # noqa: E402
from paper.tablelib import Context, default_results  # noqa: E402
from paper.tables import table06 as t6  # noqa: E402
from paper.tables import table07 as t7  # noqa: E402

# Paper-reported ADE20K mIoU of the prior active models (Section 2 / 6.1), at T = 8 glimpses.
BASELINES = {"AME (T = 8)": (lambda: flops.ame(8, "paper").gflops, 27.6),
             "AdaGlimpse (T = 8)": (lambda: flops.adaglimpse(8, "paper").gflops, 25.7)}
COLORS = {"c2f": "tab:blue", "eg-c2f": "tab:purple", "f-iid": "tab:green", "r-iid": "tab:orange",
          "f2c": "tab:red", "rfs": "tab:gray"}


def curves(ctx: Context, kind: str, metric: str) -> dict[tuple, list[tuple[int, float, float, float]]]:
    """(policy, scene, grid) -> [(t, mean, lo, hi) x100] over the store's runs of one model."""
    df, _ = sources.pick_model(sources.runs(ctx, kind, t6.META))
    out: dict[tuple, list] = {}
    for key, r in sorted(sources.summary(df, t6.BY, [metric]).items(), key=lambda kv: kv[0][3]):
        out.setdefault(key[:3], []).append((int(key[3]), 100 * r[metric], 100 * r[f"{metric}_lo"],
                                            100 * r[f"{metric}_hi"]))
    return out


def _label(c: tuple) -> str:
    return f"{sources.POLICY_LABELS.get(c[0], c[0])} {c[1]}/{c[2]}²"


def _style(c: tuple) -> dict:
    return {"color": COLORS.get(c[0], "black"), "linestyle": "-" if c[2] <= 32 else "-."}


def no_results(ax, command: str) -> None:
    text = textwrap.fill(f"`{command}`", 64, break_on_hyphens=False, break_long_words=True)
    ax.text(0.5, 0.5, f"no results yet: run\n{text}", transform=ax.transAxes, ha="center", va="center",
            fontsize=6, color="dimgray", bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "lightgray"})


def panel_a(ax, ade: dict) -> None:
    for c, pts in ade.items():
        g = t6.g_per_step(c[2])
        ax.plot([(t + 1) * g for t, *_ in pts], [m for _, m, *_ in pts], marker="o", ms=2, label=f"ours {_label(c)}",
                **_style(c))
    for c, (_, means, _) in t6.PAPER.items():
        if c[1:] == (512, 32):
            g = t6.g_per_step(c[2])
            ax.plot([(t + 1) * g for t in t6.TIMESTEPS], means, "--", color=COLORS[c[0]], alpha=0.45, lw=1,
                    label=f"paper {_label(c)}")
    for name, (gf, miou) in BASELINES.items():
        ax.scatter([gf()], [miou], marker="*", s=90, zorder=5, label=f"{name}: paper mIoU, our GFLOPs")
        ax.annotate(name, (gf(), miou), fontsize=6, xytext=(4, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative GFLOPs")
    ax.set_ylabel("ADE20K mIoU (%)")
    ax.set_title("(A) accuracy vs compute (ADE20K)")
    if not ade:
        no_results(ax, sources.ade20k("c2f").command)


def panel_t(ax, ours: dict, paper: dict[tuple, list[float]], paper_t: tuple, ylabel: str, title: str,
            command: str) -> None:
    for c, pts in ours.items():
        ts = [t for t, *_ in pts]
        ax.plot(ts, [m for _, m, *_ in pts], label=f"ours {_label(c)}", **_style(c))
        ax.fill_between(ts, [lo for *_, lo, _ in pts], [hi for *_, hi in pts], color=_style(c)["color"], alpha=0.2)
    for c, means in paper.items():
        ax.plot(paper_t, means, "--", marker="o", ms=2, mfc="none", color=COLORS.get(c[0], "black"), alpha=0.45,
                lw=1, label=f"paper {_label(c)}")
    ax.set_xlabel("timestep t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not ours:
        no_results(ax, command)


def build(out_dir: Path, ctx: Context | None = None) -> list[Path]:
    ctx = ctx or Context(results=default_results())
    out_dir.mkdir(parents=True, exist_ok=True)
    ade, in1k = curves(ctx, "ade20k", "miou"), curves(ctx, "in1k", "top1")
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(16, 4.8))
    panel_a(ax_a, ade)
    panel_t(ax_b, ade, {c: v[1] for c, v in t6.PAPER.items()}, t6.TIMESTEPS, "ADE20K mIoU (%)",
            "(B) policy and canvas resolution (ADE20K)", sources.ade20k("c2f").command)
    panel_t(ax_c, in1k, {(p, 512, 32): v[0] for p, v in t7.PAPER.items()}, t7.TIMESTEPS, "IN1k top-1 (%)",
            "(C) policy (ImageNet-1k)", sources.in1k("c2f").command)
    for ax in (ax_a, ax_b, ax_c):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=5, ncol=2)
    fig.suptitle(f"Figure 4: linear-probing results of a frozen CanViT-B (ours from {ctx.where}; "
                 "paper dashed)", fontsize=9)
    fig.tight_layout()
    path = out_dir / "figure04.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
