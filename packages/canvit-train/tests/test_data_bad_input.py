"""Issue 20 for the data commands: an export with zero rows is an error (verify says so too), paths are
stored resolved so a resume or a --recompute from elsewhere works, compute-standardizers neither overwrites
nor reads everything before saying the export is too small, Ctrl-C is one line, --help states defaults."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from canvit_train.cli import main as train_cli
from canvit_train.data import export as export_mod
from canvit_train.data import standardizers, verify
from canvit_train.data.smoke import make_smoke_data, smoke_export

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("i20data")
    return root, make_smoke_data(root / "src", num_scenes=12)


def _argv(data, out, scenes=None):
    return ["export-teacher-features", "--teacher", str(data.teacher), "--scenes", str(scenes or data.scenes),
            "--out", str(out), "--shard-size", "8", "--resolution", "32", "--batch-size", "4", "--device", "cpu",
            "--loader-workers", "0", "--results", ""]


def test_an_export_with_zero_rows_is_an_error_and_verify_says_so(data, tmp_path, capsys):
    from canvit_data.synthetic import write_corrupt_image

    _, d = data
    write_corrupt_image(tmp_path / "only" / "broken.jpg")
    out = tmp_path / "out"
    assert train_cli([*_argv(d, out, tmp_path / "only"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("canvit-train export-teacher-features: error: --scenes ") and "0 rows" in err[-1]
    assert verify.main([str(out)]) == 1
    assert "0 rows" in capsys.readouterr().err


def test_paths_are_stored_resolved_so_resume_and_recompute_work_from_anywhere(data, tmp_path, monkeypatch, capsys):
    root, d = data
    monkeypatch.chdir(root)
    rel_scenes, out = os.path.relpath(d.scenes), tmp_path / "feat"
    assert train_cli([*_argv(d, os.path.relpath(out), rel_scenes), "--no-progress"]) == 0
    stored = json.loads((out / "export.json").read_text())
    assert stored["scenes"] == str(d.scenes.resolve()) and stored["teacher"] == str(d.teacher.resolve())
    # the same settings with absolute paths: a resume, not "other settings"
    assert train_cli([*_argv(d, out, d.scenes.resolve()), "--no-progress"]) == 0
    assert "other settings" not in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert verify.main([str(out), "--recompute", "2", "--teacher", str(d.teacher), "--device", "cpu"]) == 0
    assert "recompute: 2 images" in capsys.readouterr().out


def test_compute_standardizers_refuses_to_overwrite_and_checks_the_count_first(data, tmp_path, capsys):
    _, d = data
    smoke_export(d, tmp_path / "feat")
    out = tmp_path / "s.safetensors"
    out.write_bytes(b"precious")
    assert _exit(standardizers.main, [str(tmp_path / "feat"), "--out", str(out), "--num-scenes", "4"]) == 2
    assert "--out" in capsys.readouterr().err.strip().splitlines()[-1] and out.read_bytes() == b"precious"
    assert standardizers.main([str(tmp_path / "feat"), "--out", str(out), "--num-scenes", "4", "--force"]) == 0
    assert out.read_bytes() != b"precious"
    capsys.readouterr()
    assert standardizers.main([str(tmp_path / "feat"), "--out", str(tmp_path / "t.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "--num-scenes 4096: the export" in err and "holds only 12 scenes" in err
    assert "scene/s" not in err  # refused before reading (no progress bar)


def _exit(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def test_ctrl_c_during_an_export_is_one_line_130_and_the_same_command_resumes(data, tmp_path, monkeypatch, capsys):
    _, d = data
    out = tmp_path / "feat"
    real, calls = export_mod.teacher_targets, {"n": 0}

    def interrupted(teacher, scenes):
        calls["n"] += 1
        if calls["n"] == 3:  # inside shard 1
            os.kill(os.getpid(), signal.SIGINT)
        return real(teacher, scenes)

    monkeypatch.setattr(export_mod, "teacher_targets", interrupted)
    assert train_cli(_argv(d, out)) == 130
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert line and line[0].startswith("canvit-train export-teacher-features: interrupted at export w0 ")
    assert line[0].endswith("; run the same command to resume") and "Traceback" not in err
    monkeypatch.setattr(export_mod, "teacher_targets", real)
    assert train_cli(_argv(d, out)) == 0
    assert "1 already complete" in capsys.readouterr().err


@pytest.mark.parametrize("command, expected", [
    ("export-teacher-features", ["--shard-size SHARD_SIZE images per shard file (the paper: 4096) (default: 4096)",
                                 "--resolution RESOLUTION", "(default: 512)", "--batch-size BATCH_SIZE images per "
                                 "teacher forward (default: 64)", "--seed SEED seed of the global permutation "
                                 "(default: 0)", "min(8, CPUs)"]),
    ("verify-features", ["--device DEVICE where --recompute runs the teacher", "--jobs JOBS shards checked "
                         "concurrently", "min(8, CPUs)"]),
])
def test_help_states_defaults(command, expected, capsys):
    assert _exit(train_cli, [command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for e in expected:
        assert e in text, (e, text)


def test_loader_workers_wait_for_the_sha256_verdict_and_never_return_a_corrupt_shard(data, tmp_path):
    import shutil

    from canvit_train.data.loader import FeatureShardLoader

    _, d = data
    smoke_export(d, tmp_path / "good")
    clean = list(zip(range(3), FeatureShardLoader(tmp_path / "good", d.scenes, batch_size=4, num_workers=2), strict=False))
    assert len(clean) == 3  # a whole epoch (12 usable scenes) through 2 workers
    shutil.copytree(tmp_path / "good", tmp_path / "bad")
    bad = tmp_path / "bad" / "shards" / "00001.safetensors"
    raw = bytearray(bad.read_bytes())
    raw[-3] ^= 1  # the last rows' bytes: same size, still finite
    bad.write_bytes(bytes(raw))
    got = []
    with pytest.raises(Exception, match=f"{bad}: checksum mismatch") as e:
        for b in FeatureShardLoader(tmp_path / "bad", d.scenes, batch_size=4, num_workers=2):
            got.append(b.positions)
    assert type(e.value).__name__ == "ShardError"
    assert all(int(p) < 8 for b in got for p in b)  # only positions of shard 0 were ever returned
