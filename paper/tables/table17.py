"""Tables 17 and 18: the DINOv3 ImageNet-1k linear probes (Appendix H), from the `dinov3-probes` runs
(`dinov3-probes export` writes one per backbone and study: per-epoch top-1 / top-5 / ReaL top-1 of the
retrained best trial, and its hyperparameters in the sidecar's `trial_params`).

Table 17: the best epoch (highest IN1k top-1) of each run, ours next to the paper's. Table 18: the
selected hyperparameters of each run next to the paper's."""

from __future__ import annotations

import math

from canvit_results import load_meta

from paper import sources
from paper.tablelib import Context, Table, default_results

BACKBONES = ("vits16", "vits16plus", "vitb16", "vitl16", "vith16plus")
# Table 17 as printed: backbone -> (ReaL top-1 official, ReaL top-1 paper's probe, IN1k top-1 paper's probe)
PAPER_17 = {"vits16": ("87.0", "87.08", "81.40"), "vits16plus": ("88.0", "88.08", "82.89"),
            "vitb16": ("89.3", "89.54", "85.00"), "vitl16": ("90.2", "90.42", "87.44"),
            "vith16plus": ("90.3", "90.31", "87.65")}
# Table 18 as printed: backbone -> (loss, batch size, peak LR, weight decay, (beta1, beta2), DINOv3 init,
# aug. epochs, total epochs)
PAPER_18 = {
    "vits16": ("softmax", "2048", "6.6e-03", "6.0e-02", "(0.22, 0.71)", "Yes", "10", "20"),
    "vits16plus": ("softmax", "1024", "1.1e-03", "3.8e-02", "(0.10, 0.94)", "No", "10", "20"),
    "vitb16": ("softmax", "1024", "2.8e-04", "9.2e-02", "(0.56, 0.73)", "Yes", "10", "20"),
    "vitl16": ("sigmoid", "2048", "3.0e-03", "3.1e-02", "(0.40, 0.63)", "Yes", "10", "20"),
    "vith16plus": ("sigmoid", "1024", "8.2e-03", "4.9e-02", "(0.78, 0.93)", "No", "8", "16"),
}
HP_COLUMNS = ("Loss", "Batch size", "Peak LR", "Weight decay", "(β1, β2)", "DINOv3 init", "Aug. epochs",
              "Total epochs")
META = ["extra.backbone", "extra.study", "extra.selection"]


def best_epochs(ctx: Context) -> list[dict]:
    """One record per run: backbone, study, selection, best epoch (by top-1) and its metrics."""
    df = sources.runs(ctx, "dinov3-probes", META)
    out = []
    for key, g in (df.groupby("run_key", sort=True) if not df.empty else []):
        best = g.loc[g["top1"].astype(float).idxmax()]
        real = best.get("real_top1")
        out.append({"run_key": key, "backbone": best["extra.backbone"], "study": best["extra.study"],
                    "selection": best["extra.selection"], "epoch": int(best["epoch"]), "epochs": len(g),
                    "top1": float(best["top1"]),
                    "real_top1": None if real is None or _nan(real) else float(real)})
    return out


def _nan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def _runs_by_backbone(records: list[dict]) -> list[tuple[str, dict | None]]:
    """The paper's five backbones (pending when absent), then any other backbone found, one row per run."""
    rows = []
    for bb in [*BACKBONES, *sorted({r["backbone"] for r in records} - set(BACKBONES), key=str)]:
        mine = [r for r in records if r["backbone"] == bb]
        rows.extend((bb, r) for r in mine) if mine else rows.append((bb, None))
    return rows


def table17(ctx: Context, records: list[dict]) -> Table:
    cols = ["Model", "Study", "Best epoch", "ReaL top-1 (official)", "ReaL top-1 (ours)", "ReaL top-1 (paper)",
            "IN1k top-1 (ours)", "IN1k top-1 (paper)"]
    rows = []
    for bb, r in _runs_by_backbone(records):
        official, paper_real, paper_top1 = PAPER_17.get(bb, ("—", "—", "—"))
        if r is None:
            p = sources.dinov3_probe(bb)
            rows.append([sources.DINOV3_LABELS.get(bb, bb), "—", "—", official, p, paper_real, p, paper_top1])
            continue
        real = "not measured (no ReaL labels)" if r["real_top1"] is None else f"{100 * r['real_top1']:.2f}"
        rows.append([sources.DINOV3_LABELS.get(bb, bb), f"{r['study']} ({r['selection']})",
                     f"{r['epoch']} of {r['epochs']}", official, real, paper_real, f"{100 * r['top1']:.2f}",
                     paper_top1])
    notes = [
        f"Ours: the `dinov3-probes` runs in {ctx.where}; per run, the epoch with the highest IN1k top-1 and "
        "its ReaL top-1 (%, 512x512 val, Resize + CenterCrop). Official = the DINOv3 paper's ReaL numbers.",
        "Selection: `holdout` = hyperparameters chosen on a held-out part of the training features (ours), "
        "`val` = on the validation set (the paper's protocol).",
    ]
    return Table.from_rows(17, "DINOv3 IN1k linear probe accuracy at 512x512", cols, rows, notes,
                           ours=["ReaL top-1 (ours)", "IN1k top-1 (ours)"])


def _hp(tp: dict) -> list[str]:
    def g(k, fmt="{}"):
        v = tp.get(k)
        return "—" if v is None else fmt.format(v)

    init = tp.get("init")
    init = "—" if init is None else ("Yes" if str(init).lower() in ("dinov3", "true", "yes") else "No")
    betas = "—" if tp.get("beta1") is None else f"({tp['beta1']:.2f}, {tp['beta2']:.2f})"
    return [g("loss"), g("batch_size"), g("lr", "{:.1e}"), g("weight_decay", "{:.1e}"), betas, init,
            g("aug_epochs"), g("epochs")]


def table18(ctx: Context, records: list[dict]) -> Table:
    metas = load_meta(ctx.results, "dinov3-probes", missing_ok=True)
    cols = ["Model", "Study", "Optimizer"]
    for c in HP_COLUMNS:
        cols += [c, f"{c} (paper)"]
    rows = []
    for bb, r in _runs_by_backbone(records):
        paper = PAPER_18.get(bb, ("—",) * len(HP_COLUMNS))
        if r is None:
            ours, study, opt = [sources.dinov3_probe(bb)] * len(HP_COLUMNS), "—", "—"
        else:
            tp = (metas.get(r["run_key"], {}).get("extra") or {}).get("trial_params") or {}
            ours, study, opt = _hp(tp), f"{r['study']} ({r['selection']})", tp.get("optimizer", "—")
        row = [sources.DINOV3_LABELS.get(bb, bb), study, opt]
        for o, p in zip(ours, paper):
            row += [o, p]
        rows.append(row)
    notes = [
        f"Ours: `trial_params` of the `dinov3-probes` runs in {ctx.where} (the Optuna trial retrained and "
        "exported). Peak LR = the trial's `lr` (the reference LR scaled by batch size, App. H.3); DINOv3 init = "
        "weights N(0, 0.01), bias 0 (Yes) or the PyTorch default (No).",
    ]
    return Table.from_rows(18, "Selected hyperparameters of each DINOv3 linear probe (Optuna)", cols, rows, notes,
                           ours=list(HP_COLUMNS))


def build(ctx: Context | None = None) -> list[Table]:
    """Table 17 (Table 18 is built from the same runs by table18.py)."""
    ctx = ctx or Context(results=default_results())
    return [table17(ctx, best_epochs(ctx))]
