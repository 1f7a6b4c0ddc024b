"""Pieces shared by `canvit-eval train-probe` and `canvit-eval ade20k` (`canvit_eval.tasks`): models,
features, and one batch's per-timestep confusion counts (the tasks add them up on `canvit_eval.harness`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from canvit_model import CanViTForPretraining, DINOv3, SegmentationProbe
from canvit_model import releases
from canvit_model.config import BACKBONES
from canvit_model.segmentation import upsample_logits
from canvit_results.cli import int_at_least

from ..harness import batch_generator
from ..policies import POLICY_NAMES, make_policy
from ..rollout import autocast, rollout
from .metrics import ConfusionMatrix

DECODE_CHUNK = 8  # images per bilinear-upsample + argmax chunk (bounds memory at 1024 px x 150 classes)
DINOV3_HUB = releases.DINOV3_TEMPLATE
_DINOV3_ALIASES = {"s": "vits16", "b": "vitb16", "l": "vitl16", "vits": "vits16", "vitb": "vitb16", "vitl": "vitl16",
                   "dv3s": "vits16", "dv3b": "vitb16"}


def dinov3_backbone(size: str) -> str:
    name = _DINOV3_ALIASES.get(size.lower(), size.lower())
    if name not in BACKBONES:
        raise argparse.ArgumentTypeError(
            f"--dinov3 {size!r} is unknown; use a backbone name ({', '.join(sorted(BACKBONES))}) or s / b / l")
    return name


positive_int = int_at_least(1)  # argparse types of the ADE20K commands (argparse names the flag)
nonneg_int = int_at_least(0)


def load_canvit(spec: str, device: torch.device) -> CanViTForPretraining:
    model = CanViTForPretraining.from_pretrained(spec, map_location=device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_dinov3(spec: str | None, backbone: str, device: torch.device) -> DINOv3:
    model = DINOv3.from_pretrained(spec or DINOV3_HUB.format(backbone=backbone), map_location=device).eval()
    if model.cfg.dim != BACKBONES[backbone].dim or model.cfg.depth != BACKBONES[backbone].depth:
        raise ValueError(f"not a DINOv3 {backbone} (dim {model.cfg.dim}, depth {model.cfg.depth})")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def check_backbone_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """--dinov3 SIZE needs --input-px; a CanViT run needs --model (usage errors). True for a DINOv3 run."""
    dinov3 = args.dinov3 is not None
    if dinov3 and args.input_px is None:
        parser.error("--dinov3 needs --input-px PX (e.g. 160 or 512)")
    if not dinov3 and args.model is None:
        parser.error("--model is required (a CanViT hub id or directory)")
    return dinov3


def check_patch_multiple(parser: argparse.ArgumentParser, model, args: argparse.Namespace, dinov3: bool) -> None:
    """--glimpse-px (CanViT) / --input-px (DINOv3) must be a positive multiple of the model's patch size."""
    if dinov3:
        p, flag, v = model.cfg.patch_size, "--input-px", args.input_px
    else:
        p, flag, v = model.canvit.patch_size, "--glimpse-px", args.glimpse_px
    if v % p:
        parser.error(f"{flag} must be a multiple of the model's patch size {p} px, got {v}")


def dinov3_feature_grid(model: DINOv3, scenes: torch.Tensor, input_px: int, amp: bool) -> torch.Tensor:
    """DINOv3 patch features [B, h, w, D] of the scenes [B, 3, S, S] resized (bilinear) to input_px."""
    x = scenes
    if x.shape[-1] != input_px or x.shape[-2] != input_px:
        x = F.interpolate(x, size=(input_px, input_px), mode="bilinear", antialias=True, align_corners=False)
    with autocast(x.device, amp):
        feats = model.forward_features(x)
    return feats.patch_map().permute(0, 2, 3, 1).float()  # [B, h, w, D]


def canvas_probe_fn(model: CanViTForPretraining, probe: SegmentationProbe) -> Callable[[torch.Tensor], torch.Tensor]:
    """canvas [B, R + G*G, D_can] -> logits [B, C, G, G] (fp32, autocast off inside the probe)."""
    return lambda canvas: probe(model.canvit.canvas_patch_grid(canvas))


def decode_into(cm: ConfusionMatrix, logits: torch.Tensor, labels: torch.Tensor, stream: int) -> None:
    """Bilinearly upsample logits [B, C, g, g] to the mask size, argmax, accumulate (chunks of 8)."""
    size = tuple(labels.shape[-2:])
    for i in range(0, logits.shape[0], DECODE_CHUNK):
        pred = upsample_logits(logits[i : i + DECODE_CHUNK], size).argmax(1)
        cm.update(pred, labels[i : i + DECODE_CHUNK], stream=stream, check=False)


def canvit_confusion(
    model: CanViTForPretraining,
    probe: SegmentationProbe,
    scenes: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    policy: str,
    num_glimpses: int,
    seed: int,
    batch_index: int,
    canvas_grid: int,
    glimpse_px: int,
    amp: bool,
    on_viewpoint: Callable[[int, Any], None] | None = None,
) -> torch.Tensor:
    """One batch (scenes [B, 3, S, S], masks [B, S, S] on the device): confusion counts [T, C, C] int64, one
    stream per timestep, with the policy's draws from `batch_generator(seed, batch_index)`."""
    if policy not in POLICY_NAMES:
        raise ValueError(f"policy {policy!r} is unknown; valid names: {', '.join(POLICY_NAMES)}")
    probe.eval()  # BatchNorm must use its running statistics and never update them
    cm = ConfusionMatrix(num_classes, streams=num_glimpses, device=scenes.device)
    cm.check_labels(labels)
    pol = make_policy(policy, batch_size=scenes.shape[0], num_glimpses=num_glimpses,
                      generator=batch_generator(seed, batch_index), device=scenes.device)
    for step in rollout(model, scenes, pol, num_glimpses=num_glimpses, canvas_grid=canvas_grid,
                        glimpse_px=glimpse_px, amp=amp, probe=canvas_probe_fn(model, probe)):
        if on_viewpoint is not None:
            on_viewpoint(step.t, step.viewpoint)
        with torch.inference_mode():
            decode_into(cm, step.seg_logits, labels, stream=step.t)
    return cm.counts


def dinov3_confusion(model: DINOv3, probe: SegmentationProbe, scenes: torch.Tensor, labels: torch.Tensor, *,
                     num_classes: int, input_px: int, amp: bool) -> torch.Tensor:
    """One batch of the passive DINOv3 baseline: confusion counts [1, C, C] int64 (t = 0 only)."""
    probe.eval()
    cm = ConfusionMatrix(num_classes, streams=1, device=scenes.device)
    with torch.inference_mode():
        cm.check_labels(labels)
        decode_into(cm, probe(dinov3_feature_grid(model, scenes, input_px, amp)), labels, stream=0)
    return cm.counts


def confusion_step(model: Any, probe: SegmentationProbe, *, dinov3: bool, num_classes: int, input_px: int | None,
                   policy: str, num_glimpses: int, seed: int, canvas_grid: int, glimpse_px: int, amp: bool,
                   viewpoints: Any = None) -> Callable[[Any], dict[str, torch.Tensor]]:
    """The harness step of an ADE20K evaluation: a `SceneBatch` -> {"confusion": [T, C, C]} (CanViT under a
    policy, or the DINOv3 baseline); `viewpoints` (a `harness.ViewpointWriter`) records every glimpse."""

    def step(batch: Any) -> dict[str, torch.Tensor]:
        if dinov3:
            return {"confusion": dinov3_confusion(model, probe, batch.scenes, batch.labels, num_classes=num_classes,
                                                  input_px=input_px, amp=amp)}
        rec = viewpoints.recorder(batch, num_glimpses) if viewpoints is not None else None
        return {"confusion": canvit_confusion(model, probe, batch.scenes, batch.labels, num_classes=num_classes,
                                              policy=policy, num_glimpses=num_glimpses, seed=seed,
                                              batch_index=batch.index, canvas_grid=canvas_grid,
                                              glimpse_px=glimpse_px, amp=amp, on_viewpoint=rec)}

    return step


@contextlib.contextmanager
def bad_input(prog: str, flag: str, value: object) -> Iterator[None]:
    """A path / hub id the user gave that cannot be loaded: one error line naming the flag, exit 2, no traceback."""
    try:
        yield
    except (OSError, ValueError) as e:  # FileNotFoundError, hub / safetensors / datasets errors, bad layouts
        print(f"{prog}: error: {flag} {value!r}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
