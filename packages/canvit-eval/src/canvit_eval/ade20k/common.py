"""Pieces shared by `canvit-eval train-probe` and `canvit-eval ade20k`: models, features, the eval loop."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from canvit_model import CanViTForPretraining, DINOv3, SegmentationProbe
from canvit_model import releases
from canvit_model.config import BACKBONES
from canvit_model.segmentation import upsample_logits
from canvit_results.cli import int_at_least

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


def short_name(spec: str) -> str:
    """A results-store-safe short name of a model / probe id or directory."""
    name = Path(str(spec).rstrip("/")).name or str(spec)
    name = re.sub(r"[^A-Za-z0-9._=+-]", "-", name).lstrip(".")
    return name or "model"


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


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """The policy generator of one evaluation batch: depends on (seed, batch index) only, so an
    interrupted evaluation resumes with the same viewpoints."""
    s = int(np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s)


def decode_into(cm: ConfusionMatrix, logits: torch.Tensor, labels: torch.Tensor, stream: int) -> None:
    """Bilinearly upsample logits [B, C, g, g] to the mask size, argmax, accumulate (chunks of 8)."""
    size = tuple(labels.shape[-2:])
    for i in range(0, logits.shape[0], DECODE_CHUNK):
        pred = upsample_logits(logits[i : i + DECODE_CHUNK], size).argmax(1)
        cm.update(pred, labels[i : i + DECODE_CHUNK], stream=stream, check=False)


def evaluate_canvit_batches(
    model: CanViTForPretraining,
    probe: SegmentationProbe,
    batches: Iterable[tuple[int, torch.Tensor, torch.Tensor]],
    cm: ConfusionMatrix,
    *,
    policy: str,
    num_glimpses: int,
    seed: int,
    canvas_grid: int,
    glimpse_px: int,
    amp: bool,
    device: torch.device,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Accumulate per-timestep confusion matrices (stream t) over (batch_index, scenes, labels) batches."""
    if policy not in POLICY_NAMES:
        raise ValueError(f"policy {policy!r} is unknown; valid names: {', '.join(POLICY_NAMES)}")
    probe.eval()  # BatchNorm must use its running statistics and never update them
    fn = canvas_probe_fn(model, probe)
    for bi, scenes, labels in batches:
        scenes = scenes.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        cm.check_labels(labels)
        pol = make_policy(policy, batch_size=scenes.shape[0], num_glimpses=num_glimpses,
                          generator=batch_generator(seed, bi), device=device)
        for step in rollout(model, scenes, pol, num_glimpses=num_glimpses, canvas_grid=canvas_grid,
                            glimpse_px=glimpse_px, amp=amp, probe=fn):
            with torch.inference_mode():
                decode_into(cm, step.seg_logits, labels, stream=step.t)
        if on_batch is not None:
            on_batch(bi)


def evaluate_dinov3_batches(model: DINOv3, probe: SegmentationProbe, batches, cm: ConfusionMatrix, *,
                            input_px: int, amp: bool, device: torch.device, on_batch=None) -> None:
    probe.eval()
    for bi, scenes, labels in batches:
        with torch.inference_mode():
            scenes = scenes.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            cm.check_labels(labels)
            logits = probe(dinov3_feature_grid(model, scenes, input_px, amp))
            decode_into(cm, logits, labels, stream=0)
        if on_batch is not None:
            on_batch(bi)



@contextlib.contextmanager
def bad_input(prog: str, flag: str, value: object) -> Iterator[None]:
    """A path / hub id the user gave that cannot be loaded: one error line naming the flag, exit 2, no traceback."""
    try:
        yield
    except (OSError, ValueError) as e:  # FileNotFoundError, hub / safetensors / datasets errors, bad layouts
        print(f"{prog}: error: {flag} {value!r}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
