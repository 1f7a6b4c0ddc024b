"""The `dinov3-probes` command line: subcommands, help with examples, interface flags."""

import pytest

from dinov3_probes.cli import COMMANDS, main


def test_subcommands_and_help(capsys):
    assert set(COMMANDS) == {"extract", "tune", "export", "evaluate"}
    assert main(["--help"]) == 0
    assert main(["nope"]) == 2
    flags = {
        "extract": ["--model", "--data", "--split", "--out", "--resolution", "--epochs", "--real-labels"],
        "tune": ["--features", "--storage", "--study", "--trials", "--workers", "--selection-fraction", "--select-on"],
        "export": ["--storage", "--study", "--features", "--out"],
        "evaluate": ["--probe", "--features"],
    }
    for name, expected in flags.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "Example" in text, name
        for flag in expected:
            assert flag in text, (name, flag)


def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["tune", "--features", str(tmp_path / "none"), "--study", "x"]) == 2
    err = capsys.readouterr().err
    assert "holds no manifest.json" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,flag", [
    (["extract", "--model", "m/x", "--data", "NONE", "--split", "val", "--out", "OUT"], "--data"),
    (["evaluate", "--probe", "NONE", "--features", "OUT"], "--probe"),
])
def test_missing_paths_name_their_flag(tmp_path, capsys, argv, flag):
    argv = [str(tmp_path / a) if a in ("NONE", "OUT") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dinov3-probes: error: {flag} '{tmp_path / 'NONE'}': ") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["extract", "export", "evaluate"])
def test_a_bad_device_is_a_usage_error(command, tmp_path, capsys):
    from dinov3_probes import evaluate, export, extract

    main, args = {
        "extract": (extract.main, ["--model", "facebook/x", "--data", str(tmp_path), "--split", "val",
                                   "--out", str(tmp_path / "out")]),
        "export": (export.main, ["--study", "sqlite:///" + str(tmp_path / "s.db"), "--features", str(tmp_path),
                                 "--out", str(tmp_path / "out")]),
        "evaluate": (evaluate.main, ["--probe", str(tmp_path), "--features", str(tmp_path)]),
    }[command]
    with pytest.raises(SystemExit) as e:
        main([*args, "--device", "tpu:7"])
    assert e.value.code == 2 and "--device tpu:7: not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
