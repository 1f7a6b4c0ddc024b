"""`dinov3-probes tune`: Optuna search over the App. H.3 probe space, on a persistent, shareable study.

Example (ViT-B/16 features from `dinov3-probes extract`; 100 trials, 2 processes on one GPU):

    dinov3-probes tune --features features/vitb16 --storage sqlite:///studies/vitb16.db \\
        --study vitb16-holdout --trials 100 --workers 2

- Selection: the objective is top-1 on a held-out part of the *training* images (--selection-fraction,
  default 2%, excluded from training in every augmentation epoch), so the validation accuracy reported
  by `export` is not the number that was optimized. `--select-on val` reproduces the authors' protocol
  (train on all training rows, maximize final-epoch ReaL top-1 on val, or top-1 without ReaL labels).
- Pruning: a trial whose selection loss (val loss with --select-on val) exceeds its untrained loss, or
  goes non-finite, after any epoch is pruned.
- Storage: any Optuna storage URL. sqlite:///FILE (default FEATURES/optuna.db) is embedded and resumable;
  postgresql://... / mysql://... share a study across machines; journal:///FILE uses Optuna's journal file
  (file locks; for NFS). `--trials N` is the number of finished (complete + pruned) trials to reach:
  re-running the same command resumes a killed study, and N + more extends it.
- `--workers W` runs W processes on the study (each loads the features onto its device: on one GPU that
  is W copies; give several with --device cuda:0,cuda:1). Other machines may run the same command.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .data import SELECT_ON

SEARCH_LOSS = ("search", "softmax", "sigmoid")
FINISHED = ("COMPLETE", "PRUNED")
BETA2_MAX = 0.9999  # beta2 = beta1 + gap * (1 - beta1) reaches 1.0 at gap = 1; AdamW needs beta2 < 1


@dataclass
class TuneConfig:
    """Everything a trial depends on besides its sampled parameters (stored on the study)."""

    features: str
    selection_fraction: float = 0.02
    select_on: str = "holdout"
    seed: int = 0
    max_batch_size: int = 2048
    outer_epochs: int = 2
    warmup_fraction: float = 0.1
    loss: str = "search"
    max_aug_epochs: int | None = None
    real_labels: str | None = None

    def check(self) -> None:
        if self.select_on not in SELECT_ON:
            raise ValueError(f"--select-on {self.select_on!r}; valid: {', '.join(SELECT_ON)}")
        if not 0.0 < self.selection_fraction < 1.0 and self.select_on == "holdout":
            raise ValueError(f"--selection-fraction {self.selection_fraction}: must be in (0, 1) with --select-on holdout")
        mb = self.max_batch_size
        if mb < 4 or mb & (mb - 1):
            raise ValueError(f"--max-batch-size {mb}: must be a power of 2 >= 4 (batch sizes are max/4, max/2, max)")
        if self.outer_epochs < 1:
            raise ValueError(f"--outer-epochs {self.outer_epochs}: must be >= 1")
        if self.loss not in SEARCH_LOSS:
            raise ValueError(f"--loss {self.loss!r}; valid: {', '.join(SEARCH_LOSS)}")


# Settings that must not change when a study is resumed or shared (they change what a trial means).
_STUDY_KEYS = ("selection_fraction", "select_on", "seed", "max_batch_size", "outer_epochs", "warmup_fraction",
               "loss", "max_aug_epochs")


def suggest(trial: Any, cfg: TuneConfig):
    """Sample one App. H.3 point. Parameter names are the study's columns."""
    from .train import ProbeParams

    top = int(math.log2(cfg.max_batch_size))
    optimizer = trial.suggest_categorical("optimizer", ["adamw", "sgd"])
    ref_lr = trial.suggest_float("ref_lr", 1e-7, 1e-2, log=True)
    batch_size = 2 ** trial.suggest_int("batch_size_exp", top - 2, top)
    init = trial.suggest_categorical("init", ["dinov3", "pytorch"])
    loss = trial.suggest_categorical("loss", ["softmax", "sigmoid"]) if cfg.loss == "search" else cfg.loss
    kw: dict[str, Any] = {}
    if optimizer == "adamw":
        kw["weight_decay"] = trial.suggest_float("weight_decay", 0.0, 0.1)
        beta1 = trial.suggest_float("beta1", 0.1, 0.99, log=True)
        gap = trial.suggest_float("beta2_gap", 0.01, 1.0, log=True)
        kw["beta1"], kw["beta2"] = beta1, min(beta1 + gap * (1.0 - beta1), BETA2_MAX)
    else:
        kw["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)
    return ProbeParams(optimizer=optimizer, ref_lr=ref_lr, batch_size=batch_size, init=init, loss=loss, **kw)


def seed_trials(cfg: TuneConfig) -> list[dict[str, Any]]:
    """The authors' four starting points (batch = max, PyTorch init), enqueued into a new study."""
    top = int(math.log2(cfg.max_batch_size))
    base = {"batch_size_exp": top, "init": "pytorch"}
    return [
        {**base, "optimizer": "adamw", "ref_lr": 4e-6, "beta1": 0.9, "beta2_gap": 0.99, "weight_decay": 0.0},
        {**base, "optimizer": "adamw", "ref_lr": 5e-6, "beta1": 0.9, "beta2_gap": 0.99, "weight_decay": 1e-2},
        {**base, "optimizer": "adamw", "ref_lr": 4e-6, "beta1": 0.7, "beta2_gap": 0.99, "weight_decay": 0.0},
        {**base, "optimizer": "sgd", "ref_lr": 5e-4, "momentum": 0.85},
    ]


def objective_value(row: dict[str, Any], select_on: str) -> float:
    """What the study maximizes: held-out top-1, or (authors) val ReaL top-1, else val top-1."""
    if select_on == "holdout":
        return row["select_top1"]
    return row["val_real_top1"] if row["val_real_top1"] is not None else row["val_top1"]


def selection_loss(row: dict[str, Any], select_on: str) -> float:
    return row["select_loss"] if select_on == "holdout" else row["val_loss"]


def open_storage(url: str, heartbeat: int = 60):
    """An Optuna storage for `url`. SQLite gets a 60 s lock timeout so several processes can share it;
    RDB storages get a heartbeat, so trials of a killed process are failed and retried once."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        rest = url[len("journal:"):]
        path = rest[2:] if rest.startswith("//") else rest  # journal:///abs/file or journal:relative/file
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):].split("?", 1)[0]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        # pysqlite starts no transaction on SELECT, so two processes could both pop the same enqueued trial
        # (optuna issues #4002, #4621). Autocommit driver + an explicit BEGIN IMMEDIATE per transaction makes
        # each read-check-update atomic; the 60 s busy timeout lets the others wait their turn.
        engine_kwargs["connect_args"] = {"timeout": 60, "isolation_level": None}
    kw: dict[str, Any] = {}
    # heartbeats and the retry callback are marked experimental in Optuna; they are what we want, and `main`
    # says so once (EXPERIMENTAL_NOTE) instead of Optuna's warning in every process and every storage opened
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if heartbeat > 0:
            retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
            name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in _rdb_params() else "failed_trial_callback"
            kw = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat, name: retry(max_retry=1)}
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
    if url.startswith("sqlite:"):
        from sqlalchemy import event

        event.listen(storage.engine, "begin", _begin_immediate)
    return storage


def fail_orphaned_trials(study: Any, storage: Any, grace_period_s: float) -> list[int]:
    """Fail (and hand to the retry callback) RUNNING trials that never recorded a heartbeat and started
    more than `grace_period_s` ago: a process killed between creating a trial and its first heartbeat
    leaves such a trial, which Optuna's stale-trial check (heartbeats only) would keep RUNNING forever.
    A live trial records its first heartbeat right after it starts, so it is never older than the grace
    period without one. Returns the failed trial numbers."""
    import datetime as dt

    import optuna
    from sqlalchemy import text

    engine = getattr(storage, "engine", None)  # the RDBStorage itself (the study holds a caching wrapper)
    if engine is None or storage.get_heartbeat_interval() is None:
        return []
    now = dt.datetime.now()
    old = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
           if t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace_period_s]
    if not old:
        return []
    with engine.connect() as conn:
        beating = {row[0] for row in conn.execute(text("SELECT trial_id FROM trial_heartbeats"))}
    failed = []
    callback = storage.get_heartbeat_stale_trial_callback()
    for t in old:
        if t._trial_id in beating:
            continue  # Optuna's own stale-heartbeat check handles it
        if study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
            failed.append(t.number)
            if callback is not None:
                callback(study, study._storage.get_trial(t._trial_id))
    return failed


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _rdb_params() -> set[str]:
    import inspect

    import optuna

    return set(inspect.signature(optuna.storages.RDBStorage.__init__).parameters)


def count_finished(study: Any) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED)
    return len(study.get_trials(deepcopy=False, states=states))


def prepare_study(storage_url: str, study_name: str, cfg: TuneConfig, meta: dict[str, Any], *, enqueue: bool,
                  heartbeat: int) -> Any:
    """Create (with the config and seed trials) or load (checking the config) the study."""
    import optuna

    storage = open_storage(storage_url, heartbeat)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get("config")
    mine = asdict(cfg)
    if stored is None:
        from canvit_results import provenance

        study.set_user_attr("config", mine)
        study.set_user_attr("features", meta)
        study.set_user_attr("provenance", json.loads(json.dumps(provenance(config=mine, seed=cfg.seed), default=str)))
        if enqueue and not study.trials:
            for params in seed_trials(cfg):
                study.enqueue_trial({k: v for k, v in params.items() if k != "loss"})
    else:
        diff = [k for k in _STUDY_KEYS if stored.get(k) != mine.get(k)]
        if diff:
            raise SystemExit(f"study {study_name!r} in {storage_url} was made with different settings: "
                             + ", ".join(f"{k}={stored.get(k)!r} (now {mine.get(k)!r})" for k in diff)
                             + "; use the stored settings or another --study")
        old = study.user_attrs.get("features", {})
        for k in ("model", "resolution", "num_images"):
            if old.get(k) is not None and old.get(k) != meta.get(k):
                raise SystemExit(f"study {study_name!r} was tuned on features with {k}={old.get(k)!r}; "
                                 f"{cfg.features} has {meta.get(k)!r}")
    return study


def features_meta(features: str) -> dict[str, Any]:
    from .features import read_manifest

    m = read_manifest(Path(features) / "train")
    return {k: m.get(k) for k in ("model", "backbone", "dim", "resolution", "num_images", "num_classes", "data", "seed")}


def worker(storage_url: str, study_name: str, cfg_dict: dict[str, Any], trials: int, worker_index: int,
           device: str, heartbeat: int, threads: int, barrier: Any = None, progress: bool = False) -> int:
    """One process of the search: run trials until the study holds `trials` finished ones."""
    import optuna
    import torch

    from canvit_results.cli import pick_device
    from .data import load_probe_data
    from .train import Schedule, fit, params_dict

    if threads > 0:
        torch.set_num_threads(threads)
    cfg = TuneConfig(**cfg_dict)
    dev = pick_device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    storage = open_storage(storage_url, heartbeat)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=cfg.seed * 1000 + worker_index, constant_liar=True),
                              pruner=optuna.pruners.NopPruner())
    if heartbeat > 0:
        fail_orphaned_trials(study, storage, 3 * heartbeat)
    if count_finished(study) >= trials:
        _sync(barrier)
        return 0
    try:
        _warm_up()
        data, _ = load_probe_data(cfg.features, selection_fraction=cfg.selection_fraction, select_on=cfg.select_on,
                                  seed=cfg.seed, device=dev, real_labels=cfg.real_labels, max_epochs=cfg.max_aug_epochs)
    except BaseException:
        if barrier is not None:
            barrier.abort()  # release the others instead of letting them wait
        raise
    schedule = Schedule(outer_epochs=cfg.outer_epochs, warmup_fraction=cfg.warmup_fraction)

    def objective(trial: Any) -> float:
        params = suggest(trial, cfg)
        seed = cfg.seed + trial.number
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("params", params_dict(params))
        trial.set_user_attr("worker", worker_index)
        history: list[dict[str, Any]] = []

        def on_epoch(epoch: int, row: dict[str, Any], initial: dict[str, Any]) -> None:
            history.append(row)
            loss, start = selection_loss(row, cfg.select_on), selection_loss(initial, cfg.select_on)
            value = objective_value(row, cfg.select_on)
            if math.isfinite(value):
                trial.report(value, epoch)
            if not math.isfinite(loss) or loss > start:
                trial.set_user_attr("history", history)
                trial.set_user_attr("pruned_reason", f"epoch {epoch}: loss {loss:.4g} > untrained {start:.4g}")
                raise optuna.TrialPruned(f"loss {loss:.4g} exceeds the untrained loss {start:.4g} at epoch {epoch}")

        res = fit(params, data, schedule, seed=seed, on_epoch=on_epoch)
        trial.set_user_attr("history", res.history)
        trial.set_user_attr("steps", {"steps_per_epoch": res.steps_per_epoch, "total_steps": res.total_steps,
                                      "warmup_steps": res.warmup_steps})
        return objective_value(res.history[-1], cfg.select_on)

    _sync(barrier)
    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED)
    callbacks = [optuna.study.MaxTrialsCallback(trials, states=states)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=max(0, trials - count_finished(study)), callbacks=callbacks,
                   show_progress_bar=progress, gc_after_trial=False)
    return 0


def _sync(barrier: Any) -> None:
    """Start the workers together, so no process takes all trials while another is still loading."""
    if barrier is not None:
        try:
            barrier.wait(timeout=600)
        except threading.BrokenBarrierError:
            pass


def _warm_up() -> None:
    """Import what the first trial would (torch.optim pulls in torch._dynamo: seconds on a cold start)."""
    import torch

    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])


def _worker_entry(*args: Any) -> None:
    raise SystemExit(worker(*args))


def build_parser() -> argparse.ArgumentParser:
    from canvit_results.cli import int_at_least

    from canvit_results.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="dinov3-probes tune", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--features", required=True, help="directory written by `dinov3-probes extract` (train/ and val/)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///FEATURES/optuna.db)")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--trials", type=int_at_least(1, "--trials"), default=100, help="finished (complete + pruned) trials to reach (default 100)")
    p.add_argument("--workers", type=int_at_least(1, "--workers"), default=1, help="processes on this machine")
    p.add_argument("--selection-fraction", type=float, default=0.02, help="held-out training images for selection")
    p.add_argument("--select-on", choices=SELECT_ON, default="holdout",
                   help="holdout (default) or val (the authors' protocol: selection on the reported split)")
    p.add_argument("--max-batch-size", type=int, default=2048,
                   help="largest batch size searched, a power of 2; the search draws from max/4, max/2, max")
    p.add_argument("--outer-epochs", type=int, default=2,
                   help="passes over all augmentation epochs per trial (epochs trained = aug epochs x outer)")
    p.add_argument("--loss", choices=SEARCH_LOSS, default="search", help="search both (default) or fix one")
    p.add_argument("--max-aug-epochs", type=int, default=None, help="use only the first K augmentation epochs")
    p.add_argument("--real-labels", default=None, help="real.json, if not given at val extraction")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of the trials")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, or a comma list given to workers in turn")
    p.add_argument("--heartbeat", type=int, default=60, help="seconds between trial heartbeats (0: off; RDB only)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per worker (0: torch's default)")
    p.add_argument("--no-seed-trials", action="store_true", help="do not enqueue the authors' 4 starting points")
    return p


EXPERIMENTAL_NOTE = ("note: trial heartbeats (--heartbeat) use Optuna's heartbeat_interval and retry callback, which "
                     "Optuna marks experimental (ExperimentalWarning); shown once here")
FEW_SELECTION_IMAGES = 1000  # below this, one image moves the selection top-1 by more than 0.1 point


def selection_warning(cfg: TuneConfig, num_train: int | None, num_val: int | None) -> str | None:
    """A warning when model selection rests on very few images (trials closer than 1/K are a coin toss)."""
    if cfg.select_on == "holdout":
        if not num_train:
            return None
        k, where = max(1, round(cfg.selection_fraction * num_train)), (
            f"--selection-fraction {cfg.selection_fraction:g} of {num_train} training images")
    else:
        if not num_val:
            return None
        k, where = num_val, "--select-on val"
    if k >= FEW_SELECTION_IMAGES:
        return None
    return (f"warning: model selection rests on only {k} held-out image(s) ({where}): one image moves the selection "
            f"top-1 by {1 / k:.2%}, so trials closer than that are indistinguishable; use more images or a larger "
            "--selection-fraction for a meaningful search")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.real_labels is not None:
        from .metrics import read_real_json

        read_real_json(args.real_labels)
    cfg = TuneConfig(features=os.path.abspath(args.features), selection_fraction=args.selection_fraction,
                     select_on=args.select_on, seed=args.seed, max_batch_size=args.max_batch_size,
                     outer_epochs=args.outer_epochs, loss=args.loss, max_aug_epochs=args.max_aug_epochs,
                     real_labels=os.path.abspath(args.real_labels) if args.real_labels else None)
    try:
        cfg.check()
    except ValueError as e:
        raise SystemExit(str(e)) from None
    storage_url = args.storage or f"sqlite:///{os.path.join(cfg.features, 'optuna.db')}"
    meta = features_meta(cfg.features)
    try:
        from .features import read_manifest

        num_val = read_manifest(Path(cfg.features) / "val").get("num_images")
    except (OSError, ValueError):
        num_val = None
    warn = selection_warning(cfg, meta.get("num_images"), num_val)
    if warn:
        print(warn, file=sys.stderr)
    if args.heartbeat > 0 and not storage_url.startswith("journal"):
        print(EXPERIMENTAL_NOTE, file=sys.stderr)
    study = prepare_study(storage_url, args.study, cfg, features_meta(cfg.features), enqueue=not args.no_seed_trials,
                          heartbeat=args.heartbeat)
    done = count_finished(study)
    print(f"study {args.study!r} in {storage_url}: {done} finished trial(s), target {args.trials}")
    devices = args.device.split(",")
    common = (storage_url, args.study, asdict(cfg), args.trials)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(args.workers) if args.workers > 1 else None
    procs = [ctx.Process(target=_worker_entry,
                         args=(*common, i, devices[i % len(devices)], args.heartbeat, args.threads, barrier))
             for i in range(1, args.workers)]
    for p in procs:
        p.start()
    rc = worker(*common, 0, devices[0], args.heartbeat, args.threads, barrier, progress=args.workers == 1)
    for p in procs:
        p.join()
        rc = rc or (p.exitcode or 0)
    study = prepare_study(storage_url, args.study, cfg, features_meta(cfg.features), enqueue=False,
                          heartbeat=args.heartbeat)
    print(f"{count_finished(study)} finished trial(s)")
    try:
        best = study.best_trial
        print(f"best: trial {best.number} value {best.value:.4f} params {best.params}")
    except ValueError:
        print("no complete trial yet")
    return rc
