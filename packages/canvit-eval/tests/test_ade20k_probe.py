"""`canvit-eval train-probe` and `canvit-eval ade20k` end to end on a generated set and a tiny CanViT."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from canvit_data.synthetic import write_ade20k
from canvit_eval.tasks import ade20k as evaluate, train_probe
from canvit_eval.ade20k.common import canvit_confusion
from canvit_eval.ade20k.data import EvalSet, open_ade20k
from canvit_eval.ade20k.metrics import ConfusionMatrix
from canvit_eval.cli import main as cli_main
from canvit_model import BACKBONES, CanViTForPretraining, DINOv3, SegmentationProbe, ViTConfig
from canvit_results import load_runs, read_meta

NUM_CLASSES = 4  # the generated set's shape classes (annotation 0 = background -> ignored)
# Tiny geometry: 32 px scenes, 16 px glimpses of 4 px patches, an 8 x 8 canvas.
GEOM = ["--scene-size", "32", "--canvas-grid", "8", "--glimpse-px", "16"]
COMMON = ["--num-workers", "0", "--no-progress", "--device", "cpu"]
TINY = ViTConfig(dim=32, num_heads=2, depth=2, patch_size=4)


@pytest.fixture(scope="module")
def env(tmp_path_factory, make_tiny_canvit):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("ade20k")
        data = write_ade20k(root, 48, 16, seed=0)
        model = make_tiny_canvit(mp, backbone="tiny", patch_size=4, num_backbone_registers=1, rw_stride=1)
        assert BACKBONES["tiny"] == TINY
        model.save_pretrained(root / "model")
        out = root / "probe-run"
        argv = ["--model", str(root / "model"), "--data", str(data), *GEOM, "--glimpses", "2", "--steps", "200",
                "--batch-size", "8", "--warmup-steps", "10", "--lr", "1e-2", "--num-classes", str(NUM_CLASSES),
                "--out", str(out), *COMMON]
        assert train_probe.main(argv) == 0
        yield {"root": root, "data": data, "model": root / "model", "probe": out / "probe", "train_argv": argv}


def _eval_argv(env, policy, results, T=3, extra=()):
    return ["--model", str(env["model"]), "--probe", str(env["probe"]), "--data", str(env["data"]), "--policy", policy,
            "--glimpses", str(T), "--seed", "0", *GEOM, "--batch-size", "8", "--results", str(results), *COMMON,
            *extra]


def _chance_miou(env) -> float:
    """The best mIoU of a data-blind predictor: one constant class (the others score 0)."""
    labels = torch.stack([y for _, y in EvalSet(open_ade20k(env["data"], "validation"), 32)])
    best = 0.0
    for c in range(NUM_CLASSES):
        cm = ConfusionMatrix(NUM_CLASSES)
        cm.update(torch.full_like(labels, c), labels)
        best = max(best, cm.miou())
    return best


def test_trained_probe_beats_chance_and_writes_the_results_kind(env, tmp_path, only_key):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BACKBONES, "tiny", TINY)
        assert evaluate.main(_eval_argv(env, "f-iid", tmp_path)) == 0
    df = load_runs(tmp_path, "ade20k")
    assert list(df["t"]) == [0, 1, 2] and df["miou"].between(0, 1).all()
    chance = _chance_miou(env)
    assert chance < 0.2, chance
    # Stated margin: after 200 CPU steps the probe's full-scene (t = 0) mIoU beats the best data-blind
    # predictor by at least 0.2 absolute (observed 0.50 vs 0.10).
    assert df["miou"].iloc[0] >= chance + 0.2, (df["miou"].tolist(), chance)
    meta = read_meta(tmp_path / "ade20k" / f"{only_key(tmp_path, 'ade20k', 'model-f-iid-s32-c8-seed0')}.json")
    for k, v in {"policy": "f-iid", "scene_size": 32, "canvas_grid": 8, "glimpse_px": 16, "num_glimpses": 3,
                 "seed": 0, "model": str(env["model"]), "probe": str(env["probe"])}.items():
        assert meta["extra"][k] == v
    assert meta["provenance"]["config"]["amp_effective"] is False
    # a finished run is skipped, not overwritten
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BACKBONES, "tiny", TINY)
        assert evaluate.main(_eval_argv(env, "f-iid", tmp_path)) == 0


def test_probe_layout_and_training_record(env):
    cfg = json.loads((env["probe"] / "config.json").read_text())
    assert {k: cfg[k] for k in ("embed_dim", "num_classes", "dropout", "use_ln")} == {
        "embed_dim": 32, "num_classes": NUM_CLASSES, "dropout": 0.1, "use_ln": True}
    assert cfg["training"]["config"]["steps"] == 200 and cfg["training"]["step"] == 200
    assert "ln.weight" in load_file(env["probe"] / "model.safetensors")


def test_saved_and_reloaded_probe_gives_identical_numbers_and_bn_is_untouched(env, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BACKBONES, "tiny", TINY)
        model = CanViTForPretraining.from_pretrained(env["model"])
        probe = SegmentationProbe.from_pretrained(env["probe"])
        probe.train()  # evaluation must put it in eval mode itself
        before = {k: v.clone() for k, v in probe.state_dict().items()}
        ds = EvalSet(open_ade20k(env["data"], "validation"), 32)
        cm = ConfusionMatrix(NUM_CLASSES, streams=3)
        for i, (x, y) in enumerate(DataLoader(ds, batch_size=8)):  # a plain loop, not the harness
            cm.counts += canvit_confusion(model, probe, x, y, num_classes=NUM_CLASSES, policy="c2f", num_glimpses=3,
                                          seed=0, batch_index=i, canvas_grid=8, glimpse_px=16, amp=True)
        after = probe.state_dict()
        for k in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked"):
            assert torch.equal(before[k], after[k]), k
        assert not probe.training
        # the same probe saved and reloaded, through the CLI
        probe.save_pretrained(tmp_path / "reloaded")
        argv = _eval_argv(env, "c2f", tmp_path / "res")
        argv[argv.index("--probe") + 1] = str(tmp_path / "reloaded")
        assert evaluate.main(argv) == 0
    df = load_runs(tmp_path / "res", "ade20k")
    assert df["miou"].tolist() == cm.mious()


@pytest.mark.parametrize("policy", ["eg-c2f", "rfs"])
def test_policies_run_through_the_cli(env, tmp_path, policy):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BACKBONES, "tiny", TINY)
        assert cli_main(["ade20k", *_eval_argv(env, policy, tmp_path, T=5, extra=["--limit", "8"])]) == 0
    df = load_runs(tmp_path, "ade20k")
    assert list(df["t"]) == [0, 1, 2, 3, 4]


def test_evaluation_resumes_from_a_partial_state(env, tmp_path, monkeypatch):
    monkeypatch.setitem(BACKBONES, "tiny", TINY)
    full = tmp_path / "full"
    assert evaluate.main(_eval_argv(env, "r-iid", full, extra=["--batch-size", "4"])) == 0
    # interrupt after 2 of 4 batches (a partial state is saved every batch), then rerun
    from canvit_eval.ade20k import common

    real = common.decode_into
    calls = {"n": 0}

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2 * 3:  # 3 timesteps per batch
            raise KeyboardInterrupt
        return real(*a, **k)

    part = tmp_path / "part"
    monkeypatch.setattr(common, "decode_into", crash)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(_eval_argv(env, "r-iid", part, extra=["--batch-size", "4", "--checkpoint-every", "1"]))
    assert (part / ".partial" / "ade20k").is_dir()
    monkeypatch.setattr(common, "decode_into", real)
    assert evaluate.main(_eval_argv(env, "r-iid", part, extra=["--batch-size", "4", "--checkpoint-every", "1"])) == 0
    assert load_runs(part, "ade20k")["miou"].tolist() == load_runs(full, "ade20k")["miou"].tolist()
    assert not list((part / ".partial" / "ade20k").iterdir())


def test_training_resume_equals_an_uninterrupted_run(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BACKBONES, "tiny", TINY)
    base = list(env["train_argv"])
    base[base.index("--steps") + 1] = "6"

    def run(out, steps, extra=()):
        argv = list(base)
        argv[argv.index("--out") + 1] = str(out)
        argv[argv.index("--steps") + 1] = str(steps)
        return train_probe.main([*argv, "--checkpoint-every", "3", *extra])

    assert run(tmp_path / "a", 6) == 0
    # interrupt after the step-3 checkpoint, then rerun the same command
    from canvit_eval.tasks import train_probe as tp

    real_loss = tp._loss
    calls = {"n": 0}

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    monkeypatch.setattr(tp, "_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", 6)
    monkeypatch.setattr(tp, "_loss", real_loss)
    assert not (tmp_path / "b" / "probe").exists() and (tmp_path / "b" / "train_state.safetensors").is_file()
    assert run(tmp_path / "b", 6) == 0
    a = load_file(tmp_path / "a" / "probe" / "model.safetensors")
    b = load_file(tmp_path / "b" / "probe" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a different configuration does not silently continue someone else's state
    (tmp_path / "b" / "probe" / "config.json").unlink()
    with pytest.raises(SystemExit) as e:
        run(tmp_path / "b", 6, extra=["--lr", "1e-3"])
    assert e.value.code == 2 and "error: --out " in capsys.readouterr().err


def test_dinov3_baseline_probe_train_and_eval(env, tmp_path, monkeypatch, only_key):
    monkeypatch.setitem(BACKBONES, "tiny", TINY)
    torch.manual_seed(0)
    DINOv3(TINY).save_pretrained(tmp_path / "dv3")
    out = tmp_path / "dv3-probe"
    assert train_probe.main(["--dinov3", "tiny", "--input-px", "16", "--model", str(tmp_path / "dv3"),
                             "--data", str(env["data"]), "--scene-size", "32", "--steps", "5", "--batch-size", "4",
                             "--num-classes", str(NUM_CLASSES), "--out", str(out), *COMMON]) == 0
    cfg = json.loads((out / "probe" / "config.json").read_text())
    assert cfg["use_ln"] is False and cfg["embed_dim"] == 32
    assert evaluate.main(["--dinov3", "tiny", "--input-px", "16", "--model", str(tmp_path / "dv3"), "--probe",
                          str(out / "probe"), "--data", str(env["data"]), "--scene-size", "32", "--results",
                          str(tmp_path / "res"), *COMMON]) == 0
    df = load_runs(tmp_path / "res", "ade20k-dinov3")
    assert list(df["t"]) == [0] and 0 <= df["miou"].iloc[0] <= 1
    meta = read_meta(tmp_path / "res" / "ade20k-dinov3" / f"{only_key(tmp_path / 'res', 'ade20k-dinov3', 'dinov3-tiny-16px')}.json")
    assert meta["extra"]["backbone"] == "tiny" and meta["extra"]["input_px"] == 16


def test_help_and_bad_arguments(env, capsys, monkeypatch):
    monkeypatch.setitem(BACKBONES, "tiny", TINY)
    for mod in (evaluate, train_probe):
        with pytest.raises(SystemExit) as e:
            mod.main(["--help"])
        assert e.value.code == 0
        assert "example" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--probe", "p", "--data", "d", "--policy", "spiral"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--probe", "p", "--data", "d", "--dinov3", "b"])
    assert e.value.code == 2 and "error: --dinov3 needs --input-px" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate.main(_eval_argv(env, "c2f", "unused", extra=["--glimpse-px", "18"]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: --glimpse-px must be a multiple of the model's patch size 4" in err


def test_validation_and_best_val_selection(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BACKBONES, "tiny", TINY)
    argv = list(env["train_argv"])
    argv[argv.index("--out") + 1] = str(tmp_path / "run")
    argv[argv.index("--steps") + 1] = "4"
    assert train_probe.main([*argv, "--val-every", "2", "--val-limit", "4", "--val-glimpses", "2",
                             "--select", "best-val"]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    vals = [r for r in log if "val_miou" in r]
    assert [r["step"] for r in vals] == [2, 4]
    cfg = json.loads((tmp_path / "run" / "probe" / "config.json").read_text())
    best = max(vals, key=lambda r: r["val_miou"])
    assert cfg["training"]["best_val"] == [best["val_miou"], best["step"]] and cfg["training"]["step"] == best["step"]
    a = load_file(tmp_path / "run" / "probe" / "model.safetensors")
    b = load_file(tmp_path / "run" / "best" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit) as e:
        train_probe.main([*argv, "--select", "best-val"])
    assert e.value.code == 2 and "error: --select best-val needs --val-every" in capsys.readouterr().err


def test_cpu_bf16_path_moves_miou_little(env, capsys):
    """The trained tiny probe evaluated with canvit_model.cpu_inference "eager" / "fp32" (fast) / "bf16": the
    fast fp32 path gives the eager mIoU, bf16 moves it by at most 0.02 (the deltas go to benchmarks/RESULTS.md)."""
    from canvit_model import cpu_inference

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BACKBONES, "tiny", TINY)
        model = CanViTForPretraining.from_pretrained(env["model"])
        probe = SegmentationProbe.from_pretrained(env["probe"])

    def mious(mode: str) -> list[float]:
        ds = EvalSet(open_ade20k(env["data"], "validation"), 32)
        cm = ConfusionMatrix(NUM_CLASSES, streams=3)
        with cpu_inference(mode):
            for i, (x, y) in enumerate(DataLoader(ds, batch_size=8)):
                cm.counts += canvit_confusion(model, probe, x, y, num_classes=NUM_CLASSES, policy="c2f", num_glimpses=3,
                                              seed=0, batch_index=i, canvas_grid=8, glimpse_px=16, amp=False)
        return cm.mious()

    eager, fast, bf16 = mious("eager"), mious("fp32"), mious("bf16")
    with capsys.disabled():
        print(f"\nADE20K tiny fixture mIoU per glimpse: eager {eager}, fp32 fast {fast}, bf16 {bf16}; "
              f"max |bf16 - fp32| = {max(abs(a - b) for a, b in zip(bf16, fast)):.4f}")
    assert fast == pytest.approx(eager, abs=1e-3)
    assert max(abs(a - b) for a, b in zip(bf16, fast)) <= 0.02
