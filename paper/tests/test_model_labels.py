"""Two different models in folders both named `final`, evaluated by `canvit-eval in1k` with identical flags:
two results, and Table 7 shows both, each row labelled `final@<digest>`; `make_tables --model` picks one."""

import torch
from canvit_data.synthetic import write_image_folder
from canvit_eval.tasks import in1k
from canvit_model import BACKBONES, CanViTConfig, CanViTForPretraining, ViTConfig, save_linear_probe
from canvit_results import list_runs, read_meta

from paper import make_tables, sources
from paper.tablelib import Context


def _tiny(seed: int) -> CanViTForPretraining:
    cfg = CanViTConfig(backbone_name="label-tiny", canvas_num_heads=2, canvas_head_dim=16, num_canvas_registers=2)
    torch.manual_seed(seed)
    m = CanViTForPretraining(cfg, teacher_dim=16, teacher_patch_grid=4)
    with torch.no_grad():
        m.teacher_cls_standardizer.fitted.fill_(True)
    return m


def test_two_final_models_get_two_labelled_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BACKBONES, "label-tiny", ViTConfig(dim=32, num_heads=2, depth=2, patch_size=16))
    write_image_folder(tmp_path / "in1k" / "val", 2, num_classes=2, seed=0)
    save_linear_probe(tmp_path / "probe", torch.randn(4, 16, generator=torch.Generator().manual_seed(0)), torch.zeros(4))
    for run, seed in (("runA", 0), ("runB", 1)):
        _tiny(seed).save_pretrained(tmp_path / run / "final")
        assert in1k.main(["--model", str(tmp_path / run / "final"), "--probe", str(tmp_path / "probe"),
                          "--data", str(tmp_path / "in1k"), "--policy", "c2f", "--glimpses", "3",
                          "--scene-size", "64", "--canvas-grid", "4", "--glimpse-px", "32", "--num-workers", "0",
                          "--no-progress", "--device", "cpu", "--results", str(tmp_path / "res")]) == 0
    refs = list_runs(tmp_path / "res", "in1k")
    labels = sorted(read_meta(r.meta_path)["extra"]["model_label"] for r in refs)
    assert len(refs) == 2 and len(set(labels)) == 2 and all(lab.startswith("final@") for lab in labels)

    # tiny models never fill CanViT-B rows; here they stand for two CanViT-B runs (the guard has its own test)
    monkeypatch.setattr(sources, "not_canvit_b", lambda model: None)
    (t7,) = make_tables.build_tables([7], Context(results=tmp_path / "res", latency_csvs=[]))
    policies = list(t7.df["Policy"])
    assert [f"C2F · {lab}" for lab in labels] == [p for p in policies if "·" in p]  # one row per model, labelled
    text = t7.to_markdown()
    assert all(lab in text for lab in labels)
    assert any(n.startswith("Ours: runs of several models") and str(tmp_path / "runA" / "final") in n for n in t7.notes)

    # --model picks one: its rows fill the paper's C2F row, unlabelled; the other model is left out (noted)
    (one,) = make_tables.build_tables([7], Context(results=tmp_path / "res", latency_csvs=[], model=labels[0]))
    assert not any("·" in p for p in one.df["Policy"])
    assert any(n == f"Ours: runs of model {labels[0]}." for n in one.notes)
    c2f = one.df[(one.df["Policy"] == "C2F (naive)") & (one.df["Res."] == "64/4²")].iloc[0]
    assert c2f["n"] == 1 and "pending" not in str(c2f["t = 0"])
    # through the command line too
    assert make_tables.main(["--results", str(tmp_path / "res"), "--only", "7", "--model", labels[1],
                             "--out", str(tmp_path / "out"), "--no-figures", "--quiet"]) == 0
    assert labels[1] in (tmp_path / "out" / "tables.md").read_text() or labels[1] in capsys.readouterr().out
