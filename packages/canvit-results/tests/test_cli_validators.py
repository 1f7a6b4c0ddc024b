"""The shared argparse validators and device picker of canvit_results.cli."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from canvit_results.cli import float_in, int_at_least, pick_device


@pytest.mark.parametrize("lo, text, value", [(1, "1", 1), (1, "40000", 40000), (0, "0", 0), (-2, "-2", -2)])
def test_int_at_least_accepts(lo, text, value):
    assert int_at_least(lo, "--n")(text) == value


@pytest.mark.parametrize("lo, text, message", [
    (1, "0", "--steps must be an integer >= 1, got 0"),
    (0, "-1", "--steps must be an integer >= 0, got -1"),
    (1, "abc", "--steps must be an integer >= 1, got 'abc'"),
    (1, "1.5", "--steps must be an integer >= 1, got '1.5'"),
])
def test_int_at_least_rejects_with_name_and_range(lo, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        int_at_least(lo, "--steps")(text)
    assert str(e.value) == message


def test_int_at_least_without_name():
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected an integer >= 1, got 0$"):
        int_at_least(1)("0")


def test_argparse_reports_flag_and_range(capsys):
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int_at_least(1))
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--steps", "0"])
    assert e.value.code == 2
    assert "argument --steps: expected an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("kw, text, ok", [
    ({}, "0", True), ({}, "1", True), ({}, "0.5", True), ({}, "-0.01", False), ({}, "1.01", False),
    ({"hi_open": True}, "1", False), ({"hi_open": True}, "0.999", True),
    ({"lo_open": True}, "0", False), ({"lo_open": True}, "1e-9", True),
    ({}, "nan", False), ({}, "inf", False), ({}, "x", False),
])
def test_float_in(kw, text, ok):
    parse = float_in(0, 1, "--dropout", **kw)
    if ok:
        assert parse(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=r"^--dropout must be in [\[(]0, 1[\])], got "):
            parse(text)


def test_float_in_message_shows_interval():
    with pytest.raises(argparse.ArgumentTypeError) as e:
        float_in(0, 1, "--dropout", hi_open=True)("1.5")
    assert str(e.value) == "--dropout must be in [0, 1), got 1.5"
    with pytest.raises(argparse.ArgumentTypeError) as e:
        float_in(0, 1, lo_open=True)("0")
    assert str(e.value) == "expected a number in (0, 1], got 0"


def test_pick_device_default_and_auto():
    import torch

    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(None).type == want
    assert pick_device("auto").type == want
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_bad_name_exits_naming_the_flag():
    with pytest.raises(SystemExit, match=r"^--dev banana: not a torch device"):
        pick_device("banana", flag="--dev")


def test_pick_device_cuda_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit, match=r"^--device cuda:0: CUDA is not available on this machine \(use --device cpu\)$"):
        pick_device("cuda:0")


def test_cli_module_does_not_import_torch():
    code = "import sys, canvit_results, canvit_results.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_pick_device_with_parser_is_a_usage_error(capsys):
    """Given the parser, a bad --device exits 2 with "PROG: error: ..." (the argparse convention), no traceback."""
    p = argparse.ArgumentParser(prog="tool")
    with pytest.raises(SystemExit) as e:
        pick_device("banana", parser=p)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "tool: error: --device banana: not a torch device (e.g. cpu, cuda, cuda:1, auto)"
    assert "Traceback" not in err
    assert pick_device("cpu", parser=p).type == "cpu"


def test_store_dir_refuses_a_file_at_parse_time(tmp_path, capsys):
    import argparse

    import pytest
    from canvit_results.cli import store_dir

    ap = argparse.ArgumentParser(prog="tool")
    ap.add_argument("--results", type=store_dir)
    (tmp_path / "f.csv").write_text("x")
    assert ap.parse_args(["--results", str(tmp_path)]).results == str(tmp_path)
    assert ap.parse_args(["--results", str(tmp_path / "new")]).results == str(tmp_path / "new")  # made later
    with pytest.raises(SystemExit) as e:
        ap.parse_args(["--results", str(tmp_path / "f.csv")])
    assert e.value.code == 2 and "argument --results: " in capsys.readouterr().err
