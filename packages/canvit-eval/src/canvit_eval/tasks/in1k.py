"""`canvit-eval in1k`: frozen ImageNet-1k top-1 / top-5 per timestep through the DINOv3 probe (Table 7).

Per batch of validation scenes (Resize(512) + CenterCrop(512), ImageNet normalization), one rollout of
T glimpses under a viewing policy (`canvit_eval.rollout`); after every glimpse the recurrent CLS goes
through the fused head of `canvit_model.CanViTForImageClassification` (CLS readout -> destandardize ->
DINOv3 probe, fused in float64, run in float32 with autocast off) and top-1 / top-5 are counted. One
results-store row per timestep: `t`, `top1`, `top5` (fractions).

Runs on `canvit_eval.harness` (scene batches, the per-batch seeding rule, the identity key, resume and
publish): this module defines only the data (a labelled `canvit_data` source), the model wrapper (the fused
classifier) and the metric.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from canvit_model import releases
from canvit_results.cli import pick_device

from ..harness import (
    BatchParts,
    ClassifyItem,
    RunIdentity,
    SceneBatch,
    ViewpointWriter,
    add_rollout_args,
    batch_generator,
    check_rollout_args,
    checkpoint_identity,
    data_identity,
    image_means,
    image_sums,
    open_source,
    partial_path,
    publish,
    readable_prefix,
    rollout_settings,
    short_name,
    skip_if_complete,
)

EXAMPLE = f"""example (one H100, the paper's Table 7 C2F row, seed 0):
  canvit-eval in1k --model {releases.FLAGSHIP} \\
      --probe {releases.IN1K_PROBE} \\
      --data /datasets/imagenet --split val --policy c2f --glimpses 21 --seed 0 --results results/
  (--data also takes a Hugging Face dataset id or save_to_disk directory, e.g. ILSVRC/imagenet-1k --split validation)"""

# -- IN1k ------------------------------------------------------------------------------------------


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, torch.Tensor]:
    """{k: [B] bool}: is the label among the k highest logits [B, C]? (ties: torch.topk's order)."""
    kmax = min(max(ks), logits.shape[-1])
    top = logits.topk(kmax, dim=-1).indices  # [B, kmax]
    hit = top == labels[:, None]  # [B, kmax]
    return {k: hit[:, : min(k, kmax)].any(-1) for k in ks}


def in1k_step(
    classifier: Any, batch: SceneBatch, *, policy: str, num_glimpses: int, seed: int, canvas_grid: int,
    glimpse_px: int, amp: bool, on_viewpoint: Callable[[int, Any], None] | None = None,
) -> dict[str, torch.Tensor]:
    """{top1, top5: [B, T] 0/1, predictions: [B, T, 5] top-5 class indices} for one batch: one rollout,
    the fused head after every glimpse (`on_viewpoint(t, viewpoint)` sees each glimpse's viewpoint)."""
    from ..policies import make_policy
    from ..rollout import rollout

    b = batch.scenes.shape[0]
    pol = make_policy(policy, batch_size=b, num_glimpses=num_glimpses,
                      generator=batch_generator(seed, batch.index), device=batch.scenes.device)
    top1, top5, preds = [], [], []
    for st in rollout(classifier.canvit, batch.scenes, pol, num_glimpses=num_glimpses, canvas_grid=canvas_grid,
                      glimpse_px=glimpse_px, amp=amp):
        if on_viewpoint is not None:
            on_viewpoint(st.t, st.viewpoint)
        with torch.inference_mode():
            logits = classifier.classify(st.state.recurrent_cls)  # [B, C] fp32, autocast off
            hit = topk_correct(logits, batch.labels)
            preds.append(logits.topk(min(5, logits.shape[-1]), dim=-1).indices)  # [B, 5]
        top1.append(hit[1])
        top5.append(hit[5])
    return {"top1": torch.stack(top1, 1).float(), "top5": torch.stack(top5, 1).float(),
            "predictions": torch.stack(preds, 1)}


class PredictionWriter:
    """Per-image top-5 predictions (the authors' `top_k_preds`), for ReaL labels or per-image analyses:
    RESULTS/in1k/KEY.predictions.safetensors with `top5` int16 [N, T, 5], `labels` int64 [N], `positions`
    int64 [N] (the images' indices in the data source); per-batch parts survive an interruption."""

    def __init__(self, results: str | None, key: str) -> None:
        from canvit_results import results_root

        self.parts = BatchParts(results_root(results) / ".partial" / "in1k" / f"{key}.predictions")
        self.final = results_root(results) / "in1k" / f"{key}.predictions.safetensors"

    def add(self, batch: SceneBatch, predictions: torch.Tensor) -> None:
        self.parts.add(batch.index, {"top5": predictions.to(torch.int16), "labels": batch.labels,
                                     "positions": torch.tensor(batch.positions, dtype=torch.int64)})

    def finish(self, num_batches: int) -> Path:
        from canvit_model.io import write_safetensors
        from canvit_results import atomic_path

        joined = self.parts.join(num_batches)
        with atomic_path(self.final) as tmp:
            write_safetensors(joined, tmp)
        self.parts.drop()
        return self.final


def load_classifier(model: str, probe: str | None, device: torch.device) -> Any:
    """`--model` + `--probe`: the frozen fused classifier; `--model` alone: a saved classifier (fine-tuned)."""
    from canvit_model import CanViTForImageClassification

    if probe is None:
        return CanViTForImageClassification.from_pretrained(model, map_location=device)
    return CanViTForImageClassification.from_pretrained_with_probe(model, probe, map_location=device)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="canvit-eval in1k",
        description="ImageNet-1k top-1/top-5 per timestep of a frozen CanViT through the DINOv3 linear probe (Table 7).",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="CanViT pretraining checkpoint (hub id or directory); "
                   "without --probe, a saved CanViTForImageClassification (e.g. fine-tuned)")
    p.add_argument("--probe", default=None, help="DINOv3 IN1k linear probe (published layout: hub id or directory)")
    add_rollout_args(p, policy=None, glimpses=21, scene=512, grid=32, batch=64)
    p.add_argument("--save-predictions", action="store_true",
                   help="also write per-image top-5 predictions per timestep to RESULTS/in1k/KEY.predictions.safetensors")
    p.add_argument("--name", default=None, help="model name in the results key (default: last part of --model)")
    p.add_argument("--key", default=None, help="readable results-key prefix (default {name}-{policy}-s{scene}-c{grid}-"
                   "seed{seed}); the identity digest is appended either way")
    return p


def plan(p: argparse.ArgumentParser, args: argparse.Namespace, device: torch.device) -> tuple[RunIdentity, Any, int]:
    """(identity, source, number of images) of a run: the input paths are checked (a typo must never pass as
    "nothing to do"), the data opened and listed, the checkpoints digested. Nothing is loaded."""
    from ..inputs import check_checkpoint, local_path, usage_errors

    with usage_errors(p, "--data", args.data):
        local_path(args.data)  # a path that is not here and not an owner/name hub id
    source, split = open_source(p, args.data, args.split, "folder")
    parts = {}
    for flag, spec in (("--model", args.model), ("--probe", args.probe)):
        if spec is not None:
            with usage_errors(p, flag, spec):
                check_checkpoint(spec)
                parts[flag[2:]] = checkpoint_identity(spec)
    n = len(source) if args.limit is None else min(args.limit, len(source))
    parts["data"] = data_identity(source, split, n, args.data)
    name = args.name or short_name(args.model)
    prefix = args.key or readable_prefix(name, args.policy, args.scene_size, args.canvas_grid, args.seed, args.limit)
    return RunIdentity("in1k", name, prefix, parts, rollout_settings(args, device)), source, n


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_rollout_args(p, args)

    from canvit_model import center_crop_transform
    from canvit_results import provenance, run_paths

    from ..inputs import usage_errors

    device = pick_device(args.device, parser=p)
    ident, source, n = plan(p, args, device)
    with usage_errors(p, "--key" if args.key else "--name", args.key or args.name):
        run_paths(args.results, "in1k", ident.key)
    if skip_if_complete(ident, args.results):
        return 0
    key = ident.key
    try:
        clf = load_classifier(args.model, args.probe, device)
    except (OSError, ValueError) as e:
        p.error(f"cannot load --model {args.model!r} / --probe {args.probe!r}: {e}")
    if len(source) and source.label(0) is None:
        p.error(f"--data {args.data!r} has no labels (ImageFolder class sub-folders or a ClassLabel column)")
    if source.classes is not None and len(source.classes) > clf.num_classes:
        p.error(f"--data {args.data!r} has {len(source.classes)} classes but the probe predicts {clf.num_classes}")

    scene = args.scene_size
    transform = functools.partial(center_crop_transform, size=scene)  # Resize(S) + CenterCrop(S), normalize
    num_batches = -(-n // args.batch_size)
    config = {k: v for k, v in vars(args).items() if k not in ("results", "no_progress", "num_workers", "checkpoint_every")}
    config["num_images"] = n
    writer = PredictionWriter(args.results, key) if args.save_predictions else None
    viewpoints = ViewpointWriter(args.save_viewpoints, args.results, "in1k", key) if args.save_viewpoints else None

    def step(batch: SceneBatch) -> dict[str, torch.Tensor]:
        if bool((batch.labels < 0).any()) or bool((batch.labels >= clf.num_classes).any()):
            bad = batch.labels[(batch.labels < 0) | (batch.labels >= clf.num_classes)][:5].tolist()
            raise ValueError(f"labels {bad} are outside the probe's classes [0, {clf.num_classes})")
        out = in1k_step(clf, batch, policy=args.policy, num_glimpses=args.glimpses, seed=args.seed,
                        canvas_grid=args.canvas_grid, glimpse_px=args.glimpse_px, amp=args.amp,
                        on_viewpoint=viewpoints.recorder(batch, args.glimpses) if viewpoints else None)
        preds = out.pop("predictions")
        if writer is not None:
            writer.add(batch, preds)
        return image_sums(out)

    t0 = time.time()
    means, count, failed = image_means(ident, args, ClassifyItem(source, transform), n, step, device)
    import pandas as pd

    table = pd.DataFrame({"t": list(range(args.glimpses)), "top1": means["top1"], "top5": means["top5"]})
    extra = {"model": args.model, "model_label": ident.label(), "probe": args.probe, "policy": args.policy,
             "scene_size": scene, "canvas_grid": args.canvas_grid, "glimpse_px": args.glimpse_px,
             "num_glimpses": args.glimpses, "seed": args.seed, "num_images": count,
             "failed_images": [source.key(i) for i in failed],
             "preprocessing": f"resize short side {scene} + center crop {scene}", "data": args.data,
             "split": args.split, "amp": args.amp}
    if writer is not None:
        extra["predictions"] = writer.finish(num_batches).name
    if viewpoints is not None:
        extra["viewpoints"] = str(viewpoints.finish(num_batches))
    prov = provenance(config=config, seed=args.seed, checkpoint=args.model, device=device,
                      wall_time_s=time.time() - t0, argv=None if argv is None else ["canvit-eval", "in1k", *argv])
    ref = publish(args.results, ident, table, prov, extra, partial_path(args.results, "in1k", key))
    if ref is None:
        return 0
    last = table.iloc[-1]
    print(f"in1k/{key}: {count} images, t={int(last.t)} top1 {last.top1:.4f} top5 {last.top5:.4f} -> {ref.table_path}")
    if failed:
        print(f"warning: {len(failed)} images could not be decoded and were skipped (listed in the sidecar)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
