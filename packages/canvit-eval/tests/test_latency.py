"""canvit-latency: one tiny real run through the subprocess driver (schema, resume) and the in-process worker."""

import argparse
import csv
import subprocess
import sys

import pytest

from canvit_eval import latency


def test_cli_writes_tidy_csv_and_resumes(tmp_path):
    out = tmp_path / "lat.csv"
    cmd = [sys.executable, "-m", "canvit_eval.latency", "--models", "canvit-b", "--scenes", "128",
           "--threads", "1", "--budget-s", "0.05", "--min-iters", "2", "--warmup", "1", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "[1/1] canvit-b scene 128 px (canvas 8², 128 px glimpse), cpu 1T fp32 eager" in r.stdout
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == latency.COLUMNS
        rows = list(reader)
    assert len(rows) >= 2
    assert [int(r["iteration"]) for r in rows] == list(range(len(rows)))
    r0 = rows[0]
    assert (r0["model"], r0["device"], r0["threads"], r0["precision"], r0["compiled"]) == (
        "canvit-b", "cpu", "1", "fp32", "0")
    assert (r0["scene_px"], r0["grid"], r0["glimpse_px"], r0["pass"], r0["peak_mem_mib"]) == ("128", "8", "128", "1", "")
    assert r0["machine"] == latency.cpu_name() and r0["torch"] and r0["date"] and r0["seed"] == "42"
    assert all(float(r["ms"]) > 0 for r in rows)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "1 already in" in again.stdout and "[1/1]" not in again.stdout
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)  # nothing appended


def test_run_config_in_process_dinov3():
    cfg = latency.Config(model="dinov3-b", scene_px=32, device="cpu", threads=1, precision="fp32",
                         compiled=False, pass_index=1)
    res = latency.run_config(cfg, seed=0, warmup=1, budget_s=0.0, min_iters=3, max_iters=3)
    assert len(res["ms"]) == 3 and res["peak_mem_mib"] is None and res["threads"] == 1


def test_plan_is_seeded_and_covers_the_grid():
    args = argparse.Namespace(
        device="cpu", scenes=None, precisions=None, threads=None, compile="auto", models=list(latency.MODELS),
        passes=2, glimpse_px=128, seed=42)
    a, b = latency.plan(args), latency.plan(args)
    assert a == b and len(a) == 2 * 4 * 2 * 2
    assert {c.scene_px for c in a} == {128, 256, 512, 1024} and not any(c.compiled for c in a)
    args.device = "cuda"
    cuda = latency.plan(args)
    assert {c.precision for c in cuda} == {"fp32", "bf16"} and all(c.compiled for c in cuda)
    assert 2048 in {c.scene_px for c in cuda}


def test_rejects_bad_scene(capsys):
    with pytest.raises(SystemExit):
        latency.main(["--scenes", "100", "--dry-run"])
