"""Bad input to `canvit-train compute-standardizers`: exit 2 with one error line naming the argument, on a
line of its own (never glued to the end of a progress bar), and no progress bar before the checks."""

import pytest
import torch
from canvit_train.data import standardizers
from canvit_train.data.smoke import make_smoke_data, smoke_export

PROG = "canvit-train compute-standardizers: error:"


def test_negative_num_scenes_names_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        standardizers.main([str(tmp_path), "--out", str(tmp_path / "s.safetensors"), "--num-scenes", "-1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--num-scenes must be >= 1 (got -1)" in err and "scene/s" not in err


def test_missing_directory_fails_before_the_progress_bar(tmp_path, capsys):
    assert standardizers.main([str(tmp_path / "nope"), "--out", str(tmp_path / "s.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(PROG) and "not a teacher-feature export directory" in err
    assert "scene/s" not in err and "Traceback" not in err


def test_too_few_scenes_is_an_error_line_of_its_own(tmp_path, capsys):
    torch.set_num_threads(1)
    data = make_smoke_data(tmp_path, num_scenes=6)
    smoke_export(data, tmp_path / "feat")
    capsys.readouterr()
    assert standardizers.main([str(tmp_path / "feat"), "--out", str(tmp_path / "s.safetensors")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith(PROG) and "--num-scenes" in line for line in lines)
    assert not (tmp_path / "s.safetensors").exists()


def test_dry_run_knows_the_released_teachers_without_the_hub(monkeypatch):
    """`export-teacher-features --dry-run` on an offline machine: no hub request (it used to retry for ~30 s)."""
    import canvit_model.io
    from canvit_train.data import export

    def no_network(*a, **k):
        raise AssertionError("hub request")

    monkeypatch.setattr(canvit_model.io, "resolve_files", no_network)
    assert export.teacher_shape("facebook/dinov3-vitb16-pretrain-lvd1689m") == (16, 768)
    assert export.teacher_shape("facebook/dinov3-vits16-pretrain-lvd1689m") == (16, 384)


def test_list_presets_says_smoke_is_a_tiny_model(capsys):
    from canvit_train.pretrain.cli import main

    assert main(["--list-presets"]) == 0
    lines = {ln.split(":")[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "backbone test-tiny" in lines["smoke"] and "model canvitb16," in lines["canvit-b"]


@pytest.mark.parametrize("command", ["export", "benchmark", "pretrain"])
def test_a_bad_device_is_a_usage_error_before_any_work(command, tmp_path, capsys):
    """`--device` is checked right after parsing: exit 2, one line naming the flag (not after the teacher loads)."""
    from canvit_train.data import export
    from canvit_train.pretrain import benchmark
    from canvit_train.pretrain import cli as pretrain_cli

    main, args = {
        "export": (export.main, ["--scenes", str(tmp_path), "--out", str(tmp_path / "out")]),
        "benchmark": (benchmark.main, ["--preset", "smoke", "--batch-size", "2"]),
        "pretrain": (pretrain_cli.main, ["--preset", "smoke", "--run-dir", str(tmp_path / "run")]),
    }[command]
    with pytest.raises(SystemExit) as e:
        main([*args, "--device", "tpu:7"])
    assert e.value.code == 2
    assert "error: --device tpu:7: not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_results_naming_a_file_is_a_usage_error(tmp_path, capsys):
    from canvit_train.pretrain import cli as pretrain_cli

    (tmp_path / "store").write_text("")
    with pytest.raises(SystemExit) as e:
        pretrain_cli.main(["--preset", "smoke", "--run-dir", str(tmp_path / "run"), "--results", str(tmp_path / "store")])
    assert e.value.code == 2 and "--results: " in capsys.readouterr().err and not (tmp_path / "run").exists()
