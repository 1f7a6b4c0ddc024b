"""Training one linear probe on cached features (paper App. H.3-H.5), with per-epoch evaluation.

- peak LR = ref_lr x batch size (linear scaling, no /256); linear warmup over the first 10% of steps
  (from peak / warmup_steps), then cosine to 0, stepped every optimizer step;
- epochs: each augmentation file set is one epoch, the whole list repeated `outer_epochs` times
  (Table 18: 10 augmentation epochs -> 20 total). Rows are reshuffled every epoch (seeded); the authors
  consumed them in stored order;
- losses: "softmax" = cross-entropy (mean); "sigmoid" = BCE-with-logits on one-hot targets, mean over
  B x C (Beyer et al. 2020);
- the probe runs in float32 outside autocast (TF32 matmuls allowed on GPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .features import FeatureSet
from .metrics import real_correct, real_tensor, topk_correct
from .probe import INITS, make_probe

OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("softmax", "sigmoid")


@dataclass
class ProbeParams:
    """One point of the App. H.3 search space."""

    optimizer: str = "adamw"
    ref_lr: float = 4e-6
    batch_size: int = 2048
    init: str = "pytorch"
    loss: str = "softmax"
    weight_decay: float = 0.0  # AdamW only
    beta1: float = 0.9  # AdamW only
    beta2: float = 0.999  # AdamW only
    momentum: float = 0.0  # SGD only

    @property
    def peak_lr(self) -> float:
        return self.ref_lr * self.batch_size

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}; valid: {', '.join(LOSSES)}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r}; valid: {', '.join(INITS)}")
        if self.batch_size < 1 or not self.ref_lr > 0:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1 and ref_lr={self.ref_lr} > 0")


@dataclass
class Schedule:
    outer_epochs: int = 2
    warmup_fraction: float = 0.1


@dataclass
class ProbeData:
    """Features on the training device. train: one FeatureSet per augmentation epoch (same images)."""

    train: list[FeatureSet]
    val: FeatureSet
    num_classes: int
    select: FeatureSet | None = None  # held-out training images (all augmentation epochs), or None
    val_real: list[list[int]] | None = None  # ReaL labels aligned to val rows
    _real: torch.Tensor | None = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return self.val.x.shape[1]

    def real(self) -> torch.Tensor | None:
        if self.val_real is not None and self._real is None:
            self._real = real_tensor(self.val_real, self.val.x.device)
        return self._real


def lr_factor(step: int, total: int, warmup: int) -> float:
    """LR multiplier at optimizer step `step` (0-based): warmup from 1/warmup to 1, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / span))


def loss_fn(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "softmax":
        return F.cross_entropy(logits, y)
    return F.binary_cross_entropy_with_logits(logits, F.one_hot(y, logits.shape[1]).to(logits.dtype))


@torch.no_grad()
def evaluate(probe: nn.Linear, data: FeatureSet, loss: str, real: torch.Tensor | None = None,
             chunk: int = 16384) -> dict[str, float | None]:
    """loss, top1, top5 (fractions) and real_top1 (None without ReaL labels) of `probe` on `data`."""
    n = data.x.shape[0]
    total_loss, top1, top5, real_hit, real_n = 0.0, 0, 0, 0, 0
    with torch.autocast(data.x.device.type, enabled=False):
        for s in range(0, n, chunk):
            x, y = data.x[s : s + chunk].float(), data.y[s : s + chunk]
            logits = probe(x)
            total_loss += float(loss_fn(logits, y, loss)) * x.shape[0]
            hits = topk_correct(logits, y, (1, 5))
            top1 += hits[1]
            top5 += hits[5]
            if real is not None:
                h, c = real_correct(logits.argmax(1), real[s : s + chunk])
                real_hit += h
                real_n += c
    return {
        "loss": total_loss / max(n, 1),
        "top1": top1 / max(n, 1),
        "top5": top5 / max(n, 1),
        "real_top1": (real_hit / real_n if real_n else None) if real is not None else None,
    }


def make_optimizer(params: ProbeParams, probe: nn.Linear) -> torch.optim.Optimizer:
    if params.optimizer == "adamw":
        return torch.optim.AdamW(probe.parameters(), lr=params.peak_lr, betas=(params.beta1, params.beta2),
                                 weight_decay=params.weight_decay)
    return torch.optim.SGD(probe.parameters(), lr=params.peak_lr, momentum=params.momentum, weight_decay=0.0)


class Diverged(Exception):
    """The probe's loss went non-finite during training."""


@dataclass
class FitResult:
    probe: nn.Linear
    history: list[dict[str, Any]]  # one row per epoch: epoch, select_*, val_*
    initial: dict[str, Any]  # metrics before training
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


EpochCallback = Callable[[int, dict[str, Any], dict[str, Any]], None]


def fit(params: ProbeParams, data: ProbeData, schedule: Schedule = Schedule(), *, seed: int = 0,
        on_epoch: EpochCallback | None = None, progress: bool = False) -> FitResult:
    """Train a probe from scratch. `on_epoch(epoch, row, initial)` may raise (e.g. optuna.TrialPruned)."""
    device = data.val.x.device
    n_train = data.train[0].x.shape[0]
    steps_per_epoch = math.ceil(n_train / params.batch_size)
    total_epochs = len(data.train) * schedule.outer_epochs
    total_steps = steps_per_epoch * total_epochs
    warmup = int(schedule.warmup_fraction * total_steps)
    probe = make_probe(data.dim, data.num_classes, params.init, seed, device)
    opt = make_optimizer(params, probe)
    real = data.real()
    initial = _eval_row(probe, data, params.loss, real, epoch=0)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    step = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc="train probe", unit="step", dynamic_ncols=True)
    for epoch in range(total_epochs):
        fs = data.train[epoch % len(data.train)]
        order = torch.randperm(n_train, generator=gen).to(device)
        probe.train()
        for s in range(steps_per_epoch):
            rows = order[s * params.batch_size : (s + 1) * params.batch_size]
            lr = params.peak_lr * lr_factor(step, total_steps, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(device.type, enabled=False):
                loss = loss_fn(probe(fs.x[rows].float()), fs.y[rows], params.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if bar is not None:
                bar.update(1)
        probe.eval()
        row = _eval_row(probe, data, params.loss, real, epoch=epoch + 1)
        row["lr"] = lr
        history.append(row)
        if bar is not None:
            bar.set_postfix(val_top1=f"{row['val_top1']:.4f}")
        if not math.isfinite(row["select_loss"] if row["select_loss"] is not None else row["val_loss"]):
            if on_epoch is None:
                raise Diverged(f"loss is not finite after epoch {epoch + 1}")
        if on_epoch is not None:
            on_epoch(epoch + 1, row, initial)
    if bar is not None:
        bar.close()
    return FitResult(probe.eval(), history, initial, steps_per_epoch, total_steps, warmup)


def _eval_row(probe: nn.Linear, data: ProbeData, loss: str, real: torch.Tensor | None, epoch: int) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch}
    sel = evaluate(probe, data.select, loss) if data.select is not None else None
    val = evaluate(probe, data.val, loss, real)
    for k in ("loss", "top1", "top5"):
        row[f"select_{k}"] = sel[k] if sel is not None else None
    for k, v in val.items():
        row[f"val_{k}"] = v
    return row


def split_holdout(train: Sequence[FeatureSet], fraction: float, seed: int) -> tuple[list[FeatureSet], FeatureSet | None]:
    """Hold out `fraction` of the training *images* (the same images in every augmentation epoch).

    Returns (training sets without them, one selection set holding their rows from all epochs).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--selection-fraction {fraction}: must be in [0, 1)")
    if fraction == 0.0:
        return list(train), None
    n = train[0].x.shape[0]
    k = max(1, round(fraction * n))
    if k >= n:
        raise ValueError(f"--selection-fraction {fraction} leaves no training rows out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, kept = perm[:k].sort().values, perm[k:].sort().values
    held_dev, kept_dev = held.to(train[0].x.device), kept.to(train[0].x.device)
    kept_sets = [fs.take(kept_dev) for fs in train]
    parts = [fs.take(held_dev) for fs in train]
    select = FeatureSet(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]),
                        torch.cat([p.index for p in parts]), [k_ for p in parts for k_ in p.keys])
    return kept_sets, select


def params_dict(params: ProbeParams) -> dict[str, Any]:
    d = asdict(params)
    d["peak_lr"] = params.peak_lr
    return d
