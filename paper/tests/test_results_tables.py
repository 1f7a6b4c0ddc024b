"""make_tables.py on an empty results store and on one populated with fake-but-well-formed runs written
through canvit_results.write_run: the right cells, CIs (against canvit_results.bootstrap_ci), bold marks,
pending commands and produced / pending counts."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from canvit_model import PRESETS, releases
from canvit_results import bootstrap_ci, provenance, write_run

from paper import make_tables, sources
from paper.tablelib import Bold, Context, Pending

FLAGSHIP = PRESETS["canvitb16"].hub_repo
# ADE20K fake mIoU: policy -> level; each run adds a seed offset, each timestep a gain.
ADE_LEVEL = {"c2f": 0.40, "f-iid": 0.39, "r-iid": 0.20}
IN1K_LEVEL = {"c2f": 0.77, "f-iid": 0.76}


def ade_miou(policy: str, seed: int, t: int) -> float:
    start = 0.385 if policy in ("c2f", "f-iid") else ADE_LEVEL[policy]  # full-scene t = 0 is shared
    return start + (0 if t == 0 else ADE_LEVEL[policy] * 0.1 * np.sqrt(t) + 0.003 * seed)


def recon(preset: str, seed: int, t: int) -> tuple[float, float]:
    base = 0.70 if preset == "canvitb16" else 0.62
    return base * (0.65 + 0.035 * t) + 0.002 * seed, (base + 0.01) * (0.65 + 0.03 * t) - 0.001 * seed


_PROVENANCE: dict = {}


def _write(root, kind, key, df, **extra):
    if not _PROVENANCE:  # one git / package-version probe for all the fake runs
        _PROVENANCE.update(provenance(argv=["test"]))
    write_run(root, kind, key, pd.DataFrame(df), _PROVENANCE, extra=extra)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    ts = list(range(21))
    for policy in ADE_LEVEL:
        for seed in range(3):
            _write(root, "ade20k", f"canvitb16-{policy}-s512-c32-seed{seed}",
                   {"t": ts, "miou": [ade_miou(policy, seed, t) for t in ts]}, model=FLAGSHIP, policy=policy,
                   scene_size=512, canvas_grid=32, seed=seed)
    _write(root, "ade20k", "canvitb16-c2f-s1024-c64-seed0", {"t": ts, "miou": [0.45] * 21}, model=FLAGSHIP,
           policy="c2f", scene_size=1024, canvas_grid=64, seed=0)
    # another model's run (left out) and a killed run (table, no sidecar: never read)
    _write(root, "ade20k", "other-c2f-s512-c32-seed0", {"t": ts, "miou": [0.99] * 21}, model="runs/mine",
           policy="c2f", scene_size=512, canvas_grid=32, seed=0)
    (root / "ade20k" / "canvitb16-f2c-s512-c32-seed0.csv").write_text("t,miou\n0,0.99\n")
    _write(root, "ade20k-dinov3", "dinov3-vitb16-128px", {"t": [0], "miou": [0.290]}, model=releases.dinov3("vitb16"),
           backbone="vitb16", input_px=128)
    for policy in IN1K_LEVEL:
        for seed in range(2):
            _write(root, "in1k", f"canvitb16-{policy}-s512-c32-seed{seed}",
                   {"t": ts, "top1": [IN1K_LEVEL[policy] + 0.002 * t + 0.001 * seed for t in ts],
                    "top5": [0.9] * 21}, model=FLAGSHIP, policy=policy, scene_size=512, canvas_grid=32, seed=seed)
    for preset in ("canvitb16", "dcan256"):
        for seed in range(2):
            vals = [recon(preset, seed, t) for t in range(10)]
            _write(root, "reconstruction", f"{preset}-seed{seed}",
                   {"t": list(range(10)), "cos_patch_raw": [v[0] for v in vals], "cos_cls_raw": [v[1] for v in vals],
                    "cos_patch_std": [0.5] * 10, "cos_cls_std": [0.5] * 10},
                   model=releases.table3_row(preset).hub_id, preset=preset, num_glimpses=10, seed=seed)
    # runs that claim preset canvitb16 but are not the paper's configuration: never in the baseline row
    bad = {"t": list(range(10)), "cos_patch_raw": [0.99] * 10, "cos_cls_raw": [0.99] * 10,
           "cos_patch_std": [0.5] * 10, "cos_cls_std": [0.5] * 10}
    _write(root, "reconstruction", "canvitb16-seed7", bad, model="runs/smoke/final", preset="canvitb16",
           num_glimpses=10, seed=7, scene_size=128, canvas_grid=8, glimpse_px=32, policy="r-iid")
    _write(root, "reconstruction", "canvitb16-flagship-seed0", bad, model=FLAGSHIP, preset="canvitb16",
           num_glimpses=10, seed=0, scene_size=512, canvas_grid=32, glimpse_px=128, policy="r-iid")
    _write(root, "reconstruction", "canvitb16-seed0-limit64", bad, model=PRESETS["canvitb16"].hub_repo,
           preset="canvitb16", num_glimpses=10, seed=0)
    _write(root, "dinov3-probes", "vitb16-study1",
           {"epoch": [1, 2, 3], "top1": [0.80, 0.85, 0.84], "top5": [0.95, 0.97, 0.97],
            "real_top1": [0.88, 0.8954, 0.89]},
           backbone="vitb16", study="study1", selection="holdout",
           trial_params={"optimizer": "AdamW", "loss": "softmax", "batch_size": 1024, "lr": 2.8e-4,
                         "weight_decay": 0.092, "beta1": 0.56, "beta2": 0.73, "init": "dinov3", "aug_epochs": 10,
                         "epochs": 20})
    steps = np.arange(0, 400, 10)
    for preset in ("abl-baseline", "abl-no-vpe"):
        rows = [{"step": s, "rollout": r, "component": c, "loss": 1.0 / (1 + s) + 0.01}
                for s in steps for r in ("f-iid", "r-iid") for c in ("patch", "cls")]
        _write(root, "pretrain", preset, pd.DataFrame(rows), preset=preset, run_dir=f"runs/{preset}")
    _write(root, "pretrain", "smoke", pd.DataFrame(rows), preset="smoke", run_dir="runs/smoke")  # never plotted
    return root


@pytest.fixture(scope="module")
def tables(store):
    import canvit_model

    # Table 3's parameter counts are checked by test_make_tables; here only its Δ columns matter, so skip
    # building twelve models.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(canvit_model, "canvit_num_params", lambda config: 95_200_000)
        ts = make_tables.build_tables([3, 4, 5, 6, 7, 17, 18], Context(results=store, latency_csvs=[]))
    return {t.number: t for t in ts}


def _row(t, **match):
    (r,) = [r for _, r in t.df.iterrows() if all(r[k] == v for k, v in match.items())]
    return r


def _pct_ci(values, digits=1):
    m, lo, hi = bootstrap_ci(values)
    return f"{100 * m:.{digits}f} ±{100 * (hi - lo) / 2:.2f}"


def test_table06_cells_ci_bold_and_pending(tables):
    t6 = tables[6]
    c2f = _row(t6, Policy="C2F", **{"Res.": "512/32²"})
    for t in (1, 9, 20):
        expected = _pct_ci([ade_miou("c2f", s, t) for s in range(3)])
        assert c2f[f"t = {t}"] == Bold(expected)  # C2F has the highest fake mIoU: bold
        fiid = _row(t6, Policy="F-IID", **{"Res.": "512/32²"})[f"t = {t}"]
        assert fiid == _pct_ci([ade_miou("f-iid", s, t) for s in range(3)])  # not bold
    assert c2f["n"] == 3 and c2f["n (paper)"] == 9
    # t = 0: C2F and F-IID tie (full scene) -> both bold; R-IID lower
    assert isinstance(c2f["t = 0"], Bold) and isinstance(_row(t6, Policy="F-IID", **{"Res.": "512/32²"})["t = 0"], Bold)
    assert not isinstance(_row(t6, Policy="R-IID", **{"Res.": "512/32²"})["t = 0"], Bold)
    # paper columns keep the paper's values and bold
    assert c2f["t = 20 (paper)"] == Bold("44.2 ±0.04")
    # the killed f2c run is not read: the cell is pending with its exact command
    f2c = _row(t6, Policy="F2C", **{"Res.": "512/32²"})["t = 4"]
    assert isinstance(f2c, Pending)
    assert f2c.command == (f"uv run --package canvit-eval canvit-eval ade20k --model {FLAGSHIP} --probe "
                           "ADE20K_PROBE_C32 --data ADE20K --policy f2c --glimpses 21 --seed S --scene-size 512 "
                           "--canvas-grid 32")
    assert "GPU" in f2c.needs and "ADE20K" in f2c.needs and "S = 0..8" in f2c.needs
    big = _row(t6, Policy="C2F", **{"Res.": "1024/64²"})
    assert big["t = 9"] == Bold("45.0 ±0.00") and big["n"] == 1
    # the other model's 0.99 never shows up
    assert "99.0" not in t6.to_markdown() and any("Left out" in n and "runs/mine" in n for n in t6.notes)
    assert t6.counts() == (4 * 8, 12 * 8 - 4 * 8)


def test_table07_in1k(tables):
    t7 = tables[7]
    c2f = _row(t7, Policy="C2F (naive)")
    assert c2f["t = 5"] == Bold(_pct_ci([IN1K_LEVEL["c2f"] + 0.01 + 0.001 * s for s in range(2)], 2))
    assert _row(t7, Policy="F-IID")["t = 5"] == _pct_ci([IN1K_LEVEL["f-iid"] + 0.01 + 0.001 * s for s in range(2)], 2)
    r = _row(t7, Policy="R-IID")["t = 0"]
    assert isinstance(r, Pending) and "--probe DINOV3_PROBE --data IMAGENET --policy r-iid --glimpses 21" in r.command
    assert t7.counts() == (2 * 9, 2 * 9)


def test_table07_rows_beyond_the_paper_are_grouped_by_resolution(tmp_path):
    """Runs at other resolutions / other policies get rows of their own, each beside its resolution's rows."""
    ts = list(range(21))
    for policy, scene, grid in [("c2f", 512, 32), ("c2f", 256, 16), ("eg-c2f", 512, 32), ("f-iid", 1024, 64)]:
        _write(tmp_path, "in1k", f"canvitb16-{policy}-s{scene}-c{grid}-seed0", {"t": ts, "top1": [0.7] * 21},
               model=FLAGSHIP, policy=policy, scene_size=scene, canvas_grid=grid, seed=0)
    (t7,) = make_tables.build_tables([7], Context(results=tmp_path))
    order = [(r["Policy"], r["Res."]) for _, r in t7.df.iterrows()]
    assert [res for _, res in order] == ["256/16²"] + ["512/32²"] * 5 + ["1024/64²"]
    assert order[1:5] == [(p, "512/32²") for p in ("C2F (naive)", "F2C", "F-IID", "R-IID")]  # the paper's rows first
    assert order[5][0] != "C2F (naive)" and "C2F" in order[5][0]  # then ours (entropy-guided C2F) at 512/32


def test_table05_miou_from_t0_of_full_scene_policies_and_dinov3(tables):
    t5 = tables[5]
    c32 = _row(t5, **{"Feat. grid": "32x32", "Model": "CanViT-B (t=0, full scene)"})
    # c2f and f-iid runs (6) share t = 0; r-iid does not start with the full scene and is excluded
    assert c32["mIoU (%)"] == _pct_ci([0.385] * 6) == "38.5 ±0.00"
    assert c32["mIoU (paper)"] == 38.5 and c32["GFLOPs"] == "15.86"
    dino = _row(t5, Model="DINOv3 ViT-B/16", Input="128 px")
    assert dino["mIoU (%)"] == "29.0"
    pend = _row(t5, Model="DINOv3 ViT-S/16", Input="512 px")["mIoU (%)"]
    assert pend.command.endswith("ade20k --dinov3 vits16 --input-px 512 --probe ADE20K_PROBE_VITS16_512PX --data ADE20K")
    assert t5.counts() == (13 + 2, 11)


def test_tables_03_04_reconstruction(tables):
    t4, t3 = tables[4], tables[3]
    base = _row(t4, Preset="canvitb16")
    m, lo, hi = bootstrap_ci([recon("canvitb16", s, 9)[0] for s in range(2)])
    assert base["t = 9 Sp."] == f"{100 * lo:.1f}–{100 * hi:.1f}"
    assert base["t = 9 Sp. (paper)"] == "71.3–71.4" and base["n"] == 2
    m0, lo0, hi0 = bootstrap_ci([recon("canvitb16", s, 0)[1] for s in range(2)])
    assert base["t = 0 CLS"] == f"{100 * lo0:.1f}–{100 * hi0:.1f}"
    assert isinstance(_row(t4, Preset="no-vpe")["t = 9 CLS"], Pending)
    assert t4.counts() == (2 * 4, 10 * 4)
    left_out = [n for n in t4.notes if n.startswith("Left out")]
    assert len(left_out) == 1 and "canvitb16-seed7 (not the paper's protocol: scene_size 128" in left_out[0]
    assert "canvitb16-flagship-seed0 (the flagship release" in left_out[0] and "canvitb16-seed0-limit64" in left_out[0]
    assert left_out[0] in t3.notes
    # with no baseline run, its pending command evaluates the ablation baseline, not the (left out) flagship
    assert f"--model {releases.ABLATION_BASELINE} " in sources.reconstruction("canvitb16").command
    assert "pretrain --preset abl-baseline`" in sources.reconstruction("canvitb16").needs  # its recipe, not canvit-b
    d = _row(t3, Preset="dcan256")
    mb = np.mean([recon("canvitb16", s, 9)[0] for s in range(2)])
    md = np.mean([recon("dcan256", s, 9)[0] for s in range(2)])
    assert d["Δ Sp. Cos"] == f"{100 * (md / mb - 1):.1f}%" and d["Δ Sp. Cos (paper)"] == "-12.0%"
    assert _row(t3, Preset="canvitb16")["Δ CLS Cos"] == "ref"
    k = _row(t3, Preset="no-vpe")["Δ Sp. Cos"]
    assert isinstance(k, Pending) and f"reconstruction --model {releases.table3_row('no-vpe').hub_id} " in k.command
    assert "pretrain --preset abl-no-vpe" in k.needs
    assert t3.counts() == (12 * 2 + 2 * 2, 10 * 2)


def test_tables_17_18_dinov3_probes(tables):
    b = _row(tables[17], Model="ViT-B/16")
    assert b["Best epoch"] == "2 of 3" and b["IN1k top-1 (ours)"] == "85.00" and b["ReaL top-1 (ours)"] == "89.54"
    assert b["ReaL top-1 (official)"] == "89.3" and b["Study"] == "study1 (holdout)"
    s = _row(tables[17], Model="ViT-S/16")["IN1k top-1 (ours)"]
    assert isinstance(s, Pending) and f"dinov3-probes extract --model {releases.dinov3('vits16')} " in s.command
    assert "dinov3-probes export" in s.command
    h = _row(tables[18], Model="ViT-B/16")
    assert (h["Loss"], h["Batch size"], h["Peak LR"], h["(β1, β2)"], h["DINOv3 init"], h["Total epochs"]) == \
        ("softmax", "1024", "2.8e-04", "(0.56, 0.73)", "Yes", "20")
    assert h["Peak LR (paper)"] == "2.8e-04" and h["Optimizer"] == "AdamW"
    assert tables[17].counts() == (2, 8) and tables[18].counts() == (8, 32)


def test_make_tables_populated_writes_summary_and_figures(store, tmp_path):
    out = tmp_path / "out"
    assert make_tables.main(["--results", str(store), "--out", str(out), "--quiet", "--only", "6", "7"]) == 0
    md = (out / "tables.md").read_text()
    assert "| 6       | ADE20K mIoU (%) by policy and timestep (T = 21)       | 32         | 64        | partial  |" in md
    import importlib

    ctx = Context(results=store, latency_csvs=[])
    for n in (4, 6):
        (png,) = make_tables._call(make_tables.load(f"paper.figures.figure{n:02d}").build, out, ctx=ctx)
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    f6 = make_tables.load("paper.figures.figure06")
    series = f6.series(ctx)
    assert set(series) == {(r, c) for r in ("f-iid", "r-iid") for c in ("patch", "cls")}
    assert all(set(runs) == {"abl-baseline", "abl-no-vpe"} for runs in series.values())
    assert f6.left_out(ctx) == ["smoke"]
    d = series[("r-iid", "patch")]["abl-no-vpe"]
    assert d["ema"].iloc[1] == pytest.approx(0.01 * d["loss"].iloc[1] + 0.99 * d["loss"].iloc[0])
    importlib.invalidate_caches()


def test_make_tables_on_an_empty_store(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "none").mkdir()
    assert make_tables.main(["--results", str(tmp_path / "none"), "--out", str(out), "--quiet", "--no-figures",
                             "--format", "latex", "--only", "2", "4", "6", "7", "11", "12", "14", "17", "18"]) == 0
    tables = {t.number: t for t in make_tables.build_tables([2, 4, 6, 7, 11, 12, 14, 17, 18],
                                                            Context(results=tmp_path / "none"))}
    for n in (2, 11, 12, 14):  # from configuration: everything produced
        produced, pending = tables[n].counts()
        assert produced > 0 and pending == 0, n
    for n in (4, 6, 7, 17, 18):  # from results: everything pending, each cell naming its command
        produced, pending = tables[n].counts()
        assert produced == 0 and pending > 0, n
        assert all(p.command.startswith("uv run --package ") for p in tables[n].pending())
    assert tables[6].counts() == (0, 96) and tables[7].counts() == (0, 36) and tables[4].counts() == (0, 48)
    md = (out / "tables.md").read_text()
    assert md.startswith("## Summary: produced vs pending cells")
    assert "| 2       | CanViT-B pretraining hyperparameters" in md
    assert "[P1] `uv run --package canvit-eval canvit-eval ade20k --model" in md
    tex = (out / "tables.tex").read_text()
    assert r"\textbf{38.5 ±0}" in tex and (out / "table06.tex").exists()
    # Table 2: every value rendered from the canvit-b preset equals the paper's
    t2 = tables[2]
    assert t2.df["Same"].eq("yes").all(), t2.df[t2.df["Same"] != "yes"]


def test_hand_written_sidecar_types_and_missing_fields(tmp_path):
    ts = list(range(21))
    _write(tmp_path, "ade20k", "a", {"t": ts, "miou": [0.4] * 21}, model=FLAGSHIP, policy="c2f", scene_size="512",
           canvas_grid=32.0, seed=0)
    _write(tmp_path, "ade20k", "b", {"t": ts, "miou": [0.9] * 21}, model=FLAGSHIP, policy="c2f", scene_size=512)
    (t6,) = make_tables.build_tables([6], Context(results=tmp_path))
    row = _row(t6, Policy="C2F", **{"Res.": "512/32²"})
    assert row["n"] == 1 and row["t = 3"] == Bold("40.0 ±0.00")  # "512" and 32.0 are 512 / 32; "b" fits no row
    assert t6.counts() == (8, 88) and "90.0" not in t6.to_markdown()


def test_pick_model_leaves_out_non_canvit_b_checkpoints_and_limit_runs(tmp_path):
    """A smoke / tiny checkpoint (a local directory whose saved architecture is not CanViT-B) never fills
    the paper's CanViT-B rows, even with the most runs; nor do --limit runs. The notes name them."""
    import json

    tiny = tmp_path / "smoke" / "final"
    tiny.mkdir(parents=True)
    (tiny / "config.json").write_text(json.dumps({"canvit_config": {"backbone_name": "test-tiny",
                                                                    "canvas_num_heads": 2, "canvas_head_dim": 32}}))
    b = tmp_path / "mine"  # a local CanViT-B (e.g. our own canvit-b run): kept
    b.mkdir()
    (b / "config.json").write_text(json.dumps({"canvit_config": {}}))
    df = pd.DataFrame({"run_key": ["t0", "t1", "t2", "b0", "b1-limit8"],
                       "extra.model": [str(tiny)] * 3 + [str(b)] * 2, "t": [0] * 5})
    kept, notes = sources.pick_model(df)
    assert kept["run_key"].tolist() == ["b0"]
    assert notes[0] == f"Ours: runs of model {b}."
    assert any("b1-limit8" in n for n in notes)
    assert any(n.startswith("Left out (not a CanViT-B checkpoint)") and str(tiny) in n and "test-tiny" in n
               and "3 runs" in n for n in notes)
    only_tiny, notes = sources.pick_model(df[df["extra.model"] == str(tiny)])
    assert only_tiny.empty and len(notes) == 1


def test_policy_timestep_table_bold_per_resolution_and_timestep():
    """The builder of Tables 6 and 7: bold = best policy per timestep within a resolution, ours and the paper's
    each; a configuration the paper lacks reads "—" there; extra columns sit between n and the timesteps."""
    def row(v, n=2):
        return {"m": v, "m_lo": v - 0.01, "m_hi": v + 0.01, "n": n}
    summ = {("a", 512, 32, 0): row(0.5), ("b", 512, 32, 0): row(0.4), ("a", 512, 32, 3): row(0.6),
            ("b", 512, 32, 3): row(0.7), ("a", 1024, 64, 0): row(0.1, 1), ("a", 1024, 64, 3): row(float("nan"), 1)}
    configs = [("a", 512, 32), ("b", 512, 32), ("c", 512, 32), ("a", 1024, 64)]
    paper = {("a", 512, 32): ([50, 61], [0.1, 0.2]), ("c", 512, 32): ([51, 60], [0, 0])}
    pend = Pending("cmd", "a GPU")
    t = sources.policy_timestep_table(99, "test", summ, "m", configs, (0, 3), paper, lambda c: pend, ["note"],
                                      labels={"a": "A"}, extra={"x": lambda c: c[0] * 2})
    assert t.columns == ["Policy", "Res.", "n", "x", "t = 0", "t = 0 (paper)", "t = 3", "t = 3 (paper)"]
    assert t.rows == [
        ["A", "512/32²", 2, "aa", Bold("50.0 ±1.00"), "50 ±0.1", "60.0 ±1.00", Bold("61 ±0.2")],
        ["b", "512/32²", 2, "bb", "40.0 ±1.00", "—", Bold("70.0 ±1.00"), "—"],
        ["c", "512/32²", "—", "cc", pend, Bold("51 ±0"), pend, "60 ±0"],
        ["A", "1024/64²", 1, "aa", Bold("10.0 ±1.00"), "—", "nan ±nan", "—"],  # NaN is never bold
    ]
    assert t.ours == ["t = 0", "t = 3"] and t.notes == ["note"] and t.counts() == (6, 2)
