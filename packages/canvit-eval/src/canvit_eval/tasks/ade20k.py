"""`canvit-eval ade20k`: ADE20K mIoU per timestep of a frozen CanViT + linear probe under a viewing policy.

Protocol (paper App. F.2.1, Tables 5-6, Figure 4B): validation images and masks squished to S x S
(image bilinear, mask PIL-nearest), T glimpses of `--glimpse-px` px chosen by `--policy`, the probe on
the canvas after every glimpse (fp32, autocast off, eval mode), logits bilinearly upsampled to S x S then
argmax, dataset-level mIoU from a confusion matrix per timestep, under `torch.inference_mode`. The model
runs under bf16 autocast on CUDA (`--no-amp`: fp32); CPU is always fp32.
`--dinov3 SIZE --input-px PX`: the passive DINOv3 baseline of Table 5 (scene resized to PX, t = 0 only).

Writes one tidy table per run into the results store (`--results`, kinds `ade20k` / `ade20k-dinov3` of
packages/canvit-results/README.md): columns `t`, `miou` (a fraction), keyed by the run's identity
(`canvit_eval.harness`). Runs on the harness loop: each batch adds its per-timestep confusion counts;
interrupted runs resume from a partial state of the same identity; finished runs are skipped.
A probe whose config records its training settings is checked against the run's (canvas grid, scene size,
glimpse px; for DINOv3 the backbone and input px): a mismatch is a usage error naming both values.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from canvit_model import SegmentationProbe
from canvit_model import releases
from canvit_results import provenance, run_paths
from canvit_results.cli import pick_device, store_dir

from ..ade20k.common import (
    DINOV3_HUB,
    bad_input,
    check_backbone_args,
    check_patch_multiple,
    confusion_step,
    dinov3_backbone,
    load_canvit,
    load_dinov3,
    nonneg_int,
    positive_int,
)
from ..ade20k.data import EvalSet, open_ade20k
from ..ade20k.metrics import ConfusionMatrix
from ..harness import (
    RunIdentity,
    ViewpointWriter,
    accumulate,
    add_viewpoints_arg,
    checkpoint_identity,
    data_identity,
    partial_path,
    publish,
    readable_prefix,
    scene_batches,
    short_name,
    skip_if_complete,
    viewpoints_path,
)
from ..inputs import check_checkpoint
from ..policies import DETERMINISTIC, POLICY_NAMES

EXAMPLE = f"""example (Table 6, C2F, 512 px scene, 32x32 canvas, seed 0):
  canvit-eval ade20k --model {releases.FLAGSHIP} \\
      --probe {releases.ade20k_probe(512, 32)} --data /data/ADEChallengeData2016 \\
      --policy c2f --glimpses 21 --seed 0 --scene-size 512 --canvas-grid 32 --glimpse-px 128 --batch-size 32
DINOv3 baseline (Table 5):
  canvit-eval ade20k --dinov3 vitb16 --input-px 160 --probe {releases.dinov3_ade20k_probe("vitb16", 160)} \\
      --data /data/ADEChallengeData2016
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="canvit-eval ade20k", description=__doc__.split("\n\n")[0],
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="CanViT hub id or directory (with --dinov3: a DINOv3 hub id / dir / .pth; "
                                   f"default {releases.DINOV3_TEMPLATE.format(backbone='<backbone>')})")
    p.add_argument("--probe", required=True, help="segmentation probe hub id or directory (config.json + model.safetensors)")
    p.add_argument("--data", required=True, help="ADEChallengeData2016 folder, a save_to_disk dir, or a hub dataset id")
    p.add_argument("--split", default="validation", help="split (default validation; val/validation and train/training are aliases)")
    p.add_argument("--image-column", default=None, help="image column of a datasets dataset (default: autodetect)")
    p.add_argument("--mask-column", default=None, help="mask column of a datasets dataset (default: annotation)")
    p.add_argument("--policy", default="c2f", choices=POLICY_NAMES, help="viewing policy (default c2f)")
    p.add_argument("--glimpses", type=positive_int, default=21, help="T, glimpses per scene (default 21)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the policy's random draws (default 0)")
    p.add_argument("--scene-size", type=positive_int, default=512, help="S: images and masks squished to S x S (default 512)")
    p.add_argument("--canvas-grid", type=positive_int, default=32, help="G: canvas grid (default 32)")
    p.add_argument("--glimpse-px", type=positive_int, default=128, help="glimpse side in px (default 128)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="scenes per batch (default 32 for G <= 32, else 8)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the model on CUDA (default on; CPU always fp32)")
    p.add_argument("--dinov3", type=dinov3_backbone, default=None, metavar="SIZE",
                   help="evaluate a DINOv3 baseline probe instead (vits16 / vitb16 / s / b)")
    p.add_argument("--input-px", type=positive_int, default=None, help="with --dinov3: DINOv3 input resolution")
    p.add_argument("--num-classes", type=positive_int, default=None, help="classes (default: the probe's, 150 for ADE20K)")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N images (smoke runs)")
    p.add_argument("--name", default=None, help="model name in the results key (default: last part of --model)")
    p.add_argument("--results", type=store_dir, default=None, help="results store (default results/ or $CANVIT_RESULTS)")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--num-workers", type=nonneg_int, default=None, help="data loader workers (default min(8, CPUs))")
    p.add_argument("--checkpoint-every", type=positive_int, default=10, help="batches between partial-state saves (default 10)")
    add_viewpoints_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# Settings a probe's recorded training config fixes: (config field, run flag, args attribute).
PROBE_SETTINGS = {
    False: (("canvas_grid", "--canvas-grid", "canvas_grid"), ("scene_size", "--scene-size", "scene_size"),
            ("glimpse_px", "--glimpse-px", "glimpse_px")),
    True: (("dinov3", "--dinov3", "dinov3"), ("input_px", "--input-px", "input_px")),
}


def check_probe_settings(parser: argparse.ArgumentParser, probe: Any, args: argparse.Namespace, dinov3: bool) -> None:
    """Every setting the probe's training record fixes must equal the run's (a usage error naming both values);
    a probe without a record (e.g. a published one) is not checked."""
    cfg = ((getattr(probe, "hub_extra", None) or {}).get("training") or {}).get("config") or {}
    if bool(cfg.get("dinov3")) != dinov3 and "dinov3" in cfg:
        kind = "a DINOv3 baseline" if cfg.get("dinov3") else "a CanViT canvas"
        parser.error(f"--probe {args.probe!r} is {kind} probe (its training config says dinov3={cfg.get('dinov3')!r})")
    for field, flag, attr in PROBE_SETTINGS[dinov3]:
        if field in cfg and cfg[field] is not None and cfg[field] != getattr(args, attr):
            parser.error(f"{flag} {getattr(args, attr)} but --probe {args.probe!r} was trained with "
                         f"{field} {cfg[field]}: evaluate it at {flag} {cfg[field]}, or train a probe for "
                         f"{flag} {getattr(args, attr)}")


def plan(parser: argparse.ArgumentParser, args: argparse.Namespace, device: torch.device
         ) -> tuple[RunIdentity, Any, int, bool]:
    """(identity, ADE20K pairs, number of images, DINOv3 run?) of a run: inputs checked (a typo must never pass
    as "already complete"), the data opened and listed, the checkpoints digested; nothing loaded."""
    dinov3 = check_backbone_args(parser, args)
    prog = parser.prog
    with bad_input(prog, "--data", args.data):
        pairs = open_ade20k(args.data, args.split, image_column=args.image_column, mask_column=args.mask_column)
    parts = {}
    with bad_input(prog, "--probe", args.probe):
        check_checkpoint(args.probe)
        parts["probe"] = checkpoint_identity(args.probe)
    model = args.model or DINOV3_HUB.format(backbone=args.dinov3)
    with bad_input(prog, "--model", model):
        check_checkpoint(model, official=dinov3)
        parts["model"] = checkpoint_identity(model)
    n = len(pairs) if args.limit is None else min(args.limit, len(pairs))
    parts["data"] = data_identity(pairs, args.split, n, args.data)
    amp = args.amp and device.type == "cuda"
    batch_size = args.batch_size or (32 if args.canvas_grid <= 32 else 8)
    settings = {"scene_size": args.scene_size, "batch_size": batch_size, "amp": amp, "limit": args.limit,
                "num_classes": args.num_classes, "resize": "squish bilinear / PIL-nearest",
                "decode": "bilinear upsample then argmax"}
    if dinov3:
        kind, name = "ade20k-dinov3", f"dinov3-{args.dinov3}"
        prefix = f"{name}-{args.input_px}px" + (f"-limit{args.limit}" if args.limit is not None else "")
        settings.update(backbone=args.dinov3, input_px=args.input_px)
    else:
        kind, name = "ade20k", args.name or short_name(args.model)
        prefix = readable_prefix(name, args.policy, args.scene_size, args.canvas_grid, args.seed, args.limit)
        settings.update(policy=args.policy, glimpses=args.glimpses, seed=args.seed, canvas_grid=args.canvas_grid,
                        glimpse_px=args.glimpse_px)
    return RunIdentity(kind, name, prefix, parts, settings), pairs, n, dinov3


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    t0 = time.time()
    viewpoints_path(parser, args.save_viewpoints)
    device = pick_device(args.device, parser=parser)
    if args.name is not None:
        try:
            run_paths(args.results, "ade20k", args.name)
        except ValueError as e:  # only --name reaches the key unsanitized
            parser.error(f"--name {args.name!r}: {e}")
    ident, pairs, n, dinov3 = plan(parser, args, device)
    if dinov3 and args.save_viewpoints:
        parser.error("--save-viewpoints: a DINOv3 baseline run takes no glimpses")
    kind, key = ident.kind, ident.key
    amp, batch_size = ident.settings["amp"], ident.settings["batch_size"]
    num_glimpses = 1 if dinov3 else args.glimpses

    if skip_if_complete(ident, args.results):
        return 0
    prog = parser.prog
    with bad_input(prog, "--probe", args.probe):
        probe = SegmentationProbe.from_pretrained(args.probe, map_location=device).eval()
    num_classes = args.num_classes or probe.num_classes
    if probe.num_classes != num_classes:
        parser.error(f"--num-classes {num_classes} but the probe predicts {probe.num_classes} classes")
    if dinov3:
        with bad_input(prog, "--model", args.model):
            model = load_dinov3(args.model, args.dinov3, device)
        if probe.config.use_ln or probe.config.embed_dim != model.cfg.dim:
            parser.error(f"--probe {args.probe} is not a DINOv3 {args.dinov3} feature probe "
                         f"(use_ln={probe.config.use_ln}, embed_dim={probe.config.embed_dim})")
    else:
        with bad_input(prog, "--model", args.model):
            model = load_canvit(args.model, device)
    check_patch_multiple(parser, model, args, dinov3)
    check_probe_settings(parser, probe, args, dinov3)

    config = {k: v for k, v in vars(args).items() if k not in ("results", "no_progress", "num_workers", "checkpoint_every")}
    config.update(batch_size=batch_size, amp_effective=amp, num_images=n, resize="squish bilinear / PIL-nearest",
                  decode="bilinear upsample then argmax", miou="dataset-level confusion matrix")
    viewpoints = ViewpointWriter(args.save_viewpoints, args.results, kind, key) if args.save_viewpoints else None
    step = confusion_step(model, probe, dinov3=dinov3, num_classes=num_classes, input_px=args.input_px,
                          policy=args.policy, num_glimpses=num_glimpses, seed=args.seed, canvas_grid=args.canvas_grid,
                          glimpse_px=args.glimpse_px, amp=amp, viewpoints=viewpoints)
    n_batches = (n + batch_size - 1) // batch_size
    workers = args.num_workers if args.num_workers is not None else min(8, os.cpu_count() or 1)
    item = EvalSet(pairs, args.scene_size, limit=args.limit).__getitem__
    part = partial_path(args.results, kind, key)
    totals = accumulate(
        lambda start: scene_batches(item, n, batch_size=batch_size, device=device, workers=workers, start_batch=start),
        step, num_batches=n_batches, partial=part, identity=ident.digest, device=device,
        save_every=args.checkpoint_every, progress=not args.no_progress, desc=f"{kind} {key}",
    )
    cm = ConfusionMatrix(num_classes, streams=num_glimpses)
    cm.counts = totals.sums["confusion"]
    mious = cm.mious()
    table = pd.DataFrame({"t": list(range(num_glimpses)), "miou": mious})
    if dinov3:
        extra = {"model": args.model or releases.DINOV3_TEMPLATE.format(backbone=args.dinov3), "probe": args.probe,
                 "backbone": args.dinov3, "input_px": args.input_px}
    else:
        extra = {"model": args.model, "probe": args.probe, "policy": args.policy, "scene_size": args.scene_size,
                 "canvas_grid": args.canvas_grid, "glimpse_px": args.glimpse_px, "num_glimpses": num_glimpses,
                 "seed": args.seed, "deterministic_policy": args.policy in DETERMINISTIC}
    extra.update(split=args.split, num_images=totals.count, model_label=ident.label(),
                 failed_images=[pairs.key(i) for i in totals.failed])
    if viewpoints is not None:
        extra["viewpoints"] = str(viewpoints.finish(n_batches))
    prov = provenance(config=config, seed=args.seed, checkpoint=args.model, device=device,
                      wall_time_s=time.time() - t0, argv=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
                      probe=args.probe)
    ref = publish(args.results, ident, table, prov, extra, part)
    if ref is None:
        return 0
    shown = ", ".join(f"t{t}={100 * m:.2f}" for t, m in enumerate(mious) if t in (0, 1, 4, 9, 20) or t == num_glimpses - 1)
    print(f"{kind}/{key}: mIoU {shown}  -> {ref.table_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
