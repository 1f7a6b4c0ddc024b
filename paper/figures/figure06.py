"""Figure 6: pretraining loss curves, from the `pretrain` runs of the results store.

2x2 grid: rows = rollout (R-IID, F-IID), columns = loss component (patch MSE, CLS MSE); one line per
run (labelled by its preset): bold = EMA (alpha = 0.01) over the logged per-step values, faint = raw.
Without runs, each panel names the command that produces them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from paper import sources  # noqa: E402
from paper.tablelib import Context, default_results  # noqa: E402

ROLLOUTS = ("r-iid", "f-iid")
COMPONENTS = {"patch": "Patch MSE", "cls": "CLS MSE"}
EMA_ALPHA = 0.01


def ema(values: pd.Series, alpha: float = EMA_ALPHA) -> pd.Series:
    """s_0 = x_0, s_i = alpha x_i + (1 - alpha) s_{i-1} (the paper's smoothing)."""
    return values.ewm(alpha=alpha, adjust=False).mean()


def paper_preset(preset: object) -> bool:
    """The paper's pretraining recipes (canvit-b and the Table 3 ablations); `smoke` and others are not."""
    return isinstance(preset, str) and (preset == "canvit-b" or preset.startswith("abl-"))


def left_out(ctx: Context) -> list[str]:
    """Keys of the `pretrain` runs not plotted (not one of the paper's presets, e.g. `smoke`)."""
    df = sources.runs(ctx, "pretrain", ["extra.preset"])
    return sorted({str(k) for k, p in zip(df["run_key"], df["extra.preset"]) if not paper_preset(p)})


def series(ctx: Context) -> dict[tuple[str, str], dict[str, pd.DataFrame]]:
    """(rollout, component) -> run label -> DataFrame[step, loss, ema] sorted by step; runs of the paper's
    presets only (a smoke run is no CanViT-B curve)."""
    df = sources.runs(ctx, "pretrain", ["extra.preset"])
    out: dict[tuple[str, str], dict[str, pd.DataFrame]] = {}
    if df.empty:
        return out
    df = df[[paper_preset(p) for p in df["extra.preset"]]]
    for (rollout, comp, key), g in df.groupby(["rollout", "component", "run_key"], sort=True):
        g = g.sort_values("step")
        preset = g["extra.preset"].iloc[0]
        label = f"{preset} ({key})" if preset and preset != key else str(key)
        out.setdefault((rollout, comp), {})[label] = pd.DataFrame(
            {"step": g["step"].to_numpy(), "loss": g["loss"].to_numpy(), "ema": ema(g["loss"]).to_numpy()})
    return out


def build(out_dir: Path, ctx: Context | None = None) -> list[Path]:
    ctx = ctx or Context(results=default_results())
    out_dir.mkdir(parents=True, exist_ok=True)
    data = series(ctx)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = sorted({lab for runs in data.values() for lab in runs})
    for i, rollout in enumerate(ROLLOUTS):
        for j, (comp, name) in enumerate(COMPONENTS.items()):
            ax = axes[i][j]
            runs = data.get((rollout, comp), {})
            for lab, d in runs.items():
                color = colors[labels.index(lab) % len(colors)]
                ax.plot(d["step"], d["loss"], color=color, alpha=0.15, lw=0.6)
                ax.plot(d["step"], d["ema"], color=color, lw=1.6, label=lab)
            if runs:
                ax.set_yscale("log")
                ax.legend(fontsize=6)
            else:
                ax.text(0.5, 0.5, f"no results yet: run\n`{sources.pretrain('P')}`\n(P = canvit-b or an abl-* "
                        "preset; needs a GPU, IN21k teacher features)", transform=ax.transAxes, ha="center",
                        va="center", fontsize=7, color="dimgray")
            ax.set_title(f"{rollout.upper()} policy: {name}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.grid(True, which="both", alpha=0.3)
    skipped = left_out(ctx)
    title = f"Figure 6: pretraining loss curves (bold: EMA alpha = {EMA_ALPHA}; faint: raw) from {ctx.where}"
    if skipped:
        title += f"\nleft out (not a paper preset): {', '.join(skipped)}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = out_dir / "figure06.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
