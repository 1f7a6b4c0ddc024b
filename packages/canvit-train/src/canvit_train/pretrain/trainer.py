"""The pretraining loop (paper §5.2): build or resume the model, then step, log, checkpoint and validate
until the recipe's last step; export the weights and the loss curves at the end.

Read `train` top to bottom. What it leans on: `step.py` (one optimizer step: viewpoints, TBPTT rollouts,
loss), `distributed.py` (ranks, gradient all-reduce), `data.py` (where batches come from, `DataSetup`),
`runlog.py` (metrics.csv, validation.csv, TensorBoard, progress bar, results store), `checkpoint.py`.

- Resumable bit for bit: model init, rollout lengths and viewpoints are functions of the seed and the
  step, identical on every rank; a checkpoint holds model, optimizer, every RNG state and the data position.
- No host syncs inside a step: per-step metrics stay on the device and are fetched every `log_every`
  steps, when finiteness is checked; a checkpoint is written only after such a check, so a non-finite
  loss stops the run with the last good checkpoint intact.
- Checkpoints every `checkpoint_every` steps and on SIGTERM / SIGINT (then exit) or SIGUSR1 (then go on).
- Validation (main process, every `validate_every` steps): the reconstruction cosines over a fixed R-IID
  rollout of held-out scenes; it never stops training.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from canvit_model import CanViTForPretraining, IIDViewpoints, model_reconstruction_cosines
from canvit_model.rollout import rollout
from canvit_results.cli import pick_device

from . import checkpoint as ckpt
from .config import PretrainConfig
from .data import DataSetup
from .distributed import (
    Dist,
    all_reduce_gradients,
    any_rank,
    barrier,
    broadcast_model,
    init_distributed,
    mean_over_ranks,
    run_device,
)
from .optim import learning_rate, make_optimizer
from .runlog import RunLog, config_json, log, loss_trend, metric_columns, peak_memory_gb, truncate_csv, write_results
from .step import METRIC_NAMES, plan_step, train_step

__all__ = ["DataSetup", "NonFiniteLoss", "RunOptions", "VALIDATION_SEED", "build_model", "init_distributed",
           "metric_columns", "run_device", "train", "truncate_csv", "validate"]

VALIDATION_SEED = 20260202  # fixed viewpoints: every validation of every run sees the same rollout


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class RunOptions:
    run_dir: Path
    resume: bool = False
    device: str | None = None  # default: cuda:LOCAL_RANK when available, else cpu
    compile: bool = False
    max_steps: int | None = None  # stop this invocation at this global step (recipe unchanged)
    keep_checkpoints: int = 3
    results: str | None = None  # results store root (None: $CANVIT_RESULTS or results/)
    write_results: bool = True
    run_name: str | None = None
    progress: bool = True
    tensorboard: bool = False
    preset: str | None = None
    argv: list[str] = field(default_factory=list)


def train(cfg: PretrainConfig, data: DataSetup, opts: RunOptions) -> dict[str, Any]:
    """Train (or resume) a run in `opts.run_dir`; returns a summary dict. Raises NonFiniteLoss."""
    cfg.validate()
    d = init_distributed(pick_device(opts.device).type)
    device = run_device(opts.device, d)
    amp = cfg.amp if device.type == "cuda" else "fp32"  # CPU: full fp32 (bf16 autocast on CPU is slow)
    run_dir = Path(opts.run_dir)
    if cfg.batch_size % d.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} (global) must be divisible by the {d.world_size} processes")
    local_b = cfg.batch_size // d.world_size
    rows_range = (d.rank * local_b, (d.rank + 1) * local_b)  # this rank's rows of the global batch

    # -- model and optimizer: fresh, or from the run's latest checkpoint --
    model = build_model(cfg, data.teacher_dim, data.teacher_grid)
    model.hub_extra = {"training": {"recipe": "canvit-train pretrain", "preset": opts.preset, **config_json(cfg)}}
    latest = ckpt.latest_checkpoint(run_dir) if opts.resume else None
    if opts.resume and latest is None and d.main:
        log(f"--resume: no complete checkpoint under {run_dir / 'checkpoints'}; starting fresh")
    if latest is None and any(ckpt.list_checkpoints(run_dir)) and not opts.resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints; pass --resume to continue it or pick another --run-dir")
    model.to(device)
    opt = make_optimizer(model, cfg, device)
    start_step = 0
    if latest is not None:
        ckpt.load_checkpoint(latest, model, opt)
        start_step = latest.step
        if d.main:
            log(f"resumed from {latest.path} (step {start_step}, data position {latest.state['data_position']})")
    else:
        if not bool(model.teacher_patch_standardizer.fitted):
            msg = fit_model_standardizers(model, data, cfg.standardizer_samples)
            if d.main:
                log(msg)
        if d.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps({"preset": opts.preset, "config": config_json(cfg),
                                                             "data": data.description}, indent=2) + "\n")
    broadcast_model(model, d)  # one model everywhere, whatever happened above
    params = [p for p in model.parameters() if p.requires_grad]
    reduce = (lambda ps: all_reduce_gradients(ps, d.world_size)) if d.enabled else None
    if opts.compile:
        torch._functorch.config.backward_pass_autocast = "off"  # else compiled backward outside autocast is wrong
        model.compile()  # calls go through model(...), which now runs the compiled forward
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # -- records, held-out scenes, the data stream --
    stop_step = min(cfg.steps, opts.max_steps) if opts.max_steps is not None else cfg.steps
    records = RunLog(run_dir, cfg, main=d.main, resume_step=start_step if latest is not None else None,
                     tensorboard=opts.tensorboard, progress=opts.progress, total_steps=stop_step, start_step=start_step)
    val_batch = load_validation(data, cfg, d)
    loader: Iterator[Any] = iter(data.train(start_step * cfg.batch_size, d.rank, d.world_size))
    pending: list[tuple[int, float, torch.Tensor, torch.Tensor, int]] = []  # (step, lr, grad norm, metrics, T)
    bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss or gradient since the last check
    t_start = window_t0 = time.perf_counter()
    data_wait, last_loss = 0.0, float("nan")
    step, status, stopped_by = start_step, "finished", None

    # -- the loop --
    model.train()
    try:
        with Signals() as sig:
            while step < stop_step:
                t0 = time.perf_counter()
                batch = next(loader).to(device)
                data_wait += time.perf_counter() - t0
                plan = plan_step(cfg, step, cfg.batch_size)
                lr = learning_rate(cfg, step)
                m, gn = train_step(model, model, opt, params, batch.scenes, batch.patches, batch.cls, plan, cfg,
                                   lr=lr, rows_range=rows_range, amp=amp, reduce_gradients=reduce)
                bad |= ~torch.isfinite(m[:, :2].sum()) | ~torch.isfinite(gn)
                step += 1
                pending.append((step, lr, gn, m, plan.num_glimpses))

                want_ckpt = step % cfg.checkpoint_every == 0 or step == stop_step
                if d.enabled:  # ranks agree at log steps only (a collective per step would be a sync)
                    want_signal = any_rank(sig.save, d) if step % cfg.log_every == 0 else False
                else:
                    want_signal = sig.save
                if step % cfg.log_every == 0 or want_ckpt or want_signal:  # the loop's only host sync
                    if any_rank(bad, d):
                        raise NonFiniteLoss(
                            f"non-finite loss or gradient at or before step {step} (since the last check at step "
                            f"{pending[0][0] if pending else step}); stopping. The last good checkpoint is kept: "
                            f"{_latest_path(run_dir)}. Lower --lr-peak or check the data, then --resume.")
                    if pending:
                        rows, last_loss, rate, wait = metric_rows(pending, cfg, d, device, t_start=t_start,
                                                                  elapsed=time.perf_counter() - window_t0,
                                                                  data_wait=data_wait)
                        records.steps(rows, loss=last_loss, rate=rate, wait=wait)
                        pending = []
                        window_t0, data_wait = time.perf_counter(), 0.0
                if want_ckpt or want_signal:
                    path = save_checkpoint(run_dir, step, model, opt, cfg, opts, d)
                    if want_signal and not want_ckpt and d.main:
                        log(f"{', '.join(sig.received) or 'signal'}: checkpoint {path} written at step {step}")
                    sig.save = False
                    if any_rank(sig.stop, d) if d.enabled else sig.stop:
                        status, stopped_by = "interrupted", ",".join(sig.received)
                        break
                if cfg.validate_every and step % cfg.validate_every == 0 and val_batch is not None:
                    try:
                        records.validation(step, validate(model, model, val_batch, cfg, device, amp))
                    except Exception as e:  # validation never kills training
                        log(f"validation at step {step} failed ({type(e).__name__}: {e}); training goes on")
                    model.train()
    finally:
        records.close()
        stop_workers = getattr(loader, "_shutdown_workers", None)  # now, not at interpreter exit
        if stop_workers is not None:
            stop_workers()

    # -- the end: final weights (canvit-pytorch 0.2 layout) and the loss curves in the results store --
    summary: dict[str, Any] = {"status": status, "step": step, "run_dir": str(run_dir), "last_loss": last_loss,
                               "stopped_by": stopped_by, "wall_s": time.perf_counter() - t_start}
    if d.main and (run_dir / "metrics.csv").exists():
        summary.update(loss_trend(run_dir / "metrics.csv"))
    if status == "finished" and d.main:
        model.hub_extra["training"]["steps_done"] = step
        model.save_pretrained(run_dir / "final")
        summary["final"] = str(run_dir / "final")
        log(f"step {step}: weights exported to {run_dir / 'final'} (canvit-pytorch 0.2 layout)")
        if opts.write_results:
            summary["results"] = write_results(cfg, run_dir, step, device, results=opts.results,
                                               run_name=opts.run_name, preset=opts.preset, argv=opts.argv)
    barrier(d)
    return summary


# -- what `train` calls ----------------------------------------------------------------------------


def build_model(cfg: PretrainConfig, teacher_dim: int, teacher_grid: int) -> CanViTForPretraining:
    """Random init from the seed (identical on every rank), on the CPU."""
    if cfg.canvas_grid != teacher_grid:
        raise ValueError(
            f"canvas_grid={cfg.canvas_grid} must equal the teacher's patch grid {teacher_grid} "
            f"(scene_size {cfg.scene_size} / patch 16): predictions and targets are compared position by position"
        )
    arch = cfg.canvit_config()
    if cfg.layerscale_init != arch.backbone.layerscale_init:
        raise ValueError(f"layerscale_init={cfg.layerscale_init} differs from the backbone's "
                         f"{arch.backbone.layerscale_init}; change the backbone config instead")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = CanViTForPretraining(arch, teacher_dim=teacher_dim, teacher_patch_grid=teacher_grid)
    return model


def fit_model_standardizers(model: CanViTForPretraining, data: DataSetup, num_samples: int) -> str:
    """Per-position statistics into the model's standardizer buffers (they ship with every checkpoint).

    From `data.standardizers` (a `canvit-train compute-standardizers` file) when given, else fitted on
    the first `num_samples` samples of the training stream (the paper: the first shard, 4096 scenes).
    """
    from canvit_train.data.standardizers import apply_standardizers, fit_standardizers, load_standardizers

    if data.standardizers is not None:
        apply_standardizers(model, load_standardizers(data.standardizers))
        return f"loaded the per-position standardizers from {data.standardizers}"
    features = data.features() if data.features is not None else (
        (b.patches, b.cls) for b in data.train(0, 0, 1))
    stats = fit_standardizers(features, num_samples, require_all=False)
    apply_standardizers(model, stats)
    return f"fitted the per-position standardizers on the first {num_samples} scenes of the stream (or all there are)"


def metric_rows(pending: list[tuple[int, float, torch.Tensor, torch.Tensor, int]], cfg: PretrainConfig, d: Dist,
                device: torch.device, *, t_start: float, elapsed: float, data_wait: float
                ) -> tuple[list[list[Any]], float, float, float]:
    """metrics.csv rows of the pending steps (metrics averaged over ranks); (rows, last loss, glimpses/s,
    data-wait fraction)."""
    m = mean_over_ranks(torch.stack([x[3] for x in pending]).float(), d).cpu()  # [n, R, M]
    gn = torch.stack([x[2].float() for x in pending]).cpu()
    glimpses = sum(cfg.batch_size * len(cfg.rollouts) * x[4] for x in pending)
    rate, wait = glimpses / max(elapsed, 1e-9), data_wait / max(elapsed, 1e-9)
    mem = peak_memory_gb(device)
    rows, loss = [], float("nan")
    for i, (s, lr, _, _, t_len) in enumerate(pending):
        per = m[i]  # [R, M]
        loss = float((per[:, 0] * (1.0 if cfg.dense_loss else 0.0) + per[:, 1] * (1.0 if cfg.cls_loss else 0.0)).mean())
        rows.append([s, lr, float(gn[i]), loss, t_len, *[float(v) for v in per.reshape(-1)],
                     rate, wait, mem, time.perf_counter() - t_start])
    return rows, loss, rate, wait


def save_checkpoint(run_dir: Path, step: int, model: CanViTForPretraining, opt: torch.optim.Optimizer,
                    cfg: PretrainConfig, opts: RunOptions, d: Dist) -> Path | None:
    """Checkpoint `step` (main process; every rank waits for it). Returns its path on the main process."""
    path = None
    if d.main:
        from canvit_results import code_version

        path = ckpt.save_checkpoint(run_dir, step, model, opt, {
            "data_position": step * cfg.batch_size,
            # the schedule is a function of the step: this is its whole state
            "scheduler": {"schedule": cfg.lr_schedule, "next_step_lr": learning_rate(cfg, step)},
            "config": config_json(cfg),
            "preset": opts.preset,
            "world_size": d.world_size,
            "code": code_version(Path(__file__)),
        }, keep=opts.keep_checkpoints)
    barrier(d)
    return path


def load_validation(data: DataSetup, cfg: PretrainConfig, d: Dist) -> Any:
    """The held-out batch (main process, when validation is on); None when there is none or it fails to load."""
    if data.validation is None or not cfg.validate_every or not d.main:
        return None
    try:
        return data.validation()
    except Exception as e:  # validation never kills training
        log(f"validation disabled: could not load the held-out scenes ({type(e).__name__}: {e})")
        return None


@torch.no_grad()
def validate(model: CanViTForPretraining, forward: Callable, batch: Any, cfg: PretrainConfig,
             device: torch.device, amp: str) -> list[dict[str, float]]:
    """Reconstruction cosine per timestep over an R-IID rollout of `cfg.validation_glimpses` glimpses."""
    batch = batch.to(device)
    b, t_total = batch.scenes.shape[0], cfg.validation_glimpses
    policy = IIDViewpoints("r-iid", batch_size=b, num_glimpses=t_total, min_scale=cfg.min_scale,
                           generator=torch.Generator().manual_seed(VALIDATION_SEED), device=device)
    out = []
    for step in rollout(forward, batch.scenes, policy, num_glimpses=t_total, canvas_grid=cfg.canvas_grid,
                        glimpse_px=cfg.glimpse_size, amp=amp == "bf16"):
        with torch.inference_mode():
            cos = model_reconstruction_cosines(model, step.state.canvas, step.state.recurrent_cls,
                                               batch.patches, batch.cls, per_position=True)
        out.append({"t": step.t, **{m: cos[m].mean().item() for m in METRIC_NAMES[2:]}})  # the cosines
    return out


class Signals:
    """SIGTERM / SIGINT: checkpoint and stop after the current step; SIGUSR1: checkpoint and go on."""

    def __init__(self) -> None:
        self.stop = False
        self.save = False
        self.received: list[str] = []
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if signum == signal.SIGUSR1:
            self.save = True
            return
        if self.stop and signum == signal.SIGINT:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True
        self.save = True

    def __enter__(self) -> Signals:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            try:
                self._old[s] = signal.signal(s, self._handler)
            except ValueError:  # not the main thread (e.g. a notebook worker): no handlers
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _latest_path(run_dir: Path) -> str:
    c = ckpt.latest_checkpoint(run_dir)
    return str(c.path) if c else "(none yet)"
