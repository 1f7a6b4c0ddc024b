"""`canvit-eval ade20k` / `train-probe` with a path that does not exist: exit 2 and one error line naming the
flag, no traceback (the loaders' FileNotFoundError / ValueError used to escape)."""

import pytest
import torch
from canvit_data.synthetic import write_ade20k
from canvit_eval.tasks import ade20k as evaluate, train_probe


@pytest.fixture
def ade(tmp_path):
    return write_ade20k(tmp_path, 1, 1, size=(32, 32))


def _fails(main, argv, capsys, prog, flag, value):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: {flag} '{value}': ") and err.count("\n") == 1 and "Traceback" not in err


def test_evaluate_names_the_missing_data_probe_and_model(ade, tmp_path, capsys):
    base = ["--policy", "c2f", "--device", "cpu", "--results", str(tmp_path / "res")]
    prog = "canvit-eval ade20k"
    _fails(evaluate.main, ["--model", "m", "--probe", "p", "--data", str(tmp_path / "none"), *base], capsys,
           prog, "--data", tmp_path / "none")
    _fails(evaluate.main, ["--model", "m", "--probe", str(tmp_path / "no-probe"), "--data", str(ade), *base], capsys,
           prog, "--probe", tmp_path / "no-probe")


def test_train_probe_names_the_missing_data_and_model(ade, tmp_path, capsys):
    base = ["--out", str(tmp_path / "out"), "--device", "cpu"]
    prog = "canvit-eval train-probe"
    _fails(train_probe.main, ["--model", "m", "--data", str(tmp_path / "none"), *base], capsys,
           prog, "--data", tmp_path / "none")
    _fails(train_probe.main, ["--model", str(tmp_path / "no-model"), "--data", str(ade), *base], capsys,
           prog, "--model", tmp_path / "no-model")


def _fake_checkpoint(path):
    """A directory in the published layout (only the files' presence is checked before a skip)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_evaluate_checks_paths_before_skipping_a_complete_key(ade, tmp_path, capsys, store_complete):
    """A complete key in the store does not hide a typo: --data / --probe / --model are checked first."""
    import pandas as pd
    from canvit_results import is_complete

    res = tmp_path / "res"
    model, probe = _fake_checkpoint(tmp_path / "m"), _fake_checkpoint(tmp_path / "p")
    good = {"--model": str(model), "--probe": str(probe), "--data": str(ade)}
    key = store_complete(evaluate, [*[x for kv in good.items() for x in kv], "--device", "cpu"],
                         pd.DataFrame({"t": [0], "miou": [0.5]}), res)
    assert is_complete(res, "ade20k", key) and key.startswith("m-c2f-s512-c32-seed0-")
    argv = lambda **bad: [x for k, v in {**good, **bad}.items() for x in (k, v)] + [
        "--device", "cpu", "--results", str(res)]
    prog = "canvit-eval ade20k"
    assert evaluate.main(argv()) == 0 and "already complete" in capsys.readouterr().out  # the control
    missing = tmp_path / "ADEChallengeData2O16"
    _fails(evaluate.main, argv(**{"--data": str(missing)}), capsys, prog, "--data", missing)
    (tmp_path / "no-ann" / "images" / "validation").mkdir(parents=True)  # the layout, but no annotations dir
    (tmp_path / "no-ann" / "images" / "validation" / "a.jpg").write_bytes(b"")
    _fails(evaluate.main, argv(**{"--data": str(tmp_path / "no-ann")}), capsys, prog, "--data", tmp_path / "no-ann")
    (probe / "model.safetensors").unlink()
    _fails(evaluate.main, argv(), capsys, prog, "--probe", probe)
    _fails(evaluate.main, argv(**{"--probe": str(tmp_path / "p"), "--model": str(tmp_path / "nope")}), capsys,
           prog, "--probe", tmp_path / "p")
    _fake_checkpoint(tmp_path / "p2")
    _fails(evaluate.main, argv(**{"--probe": str(tmp_path / "p2"), "--model": str(tmp_path / "nope")}), capsys,
           prog, "--model", tmp_path / "nope")


def test_train_probe_bad_input_creates_no_output_dir(ade, tmp_path, capsys):
    """--out is created only after every input checked out: a bad --data / --val-data / --model leaves nothing."""
    out = tmp_path / "deep" / "out"
    prog = "canvit-eval train-probe"
    model = _fake_checkpoint(tmp_path / "m")
    base = ["--out", str(out), "--device", "cpu"]
    _fails(train_probe.main, ["--model", str(model), "--data", str(tmp_path / "none"), *base], capsys,
           prog, "--data", tmp_path / "none")
    assert not out.exists() and not out.parent.exists()
    _fails(train_probe.main, ["--model", str(model), "--data", str(ade), "--val-every", "5", "--val-data",
                              str(tmp_path / "none"), *base], capsys, prog, "--val-data", tmp_path / "none")
    _fails(train_probe.main, ["--model", str(tmp_path / "no-model"), "--data", str(ade), *base], capsys,
           prog, "--model", tmp_path / "no-model")
    _fails(train_probe.main, ["--model", str(model), "--data", str(ade), *base], capsys,  # a model that won't load
           prog, "--model", model)
    assert not out.parent.exists()
    # --out holding a complete probe: a bad --data is still an error (not "nothing to do")
    (out / "probe").mkdir(parents=True)
    (out / "probe" / "config.json").write_text("{}")
    _fails(train_probe.main, ["--model", str(model), "--data", str(tmp_path / "none"), *base], capsys,
           prog, "--data", tmp_path / "none")
    assert sorted(p.name for p in out.iterdir()) == ["probe"]
    # --out naming a file: a usage error, not a crash at mkdir
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as e:
        train_probe.main(["--model", str(model), "--data", str(ade), "--out", str(tmp_path / "f"), "--device", "cpu"])
    assert e.value.code == 2 and f"--out: '{tmp_path / 'f'}' is a file" in capsys.readouterr().err


NO_CUDA = "banana" if torch.cuda.is_available() else "cuda:7"  # a --device this machine cannot use
EVALUATE = ["--model", "m", "--probe", "p", "--results"]  # + the output path
TRAIN = ["--model", "m", "--out"]


@pytest.mark.parametrize("main, argv, message", [
    (evaluate.main, [*EVALUATE, "OUT", "--device", "banana"], "--device banana: not a torch device"),
    (evaluate.main, [*EVALUATE, "OUT", "--name", "a b"], "--name 'a b': key="),
    (evaluate.main, [*EVALUATE, "OUT", "--dinov3", "b"], "--dinov3 needs --input-px"),
    (train_probe.main, [*TRAIN, "OUT", "--device", NO_CUDA], f"--device {NO_CUDA}: "),
    (train_probe.main, [*TRAIN, "OUT", "--lr", "0"], "--lr must be > 0"),
    (train_probe.main, [*TRAIN, "OUT", "--select", "best-val"], "--select best-val needs --val-every"),
])
def test_argument_errors_after_parsing_exit_2(ade, tmp_path, capsys, main, argv, message):
    """Checks made after argparse are usage errors too: exit 2, "PROG: error: ..." naming the flag, no
    traceback, nothing created (they used to exit 1 through SystemExit("..."))."""
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a for a in argv] + ["--data", str(ade)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    prog = "canvit-eval ade20k" if main is evaluate.main else "canvit-eval train-probe"
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"{prog}: error: {message}")
    assert not out.exists()
