"""Optuna search on a persistent SQLite study: speed, pruning, resume after a kill, two workers, export."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch

from canvit_results import load_meta, load_runs
from dinov3_probes import export, tune
from dinov3_probes import evaluate as evaluate_cmd
from dinov3_probes.probe import load_probe
from dinov3_probes.synthetic import write_gaussian_features
from dinov3_probes.tune import count_finished, open_storage

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.fixture
def tmp_path(tmp_path_factory):
    """SQLite commits fsync; on a tmpfs (when there is one) the studies run several times faster."""
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="dinov3-probes-", dir=shm))
        yield d
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("probes")


def _args(feats, db, study, trials, *more):
    return ["--features", str(feats), "--storage", f"sqlite:///{db}", "--study", study, "--trials", str(trials),
            "--max-batch-size", "64", "--threads", "1", *more]


def _study(db, name):
    return optuna.load_study(study_name=name, storage=open_storage(f"sqlite:///{db}", heartbeat=0))


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    torch.set_num_threads(1)
    return write_gaussian_features(tmp_path_factory.mktemp("gauss"), n_train=400, n_val=300, dim=16, num_classes=4,
                                   separation=3.0, aug_epochs=2)


def test_three_trial_study_finishes_in_seconds(feats, tmp_path):
    db = tmp_path / "s.db"
    tune.main(_args(feats, db, "quick", 1))  # pays the one-off imports
    t0 = time.perf_counter()
    assert tune.main(_args(feats, db, "quick", 4)) == 0
    assert time.perf_counter() - t0 < 20  # 3 more trials; about a second on an idle machine
    st = _study(db, "quick")
    assert count_finished(st) == 4
    first = st.trials[0]
    assert first.params["optimizer"] == "adamw" and first.params["ref_lr"] == 4e-6  # the authors' seed trial
    assert len(first.user_attrs["history"]) == 4 and "seed" in first.user_attrs
    assert st.user_attrs["config"]["select_on"] == "holdout"
    assert "packages" in st.user_attrs["provenance"] and st.user_attrs["features"]["num_images"] == 400


def test_tuned_probe_reaches_accuracy_and_export_round_trips(feats, tmp_path):
    db, out, results = tmp_path / "s.db", tmp_path / "probe", tmp_path / "results"
    tune.main(_args(feats, db, "acc", 12, "--no-seed-trials"))
    st = _study(db, "acc")
    assert st.best_value >= 0.85  # held-out top-1 of the best of 12 trials
    export.main(["--storage", f"sqlite:///{db}", "--study", "acc", "--features", str(feats), "--out", str(out),
                 "--results", str(results), "--threads", "1"])
    probe, cfg = load_probe(out)
    assert (probe.in_features, probe.out_features) == (16, 4)
    assert {"in_features", "out_features", "val_results", "trial_params", "config_metadata"} <= set(cfg)
    assert cfg["val_results"]["top1"] >= 0.9  # the stated accuracy (Bayes ~0.95)
    assert cfg["trial_params"]["trial_number"] == st.best_trial.number
    assert cfg["trial_params"]["selection_value"] == pytest.approx(st.best_value)
    from safetensors.torch import load_file

    sd = load_file(str(out / "model.safetensors"))
    assert set(sd) == {"weight", "bias"} and sd["weight"].shape == (4, 16) and sd["weight"].dtype == torch.float32
    # The reloaded probe gives the exported numbers (evaluate subcommand on the same val features).
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        evaluate_cmd.main(["--probe", str(out), "--features", str(feats), "--device", "cpu"])
    got = json.loads(buf.getvalue())
    assert got["top1"] == pytest.approx(cfg["val_results"]["top1"]) and got["real_top1"] == pytest.approx(cfg["val_results"]["real_top1"])
    # Results store: the dinov3-probes kind contract.
    df = load_runs(results, "dinov3-probes")
    assert {"epoch", "top1", "top5", "real_top1"} <= set(df.columns) and len(df) == 4
    assert df["top1"].iloc[-1] == pytest.approx(cfg["val_results"]["top1"])
    meta = load_meta(results, "dinov3-probes")["synthetic-acc"]
    tp = meta["extra"]["trial_params"]
    assert set(tp) == {"optimizer", "loss", "batch_size", "lr", "weight_decay", "beta1", "beta2", "momentum", "init",
                       "aug_epochs", "epochs"}
    assert meta["extra"]["selection"] == "holdout" and tp["aug_epochs"] == 2 and tp["epochs"] == 4
    with pytest.raises(SystemExit, match="already a complete result"):
        export.main(["--storage", f"sqlite:///{db}", "--study", "acc", "--features", str(feats), "--out",
                     str(tmp_path / "p2"), "--results", str(results)])


def test_diverging_trial_is_pruned(tmp_path):
    feats = write_gaussian_features(tmp_path / "big", n_train=400, n_val=100, dim=16, scale=50.0)
    db = tmp_path / "s.db"
    tune.main(_args(feats, db, "prune", 1, "--no-seed-trials", "--loss", "softmax"))
    st = _study(db, "prune")
    st.enqueue_trial({"optimizer": "sgd", "ref_lr": 1e-2, "batch_size_exp": 6, "init": "pytorch", "momentum": 0.99})
    tune.main(_args(feats, db, "prune", 2, "--loss", "softmax"))
    t = _study(db, "prune").trials[-1]
    assert t.params["ref_lr"] == 1e-2
    assert t.state == optuna.trial.TrialState.PRUNED, t.user_attrs
    assert "untrained" in t.user_attrs["pruned_reason"]


def test_killed_study_resumes_from_sqlite(feats, tmp_path):
    db = tmp_path / "s.db"
    cmd = [sys.executable, "-m", "dinov3_probes.cli", "tune", *_args(feats, db, "resume", 200, "--heartbeat", "1")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(0.3)
            if db.exists():
                try:
                    if count_finished(_study(db, "resume")) >= 3:
                        break
                except (KeyError, Exception):
                    pass
            assert proc.poll() is None, "tune exited early"
        else:
            pytest.fail("no progress before the deadline")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {t.number: t.value for t in _study(db, "resume").get_trials(states=FINISHED)}
    assert 3 <= len(before) < 200
    # past the heartbeat grace period (3 s): a trial cut mid-way is failed, then retried. SQLite's now() has
    # 1 s resolution, so 3.5 s could read as 3 s (not stale) and leave the trial RUNNING: wait 5 s.
    time.sleep(5)
    tune.main(_args(feats, db, "resume", len(before) + 2, "--heartbeat", "1"))
    st = _study(db, "resume")
    after = {t.number: t.value for t in st.get_trials(states=FINISHED)}
    assert len(after) == len(before) + 2
    assert all(after[n] == v for n, v in before.items())  # finished trials are kept, not redone
    assert sum(1 for t in st.trials if t.params.get("ref_lr") == 4e-6 and t.params.get("beta1") == 0.9) <= 2
    assert not st.get_trials(states=(optuna.trial.TrialState.RUNNING,))


def test_two_workers_share_one_sqlite_study(feats, tmp_path):
    db = tmp_path / "s.db"
    assert tune.main(_args(feats, db, "shared", 16, "--workers", "2")) == 0
    st = _study(db, "shared")
    finished = st.get_trials(states=FINISHED)
    assert 16 <= len(finished) <= 17  # MaxTrialsCallback: each worker may start one last trial
    assert len({t.number for t in st.trials}) == len(st.trials)
    assert not st.get_trials(states=(optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING))
    workers = {t.user_attrs["worker"] for t in finished}
    assert workers == {0, 1}, workers


def test_resuming_with_other_settings_is_refused(feats, tmp_path):
    db = tmp_path / "s.db"
    tune.main(_args(feats, db, "cfg", 1))
    with pytest.raises(SystemExit, match="select_on"):
        tune.main(_args(feats, db, "cfg", 2, "--select-on", "val"))
    with pytest.raises(SystemExit, match="power of 2"):
        tune.main(_args(feats, db, "other", 2, "--max-batch-size", "48"))


def test_select_on_val_reproduces_authors_objective(feats, tmp_path):
    db = tmp_path / "s.db"
    tune.main(_args(feats, db, "authors", 2, "--select-on", "val"))
    st = _study(db, "authors")
    for t in st.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        last = t.user_attrs["history"][-1]
        assert last["select_top1"] is None and t.value == last["val_real_top1"]


def test_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    """A process killed between creating a trial and its first heartbeat leaves a RUNNING trial with no
    heartbeat; Optuna's stale check ignores it, ours fails it (retry callback: one copy is re-queued)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat=1)
    study = optuna.create_study(storage=storage, study_name="orphans", direction="maximize")
    orphan = study.ask()  # RUNNING, never a heartbeat (what a kill right after creation leaves)
    alive = study.ask()
    storage.record_heartbeat(alive._trial_id)  # a live trial of another worker
    assert tune.fail_orphaned_trials(study, storage, grace_period_s=3600) == []  # too young to judge
    assert tune.fail_orphaned_trials(study, storage, grace_period_s=0) == [orphan.number]
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert states[alive.number] == optuna.trial.TrialState.RUNNING
    assert sum(1 for t in study.trials if t.state == optuna.trial.TrialState.WAITING) == 1  # the retry
