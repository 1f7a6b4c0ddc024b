"""Issue 20 for dinov3-probes: export never overwrites a probe silently, extract resumes whatever way the paths
are spelled, tune warns when selection rests on few images and says Optuna's experimental note once, and every
flag's --help states its default."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from canvit_data.synthetic import write_image_folder
from canvit_model import DINOv3
from canvit_model.config import ViTConfig
from dinov3_probes import export, extract, tune
from dinov3_probes.cli import main as cli
from dinov3_probes.synthetic import write_gaussian_features


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    torch.set_num_threads(1)
    return write_gaussian_features(tmp_path_factory.mktemp("gauss20"), n_train=200, n_val=100, dim=8, num_classes=3,
                                   separation=3.0, aug_epochs=1)


def test_tune_warns_about_few_selection_images_and_notes_experimental_once(feats, tmp_path, capsys):
    db = tmp_path / "s.db"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tune.main(["--features", str(feats), "--storage", f"sqlite:///{db}", "--study", "s", "--trials", "1",
                          "--max-batch-size", "16", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: model selection rests on only 4 held-out image(s) (--selection-fraction 0.02 of 200" in err
    assert err.count("experimental") == 1, err
    assert not [w for w in caught if "experimental" in str(w.message).lower()]
    # export onto an existing probe: refused unless --force
    out = tmp_path / "probe"
    argv = ["--storage", f"sqlite:///{db}", "--study", "s", "--features", str(feats), "--out", str(out),
            "--no-results", "--threads", "1", "--device", "cpu"]
    assert export.main(argv) == 0
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit) as e:
        export.main(argv)
    assert e.value.code == 2
    assert f"--out {out}: already holds a probe; pass --force" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before
    assert export.main([*argv, "--force"]) == 0


def test_selection_warning_is_silent_with_enough_images():
    cfg = tune.TuneConfig(features="x")
    assert tune.selection_warning(cfg, 1_281_167, 50_000) is None
    assert "only 200 held-out" in tune.selection_warning(tune.TuneConfig(features="x", select_on="val"), 10, 200)


def test_extract_resumes_with_the_paths_spelled_absolute_or_relative(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    DINOv3(ViTConfig(dim=16, num_heads=2, depth=1)).eval().save_pretrained(tmp_path / "tiny")
    write_image_folder(tmp_path / "imagenet" / "val", 4, num_classes=2, seed=2)
    common = ["--resolution", "32", "--batch-size", "4", "--workers", "0", "--part-size", "2", "--device", "cpu",
              "--split", "val"]
    monkeypatch.chdir(tmp_path)
    assert extract.main(["--model", "tiny", "--data", "imagenet", "--out", "feats", *common]) == 0
    monkeypatch.chdir("/")
    assert extract.main(["--model", str(tmp_path / "tiny"), "--data", str(tmp_path / "imagenet"), "--out",
                         str(tmp_path / "feats"), *common]) == 0
    assert "complete (nothing to do)" in capsys.readouterr().out


@pytest.mark.parametrize("command, expected", [
    ("extract", ["--batch-size BATCH_SIZE images per forward (default: 128)", "min(8, CPUs)",
                 "--part-size PART_SIZE images per stored part (the resume unit) (default: 10000)",
                 "--epochs EPOCHS train: augmentation epochs", "(default: 1)"]),
    ("tune", ["--max-batch-size MAX_BATCH_SIZE largest batch size", "(default: 2048)", "--outer-epochs OUTER_EPOCHS "
              "passes over all augmentation epochs", "(default: 2)"]),
    ("export", ["--study STUDY name of the", "--device DEVICE where the trial is retrained",
                "--threads THREADS torch CPU threads (default 0"]),
])
def test_help_states_defaults_and_meaning(command, expected, capsys):
    with pytest.raises(SystemExit):
        cli([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for e in expected:
        assert e in text, (e, text)


def test_workers_default_fits_the_machine(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert extract.build_parser().parse_args(["--model", "m", "--data", "d", "--split", "val", "--out", "o"]).workers == 2
