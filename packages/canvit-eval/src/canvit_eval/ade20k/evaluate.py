"""`canvit-eval ade20k`: ADE20K mIoU per timestep of a frozen CanViT + linear probe under a viewing policy.

Protocol (paper App. F.2.1, Tables 5-6, Figure 4B): validation images and masks squished to S x S
(image bilinear, mask PIL-nearest), T glimpses of `--glimpse-px` px chosen by `--policy`, the probe on
the canvas after every glimpse (fp32, autocast off, eval mode), logits bilinearly upsampled to S x S then
argmax, dataset-level mIoU from a confusion matrix per timestep, under `torch.inference_mode`. The model
runs under bf16 autocast on CUDA (`--no-amp`: fp32); CPU is always fp32.
`--dinov3 SIZE --input-px PX`: the passive DINOv3 baseline of Table 5 (scene resized to PX, t = 0 only).

Writes one tidy table per run into the results store (`--results`, kinds `ade20k` / `ade20k-dinov3` of
packages/canvit-results/README.md): columns `t`, `miou` (a fraction). Interrupted runs resume from a
partial state under RESULTS/.partial/ (same key and configuration); finished runs are skipped.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence

import pandas as pd
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from canvit_model import SegmentationProbe
from canvit_model import releases
from canvit_model.io import write_safetensors
from canvit_results import atomic_path, is_complete, provenance, results_root, run_paths, write_run

from ..inputs import check_checkpoint, local_path
from ..policies import DETERMINISTIC, POLICY_NAMES
from canvit_results.cli import pick_device, store_dir

from .common import (
    check_backbone_args,
    bad_input,
    check_patch_multiple,
    dinov3_backbone,
    evaluate_canvit_batches,
    evaluate_dinov3_batches,
    load_canvit,
    load_dinov3,
    nonneg_int,
    positive_int,
    short_name,
)
from .data import EvalSet, open_ade20k
from .metrics import ConfusionMatrix

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
    p.add_argument("--checkpoint-every", type=positive_int, default=10, help="batches between partial-state saves")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _dataloader(ds, start: int, batch_size: int, workers: int, device: torch.device):
    sub = Subset(ds, range(start * batch_size, len(ds)))
    loader = DataLoader(sub, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    return ((start + i, x, y) for i, (x, y) in enumerate(loader))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    t0 = time.time()
    dinov3 = check_backbone_args(parser, args)
    device = pick_device(args.device, parser=parser)
    amp = args.amp and device.type == "cuda"
    batch_size = args.batch_size or (32 if args.canvas_grid <= 32 else 8)
    root = results_root(args.results)

    if dinov3:
        kind, key = "ade20k-dinov3", f"dinov3-{args.dinov3}-{args.input_px}px"
        num_glimpses = 1
    else:
        model_name = args.name or short_name(args.model)
        kind = "ade20k"
        key = f"{model_name}-{args.policy}-s{args.scene_size}-c{args.canvas_grid}-seed{args.seed}"
        num_glimpses = args.glimpses
    if args.limit is not None:
        key += f"-limit{args.limit}"
    try:
        run_paths(root, kind, key)
    except ValueError as e:  # only --name reaches the key unsanitized
        parser.error(f"--name {args.name!r}: {e}")

    # The input paths first (local data opened, local checkpoints' files present): a typo must not pass as
    # "already complete". Hub ids are checked when loaded.
    prog = parser.prog
    open_data = functools.partial(open_ade20k, args.data, args.split, image_column=args.image_column,
                                  mask_column=args.mask_column)
    with bad_input(prog, "--data", args.data):
        pairs = open_data() if local_path(args.data) is not None else None
    with bad_input(prog, "--probe", args.probe):
        check_checkpoint(args.probe)
    if args.model is not None:
        with bad_input(prog, "--model", args.model):
            check_checkpoint(args.model, official=dinov3)
    if is_complete(root, kind, key):
        print(f"{kind}/{key} is already complete in {root}; nothing to do")
        return 0

    if pairs is None:
        with bad_input(prog, "--data", args.data):
            pairs = open_data()
    ds = EvalSet(pairs, args.scene_size, limit=args.limit)
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

    config = {k: v for k, v in vars(args).items() if k not in ("results", "no_progress", "num_workers", "checkpoint_every")}
    config.update(batch_size=batch_size, amp_effective=amp, num_images=len(ds), resize="squish bilinear / PIL-nearest",
                  decode="bilinear upsample then argmax", miou="dataset-level confusion matrix")
    config_json = json.dumps(config, sort_keys=True)

    # Resume from a partial state of the same run (same key and configuration).
    partial = root / ".partial" / kind / f"{key}.safetensors"
    cm = ConfusionMatrix(num_classes, streams=num_glimpses, device=device)
    start = 0
    if partial.is_file():
        from safetensors import safe_open

        with safe_open(str(partial), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("config") == config_json:
            cm.counts.copy_(load_file(str(partial))["counts"].to(device))
            start = int(meta["batches_done"])
            print(f"resuming {kind}/{key} after {start} batches ({partial})")
    n_batches = (len(ds) + batch_size - 1) // batch_size
    workers = args.num_workers if args.num_workers is not None else min(8, os.cpu_count() or 1)
    bar = tqdm(total=n_batches, initial=start, desc=f"ade20k {key}", disable=args.no_progress, unit="batch")

    def on_batch(bi: int) -> None:
        bar.update(1)
        done = bi + 1
        if done % args.checkpoint_every == 0 and done < n_batches:
            with atomic_path(partial) as tmp:
                write_safetensors({"counts": cm.counts}, tmp, metadata={"config": config_json, "batches_done": str(done)})

    batches = _dataloader(ds, start, batch_size, workers, device)
    if dinov3:
        evaluate_dinov3_batches(model, probe, batches, cm, input_px=args.input_px, amp=amp, device=device,
                                on_batch=on_batch)
    else:
        evaluate_canvit_batches(model, probe, batches, cm, policy=args.policy, num_glimpses=num_glimpses,
                                seed=args.seed, canvas_grid=args.canvas_grid, glimpse_px=args.glimpse_px,
                                amp=amp, device=device, on_batch=on_batch)
    bar.close()

    mious = cm.mious()
    table = pd.DataFrame({"t": list(range(num_glimpses)), "miou": mious})
    if dinov3:
        extra = {"model": args.model or releases.DINOV3_TEMPLATE.format(backbone=args.dinov3), "probe": args.probe,
                 "backbone": args.dinov3, "input_px": args.input_px}
    else:
        extra = {"model": args.model, "probe": args.probe, "policy": args.policy, "scene_size": args.scene_size,
                 "canvas_grid": args.canvas_grid, "glimpse_px": args.glimpse_px, "num_glimpses": num_glimpses,
                 "seed": args.seed, "deterministic_policy": args.policy in DETERMINISTIC}
    extra.update(split=args.split, num_images=len(ds))
    prov = provenance(config=config, seed=args.seed, checkpoint=args.model, device=device,
                      wall_time_s=time.time() - t0, argv=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
                      probe=args.probe)
    ref = write_run(root, kind, key, table, prov, extra=extra)
    partial.unlink(missing_ok=True)
    shown = ", ".join(f"t{t}={100 * m:.2f}" for t, m in enumerate(mious) if t in (0, 1, 4, 9, 20) or t == num_glimpses - 1)
    print(f"{kind}/{key}: mIoU {shown}  -> {ref.table_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
