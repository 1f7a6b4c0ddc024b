"""The pretraining loop: one process or many (torchrun), resumable bit for bit.

- Model init, lengths and viewpoints are functions of the seed (and step), identical on every rank.
- Data parallel: every rank runs the step on its rows of the global batch, then the gradients are
  all-reduced explicitly (averaged) before clipping. Why not torch's DDP wrapper: a step is several
  forward/backward pairs (one backward per TBPTT chunk) whose parameters differ (the initial canvas and
  CLS only in the first chunk), and the teacher readout heads run outside the model's forward. Checked
  with torch 2.15 on 2 gloo ranks: with `no_sync` on all but the last chunk, DDP's default
  (`find_unused_parameters=False`) leaves the gradients un-reduced without an error until the next step,
  and `find_unused_parameters=True` reduces them but fails ("Expected to mark a variable ready only
  once") as soon as a parameter is used outside `forward`, as the readout heads are. One explicit
  all-reduce of every gradient per step cannot skip one; a test checks 2 processes against 1 process
  on the same global batch.
- No host syncs inside a step: per-step metrics stay on the device and are fetched every `log_every`
  steps, when finiteness is checked; a checkpoint is written only after such a check, so a non-finite
  loss stops the run with the last good checkpoint intact.
- Checkpoints (see checkpoint.py) every `checkpoint_every` steps and on SIGTERM / SIGINT (then exit)
  or SIGUSR1 (then continue); `resume` restores model, optimizer, every RNG state and the data position.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from canvit_model import CanViTForPretraining, random_viewpoints, sample_at_viewpoint
from canvit_results import atomic_write_text
from canvit_results.cli import pick_device

from . import checkpoint as ckpt
from .config import PretrainConfig
from .optim import learning_rate, make_optimizer
from .step import METRIC_NAMES, autocast_context, cosine, plan_step, standardized_targets, train_step


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class DataSetup:
    """Where batches come from (built by data.py from the command line, or by tests).

    train(start_position, rank, world_size) -> an iterable of TrainingBatch (this rank's rows of each
    global batch of cfg.batch_size, starting at global sample `start_position`).
    validation() -> one held-out TrainingBatch (all rows), or None.
    """

    train: Callable[[int, int, int], Iterable[Any]]
    teacher_dim: int
    teacher_grid: int
    validation: Callable[[], Any] | None = None
    standardizers: str | None = None  # a compute-standardizers file; None: fit on the stream's first scenes
    features: Callable[[], Iterable[tuple[Any, Any]]] | None = None  # (patches, cls) chunks in stored order
    description: dict[str, Any] = field(default_factory=dict)


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


# -- distributed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_gradients(params: list[torch.nn.Parameter], world_size: int, bucket_bytes: int = 64 << 20) -> None:
    """Average every parameter's gradient over ranks (a missing gradient counts as zeros)."""
    bucket: list[torch.Tensor] = []
    size = 0

    def flush() -> None:
        nonlocal bucket, size
        if not bucket:
            return
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(world_size)
        off = 0
        for g in bucket:
            g.copy_(flat[off : off + g.numel()].view_as(g))
            off += g.numel()
        bucket, size = [], 0

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= bucket_bytes:
            flush()
    flush()


# -- signals -------------------------------------------------------------------------------------


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


# -- metrics -------------------------------------------------------------------------------------


def rollout_names(rollouts: tuple[str, ...]) -> list[str]:
    """Column prefixes: 'f-iid', 'r-iid', and 'r-iid.1' for a second rollout of the same kind."""
    seen: dict[str, int] = {}
    out = []
    for r in rollouts:
        k = seen.get(r, 0)
        out.append(r if k == 0 else f"{r}.{k}")
        seen[r] = k + 1
    return out


def metric_columns(cfg: PretrainConfig) -> list[str]:
    cols = ["step", "lr", "grad_norm", "loss", "glimpses_per_rollout"]
    for r in rollout_names(cfg.rollouts):
        cols += [f"{r}/{m}" for m in METRIC_NAMES]
    cols += ["glimpses_per_s", "data_wait_frac", "peak_mem_gb", "wall_s"]
    return cols


def truncate_csv(path: Path, max_step: int) -> None:
    """Keep the header and the complete rows with step <= max_step (rows written after the checkpoint
    a run resumes from, or a line cut by a kill, are dropped); atomic."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, keep = rows[0], []
    for r in rows[1:]:
        if len(r) != len(header):
            continue
        try:
            if int(r[header.index("step")]) <= max_step:
                keep.append(r)
        except ValueError:
            continue
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(keep)
    atomic_write_text(path, buf.getvalue())


class MetricsCSV:
    """DIR/metrics.csv, one row per step; on resume rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None) -> None:
        self.path, self.columns = path, columns
        header = None
        if resume_step is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
        if header == columns:
            truncate_csv(path, resume_step)
        else:
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(columns)

    def append(self, rows: list[list[Any]]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
            f.flush()
            os.fsync(f.fileno())


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


# -- model ---------------------------------------------------------------------------------------


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


# -- validation ----------------------------------------------------------------------------------

VALIDATION_SEED = 20260202  # fixed viewpoints: every validation of every run sees the same rollout


@torch.no_grad()
def validate(model: CanViTForPretraining, forward: Callable, batch: Any, cfg: PretrainConfig,
             device: torch.device, amp: str) -> list[dict[str, float]]:
    """Reconstruction cosine per timestep over an R-IID rollout of `cfg.validation_glimpses` glimpses."""
    batch = batch.to(device)
    b = batch.scenes.shape[0]
    tp, tc = standardized_targets(model, batch.patches, batch.cls)
    g = torch.Generator().manual_seed(VALIDATION_SEED)
    state = model.init_state(b, cfg.canvas_grid)
    out = []
    for t in range(cfg.validation_glimpses):
        vp = random_viewpoints(b, min_scale=cfg.min_scale, generator=g, device=device)
        glimpse = sample_at_viewpoint(batch.scenes, vp, cfg.glimpse_size)
        with autocast_context(device, amp):
            state = forward(glimpse, state, vp).state
        with torch.autocast(device_type=device.type, enabled=False):
            pp = model.predict_teacher_patches(state.canvas.float())
            pc = model.predict_teacher_cls(state.recurrent_cls.float())
            rp = model.teacher_patch_standardizer.destandardize(pp)
            rc = model.teacher_cls_standardizer.destandardize(pc[:, None])[:, 0]
        out.append({
            "t": t,
            "cos_patch_std": cosine(pp, tp).item(), "cos_cls_std": cosine(pc, tc).item(),
            "cos_patch_raw": cosine(rp, batch.patches).item(), "cos_cls_raw": cosine(rc, batch.cls).item(),
        })
    return out


# -- the loop ------------------------------------------------------------------------------------


def _log(msg: str, d: Dist) -> None:
    if d.main:
        print(f"[pretrain] {msg}", file=sys.stderr, flush=True)


def run_device(device: str | None, d: Dist) -> torch.device:
    """This process's device: `--device` (default cuda if available, else cpu); cuda without an index is this
    rank's GPU (cuda:LOCAL_RANK), made the current one."""
    dev = pick_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", d.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


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
    rows_range = (d.rank * local_b, (d.rank + 1) * local_b)

    model = build_model(cfg, data.teacher_dim, data.teacher_grid)
    model.hub_extra = {"training": {"recipe": "canvit-train pretrain", "preset": opts.preset, **_jsonable_cfg(cfg)}}
    latest = ckpt.latest_checkpoint(run_dir) if opts.resume else None
    if opts.resume and latest is None and d.main:
        _log(f"--resume: no complete checkpoint under {run_dir / 'checkpoints'}; starting fresh", d)
    if latest is None and any(ckpt.list_checkpoints(run_dir)) and not opts.resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints; pass --resume to continue it or pick another --run-dir")
    model.to(device)
    opt = make_optimizer(model, cfg, device)
    start_step = 0
    if latest is not None:
        ckpt.load_checkpoint(latest, model, opt)
        start_step = latest.step
        _log(f"resumed from {latest.path} (step {start_step}, data position {latest.state['data_position']})", d)
    else:
        if not bool(model.teacher_patch_standardizer.fitted):
            _log(fit_model_standardizers(model, data, cfg.standardizer_samples), d)
        if d.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps({"preset": opts.preset, "config": _jsonable_cfg(cfg),
                                                             "data": data.description}, indent=2) + "\n")
    if d.enabled:  # one model everywhere, whatever happened above
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)

    params = [p for p in model.parameters() if p.requires_grad]
    reduce = (lambda ps: all_reduce_gradients(ps, d.world_size)) if d.enabled else None
    forward: Callable = model
    if opts.compile:
        torch._functorch.config.backward_pass_autocast = "off"  # else compiled backward outside autocast is wrong
        model.compile()  # calls go through model(...), which now runs the compiled forward
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    stop_step = min(cfg.steps, opts.max_steps) if opts.max_steps is not None else cfg.steps
    columns = metric_columns(cfg)
    metrics = MetricsCSV(run_dir / "metrics.csv", columns, start_step if latest is not None else None) if d.main else None
    if d.main and latest is not None:
        truncate_csv(run_dir / "validation.csv", start_step)
    tb = _tensorboard(run_dir) if (opts.tensorboard and d.main) else None
    n_roll = len(cfg.rollouts)

    def save(step: int) -> Path | None:
        path = None
        if d.main:
            path = ckpt.save_checkpoint(run_dir, step, model, opt, {
                "data_position": step * cfg.batch_size,
                # the schedule is a function of the step: this is its whole state
                "scheduler": {"schedule": cfg.lr_schedule, "next_step_lr": learning_rate(cfg, step)},
                "config": _jsonable_cfg(cfg),
                "preset": opts.preset,
                "world_size": d.world_size,
                "code": _code_version(),
            }, keep=opts.keep_checkpoints)
        if d.enabled:
            dist.barrier()
        return path

    pending: list[tuple[int, float, torch.Tensor, torch.Tensor, int]] = []  # (step, lr, grad_norm, metrics, T)
    bad = torch.zeros((), dtype=torch.bool, device=device)
    window_t0 = time.perf_counter()
    data_wait = 0.0
    t_start = time.perf_counter()
    last_loss = float("nan")

    def flush(step: int) -> None:
        """The loop's only host sync: finiteness, metrics rows, progress."""
        nonlocal pending, window_t0, data_wait, last_loss
        flag = bad.clone().float()
        if d.enabled:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            raise NonFiniteLoss(
                f"non-finite loss or gradient at or before step {step} (since the last check at step "
                f"{pending[0][0] if pending else step}); stopping. The last good checkpoint is kept: "
                f"{_latest_path(run_dir)}. Lower --lr-peak or check the data, then --resume."
            )
        if not pending:
            return
        m = torch.stack([x[3] for x in pending]).float()  # [n, R, M]
        gn = torch.stack([x[2].float() for x in pending])
        if d.enabled:
            dist.all_reduce(m)
            m /= d.world_size
        m, gn = m.cpu(), gn.cpu()
        elapsed = time.perf_counter() - window_t0
        glimpses = sum(cfg.batch_size * n_roll * x[4] for x in pending)
        rate, wait = glimpses / max(elapsed, 1e-9), data_wait / max(elapsed, 1e-9)
        mem = peak_memory_gb(device)
        rows = []
        for i, (s, lr, _, _, t_len) in enumerate(pending):
            per = m[i]  # [R, M]
            loss = float((per[:, 0] * (1.0 if cfg.dense_loss else 0.0) + per[:, 1] * (1.0 if cfg.cls_loss else 0.0)).mean())
            rows.append([s, lr, float(gn[i]), loss, t_len, *[float(v) for v in per.reshape(-1)],
                         rate, wait, mem, time.perf_counter() - t_start])
            last_loss = loss
        if metrics is not None:
            metrics.append(rows)
        if tb is not None:
            for r in rows:
                for c, v in zip(columns[1:], r[1:], strict=True):
                    tb.add_scalar(c, v, r[0])
        if bar is not None:
            bar.update(len(rows))
            bar.set_postfix(loss=f"{last_loss:.4f}", gps=f"{rate:.0f}", data=f"{wait:.0%}")
        pending = []
        window_t0, data_wait = time.perf_counter(), 0.0

    val_batch = None
    if data.validation is not None and cfg.validate_every and d.main:
        try:
            val_batch = data.validation()
        except Exception as e:  # validation never kills training
            _log(f"validation disabled: could not load the held-out scenes ({type(e).__name__}: {e})", d)

    def run_validation(step: int) -> None:
        if val_batch is None or not d.main:
            return
        try:
            rows = validate(model, forward, val_batch, cfg, device, amp)
        except Exception as e:
            _log(f"validation at step {step} failed ({type(e).__name__}: {e}); training goes on", d)
            return
        path = run_dir / "validation.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["step", *rows[0].keys()])
            if new:
                w.writeheader()
            w.writerows({"step": step, **r} for r in rows)
        if tb is not None:
            for r in rows:
                for k, v in r.items():
                    if k != "t":
                        tb.add_scalar(f"validation/{k}/t{r['t']}", v, step)
        last = rows[-1]
        _log(f"validation step {step}: t={last['t']} cos patch raw {last['cos_patch_raw']:.4f} "
             f"cls raw {last['cos_cls_raw']:.4f}", d)

    bar = None
    if opts.progress and d.main:
        from tqdm import tqdm

        bar = tqdm(total=stop_step, initial=start_step, desc="pretrain", unit="step", dynamic_ncols=True)
    step = start_step
    status = "finished"
    stopped_by = None
    loader: Iterator[Any] = iter(data.train(start_step * cfg.batch_size, d.rank, d.world_size))
    model.train()
    try:
        with Signals() as sig:
            while step < stop_step:
                t0 = time.perf_counter()
                batch = next(loader).to(device)
                data_wait += time.perf_counter() - t0
                plan = plan_step(cfg, step, cfg.batch_size)
                lr = learning_rate(cfg, step)
                m, gn = train_step(model, forward, opt, params, batch.scenes, batch.patches, batch.cls, plan, cfg,
                                   lr=lr, rows_range=rows_range, amp=amp, reduce_gradients=reduce)
                bad |= ~torch.isfinite(m[:, :2].sum()) | ~torch.isfinite(gn)
                step += 1
                pending.append((step, lr, gn, m, plan.num_glimpses))
                want_ckpt = step % cfg.checkpoint_every == 0 or step == stop_step
                if d.enabled:  # ranks agree at log steps only (a collective per step would be a sync)
                    want_signal = _agree(sig.save, d) if step % cfg.log_every == 0 else False
                else:
                    want_signal = sig.save
                if step % cfg.log_every == 0 or want_ckpt or want_signal:
                    flush(step)
                if want_ckpt or want_signal:
                    path = save(step)
                    if want_signal and not want_ckpt:
                        _log(f"{', '.join(sig.received) or 'signal'}: checkpoint {path} written at step {step}", d)
                    sig.save = False
                    stop_now = _agree(sig.stop, d) if d.enabled else sig.stop
                    if stop_now:
                        status, stopped_by = "interrupted", ",".join(sig.received)
                        break
                if cfg.validate_every and step % cfg.validate_every == 0:
                    run_validation(step)
                    model.train()
    finally:
        if bar is not None:
            bar.close()
        if tb is not None:
            tb.close()
        stop_workers = getattr(loader, "_shutdown_workers", None)  # now, not at interpreter exit
        if stop_workers is not None:
            stop_workers()
    summary: dict[str, Any] = {"status": status, "step": step, "run_dir": str(run_dir), "last_loss": last_loss,
                               "stopped_by": stopped_by, "wall_s": time.perf_counter() - t_start}
    if d.main and (run_dir / "metrics.csv").exists():
        summary.update(loss_trend(run_dir / "metrics.csv"))
    if status == "finished" and d.main:
        model.hub_extra["training"]["steps_done"] = step
        model.save_pretrained(run_dir / "final")
        summary["final"] = str(run_dir / "final")
        _log(f"step {step}: weights exported to {run_dir / 'final'} (canvit-pytorch 0.2 layout)", d)
        if opts.write_results:
            summary["results"] = write_results(cfg, opts, run_dir, step, device)
    if d.enabled:
        dist.barrier()
    return summary


def loss_trend(metrics_csv: Path, window: int = 10) -> dict[str, float]:
    """Mean loss over the first and the last `window` logged steps (the run's loss going down, or not)."""
    with open(metrics_csv, newline="", encoding="utf-8") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    if not losses:
        return {}
    w = min(window, len(losses))
    return {"loss_first": sum(losses[:w]) / w, "loss_last": sum(losses[-w:]) / w, "loss_window": w}


def _agree(flag: bool, d: Dist) -> bool:
    """True on every rank if any rank has `flag` (signals reach ranks at slightly different times)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _latest_path(run_dir: Path) -> str:
    c = ckpt.latest_checkpoint(run_dir)
    return str(c.path) if c else "(none yet)"


def _jsonable_cfg(cfg: PretrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(cfg.to_dict()))


def _code_version() -> dict[str, Any]:
    from canvit_results import code_version

    return code_version(Path(__file__))


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # the tensorboard package is optional
        raise SystemExit(f"--tensorboard needs the tensorboard package (pip install tensorboard): {e}") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def loss_curves(metrics_csv: Path, cfg: PretrainConfig):
    """The `pretrain` results table: step, rollout, component, loss (tidy, one row per observation)."""
    import pandas as pd

    df = pd.read_csv(metrics_csv)
    parts = []
    for r in rollout_names(cfg.rollouts):
        for comp in ("patch", "cls"):
            col = f"{r}/loss_{comp}"
            parts.append(pd.DataFrame({"step": df["step"], "rollout": r, "component": comp, "loss": df[col]}))
    return pd.concat(parts, ignore_index=True)


def write_results(cfg: PretrainConfig, opts: RunOptions, run_dir: Path, step: int, device: torch.device) -> str | None:
    """Loss curves into the results store (kind `pretrain`); a finished key is never overwritten."""
    from canvit_results import RunExistsError, provenance, write_run

    name = opts.run_name or run_dir.name
    key = name if step >= cfg.steps else f"{name}-at-step{step}"
    try:
        ref = write_run(
            opts.results, "pretrain", key, loss_curves(run_dir / "metrics.csv", cfg),
            provenance(config=_jsonable_cfg(cfg), seed=cfg.seed, checkpoint=str(run_dir / "final"), device=device,
                       argv=opts.argv or None),
            extra={"preset": opts.preset, "run_dir": str(run_dir), "steps_done": step,
                   "recipe_complete": step >= cfg.steps},
        )
    except RunExistsError as e:
        print(f"[pretrain] results store: {e}; not rewritten", file=sys.stderr)
        return None
    return str(ref.table_path)

