"""canvit-latency: one tiny real run through the subprocess driver (schema, resume) and the in-process worker."""

import argparse
import csv
import subprocess
import sys

import pytest
import torch

from canvit_eval import latency


def test_cli_writes_tidy_csv_and_resumes(tmp_path):
    out = tmp_path / "lat.csv"
    cmd = [sys.executable, "-m", "canvit_eval.latency", "--models", "canvit-b", "--scenes", "128",
           "--threads", "1", "--precisions", "fp32", "--budget-s", "0.05", "--min-iters", "2", "--warmup", "1", "--out", str(out)]
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
    assert float(r0["max_rel_diff"]) == 0.0  # plain fp32 against itself

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "1 already in" in again.stdout and "[1/1]" not in again.stdout
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)  # nothing appended


def test_run_config_in_process_dinov3():
    cfg = latency.Config(model="dinov3-b", scene_px=32, device="cpu", threads=1, precision="fp32",
                         compiled=False, pass_index=1)
    threads = torch.get_num_threads()
    try:  # run_config sets the process's thread count (it normally runs in a fresh process)
        res = latency.run_config(cfg, seed=0, warmup=1, budget_s=0.0, min_iters=3, max_iters=3)
    finally:
        torch.set_num_threads(threads)
    assert len(res["ms"]) == 3 and res["peak_mem_mib"] is None and res["threads"] == 1
    assert res["max_rel_diff"] == 0.0


@pytest.mark.parametrize("precision,low,high", [("fp32-fast", 0.0, 1e-5), ("bf16-fast", 1e-4, 5e-2)])
def test_cpu_fast_modes_record_their_error(precision, low, high):
    cfg = latency.Config(model="canvit-b", scene_px=32, device="cpu", threads=1, precision=precision,
                         compiled=False, pass_index=1, glimpse_px=32)
    threads = torch.get_num_threads()
    try:
        res = latency.run_config(cfg, seed=0, warmup=0, budget_s=0.0, min_iters=1, max_iters=1)
    finally:
        torch.set_num_threads(threads)
    assert low <= res["max_rel_diff"] <= high, res["max_rel_diff"]


def test_appends_to_a_file_written_before_max_rel_diff(tmp_path):
    legacy = tmp_path / "old.csv"
    legacy.write_text(",".join(latency.LEGACY_COLUMNS) + "\n")
    latency.append_rows(legacy, [{c: "1" for c in latency.COLUMNS}])
    with open(legacy, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == latency.LEGACY_COLUMNS and len(list(reader)) == 1


def test_plan_is_seeded_and_covers_the_grid():
    args = argparse.Namespace(
        device="cpu", scenes=None, precisions=None, threads=None, compile="auto", models=list(latency.MODELS),
        passes=2, glimpse_px=128, seed=42)
    a, b = latency.plan(args), latency.plan(args)
    assert a == b and len(a) == 2 * 4 * 2 * 2 * 3
    assert {c.precision for c in a} == {"fp32", "fp32-fast", "bf16-fast"}
    assert {c.scene_px for c in a} == {128, 256, 512, 1024} and not any(c.compiled for c in a)
    args.device = "cuda"
    cuda = latency.plan(args)
    assert {c.precision for c in cuda} == {"fp32", "bf16"} and all(c.compiled for c in cuda)
    assert 2048 in {c.scene_px for c in cuda}


def test_rejects_bad_scene(capsys):
    with pytest.raises(SystemExit):
        latency.main(["--scenes", "100", "--dry-run"])


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--threads", "0"], "--threads must be >= 1"),
        (["--glimpse-px", "100"], "--glimpse-px must be a positive multiple"),
        (["--glimpse-px", "0"], "--glimpse-px"),
        (["--budget-s", "-1"], "--budget-s"),
        (["--budget-s", "inf"], "--budget-s"),
        (["--budget-s", "nan"], "--budget-s"),
        (["--warmup", "-1"], "--warmup must be >= 0"),
        (["--passes", "0"], "--passes must be >= 1"),
        (["--min-iters", "0"], "--min-iters"),
        (["--min-iters", "5", "--max-iters", "2"], "--max-iters (2) must be >= --min-iters (5)"),
        (["--scenes", "100"], "--scenes"),
        (["--threads", "two"], "--threads"),
        (["--key", "a/b"], "--key"),
        (["--device", "cuda", "--precisions", "bf16-fast"], "--precisions bf16-fast is a CPU mode"),
    ],
)
def test_every_argument_is_validated_with_one_clear_message(argv, needle, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        latency.main([*argv, "--results", str(tmp_path), "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not any(tmp_path.iterdir())  # no work, nothing written


def test_out_must_be_writable_and_ours(tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(SystemExit):
        latency.main(["--out", str(tmp_path / "dir.csv"), "--dry-run"])
    err = capsys.readouterr().err
    assert "--out" in err and "is a folder, not a file" in err, err
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit):
        latency.main(["--out", str(other), "--dry-run"])
    assert "expected the canvit-latency columns" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit):
        latency.main(["--out", str(blocker / "sub" / "lat.csv"), "--dry-run"])
    assert "is a file, so nothing can be created under it" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_an_estimate(tmp_path, capsys):
    assert latency.main(["--results", str(tmp_path), "--key", "k", "--budget-s", "10", "--threads", "1",
                         "--precisions", "fp32", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("  canvit-b") == 4 and out.count("  dinov3-b") == 4
    # 8 configurations x (10 s budget + 6 s start-up + 3 warm-ups x 0.5 s) = 140 s
    assert "estimated duration: about 2 min for 8 configurations" in out
    assert str(tmp_path / "latency" / "k.csv") in out
    assert not any(tmp_path.iterdir())


def test_default_goes_to_the_results_store_not_the_source_tree(tmp_path, monkeypatch):
    from canvit_results import is_complete, load_runs, read_meta

    monkeypatch.chdir(tmp_path)
    argv = ["--models", "dinov3-b", "--scenes", "32", "--threads", "1", "--precisions", "fp32", "--budget-s", "0",
            "--min-iters", "2",
            "--warmup", "0", "--key", "test-run"]
    assert latency.main(argv) == 0
    assert is_complete(tmp_path / "results", "latency", "test-run")
    df = load_runs(tmp_path / "results", "latency")
    assert len(df) == 2 and set(latency.COLUMNS) <= set(df.columns)
    with open(tmp_path / "results" / "latency" / "test-run.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["glimpse_px"] == "" and rows[0]["scene_px"] == "32" and rows[0]["model"] == "dinov3-b"
    meta = read_meta(tmp_path / "results" / "latency" / "test-run.json")
    assert meta["extra"]["machine"] == latency.cpu_name() and meta["provenance"]["seed"] == 42
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert latency.main(argv) == 0  # complete: nothing re-run, nothing changed
    assert is_complete(tmp_path / "results", "latency", "test-run")
