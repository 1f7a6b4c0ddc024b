"""Issue 20 on the evaluation side: output locations are checked before any work (an unwritable --results
used to fail after the whole evaluation), and train-probe says truthfully which checkpoint it kept."""

from __future__ import annotations

import pytest

from canvit_data.synthetic import write_ade20k
from canvit_eval.tasks import train_probe
from canvit_eval.cli import main as cli_main
from canvit_model import BACKBONES, ViTConfig

TINY = ViTConfig(dim=32, num_heads=2, depth=2, patch_size=4)


@pytest.mark.parametrize("argv, flag", [
    (["in1k", "--results", "/etc/passwd/res"], "--results"),
    (["ade20k", "--results", "/etc/passwd/res"], "--results"),
    (["visualize", "--out", "/etc/passwd/viz"], "--out"),
    (["train-probe", "--out", "/etc/passwd/probe"], "--out"),
    (["latency", "--out", "/etc/passwd/x/lat.csv"], "--out"),
])
def test_an_output_under_a_file_is_refused_before_any_work(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert f"argument {flag}: cannot create" in err and "/etc/passwd is a file" in err, err


@pytest.mark.parametrize("select, says", [("last", "the last probe (step 4); the best val mIoU was"),
                                          ("best-val", "the best-val probe (val mIoU")])
def test_train_probe_says_which_checkpoint_it_kept(select, says, tmp_path, monkeypatch, make_tiny_canvit, capsys):
    model = make_tiny_canvit(monkeypatch, backbone="tiny", patch_size=4, num_backbone_registers=1, rw_stride=1)
    assert BACKBONES["tiny"] == TINY
    model.save_pretrained(tmp_path / "model")
    data = write_ade20k(tmp_path / "ade", 8, 4, seed=0)
    argv = ["--model", str(tmp_path / "model"), "--data", str(data), "--scene-size", "32", "--canvas-grid", "8",
            "--glimpse-px", "16", "--glimpses", "2", "--steps", "4", "--batch-size", "4", "--num-classes", "4",
            "--out", str(tmp_path / "run"), "--num-workers", "0", "--no-progress", "--device", "cpu",
            "--val-every", "2", "--val-limit", "4", "--val-glimpses", "2", "--select", select]
    assert train_probe.main(argv) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("probe written to")]
    assert line and says in line[0], line
