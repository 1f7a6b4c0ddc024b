import csv
import importlib
from pathlib import Path

from paper.tablelib import Context, Pending


def _load(rel):
    return importlib.import_module("paper." + rel.removesuffix(".py").replace("/", "."))


def _rows():
    from canvit_eval.latency import COLUMNS

    rows = []
    for model, scene, ms in [("canvit-b", 512, [230.0, 221.5]), ("dinov3-b", 512, [2100.0, 2215.0]),
                             ("canvit-b", 1024, [500.0]), ("dinov3-b", 1024, [13000.0])]:
        for i, t in enumerate(ms):
            rows.append({c: "" for c in COLUMNS} | {
                "machine": "Test CPU", "device": "cpu", "threads": "1", "precision": "fp32", "compiled": "0",
                "model": model, "scene_px": str(scene), "grid": str(scene // 16), "pass": "1", "iteration": str(i),
                "ms": str(t), "torch": "x", "date": "2026-11-24", "seed": "42"})
    return rows


def _synthetic(path: Path):
    from canvit_eval.latency import COLUMNS

    rows = _rows()
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def _check_measured(t):
    by = {(r[0], r[1], r[2]): r for r in t.rows}
    m = by[("ours", "Test CPU (1T)", 512)]
    assert m[3] == "222" and m[5] == "2100" and m[7] == "9.5×" and m[8] == "2 / 2"  # min over calls
    assert by[("ours", "Test CPU (1T)", 1024)][7] == "26.0×"


def test_table19_renders_measured_paper_and_unmeasured_rows(tmp_path):
    p = tmp_path / "latency-test.csv"
    _synthetic(p)
    (t,) = _load("tables/table19.py").build(Context(results=tmp_path / "empty", latency_csvs=[p]))
    assert t.number == 19
    by = {(r[0], r[1], r[2]): r for r in t.rows}
    m = by[("ours", "Test CPU (1T)", 512)]
    assert m[3] == "222" and m[5] == "2100" and m[7] == "9.5×" and m[8] == "2 / 2"  # min over calls
    assert by[("ours", "Test CPU (1T)", 1024)][7] == "26.0×"
    assert by[("paper", "AMD Ryzen 9 7950X (1T)", 1024)][3:8] == ["488", "—", "13065", "—", "26.8×"]
    assert by[("paper", "NVIDIA GeForce RTX 4090 (fp32)", 2048)][3:8] == ["13.9", "996", "537", "758", "38.7×"]
    assert len([r for r in t.rows if r[0] == "paper"]) == 30
    gaps = [r for r in t.rows if r[0] == "ours" and isinstance(r[3], Pending)]
    # 1T is measured; 4/8/16/32T and both RTX 4090 precisions are not
    assert len(gaps) == 6 and not any("(1T)" in r[1] for r in gaps)
    assert any(r[3].needs == "a CUDA GPU" and r[3].command.endswith("canvit-latency --device cuda") for r in gaps)
    assert t.counts() == (2 * 2, 6 * 2)  # 2 measured scenes x 2 models; 6 missing configurations x 2 models
    md = t.to_markdown()
    assert "pending [P" in md and "canvit-latency --device cuda` — needs a CUDA GPU" in md
    assert "pending: `uv run --package canvit-eval canvit-latency --device cuda` (needs a CUDA GPU)" in t.to_csv()


def test_table19_reads_the_latency_kind_of_the_results_store(tmp_path):
    import pandas as pd
    from canvit_results import provenance, write_run

    write_run(tmp_path / "res", "latency", "testhost-2026-11-24", pd.DataFrame(_rows()), provenance(),
              extra={"machine": "Test CPU"})
    (t,) = _load("tables/table19.py").build(Context(results=tmp_path / "res", latency_csvs=[]))
    _check_measured(t)
    assert "the `latency` runs in" in t.notes[1]


def test_table19_without_results_marks_everything_unmeasured(tmp_path):
    (t,) = _load("tables/table19.py").build(Context(results=tmp_path / "empty", latency_csvs=[]))
    assert not [r for r in t.rows if r[0] == "ours" and not isinstance(r[3], Pending)]
    assert len([r for r in t.rows if r[0] == "ours"]) == 7
    assert "No measured rows" in t.notes[0]
    assert t.counts() == (0, 14)


def test_figure08_builds_png(tmp_path):
    p = tmp_path / "latency-test.csv"
    _synthetic(p)
    (png,) = _load("figures/figure08.py").build(tmp_path / "out", Context(results=tmp_path / "empty",
                                                                         latency_csvs=[p]))
    assert png.name == "figure08.png" and png.stat().st_size > 10_000


def test_table19_cpu_modes_are_rows_with_their_error(tmp_path):
    """canvit-latency's CPU modes (fp32 plain, fp32-fast, bf16-fast) render as separate rows with the
    recorded max relative difference vs plain fp32; files without the column show "—"."""
    from canvit_eval.latency import COLUMNS

    rows = _rows()
    for precision, err, scale in (("fp32-fast", "4e-07", 0.5), ("bf16-fast", "0.002", 0.3)):
        for r in _rows():
            rows.append(r | {"precision": precision, "ms": str(float(r["ms"]) * scale), "max_rel_diff": err})
    p = tmp_path / "modes.csv"
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (t,) = _load("tables/table19.py").build(Context(results=tmp_path / "empty", latency_csvs=[p]))
    by = {(r[0], r[1], r[2]): r for r in t.rows}
    assert by[("ours", "Test CPU (1T)", 512)][9] == "— / —"
    fast = by[("ours", "Test CPU (1T, fp32 oneDNN fast path)", 512)]
    assert fast[3] == "111" and fast[9] == "4.0e-07 / 4.0e-07"
    assert by[("ours", "Test CPU (1T, bf16 fast path)", 512)][9] == "2.0e-03 / 2.0e-03"
    (png,) = _load("figures/figure08.py").build(tmp_path / "out", Context(results=tmp_path / "empty",
                                                                         latency_csvs=[p]))
    assert png.stat().st_size > 10_000
