"""`canvit-eval ade20k` / `train-probe` with a path that does not exist: exit 2 and one error line naming the
flag, no traceback (the loaders' FileNotFoundError / ValueError used to escape)."""

import pytest
from canvit_data.synthetic import write_ade20k
from canvit_eval.ade20k import evaluate, train_probe


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
