"""The one rollout loop: evaluation (ADE20K, ImageNet, reconstruction, figures) and training-time validation.

    from canvit_model import IIDViewpoints
    from canvit_model.rollout import rollout

    policy = IIDViewpoints("r-iid", batch_size=B, num_glimpses=T, generator=torch.Generator().manual_seed(0))
    for step in rollout(model, scenes, policy, num_glimpses=T, canvas_grid=32, glimpse_px=128, amp=True):
        step.t, step.viewpoint, step.output, step.state      # after glimpse t
        canvas = model.canvit.canvas_patch_grid(step.state.canvas)   # [B, G, G, D_can] float32

    # EG-C2F (or any consumer wanting the probe's logits each step): pass `probe`, a callable
    # canvas [B, R + G*G, D_can] -> logits [B, C, G, G]; it runs in fp32 with autocast disabled, its
    # output is stored in step.seg_logits and fed to policy.next(t + 1, seg_logits).

Arguments:
- model: a `CanViTForPretraining` (or `CanViT`): `init_state(B, G)` and `model(glimpse, state, viewpoint)`
  -> `CanViTOutput`.
- scenes: [B, 3, S, S] normalized images on the model's device (S = scene size, e.g. 512 or 1024).
- policy: anything with `batch_size`, `num_glimpses` (its horizon), `needs_logits`, `name` and
  `next(t, seg_logits)` -> Viewpoint: `IIDViewpoints`, or canvit-eval's viewing policies.
- num_glimpses T (<= the policy's horizon), canvas_grid G, glimpse_px (a multiple of the patch size), amp.

Numerics: each step (glimpse extraction, model forward, probe) runs under `torch.inference_mode()`; the
model under bf16 autocast when `amp` and the scenes are on CUDA, fp32 otherwise (CPU is always fp32:
CPU bf16 autocast is slow and not what the paper measured). Glimpse extraction, the canvas, coordinates
and the probe stay float32 (paper D.3). The grad mode is entered per step and left before yielding, so
code between steps runs in the caller's mode. Yielded tensors are inference tensors: `.clone()` them
outside inference mode before using them in autograd (e.g. as probe-training inputs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from .canvit import CanViTOutput, RecurrentState
from .geometry import Viewpoint, sample_at_viewpoint


class ViewingPolicy(Protocol):
    """Where each glimpse of a rollout looks (see `IIDViewpoints`, canvit-eval's `policies`)."""

    name: str
    batch_size: int
    num_glimpses: int
    needs_logits: bool

    def next(self, t: int, seg_logits: torch.Tensor | None = None) -> Viewpoint: ...


@dataclass(frozen=True)
class RolloutStep:
    """The state after glimpse t."""

    t: int
    viewpoint: Viewpoint  # where glimpse t looked ([B])
    output: CanViTOutput  # the model's output for glimpse t
    seg_logits: torch.Tensor | None = None  # [B, C, G, G] fp32 when a probe was given

    @property
    def state(self) -> RecurrentState:
        return self.output.state


def autocast(device: torch.device | str, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when `amp`, nothing otherwise (fp32 on CPU)."""
    device = torch.device(device)
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def no_autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """Autocast disabled (probes and heads run in fp32, paper D.3)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def rollout(
    model: torch.nn.Module,
    scenes: torch.Tensor,
    policy: ViewingPolicy,
    *,
    num_glimpses: int,
    canvas_grid: int,
    glimpse_px: int,
    amp: bool = True,
    probe: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[RolloutStep]:
    """Yield a `RolloutStep` after each of the T glimpses; see the module docstring."""
    if not isinstance(scenes, torch.Tensor) or scenes.ndim != 4 or scenes.shape[1] != 3:
        shape = list(scenes.shape) if isinstance(scenes, torch.Tensor) else type(scenes).__name__
        raise ValueError(f"scenes must be a normalized [B, 3, S, S] tensor, got {shape}")
    b = scenes.shape[0]
    if policy.batch_size != b:
        raise ValueError(f"policy was made for batch_size={policy.batch_size}, scenes have B={b}")
    if isinstance(num_glimpses, bool) or not isinstance(num_glimpses, int) or not 1 <= num_glimpses <= policy.num_glimpses:
        raise ValueError(f"num_glimpses must be an int in [1, {policy.num_glimpses}] (the policy's horizon), got {num_glimpses!r}")
    if isinstance(canvas_grid, bool) or not isinstance(canvas_grid, int) or canvas_grid < 1:
        raise ValueError(f"canvas_grid must be an int >= 1, got {canvas_grid!r}")
    if policy.needs_logits and probe is None:
        raise ValueError(f"policy {policy.name!r} needs the segmentation probe's logits: pass probe=")
    device = scenes.device

    with torch.inference_mode():
        state = model.init_state(b, canvas_grid)
    logits: torch.Tensor | None = None
    for t in range(num_glimpses):
        with torch.inference_mode():
            viewpoint = policy.next(t, logits).to(device)
        out, logits = glimpse_step(model, scenes, state, viewpoint, glimpse_px=glimpse_px, amp=amp, probe=probe)
        state = out.state
        yield RolloutStep(t=t, viewpoint=viewpoint, output=out, seg_logits=logits)


def glimpse_step(
    model: torch.nn.Module,
    scenes: torch.Tensor,
    state: RecurrentState,
    viewpoint: Viewpoint,
    *,
    glimpse_px: int,
    amp: bool = True,
    probe: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[CanViTOutput, torch.Tensor | None]:
    """One glimpse of a rollout, wherever its viewpoint came from (a policy, or a click in `canvit-eval demo`):
    extract it, update the state, and run `probe` on the new canvas. Returns (output, logits [B, C, G, G] | None);
    numerics as in the module docstring."""
    device = scenes.device
    logits = None
    with torch.inference_mode():
        viewpoint = viewpoint.to(device)
        glimpse = sample_at_viewpoint(scenes, viewpoint, glimpse_px)  # [B, 3, g, g] float32
        with autocast(device, amp):
            out = model(glimpse, state, viewpoint)
        if probe is not None:
            with no_autocast(device):
                logits = probe(out.state.canvas).float()  # [B, C, G, G]
    return out, logits
