"""Results keyed by what was evaluated (issue 18): two models in folders both named `final` get two results,
a copied model directory is skipped, another probe / T / glimpse size is a new result; `--save-viewpoints`;
the issue-20 refusals (in1k `--split nosuch`, a probe's recorded settings, train-probe onto another probe)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from canvit_data.synthetic import write_ade20k, write_image_folder
from canvit_eval.harness import batch_generator
from canvit_eval.policies import make_policy
from canvit_eval.tasks import ade20k, in1k, reconstruction, train_probe
from canvit_model import BACKBONES, DINOv3, ViTConfig, save_linear_probe
from canvit_results import list_runs, read_meta

TEACHER_DIM, N_CLASSES, N_IMAGES = 16, 6, 4
GEOM = ["--scene-size", "64", "--canvas-grid", "4", "--glimpse-px", "32", "--glimpses", "2", "--batch-size", "2",
        "--num-workers", "0", "--no-progress", "--device", "cpu"]


def _fit(m):
    with torch.no_grad():
        for s in (m.teacher_patch_standardizer, m.teacher_cls_standardizer):
            s.mean.normal_()
            s.var.uniform_(0.5, 2)
            s.fitted.fill_(True)
    return m


@pytest.fixture
def two_finals(tmp_path, monkeypatch, make_tiny_canvit):
    """Two different models, each in a `final` folder of its own run; ImageNet-style data; two probes."""
    for run, seed in (("runA", 0), ("runB", 1)):
        _fit(make_tiny_canvit(monkeypatch, TEACHER_DIM, seed=seed)).save_pretrained(tmp_path / run / "final")
    write_image_folder(tmp_path / "in1k" / "val", N_IMAGES, num_classes=3, seed=3)
    g = torch.Generator().manual_seed(5)
    for name in ("probe", "probe2"):
        save_linear_probe(tmp_path / name, torch.randn(N_CLASSES, TEACHER_DIM, generator=g), torch.zeros(N_CLASSES))
    return tmp_path


def _in1k(root, model, *extra, probe="probe"):
    return in1k.main(["--model", str(model), "--probe", str(root / probe), "--data", str(root / "in1k"),
                      "--policy", "c2f", "--results", str(root / "res"), *GEOM, *extra])


def _keys(root, kind="in1k"):
    return [r.key for r in list_runs(root / "res", kind)]


def test_two_models_named_final_copies_probes_and_settings(two_finals, monkeypatch, capsys):
    root = two_finals
    assert _in1k(root, root / "runA" / "final") == 0
    assert _in1k(root, root / "runB" / "final") == 0  # identical flags, another model: a second result
    keys = _keys(root)
    assert len(keys) == 2 and all(k.startswith("final-c2f-s64-c4-seed0-") for k in keys)
    metas = [read_meta(root / "res" / "in1k" / f"{k}.json")["extra"] for k in keys]
    assert {m["identity"]["paths"]["model"] for m in metas} == {str((root / r / "final").resolve()) for r in ("runA", "runB")}
    assert len({m["model_label"] for m in metas}) == 2 and all(m["model_label"].startswith("final@") for m in metas)
    assert all(len(m["identity"]["digest"]) == 64 and m["identity"]["fields"]["data"] for m in metas)

    # the same model from a copied (and moved) directory: skipped, nothing evaluated
    shutil.copytree(root / "runA", root / "elsewhere")
    shutil.move(str(root / "runA"), str(root / "moved"))
    capsys.readouterr()
    with monkeypatch.context() as mp:
        mp.setattr(in1k, "in1k_step", lambda *a, **k: pytest.fail("a complete identity was evaluated again"))
        assert _in1k(root, root / "elsewhere" / "final") == 0
        assert _in1k(root, root / "moved" / "final") == 0
    out = capsys.readouterr().out
    assert out.count("already complete") == 2 and "nothing to do" in out

    # a different probe, T or glimpse size: a new result beside the old ones (never a skip, never an overwrite)
    before = {k: (root / "res" / "in1k" / f"{k}.csv").read_bytes() for k in keys}
    assert _in1k(root, root / "moved" / "final", probe="probe2") == 0
    assert len(_keys(root)) == 3
    assert _in1k(root, root / "moved" / "final", "--glimpses", "3") == 0
    assert _in1k(root, root / "moved" / "final", "--glimpse-px", "16") == 0
    assert len(_keys(root)) == 5
    assert "evaluated another identity under the prefix" in capsys.readouterr().err
    assert all((root / "res" / "in1k" / f"{k}.csv").read_bytes() == v for k, v in before.items())
    t3 = [k for k in _keys(root) if read_meta(root / "res" / "in1k" / f"{k}.json")["extra"]["num_glimpses"] == 3]
    assert len(t3) == 1 and len(pd.read_csv(root / "res" / "in1k" / f"{t3[0]}.csv")) == 3


def test_in1k_saves_the_viewpoints_it_used(two_finals):
    root = two_finals
    path = root / "vp" / "in1k.parquet"
    assert _in1k(root, root / "runA" / "final", "--policy", "r-iid", "--seed", "3", "--save-viewpoints", str(path)) == 0
    df = pd.read_parquet(path)
    assert list(df.columns) == ["scene", "t", "center_y", "center_x", "scale"]
    assert len(df) == N_IMAGES * 2 and df["scene"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and df["t"].tolist() == [0, 1] * 4
    # the rows are the policy's draws under the one seeding rule: batch b of --seed 3 uses batch_generator(3, b)
    for b in range(2):
        pol = make_policy("r-iid", batch_size=2, num_glimpses=2, generator=batch_generator(3, b))
        for t in range(2):
            vp = pol.next(t)
            rows = df[(df.t == t) & df.scene.isin([2 * b, 2 * b + 1])]
            assert rows.center_y.tolist() == pytest.approx(vp.centers[:, 0].double().tolist())
            assert rows.center_x.tolist() == pytest.approx(vp.centers[:, 1].double().tolist())
            assert rows.scale.tolist() == pytest.approx(vp.scales.double().tolist())
    (key,) = _keys(root)
    assert read_meta(root / "res" / "in1k" / f"{key}.json")["extra"]["viewpoints"] == str(path.resolve())
    assert not any((root / "res" / ".partial" / "in1k").glob("*.viewpoints"))


def test_in1k_refuses_a_split_the_folder_does_not_have(two_finals, capsys):
    """Issue 20.3: `--split nosuch` used to evaluate the root folder as an ImageFolder (top-1 0.0, rc 0)."""
    with pytest.raises(SystemExit) as e:
        _in1k(two_finals, two_finals / "runA" / "final", "--split", "nosuch")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "error: --split 'nosuch'" in err and "available splits: val" in err
    assert not (two_finals / "res").exists()


def test_reconstruction_needs_no_preset_for_a_local_model_and_saves_viewpoints(tmp_path, monkeypatch,
                                                                               make_tiny_canvit):
    _fit(make_tiny_canvit(monkeypatch, TEACHER_DIM)).save_pretrained(tmp_path / "run" / "final")
    DINOv3(ViTConfig(dim=16, num_heads=2, depth=1)).save_pretrained(tmp_path / "teacher")
    data = write_ade20k(tmp_path, 1, 3, seed=1)
    vp = tmp_path / "rec.parquet"
    argv = ["--model", str(tmp_path / "run" / "final"), "--teacher", str(tmp_path / "teacher"), "--data", str(data),
            "--results", str(tmp_path / "res"), "--save-viewpoints", str(vp), *GEOM]
    assert reconstruction.main(argv) == 0
    (key,) = _keys(tmp_path, "reconstruction")
    assert key.startswith("final-seed0-t2-")
    extra = read_meta(tmp_path / "res" / "reconstruction" / f"{key}.json")["extra"]
    assert extra["preset"] is None and extra["viewpoints"] == str(vp.resolve())
    assert extra["identity"]["paths"]["teacher"] == str((tmp_path / "teacher").resolve())
    df = pd.read_parquet(vp)
    assert len(df) == 3 * 2 and sorted(set(df.scene)) == [0, 1, 2]
    assert df.scale.between(0, 1).all() and df.center_y.between(-1, 1).all()


# -- ADE20K ----------------------------------------------------------------------------------------------

TINY = ViTConfig(dim=32, num_heads=2, depth=2, patch_size=4)
ADE_GEOM = ["--scene-size", "32", "--canvas-grid", "8", "--glimpse-px", "16"]
COMMON = ["--num-workers", "0", "--no-progress", "--device", "cpu"]


@pytest.fixture
def ade(tmp_path, monkeypatch, make_tiny_canvit):
    data = write_ade20k(tmp_path, 8, 4, seed=0)
    make_tiny_canvit(monkeypatch, backbone="tiny", patch_size=4, num_backbone_registers=1,
                     rw_stride=1).save_pretrained(tmp_path / "model")
    assert BACKBONES["tiny"] == TINY
    out = tmp_path / "probe-run"
    train = ["--model", str(tmp_path / "model"), "--data", str(data), *ADE_GEOM, "--glimpses", "2", "--steps", "2",
             "--batch-size", "4", "--warmup-steps", "1", "--num-classes", "4", "--out", str(out), *COMMON]
    assert train_probe.main(train) == 0
    return {"root": tmp_path, "data": data, "probe": out / "probe", "train": train}


def test_ade20k_refuses_settings_its_probe_was_not_trained_for(ade, capsys):
    """Issue 20.4: a probe trained at canvas grid 8 (recorded in its config) evaluated at --canvas-grid 16."""
    base = ["--model", str(ade["root"] / "model"), "--probe", str(ade["probe"]), "--data", str(ade["data"]),
            "--glimpses", "2", "--results", str(ade["root"] / "res"), *COMMON]
    for flag, value, recorded in (("--canvas-grid", "16", "canvas_grid 8"), ("--scene-size", "64", "scene_size 32"),
                                  ("--glimpse-px", "8", "glimpse_px 16")):
        geom = list(ADE_GEOM)
        geom[geom.index(flag) + 1] = value
        with pytest.raises(SystemExit) as e:
            ade20k.main([*base, *geom])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err, err
        assert f"error: {flag} {value} but --probe" in err and f"trained with {recorded}" in err
    assert not list_runs(ade["root"] / "res", "ade20k")
    # the probe's own settings run, and record the viewpoints; the same command again is skipped
    vp = ade["root"] / "ade.parquet"
    assert ade20k.main([*base, *ADE_GEOM, "--save-viewpoints", str(vp)]) == 0
    df = pd.read_parquet(vp)
    assert list(df.columns) == ["scene", "t", "center_y", "center_x", "scale"] and len(df) == 4 * 2
    assert ade20k.main([*base, *ADE_GEOM]) == 0 and "already complete" in capsys.readouterr().out


def test_train_probe_refuses_an_existing_probe_with_other_settings(ade, capsys):
    """Issue 20.7: `train-probe --out <complete probe> --steps 10` used to say "complete; nothing to do"."""
    before = (ade["probe"] / "model.safetensors").read_bytes()
    argv = list(ade["train"])
    argv[argv.index("--steps") + 1] = "10"
    with pytest.raises(SystemExit) as e:
        train_probe.main([*argv, "--lr", "1e-3"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "holds a complete probe trained with other settings" in err and "steps 2 vs 10" in err and "lr " in err
    assert (ade["probe"] / "model.safetensors").read_bytes() == before
    # the same settings (the model given by another path to the same weights): nothing to do
    shutil.copytree(ade["root"] / "model", ade["root"] / "model-copy")
    same = list(ade["train"])
    same[same.index("--model") + 1] = str(ade["root"] / "model-copy")
    assert train_probe.main(same) == 0 and "nothing to do" in capsys.readouterr().out
    cfg = json.loads((ade["probe"] / "config.json").read_text())
    assert len(cfg["training"]["identity"]["model"]) == 64 and cfg["training"]["identity"]["data"]
