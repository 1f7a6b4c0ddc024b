"""One optimizer step of passive-to-active dense latent distillation (paper §5.2, Table 2).

Per step: one batch of scenes, one rollout per entry of `cfg.rollouts` (F-IID: full scene first, then
random; R-IID: random from t = 0), each from a fresh canvas. The rollout length is a number of TBPTT
chunks of K glimpses: after each chunk the rollout continues with probability 1 - p_stop. All rollouts
of a step share that length. Gradients flow within a chunk only: the chunk's loss is back-propagated
right away and the canvas and recurrent CLS are detached before the next chunk (memory O(chunk)).

Loss (eq. 3) per glimpse: MSE(standardized patch prediction, standardized teacher patches) + MSE of
the CLS pair, averaged over the T glimpses of a rollout and over the rollouts, so each backward gets
chunk_loss / (T * n_rollouts) and the accumulated gradient is that of the step's mean loss.

Randomness: the length and every viewpoint of step `s` come from `step_generator(seed, s)`, a CPU
generator seeded from (seed, step) alone. Every rank draws the viewpoints of the *global* batch and
keeps its own rows, so data-parallel training sees what one process on the global batch would see,
ranks always agree on the number of backward calls, and a resumed run draws what the original drew.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from canvit_model import CanViTForPretraining, RecurrentState, Viewpoint, iid_viewpoint, sample_at_viewpoint
from canvit_model.metrics import reconstruction_cosines

from .config import PretrainConfig


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of step `step`: lengths and viewpoints are a pure function of (seed, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


def sample_num_chunks(stop_probability: float, generator: torch.Generator, max_chunks: int = 1000) -> int:
    """Chunks in a rollout: 1 + Geometric(p_stop) (after each chunk, continue with probability 1 - p)."""
    n = 1
    while n < max_chunks and torch.rand((), generator=generator).item() >= stop_probability:
        n += 1
    return n


@dataclass(frozen=True)
class StepPlan:
    """What one step will look at: chunks, and per rollout the viewpoint of each glimpse (global batch)."""

    num_chunks: int
    chunk: int  # K glimpses per chunk
    viewpoints: dict[int, list[Viewpoint]]  # rollout index -> T viewpoints, each of the global batch

    @property
    def num_glimpses(self) -> int:  # T per rollout
        return self.num_chunks * self.chunk


def plan_step(cfg: PretrainConfig, step: int, global_batch: int) -> StepPlan:
    """Sample the shared length, then every viewpoint of every rollout (in a fixed order)."""
    g = step_generator(cfg.seed, step)
    n = sample_num_chunks(cfg.stop_probability, g)
    t_total = n * cfg.tbptt_chunk
    vps: dict[int, list[Viewpoint]] = {}
    for r, kind in enumerate(cfg.rollouts):
        vps[r] = [iid_viewpoint(kind, t, global_batch, min_scale=cfg.min_scale, generator=g) for t in range(t_total)]
    return StepPlan(num_chunks=n, chunk=cfg.tbptt_chunk, viewpoints=vps)


def _with_tensors(vp: Viewpoint, centers: torch.Tensor, scales: torch.Tensor) -> Viewpoint:
    """`vp` with its tensors replaced by device copies of the same (already validated) values.

    A shallow copy skips `__post_init__`, whose checks would read device values back (a host sync).
    """
    out = copy.copy(vp)
    object.__setattr__(out, "centers", centers)
    object.__setattr__(out, "scales", scales)
    return out


def local_viewpoints(plan: StepPlan, rows_range: tuple[int, int], device: torch.device,
                     one_copy: bool | None = None) -> dict[int, list[Viewpoint]]:
    """This rank's rows of every viewpoint of the step, on `device`, in ONE non-blocking copy.

    Per-glimpse `.to(device)` copies would each wait for the GPU queue to drain (a sync per glimpse).
    """
    start, stop = rows_range
    local = {r: [Viewpoint(centers=v.centers[start:stop], scales=v.scales[start:stop]) for v in seq]
             for r, seq in plan.viewpoints.items()}  # validated here, on the CPU
    if not (device.type != "cpu" if one_copy is None else one_copy):
        return local
    flat = torch.cat([torch.cat([v.centers, v.scales[:, None]], 1) for seq in local.values() for v in seq])  # [n*b, 3]
    if device.type == "cuda":
        flat = flat.pin_memory()
    dev = flat.to(device, non_blocking=True)
    b, i, out = stop - start, 0, {}
    for r, seq in local.items():
        out[r] = []
        for v in seq:
            chunk = dev[i * b : (i + 1) * b]
            out[r].append(_with_tensors(v, chunk[:, :2], chunk[:, 2]))
            i += 1
    return out


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens and dims of each scene's squared error, then over scenes (a [B, ...] pair)."""
    return F.mse_loss(pred.float(), target.float())


def glimpse_losses(
    model: CanViTForPretraining,
    state: RecurrentState,
    target_patches: torch.Tensor,  # [B, G*G, D] standardized
    target_cls: torch.Tensor,  # [B, D] standardized
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(patch MSE, CLS MSE, standardized predictions) after one glimpse; readouts in float32, no autocast."""
    with torch.autocast(device_type=target_cls.device.type, enabled=False):
        pred_p = model.predict_teacher_patches(state.canvas.float())  # [B, G*G, D]
        pred_c = model.predict_teacher_cls(state.recurrent_cls.float())  # [B, D]
        return mse(pred_p, target_patches), mse(pred_c, target_cls), pred_p, pred_c


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


METRIC_NAMES = ("loss_patch", "loss_cls", "cos_patch_std", "cos_cls_std", "cos_patch_raw", "cos_cls_raw")


def rollout_backward(
    model: CanViTForPretraining,
    forward: torch.nn.Module,
    scenes: torch.Tensor,  # [b, 3, R, R] this rank's scenes
    targets_std: tuple[torch.Tensor, torch.Tensor],  # ([b, G*G, D], [b, D])
    targets_raw: tuple[torch.Tensor, torch.Tensor],
    viewpoints: list[Viewpoint],  # T viewpoints of this rank's rows, on the scenes' device
    cfg: PretrainConfig,
    *,
    canvas_grid: int,
    loss_scale: float,
    amp: str,
) -> torch.Tensor:
    """Run one rollout in TBPTT chunks, back-propagating each chunk; returns the rollout's metrics.

    `forward` is what glimpses go through (the model itself, or its compiled wrapper): calls go through
    `forward(...)`, never `.forward`, so a compiled module is really used. Returns a float32 tensor
    [len(METRIC_NAMES)] of the per-glimpse means (no host sync).
    """
    device = scenes.device
    b = scenes.shape[0]
    state = model.init_state(b, canvas_grid)
    tp, tc = targets_std
    t_total = len(viewpoints)
    w_patch = 1.0 if cfg.dense_loss else 0.0
    w_cls = 1.0 if cfg.cls_loss else 0.0
    sums = torch.zeros(len(METRIC_NAMES), device=device)
    for c0 in range(0, t_total, cfg.tbptt_chunk):
        chunk_loss = torch.zeros((), device=device)
        for t in range(c0, min(c0 + cfg.tbptt_chunk, t_total)):
            vp = viewpoints[t]
            glimpse = sample_at_viewpoint(scenes, vp, cfg.glimpse_size)  # [b, 3, g, g], fp32 bilinear
            with autocast_context(device, amp):
                out = forward(glimpse, state, vp)
            state = out.state
            lp, lc, pred_p, pred_c = glimpse_losses(model, state, tp, tc)
            chunk_loss = chunk_loss + w_patch * lp + w_cls * lc
            with torch.no_grad():
                cos = reconstruction_cosines(pred_p.detach(), pred_c.detach(), *targets_raw,
                                             model.teacher_patch_standardizer, model.teacher_cls_standardizer,
                                             per_position=True)
                sums += torch.stack([lp.detach(), lc.detach(), *(cos[m].mean() for m in METRIC_NAMES[2:])])
        (chunk_loss * (loss_scale / t_total)).backward()
        state = state.detach()  # truncated BPTT: no gradient across chunks
    return sums / t_total


def standardized_targets(
    model: CanViTForPretraining, patches: torch.Tensor, cls: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw teacher targets ([b, G*G, D], [b, D]) -> standardized (float32, no autocast)."""
    with torch.autocast(device_type=patches.device.type, enabled=False):
        tp = model.teacher_patch_standardizer.standardize(patches.float())
        tc = model.teacher_cls_standardizer.standardize(cls.float()[:, None])[:, 0]
    return tp, tc


def forward_backward(
    model: CanViTForPretraining,
    forward: torch.nn.Module,
    scenes: torch.Tensor,
    patches: torch.Tensor,
    cls: torch.Tensor,
    plan: StepPlan,
    cfg: PretrainConfig,
    *,
    rows_range: tuple[int, int] | None = None,
    amp: str = "fp32",
    viewpoints: dict[int, list[Viewpoint]] | None = None,
) -> torch.Tensor:
    """Accumulate the step's gradient into `.grad` (not zeroed here); returns metrics [n_rollouts, M].

    `rows_range` = this rank's rows of the global batch (default: all of `scenes`); `viewpoints` = the
    plan's viewpoints of those rows already on the device (default: `local_viewpoints` makes them).
    """
    b = scenes.shape[0]
    rows_range = rows_range or (0, b)
    if rows_range[1] - rows_range[0] != b:
        raise ValueError(f"rows_range={rows_range} does not match the {b} scenes of this rank")
    if viewpoints is None:
        viewpoints = local_viewpoints(plan, rows_range, scenes.device)
    tp, tc = standardized_targets(model, patches, cls)
    out = []
    n_roll = len(cfg.rollouts)
    for r in range(n_roll):
        out.append(
            rollout_backward(
                model, forward, scenes, (tp, tc), (patches.float(), cls.float()), viewpoints[r],
                cfg, canvas_grid=cfg.canvas_grid, loss_scale=1.0 / n_roll, amp=amp,
            )
        )
    return torch.stack(out)  # [n_rollouts, M]


def train_step(
    model: CanViTForPretraining,
    forward: torch.nn.Module,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    scenes: torch.Tensor,  # [b, 3, R, R] this rank's scenes
    patches: torch.Tensor,  # [b, G*G, D] raw teacher patches
    cls: torch.Tensor,  # [b, D] raw teacher CLS
    plan: StepPlan,
    cfg: PretrainConfig,
    *,
    lr: float,
    rows_range: tuple[int, int] | None = None,
    amp: str = "fp32",
    viewpoints: dict[int, list[Viewpoint]] | None = None,
    reduce_gradients: Callable[[list[torch.nn.Parameter]], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step, as the loop and the benchmark run it; returns (metrics [R, M], grad norm).

    LR, zeroed gradients, the TBPTT forward/backward of every rollout, the gradient average over ranks
    (`reduce_gradients`), clipping to `cfg.grad_clip`, AdamW. Nothing here reads device values back to
    the host (a test runs it under a host-read detector): the results stay on the device until the loop
    fetches a window of them.
    """
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    m = forward_backward(model, forward, scenes, patches, cls, plan, cfg, rows_range=rows_range, amp=amp,
                         viewpoints=viewpoints)
    if reduce_gradients is not None:
        reduce_gradients(params)
    gn = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    return m.detach(), gn.detach()
