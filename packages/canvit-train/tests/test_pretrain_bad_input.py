"""Bad input to `pretrain` that used to train silently or die with a traceback (issue 20): each is refused
with one line naming the input (exit 2) before anything is written or any step uses bad data."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from canvit_train.pretrain.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A smoke export (32 px scenes, shards of 8), its standardizers, and a 3-step run trained from it."""
    from canvit_train.data.smoke import make_smoke_data, smoke_export
    from canvit_train.data.standardizers import fit_standardizers, iter_shard_features, save_standardizers

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("i20")
    src = make_smoke_data(root / "src", num_scenes=16)
    m = smoke_export(src, root / "features")
    save_standardizers(fit_standardizers(iter_shard_features(root / "features"), 8),
                       root / "features/standardizers.safetensors")
    base = ["--preset", "smoke", "--scene-size", str(m.resolution), "--glimpse-size", "16", "--canvas-grid",
            str(m.grid), "--batch-size", "4", "--validate-every", "0", "--workers", "0", "--no-progress",
            "--no-results"]
    run = root / "run"
    assert main([*base, "--features", str(root / "features"), "--scenes", str(src.scenes), "--steps", "3",
                 "--run-dir", str(run)]) == 0
    return {"root": root, "src": src, "manifest": m, "base": base, "run": run}


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def _flip_a_byte(path):
    """XOR the lowest mantissa bit of one float16 in the patch data: same size, still finite (only sha256 sees it)."""
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    off = 8 + n + header["patches"]["data_offsets"][0] + 10
    raw[off] ^= 1
    path.write_bytes(bytes(raw))


def test_a_shard_with_a_flipped_byte_stops_training_before_a_step_uses_it(export, tmp_path, capsys):
    feats = tmp_path / "features"
    shutil.copytree(export["root"] / "features", feats)
    bad = feats / "shards" / "00001.safetensors"
    _flip_a_byte(bad)
    run = tmp_path / "run"
    rc = main([*export["base"], "--features", str(feats), "--scenes", str(export["src"].scenes), "--steps", "6",
               "--checkpoint-every", "1", "--log-every", "1", "--run-dir", str(run)])
    line = _err(capsys)
    assert rc == 2 and line.startswith("pretrain: error: ") and f"{bad}: checksum mismatch" in line, line
    assert not (run / "final").exists()
    steps = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [1] or steps == [1, 2], steps  # only batches of shard 0 (8 positions, one failed image)


def test_resume_with_another_preset_lists_the_differing_recipe_fields(export, capsys):
    before = sorted(p.name for p in (export["run"] / "checkpoints").iterdir())
    rc = main(["--preset", "abl-no-bptt", "--run-dir", str(export["run"]), "--resume", "--features",
               str(export["root"] / "features"), "--scenes", str(export["src"].scenes)])
    line = _err(capsys)
    assert rc == 2 and "--preset abl-no-bptt" in line and "--preset smoke" in line, line
    for field in ("--tbptt-chunk 1", "--stop-probability 0.25", "--model-preset 'no-bptt'", "--teacher"):
        assert field in line, (field, line)
    assert sorted(p.name for p in (export["run"] / "checkpoints").iterdir()) == before


def test_resume_with_another_export_is_one_line(export, tmp_path, capsys):
    from canvit_train.data.smoke import smoke_export

    smoke_export(export["src"], tmp_path / "other", shard_size=4)
    rc = main([*export["base"], "--features", str(tmp_path / "other"), "--scenes", str(export["src"].scenes),
               "--run-dir", str(export["run"]), "--resume"])
    line = _err(capsys)
    assert rc == 2 and f"--features {tmp_path / 'other'}" in line and "shard_size" in line, line


def test_run_dir_that_is_an_export_is_refused_before_anything_is_written(export, capsys):
    feats = export["root"] / "features"
    before = sorted(p.name for p in feats.iterdir())
    rc = main(["--preset", "smoke", "--run-dir", str(feats), "--steps", "2", "--no-progress", "--no-results"])
    line = _err(capsys)
    assert rc == 2 and f"--run-dir {feats}" in line and "export" in line, line
    assert sorted(p.name for p in feats.iterdir()) == before


def test_standardizers_that_are_not_safetensors_name_the_file(export, tmp_path, capsys):
    bogus = tmp_path / "stats.json"
    bogus.write_text('{"patch_mean": [0.0]}\n' * 50)
    rc = main([*export["base"], "--features", str(export["root"] / "features"), "--scenes",
               str(export["src"].scenes), "--standardizers", str(bogus), "--run-dir", str(tmp_path / "run")])
    line = _err(capsys)
    assert rc == 2 and f"--standardizers {bogus}: not a safetensors file" in line, line
    assert not (tmp_path / "run").exists()


def test_empty_scenes_folder_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["--preset", "smoke", "--scenes", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "run"),
               "--no-progress"])
    line = _err(capsys)
    assert rc == 2 and f"--scenes {tmp_path / 'empty'}" in line and "no images" in line, line
    assert "teacher" not in line
    assert not (tmp_path / "run").exists()


def test_recipe_flags_show_a_metavar_and_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--batch-size INT" in out and "--lr-peak FLOAT" in out and "--rollouts STR [STR ...]" in out
    assert "canvit-b 64, smoke 8" in out and " V " not in out
    assert "--workers WORKERS" in out and "min(8, CPUs)" in out


def test_benchmark_shows_progress_and_states_defaults(capsys):
    from canvit_train.pretrain import benchmark

    assert benchmark.main(["--preset", "smoke", "--batch-size", "1", "--steps", "2", "--warmup", "1",
                           "--chunks", "1", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "benchmark (timed)" in err and "3/3" in err, err
    with pytest.raises(SystemExit):
        benchmark.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--preset NAME the recipe whose model and step are timed" in text and "(default: canvit-b)" in text
    assert "--warmup WARMUP untimed steps first" in text and "(default: 2)" in text


def test_ctrl_c_checkpoints_says_one_line_and_exits_130(export, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from canvit_train.pretrain.cli import pretrain_main
    from canvit_train.pretrain import trainer

    real, calls = trainer.train_step, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 2
        return real(*a, **k)

    monkeypatch.setattr(trainer, "train_step", interrupted)
    run = tmp_path / "run"
    rc = pretrain_main([*export["base"], "--features", str(export["root"] / "features"), "--scenes",
                        str(export["src"].scenes), "--steps", "6", "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert line == [f"pretrain: interrupted (SIGINT) at step 2; checkpoint in {run / 'checkpoints'}; "
                    f"continue with --run-dir {run} --resume"], err
    monkeypatch.setattr(trainer, "train_step", real)
    assert pretrain_main([*export["base"], "--features", str(export["root"] / "features"), "--scenes",
                          str(export["src"].scenes), "--steps", "6", "--run-dir", str(run), "--resume"]) == 0
