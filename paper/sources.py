"""Where the paper's numbers come from: the results store (canvit_results) and the commands that fill it.

Every pending cell names one of the commands below, exactly as a user types it. UPPERCASE words are
paths the user supplies (ADE20K, IMAGENET: the datasets; *_PROBE: a probe directory); `S` is a seed.
The kinds and their columns are the contract in packages/canvit-results/README.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from canvit_model import PRESETS, CanViTConfig, releases
from canvit_results import load_runs, summarize

from paper.tablelib import Bold, Context, Pending, Table

FLAGSHIP = releases.FLAGSHIP  # the released CanViT-B checkpoint
TEACHER = releases.TEACHER

# The policies' store names (canvit-eval --policy) and the paper's labels.
POLICY_LABELS = {"c2f": "C2F", "eg-c2f": "Entropy C2F", "f-iid": "F-IID", "r-iid": "R-IID", "f2c": "F2C",
                 "rfs": "Rep. full"}
DINOV3_LABELS = {"vits16": "ViT-S/16", "vits16plus": "ViT-S+/16", "vitb16": "ViT-B/16", "vitl16": "ViT-L/16",
                 "vith16plus": "ViT-H+/16"}

EVAL = "uv run --package canvit-eval canvit-eval"
PROBES = "uv run --package dinov3-probes dinov3-probes"
MATRIX = f"{EVAL} matrix"


def dinov3_hub(backbone: str) -> str:
    return releases.dinov3(backbone)


def ade20k_probe_cmd(scene: int, grid: int) -> str:
    return (f"{EVAL} train-probe --model {FLAGSHIP} --data ADE20K --scene-size {scene} --canvas-grid {grid} "
            f"--out ADE20K_PROBE_C{grid}")


def ade20k(policy: str, scene: int = 512, grid: int = 32, *, n: int | None = None) -> Pending:
    """One ADE20K evaluation run (kind `ade20k`): every timestep of one policy / resolution / seed."""
    cmd = (f"{EVAL} ade20k --model {FLAGSHIP} --probe ADE20K_PROBE_C{grid} --data ADE20K --policy {policy} "
           f"--glimpses 21 --seed S --scene-size {scene} --canvas-grid {grid}")
    seeds = f"S = 0..{n - 1} (paper: n = {n} runs)" if n and n > 1 else "S = 0"
    return Pending(cmd, f"a GPU, ADE20K val, the CanViT-B checkpoint and an ADE20K probe for a {grid}x{grid} "
                        f"canvas (`{ade20k_probe_cmd(scene, grid)}`); {seeds}; or all runs: `{MATRIX}`")


def ade20k_dinov3(backbone: str, input_px: int) -> Pending:
    """The DINOv3 baseline at t = 0 (kind `ade20k-dinov3`)."""
    probe = f"ADE20K_PROBE_{backbone.upper()}_{input_px}PX"
    train = f"{EVAL} train-probe --dinov3 {backbone} --input-px {input_px} --data ADE20K --out {probe}"
    return Pending(f"{EVAL} ade20k --dinov3 {backbone} --input-px {input_px} --probe {probe} --data ADE20K",
                   f"a GPU, ADE20K, {dinov3_hub(backbone)} (hub) and its ADE20K probe (`{train}`)")


def in1k(policy: str, scene: int = 512, grid: int = 32, *, n: int | None = None) -> Pending:
    """One ImageNet-1k evaluation run (kind `in1k`)."""
    cmd = (f"{EVAL} in1k --model {FLAGSHIP} --probe DINOV3_PROBE --data IMAGENET --policy {policy} "
           f"--glimpses 21 --seed S")
    if (scene, grid) != (512, 32):
        cmd += f" --scene-size {scene} --canvas-grid {grid}"
    seeds = f"S = 0..{n - 1} (paper: n = {n} runs)" if n and n > 1 else "S = 0"
    return Pending(cmd, f"a GPU, ImageNet-1k val, the CanViT-B checkpoint and the DINOv3 ViT-B/16 IN1k probe "
                        f"(DINOV3_PROBE: {probes_cmds('vitb16')[-1]}); {seeds}; or all runs: `{MATRIX}`")


def pretrain_preset_for(model_preset: str) -> str:
    """The `pretrain --preset` recipe that trains a model preset's Table 3 row (canvitb16: `abl-baseline`)."""
    return releases.table3_row(model_preset).recipe


def pretrain(preset: str) -> str:
    return f"uv run --package canvit-train pretrain --preset {preset}"


def reconstruction(model_preset: str) -> Pending:
    """Canvas-vs-teacher cosine of one checkpoint (kind `reconstruction`)."""
    p, ckpt = PRESETS[model_preset], releases.table3_row(model_preset).hub_id  # canvitb16: the ablation baseline
    cmd = f"{EVAL} reconstruction --model {ckpt} --teacher {TEACHER} --data ADE20K --seed S"
    return Pending(cmd, f"a GPU, ADE20K val (2,000 held-out scenes), the {p.name} checkpoint ({ckpt} on the "
                        f"hub, or train it: `{pretrain(pretrain_preset_for(p.name))}`) and the DINOv3 ViT-B "
                        "teacher; S = 0..n-1 for a CI")


def probes_cmds(backbone: str) -> list[str]:
    feats = f"FEATURES/{backbone}"
    study = f"--storage sqlite:///dinov3-probes.db --study {backbone}"
    return [
        f"{PROBES} extract --model {dinov3_hub(backbone)} --data IMAGENET --split train --out {feats}",
        f"{PROBES} extract --model {dinov3_hub(backbone)} --data IMAGENET --split val --out {feats}",
        f"{PROBES} tune --features {feats} {study} --trials 100",
        f"{PROBES} export {study} --features {feats} --out probes/{backbone}",
    ]


def dinov3_probe(backbone: str) -> Pending:
    """A tuned DINOv3 IN1k probe (kind `dinov3-probes`)."""
    cmds = probes_cmds(backbone)
    return Pending(" && ".join(cmds), f"a GPU, ImageNet-1k train + val (optional ReaL labels: `--real-labels "
                                      f"real.json` on the val extract) and {dinov3_hub(backbone)} (hub)")


def latency(device: str = "cpu") -> Pending:
    cmd = "uv run --package canvit-eval canvit-latency" + (" --device cuda" if device == "cuda" else "")
    return Pending(cmd, "a CUDA GPU" if device == "cuda" else "a CPU")


# -- reading the store ----------------------------------------------------------------------------------


# Sidecar fields that are integers (JSON may hold them as floats or strings in hand-written runs).
INT_META = ("extra.scene_size", "extra.canvas_grid", "extra.input_px", "extra.seed", "extra.num_glimpses")


LABEL = "extra.model_label"  # `{model name}@{8 hex digits of its weights digest}` (canvit-eval writers)


def runs(ctx: Context, kind: str, meta: Sequence[str]) -> pd.DataFrame:
    """All complete runs of `kind` with sidecar fields `meta` (e.g. "extra.policy") as columns, plus the model
    label; with `ctx.model` (make_tables --model) only the runs of that model (`model_matches`)."""
    meta = list(meta)
    df = load_runs(ctx.results, kind, with_meta=[*meta, LABEL] if LABEL not in meta else meta, missing_ok=True)
    for m in meta:
        if m not in df.columns:
            df[m] = pd.Series(dtype=object)
        elif m in INT_META:
            df[m] = pd.to_numeric(df[m], errors="coerce").astype("Int64")
    selected = getattr(ctx, "model", None)
    if selected and not df.empty:
        df = df[[model_matches(selected, lab, mod) for lab, mod in
                 zip(df.get(LABEL, [None] * len(df)), df.get("extra.model", [None] * len(df)))]]
    return df


def model_matches(selected: str, label: object, model: object) -> bool:
    """Does `--model SELECTED` name this run's model: its label (`final@1a2b3c4d`), the label's digest or name
    part, or the checkpoint it evaluated?"""
    sel = selected.rstrip("/")
    lab = str(label) if isinstance(label, str) else ""
    return sel in (lab, lab.split("@")[-1], lab.split("@")[0]) or (isinstance(model, str) and model.rstrip("/") == sel)


def _who(df: pd.DataFrame, column: str) -> pd.Series:
    """Each row's model: its label where the writer recorded one (weights digest included), else `column`."""
    if LABEL not in df.columns:
        return df[column]
    return df[LABEL].where(df[LABEL].notna(), df[column])


def not_canvit_b(model: object) -> str | None:
    """Why a local checkpoint directory is not CanViT-B (its saved architecture differs from
    `PRESETS["canvitb16"]`, e.g. a smoke or tiny model), or None: CanViT-B, or not checkable here (a hub id)."""
    path = Path(str(model)) / "config.json"
    try:
        cfg = json.loads(path.read_text()).get("canvit_config") if path.is_file() else None
        c = CanViTConfig(**cfg) if isinstance(cfg, dict) else None
    except (OSError, ValueError, TypeError):
        return None
    if c is None or c == PRESETS["canvitb16"].config:
        return None
    return f"backbone {c.backbone_name}, canvas {c.canvas_num_heads}x{c.canvas_head_dim}"


def pick_model(df: pd.DataFrame, column: str = "extra.model") -> tuple[pd.DataFrame, list[str]]:
    """Which model's runs fill the rows: the released CanViT-B if present (others left out, named in the notes;
    make_tables --model picks another); else, when several models remain (e.g. two runs' `final` folders), all
    of them, each row's policy labelled with its model (`C2F · final@1a2b3c4d`); else the one model.
    Models are told apart by their label (name + weights digest) where the store has one.
    Runs of local checkpoints that are not CanViT-B (smoke / tiny models) and `--limit` runs never fill a row.
    Returns (rows, notes) so the table says which model it shows and which runs it left out."""
    if df.empty or column not in df.columns:
        return df, []
    notes = []
    limited = sorted({k for k in df["run_key"] if re.search(r"-limit\d+$", str(k))})
    wrong = {m: w for m in df[column].dropna().unique() if (w := not_canvit_b(m))}
    if limited:
        notes.append(f"Left out (--limit runs, not the full split): {', '.join(limited)}.")
    if wrong:
        notes.append("Left out (not a CanViT-B checkpoint): " + "; ".join(
            f"{m} ({w}, {df[df[column] == m]['run_key'].nunique()} runs)" for m, w in wrong.items()) + ".")
    df = df[~df["run_key"].isin(limited) & ~df[column].isin(list(wrong))]
    if df.empty:
        return df, notes
    who = _who(df, column)
    counts = who.groupby(who, dropna=False).size()  # rows per model
    runs_of = {m: df[who == m]["run_key"].nunique() for m in counts.index}
    models = sorted(counts.index, key=lambda m: -runs_of[m])
    flagship = [m for m in models if (df[who == m][column] == FLAGSHIP).any()]
    if len(models) > 1 and not flagship:  # no released model to prefer: every model's rows, labelled
        df = df.copy()
        if "extra.policy" in df.columns:
            df["extra.policy"] = [f"{POLICY_LABELS.get(p, p)} · {m}" for p, m in zip(df["extra.policy"], who)]
        paths = {m: df[who == m][column].iloc[0] for m in models}
        notes.insert(0, "Ours: runs of several models, each row labelled `name@digest` (its weights' sha256; "
                        "`make_tables --model LABEL` shows one): "
                        + "; ".join(f"{m} = {paths[m]} ({runs_of[m]} runs)" for m in models) + ".")
        return df, notes
    chosen = flagship[0] if flagship else models[0]
    notes.insert(0, f"Ours: runs of model {chosen}.")
    others = [f"{m} ({runs_of[m]} runs)" for m in models if m != chosen]
    if others:
        notes.append(f"Left out (another model; `make_tables --model LABEL` shows it): "
                     f"{', '.join(str(o) for o in others)}.")
    return df[who == chosen], notes


def summary(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> dict[tuple, dict]:
    """`canvit_results.summarize` as {group tuple: row dict} (mean, _lo, _hi, n per metric)."""
    df = df.dropna(subset=list(by)) if not df.empty else df  # a run missing a grouping field fits no cell
    if df.empty:
        return {}
    s = summarize(df, list(by), list(metrics))
    return {tuple(_py(r[b]) for b in by): r for r in s.to_dict("records")}


def _py(v):
    """numpy / pandas scalars -> int, float or str, so keys compare and print as the paper's (512, not 512.0)."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    return v


def pct_ci(row: dict, metric: str, digits: int = 1) -> str:
    """mean x100 ± half-width of the 95% bootstrap CI x100 (Tables 6, 7)."""
    m, lo, hi = 100 * row[metric], 100 * row[f"{metric}_lo"], 100 * row[f"{metric}_hi"]
    return f"{m:.{digits}f} ±{(hi - lo) / 2:.2f}"


def pct_range(row: dict, metric: str) -> str:
    """The 95% CI range x100 where n > 1, the point estimate otherwise (Table 4)."""
    if row["n"] > 1:
        return f"{100 * row[f'{metric}_lo']:.1f}–{100 * row[f'{metric}_hi']:.1f}"
    return f"{100 * row[metric]:.1f}"


def bold_max(cells: dict[object, tuple[float, object]]) -> dict[object, object]:
    """{key: (score, cell)} -> {key: cell}, the highest score(s) wrapped in Bold (NaN never wins)."""
    scores = [s for s, _ in cells.values() if s is not None and np.isfinite(s)]
    best = max(scores) if scores else None
    return {k: Bold(c) if best is not None and s is not None and np.isfinite(s) and np.isclose(s, best)
            else c for k, (s, c) in cells.items()}


def policy_timestep_table(number: int, title: str, summ: dict[tuple, dict], metric: str,
                          configs: Sequence[tuple[str, int, int]], timesteps: Sequence[int],
                          paper: Mapping[tuple, tuple[Sequence[float], Sequence[float]]],
                          pending: Callable[[tuple], Pending], notes: Sequence[str], *, digits: int = 1,
                          labels: Mapping[str, str] = POLICY_LABELS,
                          extra: Mapping[str, Callable[[tuple], object]] | None = None) -> Table:
    """Tables 6, 7: a row per (policy, scene px, canvas grid) of `configs`: Policy, Res., n, the `extra` columns,
    then per timestep ours (`pct_ci` of `metric` in `summ`, else `pending(config)`) beside the paper's
    (`paper`: config -> (means, CI half-widths) at `timesteps`; "—" where the paper has no such row).
    Bold = best policy at that timestep within a resolution, ours and the paper's each."""
    cells: dict[tuple, object] = {}
    for i, t in enumerate(timesteps):
        for res in dict.fromkeys(c[1:] for c in configs):
            group = [c for c in configs if c[1:] == res]
            ours = {c: (s[metric], pct_ci(s, metric, digits)) if (s := summ.get((*c, t))) else (None, pending(c))
                    for c in group}
            theirs = {c: (paper[c][0][i], f"{paper[c][0][i]:g} ±{paper[c][1][i]:g}") if c in paper else (None, "—")
                      for c in group}
            cells.update({(c, t, "ours"): v for c, v in bold_max(ours).items()})
            cells.update({(c, t, "paper"): v for c, v in bold_max(theirs).items()})
    extra = extra or {}
    cols = ["Policy", "Res.", "n", *extra]
    for t in timesteps:
        cols += [f"t = {t}", f"t = {t} (paper)"]
    rows = []
    for c in configs:
        n = max((summ[(*c, t)]["n"] for t in timesteps if (*c, t) in summ), default=0)
        row = [labels.get(c[0], c[0]), f"{c[1]}/{c[2]}²", n or "—", *(f(c) for f in extra.values())]
        for t in timesteps:
            row += [cells[(c, t, "ours")], cells[(c, t, "paper")]]
        rows.append(row)
    return Table.from_rows(number, title, cols, rows, notes, ours=[f"t = {t}" for t in timesteps])



# Reconstruction metrics (kind `reconstruction`): the destandardized canvas prediction vs the raw
# teacher features, per position (patch) and for the CLS token.
RECON_METRICS = {"Sp.": "cos_patch_raw", "CLS": "cos_cls_raw"}


# The paper's reconstruction protocol (Tables 3-4): 10 R-IID glimpses of 128 px on 512 px scenes, 32x32 canvas.
RECON_PROTOCOL = {"extra.scene_size": 512, "extra.canvas_grid": 32, "extra.glimpse_px": 128, "extra.policy": "r-iid"}


def reconstruction_runs(ctx: Context) -> tuple[pd.DataFrame, list[str]]:
    """The reconstruction runs that may fill a Table 3/4 row, and notes naming the runs left out: runs off the
    paper's protocol (smoke / tiny models at other sizes, other policies), `--limit` runs, and the flagship
    release (its `extra.preset` is canvitb16, but the baseline row is the short-run ablation baseline)."""
    df = runs(ctx, "reconstruction", ["extra.preset", "extra.model", *RECON_PROTOCOL])
    if df.empty:
        return df, []
    why: dict[str, str] = {}
    for key, g in df.groupby("run_key", sort=True):
        r = g.iloc[0]
        off = [f"{c.removeprefix('extra.')} {_py(r[c])}" for c, v in RECON_PROTOCOL.items()
               if not pd.isna(r[c]) and _py(r[c]) != v]
        if r["extra.model"] == FLAGSHIP:
            why[key] = "the flagship release, not the ablation baseline"
        elif re.search(r"-limit\d+$", str(key)):
            why[key] = "a --limit run"
        elif off:
            why[key] = "not the paper's protocol: " + ", ".join(off)
    notes = []
    if why:
        notes.append("Left out (not the paper's configuration): "
                     + "; ".join(f"{k} ({w})" for k, w in why.items()) + ".")
    return df[~df["run_key"].isin(list(why))], notes


def reconstruction_summary(ctx: Context, notes: list[str] | None = None) -> dict[tuple, dict]:
    """{(preset, t): summary row} over the reconstruction runs of the paper's protocol; the notes naming the
    runs left out are appended to `notes`."""
    df, left_out = reconstruction_runs(ctx)
    if notes is not None:
        notes.extend(left_out)
    return summary(df, ["extra.preset", "t"], list(RECON_METRICS.values()))
