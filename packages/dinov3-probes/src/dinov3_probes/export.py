"""`dinov3-probes export`: retrain a study's best trial and publish it in the released-probe layout.

Example:

    dinov3-probes export --storage sqlite:///studies/vitb16.db --study vitb16-holdout \\
        --features features/vitb16 --out probes/dinov3-vitb16-lvd1689m-in1k-512x512-linear-clf-probe

The trial is retrained with its stored parameters and seed on the same training rows it was tuned on,
evaluated on val every epoch (top-1, top-5, ReaL top-1), and written as `config.json` + `model.safetensors`
(`weight` [C, D], `bias` [C]); the per-epoch val metrics go to the results store (kind `dinov3-probes`,
key `{backbone}-{study}`), from which paper/make_tables.py renders Tables 17-18.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import time
from collections.abc import Sequence
from typing import Any


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)


def probe_config(*, backbone: str, meta: dict[str, Any], cfg: Any, params: Any, res: Any, trial: Any,
                 study: str, storage: str, aug_epochs: int) -> dict[str, Any]:
    final = res.history[-1]
    p = params
    trial_params: dict[str, Any] = {
        "objective": p.loss, "optimizer": p.optimizer, "ref_lr": p.ref_lr, "peak_lr": p.peak_lr,
        "batch_size": p.batch_size, "batch_size_exp": int(math.log2(p.batch_size)),
        "use_dinov3_init": p.init == "dinov3", "init": p.init,
        "outer_epochs": cfg.outer_epochs, "warmup_fraction": cfg.warmup_fraction, "warmup_steps": res.warmup_steps,
        "n_train_epochs": aug_epochs, "steps_per_epoch": res.steps_per_epoch,
        "total_epochs": aug_epochs * cfg.outer_epochs, "total_steps": res.total_steps,
        "seed": trial.user_attrs.get("seed"), "trial_number": trial.number,
        "selection": cfg.select_on, "selection_fraction": cfg.selection_fraction if cfg.select_on == "holdout" else 0.0,
        "selection_value": trial.value,
    }
    if p.optimizer == "adamw":
        trial_params.update(weight_decay=p.weight_decay, beta1=p.beta1, beta2=p.beta2)
    else:
        trial_params.update(momentum=p.momentum)
    return {
        "val_results": {k[len("val_"):]: final[k] for k in ("val_loss", "val_top1", "val_top5", "val_real_top1")},
        "trial_params": trial_params,
        "config_metadata": {
            "model_name": f"dinov3_{backbone}", "model_repo": meta.get("model"), "image_size": meta.get("resolution"),
            "outer_epochs": cfg.outer_epochs, "objective": p.loss, "study": study, "storage": _redact(storage),
            "selection": cfg.select_on,
        },
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "history": res.history,
        "library": "dinov3-probes",
    }


def results_extra(*, backbone: str, study: str, cfg: Any, params: Any, aug_epochs: int, out: str, model: str) -> dict[str, Any]:
    p = params
    return {
        "backbone": backbone, "study": study, "selection": cfg.select_on, "probe": out, "model": model,
        "trial_params": {
            "optimizer": p.optimizer, "loss": p.loss, "batch_size": p.batch_size, "lr": p.peak_lr,
            "weight_decay": p.weight_decay if p.optimizer == "adamw" else None,
            "beta1": p.beta1 if p.optimizer == "adamw" else None,
            "beta2": p.beta2 if p.optimizer == "adamw" else None,
            "momentum": p.momentum if p.optimizer == "sgd" else None,
            "init": p.init, "aug_epochs": aug_epochs, "epochs": aug_epochs * cfg.outer_epochs,
        },
    }


def build_parser() -> argparse.ArgumentParser:
    from canvit_results.cli import HelpFormatter, output_dir, store_dir

    p = argparse.ArgumentParser(prog="dinov3-probes export", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///FEATURES/optuna.db)")
    p.add_argument("--study", required=True, help="name of the `dinov3-probes tune` study whose best trial is exported")
    p.add_argument("--features", required=True, help="the features the study was tuned on")
    p.add_argument("--out", required=True, type=output_dir, help="probe directory to write (config.json + "
                   "model.safetensors); an existing probe is refused unless --force")
    p.add_argument("--force", action="store_true", help="replace an existing probe in --out")
    p.add_argument("--trial", type=int, default=None, help="export this trial number instead of the best")
    p.add_argument("--results", type=store_dir, default=None, help="results store root (default results/ or $CANVIT_RESULTS)")
    p.add_argument("--no-results", action="store_true", help="do not write to the results store")
    p.add_argument("--device", default="auto", help="where the trial is retrained: cpu, cuda, cuda:N, or auto "
                   "(cuda when available; default)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's own choice)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.force and any(os.path.exists(os.path.join(args.out, f)) for f in ("config.json", "model.safetensors")):
        parser.error(f"--out {args.out}: already holds a probe; pass --force to replace it, or choose another folder")
    import optuna
    import pandas as pd
    import torch

    from canvit_results import is_complete, provenance, results_root, write_run
    from canvit_results.cli import pick_device

    from .data import load_probe_data
    from .probe import save_probe
    from .train import ProbeParams, Schedule, fit
    from .tune import TuneConfig, features_meta, open_storage

    device = pick_device(args.device, parser=parser)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    features = os.path.abspath(args.features)
    storage_url = args.storage or f"sqlite:///{os.path.join(features, 'optuna.db')}"
    try:
        study = optuna.load_study(study_name=args.study, storage=open_storage(storage_url, heartbeat=0))
    except KeyError:
        raise SystemExit(f"--study {args.study!r} does not exist in {_redact(storage_url)}") from None
    stored = dict(study.user_attrs.get("config") or {})
    if not stored:
        raise SystemExit(f"study {args.study!r} was not made by `dinov3-probes tune` (no stored config)")
    stored["features"] = features
    cfg = TuneConfig(**stored)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise SystemExit(f"study {args.study!r} has no complete trial yet: run `dinov3-probes tune` first")
    if args.trial is None:
        trial = study.best_trial
    else:
        match = [t for t in complete if t.number == args.trial]
        if not match:
            raise SystemExit(f"--trial {args.trial}: not a complete trial of {args.study!r} "
                             f"(complete: {sorted(t.number for t in complete)[:20]}...)")
        trial = match[0]
    pdict = {k: v for k, v in trial.user_attrs["params"].items() if k != "peak_lr"}
    params = ProbeParams(**pdict)
    meta = features_meta(features)
    backbone = meta.get("backbone") or "unknown"
    key = f"{backbone}-{args.study}"
    root = results_root(args.results)
    if not args.no_results and is_complete(root, "dinov3-probes", key):
        raise SystemExit(f"{root}/dinov3-probes/{key} is already a complete result (results are never overwritten): "
                         "remove it, pass --no-results, or export under another --study")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    print(f"retraining trial {trial.number} (selection value {trial.value:.4f}): {params}")
    t0 = time.time()
    data, man = load_probe_data(features, selection_fraction=cfg.selection_fraction, select_on=cfg.select_on,
                                seed=cfg.seed, device=device, real_labels=cfg.real_labels, max_epochs=cfg.max_aug_epochs)
    res = fit(params, data, Schedule(cfg.outer_epochs, cfg.warmup_fraction), seed=trial.user_attrs["seed"], progress=True)
    from .tune import objective_value

    again = objective_value(res.history[-1], cfg.select_on)
    if abs(again - trial.value) > 1e-3:
        print(f"note: retrained selection value {again:.4f} differs from the trial's {trial.value:.4f} "
              "(nondeterministic GPU kernels or a different device)")
    aug = man["aug_epochs"]
    config = probe_config(backbone=backbone, meta=meta, cfg=cfg, params=params, res=res, trial=trial,
                          study=args.study, storage=storage_url, aug_epochs=aug)
    config["config_metadata"]["num_train_rows"] = int(data.train[0].x.shape[0])
    out = save_probe(args.out, res.probe, config)
    final = res.history[-1]
    real = final["val_real_top1"]
    print(f"wrote {out}: val top-1 {final['val_top1']:.4f}, top-5 {final['val_top5']:.4f}"
          + (f", ReaL top-1 {real:.4f}" if real is not None else " (no ReaL labels)"))
    if not args.no_results:
        df = pd.DataFrame([{"epoch": r["epoch"], "top1": r["val_top1"], "top5": r["val_top5"],
                            "real_top1": r["val_real_top1"]} for r in res.history])
        prov = provenance(config={"tune": stored, "params": trial.user_attrs["params"], "storage": _redact(storage_url)},
                          seed=trial.user_attrs["seed"], checkpoint=meta.get("model"), device=device,
                          wall_time_s=time.time() - t0)
        write_run(root, "dinov3-probes", key, df, prov,
                  extra=results_extra(backbone=backbone, study=args.study, cfg=cfg, params=params, aug_epochs=aug,
                                      out=str(out), model=str(meta.get("model"))))
        print(f"results: {root}/dinov3-probes/{key}.csv")
    return 0
