"""`canvit-eval train-probe`: train an ADE20K linear segmentation probe on a frozen CanViT's canvas.

Recipe (paper App. F.2.1, after DINOv3's linear ADE20K config): 40k steps, batch 16, AdamW (lr 3e-4,
wd 1e-3), 1500 linear warmup steps from 1e-6 x lr then cosine to 0, no gradient clipping; training
augmentation = random resize (short side x 0.5-2.0) + S x S crop + horizontal flip + photometric
distortion (see `data.TrainSet`). Each scene gets T = 10 R-IID glimpses (pretraining viewpoint law); the probe (LayerNorm -> Dropout2d(0.1) ->
BatchNorm -> 1x1 conv), one per canvas grid and shared across timesteps, is applied to the canvas after
every glimpse and the loss is the mean over timesteps of the cross-entropy (ignore 255) against the mask
nearest-downsampled to the canvas grid. The CanViT is frozen and runs under bf16 autocast on CUDA
(inference mode); the probe and its backward run in fp32 outside autocast.
`--dinov3 SIZE --input-px PX`: the DINOv3 baseline probe of Table 5 (scene resized to PX, patch features
of the final LayerNorm, probe without LayerNorm, t = 0 only).

Resumable: OUT/train_state.safetensors (probe, AdamW moments, step; written atomically every
`--checkpoint-every` steps) is picked up by rerunning the same command; every random draw (data order,
augmentation, viewpoints, dropout) is a function of (seed, step), so a resumed run equals an
uninterrupted one. The result is OUT/probe/ in the published probe layout (config.json +
model.safetensors, config.json written last), with the recipe and provenance under "training".
`--val-every N` validates on `--val-split` (F-IID, mIoU at the last of `--val-glimpses`) and keeps
OUT/best/; `--select best-val` publishes that one instead of the last (the authors' choice; note it
selects on the split the tables report).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from canvit_model import SegmentationProbe
from canvit_model import releases
from canvit_model.io import write_safetensors
from canvit_model.segmentation import ADE20K_NUM_CLASSES, IGNORE_INDEX
from canvit_results import atomic_dir, atomic_path, provenance

from canvit_results.cli import float_in, output_dir, pick_device

from ..ade20k.common import (
    DINOV3_HUB,
    bad_input,
    check_backbone_args,
    check_patch_multiple,
    confusion_step,
    dinov3_backbone,
    dinov3_feature_grid,
    load_canvit,
    load_dinov3,
    nonneg_int,
    positive_int,
)
from ..ade20k.data import EvalSet, TrainSet, batch_positions, labels_to_grid, open_ade20k
from ..ade20k.metrics import ConfusionMatrix
from ..harness import SEEDING, accumulate, batch_generator, checkpoint_identity, data_identity, scene_batches
from ..inputs import check_checkpoint, local_path
from ..policies import make_policy
from ..rollout import rollout

STATE_NAME = "train_state.safetensors"
EXAMPLE = f"""example (the c32 probe of Tables 5-6):
  canvit-eval train-probe --model {releases.FLAGSHIP} \\
      --data /data/ADEChallengeData2016 --scene-size 512 --canvas-grid 32 --out probes/ade20k-s512-c32
DINOv3 ViT-B/16 baseline at 160 px:
  canvit-eval train-probe --dinov3 vitb16 --input-px 160 --data /data/ADEChallengeData2016 \\
      --out probes/ade20k-dv3b-160px
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="canvit-eval train-probe", description=__doc__.split("\n\n")[0],
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="CanViT hub id or directory (with --dinov3: DINOv3 hub id / dir / .pth; "
                                   f"default {releases.DINOV3_TEMPLATE.format(backbone='<backbone>')})")
    p.add_argument("--data", required=True, help="ADEChallengeData2016 folder, a save_to_disk dir, or a hub dataset id")
    p.add_argument("--split", default="train", help="training split (default train)")
    p.add_argument("--val-data", default=None, help="validation data (default: --data)")
    p.add_argument("--val-split", default="validation", help="validation split (default validation)")
    p.add_argument("--image-column", default=None)
    p.add_argument("--mask-column", default=None)
    p.add_argument("--out", required=True, type=output_dir, help="output directory (probe/, best/, train_state.safetensors)")
    p.add_argument("--scene-size", type=positive_int, default=512, help="S, training crop / scene size (default 512)")
    p.add_argument("--canvas-grid", type=positive_int, default=32, help="G, canvas grid (default 32)")
    p.add_argument("--glimpse-px", type=positive_int, default=128, help="glimpse side in px (default 128)")
    p.add_argument("--glimpses", type=positive_int, default=10, help="T, R-IID glimpses per scene (default 10)")
    p.add_argument("--steps", type=positive_int, default=40_000, help="optimizer steps (default 40000)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="scenes per step (default 16)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-3, help="AdamW weight decay (default 1e-3)")
    p.add_argument("--warmup-steps", type=nonneg_int, default=1500, help="linear warmup steps (default 1500)")
    p.add_argument("--warmup-start", type=float, default=1e-6, help="warmup start factor of the lr (default 1e-6)")
    p.add_argument("--photometric", action=argparse.BooleanOptionalAction, default=True,
                   help="photometric distortion in the training augmentation (default on)")
    p.add_argument("--dropout", type=float_in(0, 1, "--dropout", hi_open=True), default=0.1, help="Dropout2d probability (default 0.1)")
    p.add_argument("--num-classes", type=positive_int, default=ADE20K_NUM_CLASSES, help="classes (default 150)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of data order, augmentation, viewpoints, init")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the frozen model on CUDA (default on; CPU always fp32)")
    p.add_argument("--dinov3", type=dinov3_backbone, default=None, metavar="SIZE",
                   help="train a DINOv3 baseline probe (vits16 / vitb16 / s / b) instead")
    p.add_argument("--input-px", type=positive_int, default=None, help="with --dinov3: DINOv3 input resolution")
    p.add_argument("--val-every", type=nonneg_int, default=0, help="validate every N steps (0: never; authors: 500)")
    p.add_argument("--val-glimpses", type=positive_int, default=10, help="F-IID glimpses at validation (default 10)")
    p.add_argument("--val-limit", type=positive_int, default=None, help="validate on the first N images only")
    p.add_argument("--val-batch-size", type=positive_int, default=None, help="validation batch (default --batch-size)")
    p.add_argument("--select", choices=("last", "best-val"), default="last",
                   help="publish the last probe (default) or the best validation one (the authors' choice)")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between train-state saves")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--num-workers", type=nonneg_int, default=None, help="data loader workers (default min(8, CPUs))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def lr_at(step: int, *, peak: float, total: int, warmup: int, start_factor: float) -> float:
    """Linear warmup from start_factor x peak to peak over `warmup` steps, then cosine to 0 at `total`."""
    if step < warmup:
        return peak * (start_factor + (1 - start_factor) * step / warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 12345) % (2**62)


def _config(args: argparse.Namespace) -> dict:
    keep = ("model", "data", "split", "scene_size", "canvas_grid", "glimpse_px", "glimpses", "steps", "batch_size",
            "lr", "weight_decay", "warmup_steps", "warmup_start", "dropout", "num_classes", "seed", "amp", "dinov3",
            "input_px", "image_column", "mask_column", "photometric", "select", "val_every", "val_glimpses",
            "val_limit", "val_batch_size", "val_split")
    return {k: getattr(args, k) for k in keep}


# Config fields that are paths (the weights and data digests of the identity stand for them).
PATH_FIELDS = ("model", "data")


def probe_differences(recorded: dict, config: dict, identity: dict) -> list[str]:
    """The settings in which a finished probe's training record differs from this run ("name: probe's vs
    this run's"); the weights / data digests stand for the paths when the record has them."""
    now = json.loads(json.dumps(config))
    rec_cfg, rec_id = recorded.get("config") or {}, recorded.get("identity") or {}
    skip = PATH_FIELDS if rec_id else ()
    diffs = [f"{k} {rec_cfg.get(k)!r} vs {now.get(k)!r}" for k in sorted(set(rec_cfg) | set(now))
             if k not in skip and k in rec_cfg and rec_cfg.get(k) != now.get(k)]
    for k, what in (("model", "model weights"), ("data", "training data")):
        if k in rec_id and rec_id[k] != identity[k]:
            diffs.append(f"{what} {rec_id[k][:12]} vs {identity[k][:12]}")
    return diffs


def save_state(out: Path, probe: SegmentationProbe, opt: torch.optim.Optimizer, step: int, config: dict,
               best: tuple[float, int] | None) -> None:
    """Probe + AdamW state + step in one safetensors file, replaced atomically."""
    tensors = {f"probe.{k}": v for k, v in probe.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(v)
    meta = {"step": str(step), "config": json.dumps(config, sort_keys=True), "best": json.dumps(best)}
    with atomic_path(out / STATE_NAME) as tmp:
        write_safetensors(tensors, tmp, metadata=meta)


def load_state(out: Path, probe: SegmentationProbe, opt: torch.optim.Optimizer, config: dict
               ) -> tuple[int, tuple[float, int] | None]:
    path = out / STATE_NAME
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if json.loads(meta.get("config", "null")) != json.loads(json.dumps(config, sort_keys=True)):
        raise ValueError(f"{path.name} was written by a different configuration; use another --out or delete it")
    tensors = load_file(str(path))
    probe.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("probe.")})
    sd = opt.state_dict()
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    best = json.loads(meta.get("best", "null"))
    return int(meta["step"]), (tuple(best) if best else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    t0 = time.time()
    dinov3 = check_backbone_args(parser, args)
    if args.lr <= 0 or args.weight_decay < 0 or not 0 < args.warmup_start <= 1:
        parser.error("--lr must be > 0, --weight-decay >= 0 and --warmup-start in (0, 1]")
    if args.select == "best-val" and not args.val_every:
        parser.error("--select best-val needs --val-every N (e.g. 500)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out!r} is a file; expected a directory")
    device = pick_device(args.device, parser=parser)
    amp = args.amp and device.type == "cuda"
    config = _config(args)

    # Every input is checked before a complete probe is skipped and before --out is created: bad input
    # leaves nothing behind. Local data is opened now; hub ids are checked when loaded.
    prog = parser.prog
    val_data = args.val_data or args.data
    open_train = functools.partial(open_ade20k, args.data, args.split, image_column=args.image_column,
                                   mask_column=args.mask_column)
    open_val = functools.partial(open_ade20k, val_data, args.val_split, image_column=args.image_column,
                                 mask_column=args.mask_column)
    with bad_input(prog, "--data", args.data):
        pairs = open_train()
    val_pairs = None
    if args.val_every:
        with bad_input(prog, "--val-data", val_data):
            val_pairs = open_val() if local_path(val_data) is not None else None
    model_spec = args.model or DINOV3_HUB.format(backbone=args.dinov3)
    with bad_input(prog, "--model", model_spec):
        check_checkpoint(model_spec, official=dinov3)
        model_id = checkpoint_identity(model_spec)
    data_id = data_identity(pairs, args.split, len(pairs), args.data)
    identity = {"model": model_id["digest"], "data": data_id["digest"], "seeding": SEEDING,
                "paths": {"model": model_id["path"], "data": data_id["path"]}}
    if (out / "probe" / "config.json").is_file():
        recorded = json.loads((out / "probe" / "config.json").read_text(encoding="utf-8")).get("training") or {}
        diffs = probe_differences(recorded, config, identity)
        if diffs:
            parser.error(f"--out {args.out!r} holds a complete probe trained with other settings "
                         f"(probe's vs this run's): {'; '.join(diffs)}. Use another --out, or delete it to retrain")
        print(f"{out / 'probe'} is complete (same settings, weights and data); nothing to do")
        return 0

    if args.val_every and val_pairs is None:
        with bad_input(prog, "--val-data", val_data):
            val_pairs = open_val()
    train = TrainSet(pairs, args.scene_size, args.seed, photometric=args.photometric)
    if dinov3:
        with bad_input(prog, "--model", args.model):
            model = load_dinov3(args.model, args.dinov3, device)
        embed_dim, use_ln = model.cfg.dim, False
    else:
        with bad_input(prog, "--model", args.model):
            model = load_canvit(args.model, device)
        embed_dim, use_ln = model.canvit.canvas_dim, True
    check_patch_multiple(parser, model, args, dinov3)
    torch.manual_seed(args.seed)
    probe = SegmentationProbe(embed_dim, args.num_classes, dropout=args.dropout, use_ln=use_ln).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    start, best = 0, None
    if (out / STATE_NAME).is_file():
        try:
            start, best = load_state(out, probe, opt, config)
        except ValueError as e:
            parser.error(f"--out {args.out!r}: {e}")
        print(f"resuming {out} at step {start}")

    val_set = EvalSet(val_pairs, args.scene_size, limit=args.val_limit) if val_pairs is not None else None
    out.mkdir(parents=True, exist_ok=True)

    def validate() -> float:
        """F-IID mIoU at the last of --val-glimpses on the harness loop (same seeding rule as `ade20k`)."""
        streams = 1 if dinov3 else args.val_glimpses
        step_fn = confusion_step(model, probe, dinov3=dinov3, num_classes=args.num_classes, input_px=args.input_px,
                                 policy="f-iid", num_glimpses=streams, seed=args.seed, canvas_grid=args.canvas_grid,
                                 glimpse_px=args.glimpse_px, amp=amp)
        vb = args.val_batch_size or args.batch_size
        totals = accumulate(lambda start: scene_batches(val_set.__getitem__, len(val_set), batch_size=vb, device=device,
                                                        start_batch=start),
                            step_fn, num_batches=-(-len(val_set) // vb), progress=False)
        cm = ConfusionMatrix(args.num_classes, streams=streams)
        cm.counts = totals.sums["confusion"]
        probe.train()
        return cm.mious()[-1]

    workers = args.num_workers if args.num_workers is not None else min(8, os.cpu_count() or 1)
    loader = DataLoader(train, batch_sampler=batch_positions(start, args.steps, args.batch_size), num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    bar = tqdm(total=args.steps, initial=start, desc="train-probe", disable=args.no_progress, unit="step")
    probe.train()
    log = open(out / "train_log.jsonl", "a", encoding="utf-8")
    for step, (scenes, labels) in enumerate(loader, start=start):
        lr = lr_at(step, peak=args.lr, total=args.steps, warmup=args.warmup_steps, start_factor=args.warmup_start)
        for g in opt.param_groups:
            g["lr"] = lr
        torch.manual_seed(step_seed(args.seed, step))  # dropout draws: a function of (seed, step)
        scenes = scenes.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        loss = _loss(args, model, probe, scenes, labels, step, amp, dinov3)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
        if done % 50 == 0 or done == args.steps:
            log.write(json.dumps({"step": done, "loss": loss.item(), "lr": lr}) + "\n")
            log.flush()
        if val_set is not None and (done % args.val_every == 0 or done == args.steps):
            miou = validate()
            log.write(json.dumps({"step": done, "val_miou": miou}) + "\n")
            log.flush()
            if best is None or miou > best[0]:
                best = (miou, done)
                _publish(probe, out / "best", args, config, identity, t0, device, done, best)
        if done % args.checkpoint_every == 0 or done == args.steps:
            save_state(out, probe, opt, done, config, best)
    bar.close()
    log.close()
    if args.select == "best-val":
        final = SegmentationProbe.from_pretrained(out / "best")
        _publish(final, out / "probe", args, config, identity, t0, device, best[1] if best else args.steps, best)
    else:
        _publish(probe, out / "probe", args, config, identity, t0, device, args.steps, best)
    if args.select == "best-val" and best:
        kept = f"the best-val probe (val mIoU {100 * best[0]:.2f} at step {best[1]} of {args.steps})"
    else:
        kept = f"the last probe (step {args.steps})" + (
            f"; the best val mIoU was {100 * best[0]:.2f} at step {best[1]}, kept in {out / 'best'}" if best else "")
    print(f"probe written to {out / 'probe'}: {kept}")
    return 0


def _loss(args, model, probe, scenes, labels, step, amp, dinov3) -> torch.Tensor:
    """Mean over timesteps of the pixel-mean cross-entropy on the feature grid (ignore 255)."""
    if dinov3:
        with torch.inference_mode():
            feats = dinov3_feature_grid(model, scenes, args.input_px, amp)
        feats = feats.clone()  # a normal tensor: autograd may save it
        return _ce(probe(feats), labels_to_grid(labels, tuple(feats.shape[1:3])))
    targets = labels_to_grid(labels, args.canvas_grid)  # [B, G, G]
    pol = make_policy("r-iid", batch_size=scenes.shape[0], num_glimpses=args.glimpses,
                      generator=batch_generator(args.seed, step), device=scenes.device)
    valid = (targets != IGNORE_INDEX).sum().clamp_min(1)  # the same at every timestep (no host sync)
    total = scenes.new_zeros((), dtype=torch.float32)
    for st in rollout(model, scenes, pol, num_glimpses=args.glimpses, canvas_grid=args.canvas_grid,
                      glimpse_px=args.glimpse_px, amp=amp):
        grid = model.canvit.canvas_patch_grid(st.state.canvas).clone()  # [B, G, G, D_can] fp32
        total = total + _ce(probe(grid), targets, valid)
    return total / args.glimpses


def _ce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over non-ignored pixels (0 when every pixel is ignored, instead of NaN)."""
    if valid is None:
        valid = (targets != IGNORE_INDEX).sum().clamp_min(1)
    loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / valid


def _publish(probe: SegmentationProbe, directory: Path, args, config: dict, identity: dict, t0: float, device,
             step: int, best) -> None:
    """Write the probe in the published layout (atomically: a temp dir swapped into place, `atomic_dir`)."""
    probe_copy = SegmentationProbe(probe.config.embed_dim, probe.config.num_classes, probe.config.dropout,
                                   probe.config.use_ln)
    probe_copy.load_state_dict({k: v.detach().cpu() for k, v in probe.state_dict().items()})
    probe_copy.hub_extra = {
        "training": {"recipe": "canvit-eval train-probe (paper App. F.2.1)", "config": config, "identity": identity,
                     "step": step,
                     "select": args.select, "best_val": best,
                     "provenance": provenance(config=config, seed=args.seed, checkpoint=args.model, device=device,
                                              wall_time_s=time.time() - t0, argv=sys.argv)},
    }
    with atomic_dir(directory) as tmp:
        probe_copy.save_pretrained(tmp)


if __name__ == "__main__":
    raise SystemExit(main())
