"""`canvit-eval reconstruction` end to end (the cosines' definition: canvit-model tests/test_metrics.py)."""

import pandas as pd
import pytest
import torch
from canvit_data.synthetic import write_ade20k
from canvit_eval.tasks import reconstruction as rec
from canvit_model import DINOv3, ViTConfig
from canvit_results import is_complete, load_runs, read_meta


def test_resolve_model_and_keys():
    from canvit_model import PRESETS

    assert rec.resolve_model("no-reads", None) == (PRESETS["no-reads"].hub_repo, "no-reads", "no-reads")
    assert rec.resolve_model(PRESETS["vit-s"].hub_repo, None) == (PRESETS["vit-s"].hub_repo, "vit-s", "vit-s")
    assert rec.resolve_model("runs/x", "no-vpe") == ("runs/x", "no-vpe", "no-vpe")
    # Table 3's baseline is the ablation baseline; the flagship release gets its own key name
    assert rec.resolve_model("canvitb16", None) == (rec.ABLATION_BASELINE, "canvitb16", "canvitb16")
    assert rec.resolve_model(rec.ABLATION_BASELINE, None)[1:] == ("canvitb16", "canvitb16")
    assert rec.resolve_model(PRESETS["canvitb16"].hub_repo, None)[1:] == ("canvitb16", "canvitb16-flagship")
    with pytest.raises(ValueError, match="--preset"):
        rec.resolve_model("runs/x", None)
    with pytest.raises(ValueError, match="unknown"):
        rec.resolve_model("runs/x", "nope")
    assert rec.run_prefix("no-reads", 3) == "no-reads-seed3"


def test_cli_end_to_end_tiny(tmp_path, tiny_canvit, capsys, only_key):
    m = tiny_canvit
    with torch.no_grad():
        for s in (m.teacher_patch_standardizer, m.teacher_cls_standardizer):
            s.mean.normal_(); s.var.uniform_(0.5, 2); s.fitted.fill_(True)
    m.save_pretrained(tmp_path / "model")
    DINOv3(ViTConfig(dim=16, num_heads=2, depth=1)).save_pretrained(tmp_path / "teacher")
    root = write_ade20k(tmp_path, 2, 5, seed=1)
    argv = ["--model", str(tmp_path / "model"), "--preset", "no-reads", "--teacher", str(tmp_path / "teacher"),
            "--data", str(root), "--scene-size", "64", "--canvas-grid", "4", "--glimpse-px", "32",
            "--glimpses", "4", "--batch-size", "2", "--num-workers", "0", "--no-progress", "--device", "cpu",
            "--results", str(tmp_path / "res")]
    assert rec.main(argv) == 0
    key = only_key(tmp_path / "res", "reconstruction", "no-reads-seed0-t4")
    assert is_complete(tmp_path / "res", "reconstruction", key)
    table = pd.read_csv(tmp_path / "res" / "reconstruction" / f"{key}.csv")
    assert list(table.columns) == ["t", *rec.METRICS] and table.t.tolist() == [0, 1, 2, 3]
    assert ((table[list(rec.METRICS)].abs() <= 1).all().all())
    meta = read_meta(tmp_path / "res" / "reconstruction" / f"{key}.json")
    assert meta["extra"]["preset"] == "no-reads" and meta["extra"]["num_images"] == 5  # validation only
    assert meta["extra"]["num_glimpses"] == 4 and meta["extra"]["seed"] == 0
    assert len(load_runs(tmp_path / "res", "reconstruction")) == 4
    # wrong grid for the statistics: a clear error
    with pytest.raises(SystemExit):
        rec.main([*argv, "--canvas-grid", "8", "--key", "other"])
    assert "--canvas-grid 4" in capsys.readouterr().err


def test_paths_are_checked_before_a_complete_key_is_skipped(tmp_path, capsys, expect_usage_errors, store_complete):
    """A complete key does not hide a typo in --data / --model / --teacher (exit 2 naming the flag); a bad
    --key or --device is a usage error too, not a traceback (exit 1)."""
    root = write_ade20k(tmp_path, 0, 1, size=(32, 32))
    for name in ("model", "teacher"):  # the published layout (only the files' presence is checked before a skip)
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"")
    (tmp_path / "dv3.pth").write_bytes(b"")  # the official DINOv3 layout: a .pth file
    (tmp_path / "empty").mkdir()
    res = tmp_path / "res"
    t = pd.DataFrame({"t": [0], **{m: [0.5] for m in rec.METRICS}})
    good = {"--model": str(tmp_path / "model"), "--preset": "no-reads", "--teacher": str(tmp_path / "teacher"),
            "--data": str(root)}
    for teacher in (tmp_path / "teacher", tmp_path / "dv3.pth"):
        store_complete(rec, ["--device", "cpu", *[x for kv in {**good, "--teacher": str(teacher)}.items() for x in kv]], t, res)

    def main(**bad):
        return rec.main(["--results", str(res), "--device", "cpu"] +
                        [x for k, v in {**good, **bad}.items() for x in (k, v)])

    assert main() == 0 and "nothing to do" in capsys.readouterr().out  # the control
    assert main(**{"--teacher": str(tmp_path / "dv3.pth")}) == 0
    capsys.readouterr()
    expect_usage_errors(main, "canvit-eval reconstruction", [
        ("--data", tmp_path / "ADE", "no such file"),
        ("--data", tmp_path / "empty", "no images"),
        ("--model", tmp_path / "mdl", "no such file"),
        ("--teacher", root, "is missing ['config.json', 'model.safetensors']"),
        ("--key", "a b", "not a valid results name"),
        ("--device", "banana", "not a torch device")])
