"""The loop in one process: checkpoints, signals, non-finite stop, final/ export, metrics, results, CLI."""

import json
import os
import signal

import pandas as pd
import pytest
import torch
from canvit_model import CanViTForPretraining
from canvit_train.pretrain import checkpoint as ckpt
from canvit_train.pretrain.cli import main as cli_main
from canvit_train.pretrain.config import PRESETS
from canvit_train.pretrain.data import NO_DATA_HELP, SyntheticBatches, synthetic_setup
from canvit_train.pretrain.trainer import DataSetup, NonFiniteLoss, RunOptions, train
from safetensors.torch import load_file

CFG = PRESETS["smoke"].replace(scene_size=64, glimpse_size=32, canvas_grid=4, batch_size=4, steps=6,
                               log_every=2, checkpoint_every=3, validate_every=3, validation_glimpses=3,
                               validation_scenes=2, standardizer_samples=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def opts(tmp_path, **kw):
    base = dict(run_dir=tmp_path / "run", device="cpu", progress=False, write_results=False, preset="smoke")
    base.update(kw)
    return RunOptions(**base)


def test_run_writes_checkpoints_metrics_validation_and_a_loadable_final(tmp_path):
    summary = train(CFG, synthetic_setup(CFG, dim=8), opts(tmp_path, write_results=True, results=str(tmp_path / "res")))
    run = tmp_path / "run"
    assert summary["status"] == "finished" and summary["step"] == 6
    assert [c.step for c in ckpt.list_checkpoints(run)] == [3, 6]
    state = ckpt.latest_checkpoint(run).state
    assert state["data_position"] == 6 * 4 and state["config"]["batch_size"] == 4
    assert state["scheduler"]["schedule"] == "warmup-constant" and state["code"]
    assert set(load_file(str(run / "checkpoints/step-000000006/rng.safetensors"))) >= {"torch_cpu"}
    m = pd.read_csv(run / "metrics.csv")
    assert list(m["step"]) == [1, 2, 3, 4, 5, 6]
    for col in ("lr", "grad_norm", "f-iid/loss_patch", "r-iid/loss_cls", "f-iid/cos_patch_raw", "r-iid/cos_cls_std",
                "glimpses_per_s", "data_wait_frac", "peak_mem_gb"):
        assert m[col].notna().all(), col
    assert (m["glimpses_per_rollout"] % 2 == 0).all()
    v = pd.read_csv(run / "validation.csv")
    assert list(v["t"]) == [0, 1, 2, 0, 1, 2] and set(v["step"]) == {3, 6}
    # final/ is the official 0.2 layout and holds the trained weights
    loaded = CanViTForPretraining.from_pretrained(run / "final")
    sd = load_file(str(run / "checkpoints/step-000000006/model.safetensors"))
    for k, t in loaded.state_dict().items():
        assert torch.equal(t, sd[k]), k
    cfg_json = json.loads((run / "final/config.json").read_text())
    assert cfg_json["canvit_config"]["backbone_name"] == "test-tiny" and cfg_json["training"]["steps_done"] == 6
    assert bool(loaded.teacher_patch_standardizer.fitted)
    # loss curves in the results store, tidy
    from canvit_results import load_runs

    df = load_runs(tmp_path / "res", "pretrain")
    assert set(df["rollout"]) == {"f-iid", "r-iid"} and set(df["component"]) == {"patch", "cls"}
    assert len(df) == 6 * 4


def test_two_runs_in_folders_of_one_name_get_two_pretrain_results(tmp_path):
    """The `pretrain` results key carries a digest of the trained weights: runs a/run and b/run (other
    seeds) give two results, and writing the same run again is refused, not a third result."""
    from canvit_results import list_runs, read_meta
    from canvit_train.pretrain.runlog import write_results

    res = tmp_path / "res"
    for sub, seed in (("a", 0), ("b", 1)):
        cfg = CFG.replace(seed=seed, validate_every=0)
        summary = train(cfg, synthetic_setup(cfg, dim=8, validation=False),
                        opts(tmp_path, run_dir=tmp_path / sub / "run", write_results=True, results=str(res)))
        assert summary["status"] == "finished"
    keys = sorted(r.key for r in list_runs(res, "pretrain"))
    assert len(keys) == 2 and all(k.startswith("run-") for k in keys) and keys[0] != keys[1], keys
    digests = {read_meta(r.meta_path)["extra"]["identity"]["fields"]["weights"] for r in list_runs(res, "pretrain")}
    assert len(digests) == 2
    again = write_results(CFG.replace(seed=1, validate_every=0), tmp_path / "b" / "run", 6, torch.device("cpu"),
                          results=str(res), run_name=None, preset="smoke", argv=[])
    assert again is None and len(list_runs(res, "pretrain")) == 2


class NaNAt(SyntheticBatches):
    """Targets become NaN from global sample `bad` on (corrupt data)."""

    bad = 10**9

    def batch(self, j):
        b = super().batch(j)
        if int(b.positions.max()) >= self.bad:
            b.patches[:] = float("nan")
        return b


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = CFG.replace(steps=10, checkpoint_every=2, log_every=1, validate_every=0)
    base = synthetic_setup(cfg, dim=8, validation=False)

    def stream(start, rank, world):
        s = NaNAt(cfg.scene_size, 8, cfg.batch_size, start, rank, world)
        s.bad = 4 * 4 + 2  # a sample of step 5 (1-based)
        return s

    data = DataSetup(train=stream, teacher_dim=8, teacher_grid=base.teacher_grid)
    with pytest.raises(NonFiniteLoss, match="non-finite loss.*step 5.*last good checkpoint"):
        train(cfg, data, opts(tmp_path))
    run = tmp_path / "run"
    last = ckpt.latest_checkpoint(run)
    assert last.step == 4
    assert all(torch.isfinite(t).all() for t in load_file(str(last.path / "model.safetensors")).values())
    assert not (run / "final").exists()
    m = pd.read_csv(run / "metrics.csv")
    assert m["step"].max() == 4  # the bad step's metrics were never written


class SignalAt(SyntheticBatches):
    def __init__(self, *a, at_batch, sig, **kw):
        super().__init__(*a, **kw)
        self.at_batch, self.sig = at_batch, sig

    def batch(self, j):
        if j == self.at_batch:
            os.kill(os.getpid(), self.sig)
        return super().batch(j)


def test_sigterm_checkpoints_and_stops_sigusr1_checkpoints_and_continues(tmp_path):
    cfg = CFG.replace(steps=8, checkpoint_every=100, validate_every=0, log_every=4)

    def data(sig, at):
        return DataSetup(train=lambda s, r, w: SignalAt(cfg.scene_size, 8, cfg.batch_size, s, r, w, at_batch=at, sig=sig),
                         teacher_dim=8, teacher_grid=4)

    s = train(cfg, data(signal.SIGUSR1, 2), opts(tmp_path / "a"))
    assert s["status"] == "finished" and s["step"] == 8
    assert [c.step for c in ckpt.list_checkpoints(tmp_path / "a/run")] == [3, 8]  # on demand at step 3, then the end
    s = train(cfg, data(signal.SIGTERM, 2), opts(tmp_path / "b"))
    assert s["status"] == "interrupted" and s["step"] == 3 and s["stopped_by"] == "SIGTERM"
    assert [c.step for c in ckpt.list_checkpoints(tmp_path / "b/run")] == [3]
    assert not (tmp_path / "b/run/final").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_resume_in_process_equals_uninterrupted(tmp_path):
    cfg = CFG.replace(steps=6, checkpoint_every=2, validate_every=2)
    train(cfg, synthetic_setup(cfg, dim=8), opts(tmp_path / "a"))
    s = train(cfg, synthetic_setup(cfg, dim=8), opts(tmp_path / "b", max_steps=4))
    assert s["step"] == 4 and (tmp_path / "b/run/final").exists()  # --max-steps exports too
    s = train(cfg, synthetic_setup(cfg, dim=8), opts(tmp_path / "b", resume=True))
    assert s["step"] == 6
    a = load_file(str(tmp_path / "a/run/final/model.safetensors"))
    b = load_file(str(tmp_path / "b/run/final/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = pd.read_csv(tmp_path / "a/run/metrics.csv"), pd.read_csv(tmp_path / "b/run/metrics.csv")
    pd.testing.assert_series_equal(ma["loss"], mb["loss"])
    va, vb = pd.read_csv(tmp_path / "a/run/validation.csv"), pd.read_csv(tmp_path / "b/run/validation.csv")
    pd.testing.assert_frame_equal(va, vb)  # validation is deterministic and not repeated by the resume


def test_truncate_csv_drops_rows_after_the_step_and_cut_lines(tmp_path):
    from canvit_train.pretrain.trainer import truncate_csv

    p = tmp_path / "m.csv"
    p.write_text("step,loss\n1,0.5\n2,0.4\n3,0.3\n4")  # the last line cut by a kill
    truncate_csv(p, 5)
    assert p.read_text().splitlines() == ["step,loss", "1,0.5", "2,0.4", "3,0.3"]
    truncate_csv(p, 2)
    assert p.read_text().splitlines() == ["step,loss", "1,0.5", "2,0.4"]


def test_existing_run_needs_resume(tmp_path):
    cfg = CFG.replace(steps=2, checkpoint_every=2, validate_every=0)
    train(cfg, synthetic_setup(cfg, dim=8), opts(tmp_path))
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, synthetic_setup(cfg, dim=8), opts(tmp_path))


def test_checkpoint_restores_optimizer_and_rng(tmp_path):
    import random

    import numpy as np

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    ckpt.save_checkpoint(tmp_path, 1, model, opt, {"data_position": 4})
    expect = (torch.rand(3), random.random(), np.random.rand())
    m2 = torch.nn.Linear(3, 2)
    o2 = torch.optim.AdamW(m2.parameters(), lr=5.0)
    ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path), m2, o2)
    assert (torch.rand(3).tolist(), random.random(), np.random.rand()) == (expect[0].tolist(), expect[1], expect[2])
    assert o2.param_groups[0]["lr"] == 1e-3
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(v, o2.state_dict()["state"][0][k])
    assert not list(tmp_path.glob("checkpoints/.*"))  # no temp directory left


def test_pretrain_without_data_explains_and_makes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main([]) == 2
    err = capsys.readouterr().err
    assert "--preset smoke" in err and "export-teacher-features" in err and "Traceback" not in err
    assert err.strip() == NO_DATA_HELP.strip()
    assert not (tmp_path / "runs").exists()


def test_cli_bad_flag_value_names_the_field(capsys):
    assert cli_main(["--preset", "smoke", "--stop-probability", "1.5"]) == 2
    assert "stop_probability must be in (0, 1]" in capsys.readouterr().err


def test_cli_resume_refuses_to_change_the_recipe(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--preset", "smoke", "--synthetic", "8", "--scene-size", "64", "--glimpse-size", "32", "--canvas-grid", "4",
            "--batch-size", "2", "--steps", "2", "--validate-every", "0", "--standardizer-samples", "4",
            "--run-dir", str(run), "--no-progress", "--no-results", "--device", "cpu"]
    assert cli_main(args) == 0
    assert (run / "final/config.json").exists()
    assert cli_main([*args, "--resume", "--lr-peak", "0.1"]) == 2
    assert "--lr-peak" in capsys.readouterr().err
    assert cli_main(["--run-dir", str(run), "--export-final"]) == 0


def test_help_lists_presets(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    out = capsys.readouterr().out
    assert all(p in out for p in PRESETS) and "torchrun" in out and "--resume" in out


@pytest.mark.parametrize("flags,message", [
    (["--scenes", "/nonexistent/in21k"], "--scenes /nonexistent/in21k: no such file"),
    (["--features", "/nonexistent/export", "--scenes", "/tmp"], "--features /nonexistent/export: no such file"),
    (["--features", "/tmp"], "--features needs --scenes"),
])
def test_cli_bad_data_paths_are_one_line_errors(tmp_path, capsys, flags, message):
    assert cli_main([*flags, "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_tensorboard_logs_every_metric_column_at_every_step(tmp_path):
    pytest.importorskip("tensorboard")
    from canvit_train.pretrain.trainer import metric_columns
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = CFG.replace(steps=4, validate_every=2)
    train(cfg, synthetic_setup(cfg, dim=8), opts(tmp_path, tensorboard=True))
    ev = EventAccumulator(str(tmp_path / "run/tensorboard"), size_guidance={"scalars": 0})
    ev.Reload()
    m = pd.read_csv(tmp_path / "run/metrics.csv")
    tags = set(ev.Tags()["scalars"])
    assert {t for t in tags if not t.startswith("validation/")} == set(metric_columns(cfg)[1:])
    v = pd.read_csv(tmp_path / "run/validation.csv")
    last = v[(v["step"] == 4) & (v["t"] == 2)].iloc[0]
    got = ev.Scalars("validation/cos_patch_raw/t2")
    assert [e.step for e in got] == [2, 4] and got[-1].value == pytest.approx(last["cos_patch_raw"], rel=1e-6)
    for col in ("lr", "grad_norm", "loss", "f-iid/loss_patch", "r-iid/cos_cls_raw", "glimpses_per_s"):
        got = ev.Scalars(col)
        assert [e.step for e in got] == list(m["step"]), col
        assert [e.value for e in got] == pytest.approx(list(m[col]), rel=1e-6, abs=1e-9), col


def test_cli_cpu_training_flag_picks_the_gemm_path(tmp_path, monkeypatch):
    """--cpu-training fp32 (default) runs the oneDNN training GEMMs, eager the plain ops; both train the
    same weights to float rounding."""
    from canvit_model.layers import fast

    if not fast._ONEDNN:
        pytest.skip("this torch build has no oneDNN linear")
    calls = []
    real = fast._TrainLinear.apply
    monkeypatch.setattr(fast._TrainLinear, "apply", lambda *a: calls.append(1) or real(*a))
    args = ["--preset", "smoke", "--synthetic", "8", "--scene-size", "64", "--glimpse-size", "32", "--canvas-grid", "4",
            "--batch-size", "2", "--steps", "2", "--validate-every", "0", "--standardizer-samples", "4",
            "--no-progress", "--no-results", "--device", "cpu"]
    finals = {}
    for mode in ("eager", "fp32"):
        calls.clear()
        assert cli_main([*args, "--run-dir", str(tmp_path / mode), "--cpu-training", mode]) == 0
        assert bool(calls) == (mode == "fp32"), mode
        finals[mode] = load_file(str(tmp_path / mode / "final/model.safetensors"))
    for k, e in finals["eager"].items():
        if e.is_floating_point():
            assert torch.allclose(finals["fp32"][k], e, rtol=1e-4, atol=1e-6), k
