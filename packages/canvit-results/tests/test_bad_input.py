"""Issue 20 in the shared plumbing: a missing store passed explicitly, a tampered table, output locations
checked before work starts, and Ctrl-C as one line with exit status 130."""

from __future__ import annotations

import argparse
import os
import signal

import pandas as pd
import pytest

from canvit_results import load_meta, load_runs, write_run
from canvit_results.cli import HelpFormatter, default_workers, dispatch, output_dir, output_file, run_main, store_dir


def test_load_runs_on_an_explicit_missing_store_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_runs(tmp_path / "nonexistent", "ade20k")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_meta(str(tmp_path / "nonexistent"), "ade20k")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_runs(tmp_path / "file", "ade20k")
    # the default store, not created yet, is simply empty; so is an explicit one with missing_ok
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CANVIT_RESULTS", raising=False)
    assert load_runs(None, "ade20k").empty
    assert load_runs(tmp_path / "nonexistent", "ade20k", missing_ok=True).empty
    # an existing store without this kind is empty, not an error
    (tmp_path / "store").mkdir()
    assert load_runs(tmp_path / "store", "ade20k").empty


def test_a_table_that_no_longer_matches_its_sidecar_is_noted_on_stderr(tmp_path, capsys):
    ref = write_run(tmp_path, "ade20k", "a", pd.DataFrame({"t": [0], "miou": [0.5]}), {"seed": 0})
    write_run(tmp_path, "ade20k", "b", pd.DataFrame({"t": [0], "miou": [0.6]}), {"seed": 0})
    ref.table_path.write_text("t,miou\n0,0.9\n")
    df = load_runs(tmp_path, "ade20k")
    assert list(df["run_key"]) == ["b"]
    err = capsys.readouterr().err
    assert f"{ref.table_path} no longer matches the sha256 recorded in a.json" in err and "not done" in err
    load_runs(tmp_path, "ade20k")
    assert capsys.readouterr().err == ""  # once per table


@pytest.mark.parametrize("validator", [output_dir, store_dir])
def test_output_dirs_are_checked_before_work(validator, tmp_path):
    (tmp_path / "file").write_text("x")
    assert validator(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert validator(str(tmp_path)) == str(tmp_path)
    assert validator("") == ""
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        validator(str(tmp_path / "file"))
    with pytest.raises(argparse.ArgumentTypeError, match=f"cannot create .*{tmp_path / 'file'} is a file"):
        validator(str(tmp_path / "file" / "res"))
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(argparse.ArgumentTypeError, match="not writable"):
            validator(str(ro / "x"))


def test_output_files_are_checked_before_work(tmp_path):
    (tmp_path / "file").write_text("x")
    assert output_file(str(tmp_path / "a" / "b.csv")) == str(tmp_path / "a" / "b.csv")
    assert output_file(str(tmp_path / "file")) == str(tmp_path / "file")
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        output_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match="cannot create"):
        output_file("/etc/passwd/res/out.csv")


def test_a_results_flag_under_a_file_is_a_usage_error(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--results", type=store_dir)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--results", "/etc/passwd/res"])
    assert e.value.code == 2
    assert "argument --results: cannot create '/etc/passwd/res': /etc/passwd is a file" in capsys.readouterr().err


def test_ctrl_c_is_one_line_naming_the_progress_and_exit_130(capsys):
    from tqdm import tqdm

    def long_job(argv):
        with tqdm(total=10, desc="export w0") as bar:
            for i in range(10):
                bar.update(1)
                if i == 3:
                    os.kill(os.getpid(), signal.SIGINT)
        return 0

    before = signal.getsignal(signal.SIGINT)
    assert run_main("canvit-train export-teacher-features", long_job, []) == 130
    assert signal.getsignal(signal.SIGINT) is before  # restored
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "interrupted" in ln]
    assert lines == ["canvit-train export-teacher-features: interrupted at export w0 4/10; "
                     "run the same command to resume"]


def test_dispatch_turns_keyboard_interrupt_into_130(capsys, monkeypatch, tmp_path):
    mod = tmp_path / "i20_sleepy.py"
    mod.write_text("RESUME_HINT = 'resume with --resume'\ndef main(argv):\n    raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert dispatch("prog", "d", {"job": ("i20_sleepy", "h")}, ["job"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("prog job: interrupted at ") \
        and err.strip().endswith("; resume with --resume")


def test_default_workers_fits_the_machine(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_workers() == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert default_workers() == 8
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_workers() == 1


def test_help_formatter_states_every_default(capsys):
    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    p.add_argument("--batch-size", type=int, default=64, help="images per batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="say less")
    p.add_argument("--device", default="auto", help="cpu or cuda (default: cuda when available)")
    text = " ".join(p.format_help().split())
    assert "images per batch (default: 64)" in text and "--seed SEED (default: 0)" in text
    assert "say less" in text and "say less (default" not in text
    assert text.count("default") == 3
