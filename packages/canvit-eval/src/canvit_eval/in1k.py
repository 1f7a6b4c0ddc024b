"""`canvit-eval in1k`: frozen ImageNet-1k top-1 / top-5 per timestep through the DINOv3 probe (Table 7).

Per batch of validation scenes (Resize(512) + CenterCrop(512), ImageNet normalization), one rollout of
T glimpses under a viewing policy (`canvit_eval.rollout`); after every glimpse the recurrent CLS goes
through the fused head of `canvit_model.CanViTForImageClassification` (CLS readout -> destandardize ->
DINOv3 probe, fused in float64, run in float32 with autocast off) and top-1 / top-5 are counted. One
results-store row per timestep: `t`, `top1`, `top5` (fractions).

Also home of the pieces the per-image evaluations share (`reconstruction` uses them): the scene
loader over a `canvit_data` source, the results key scheme, and `evaluate_means`, a resumable loop that
averages per-image metrics per timestep and checkpoints its running sums every few batches.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from canvit_model import releases
from canvit_results import atomic_path, atomic_write_text
from canvit_results.cli import int_at_least, pick_device, store_dir

EXAMPLE = f"""example (one H100, the paper's Table 7 C2F row, seed 0):
  canvit-eval in1k --model {releases.FLAGSHIP} \\
      --probe {releases.IN1K_PROBE} \\
      --data /datasets/imagenet --split val --policy c2f --glimpses 21 --seed 0 --results results/
  (--data also takes a Hugging Face dataset id or save_to_disk directory, e.g. ILSVRC/imagenet-1k --split validation)"""

from .policies import POLICY_NAMES as POLICIES

# -- names and keys --------------------------------------------------------------------------------


def model_tag(spec: str | os.PathLike[str]) -> str:
    """A results-key-safe short name of a model: the last component of a hub id or directory (the same
    name `canvit-eval ade20k` puts in its keys)."""
    from .ade20k.common import short_name

    return short_name(os.fspath(spec))


def run_key(model: str, policy: str, scene_size: int, canvas_grid: int, seed: int, limit: int | None = None) -> str:
    """`{model}-{policy}-s{scene}-c{grid}-seed{seed}` (the `in1k` / `ade20k` key of canvit-results);
    smoke runs on the first N images get `-limit{N}` so they never pass for full runs."""
    key = f"{model_tag(model)}-{policy}-s{scene_size}-c{canvas_grid}-seed{seed}"
    return key if limit is None else f"{key}-limit{limit}"


# -- scenes ----------------------------------------------------------------------------------------


class SceneDataset(torch.utils.data.Dataset):
    """(index, scene [3, S, S] float32 normalized | None if undecodable, label | -1) from an ImageSource."""

    def __init__(self, source: Any, transform: Callable[[Any], torch.Tensor]) -> None:
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, int]:
        from canvit_data import ImageDecodeError

        label = self.source.label(i)
        try:
            scene = self.transform(self.source.load(i))
        except ImageDecodeError:
            scene = None
        return i, scene, -1 if label is None else int(label)


def _collate(items: list[tuple[int, torch.Tensor | None, int]]) -> tuple[list[int], torch.Tensor | None, torch.Tensor, list[int]]:
    ok = [it for it in items if it[1] is not None]
    failed = [it[0] for it in items if it[1] is None]
    scenes = torch.stack([it[1] for it in ok]) if ok else None
    labels = torch.tensor([it[2] for it in ok], dtype=torch.long)
    return [it[0] for it in ok], scenes, labels, failed


@dataclass(frozen=True)
class SceneBatch:
    index: int  # batch number (fixed by the batch size, so resuming skips whole batches)
    positions: list[int]  # source positions of the decoded scenes
    scenes: torch.Tensor  # [B, 3, S, S] normalized, on the device
    labels: torch.Tensor  # [B] long (-1 = no label), on the device
    failed: list[int]  # source positions in this batch that could not be decoded


def scene_batches(
    source: Any,
    transform: Callable[[Any], torch.Tensor],
    *,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
    start_batch: int = 0,
    limit: int | None = None,
) -> Iterator[SceneBatch]:
    """Fixed-order batches of preprocessed scenes (decoding and resizing in `workers` processes)."""
    n = len(source) if limit is None else min(limit, len(source))
    indices = list(range(start_batch * batch_size, n))
    if not indices:
        return
    subset = torch.utils.data.Subset(SceneDataset(source, transform), indices)
    loader = torch.utils.data.DataLoader(
        subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    for k, (positions, scenes, labels, failed) in enumerate(loader):
        if scenes is None:
            yield SceneBatch(start_batch + k, [], torch.empty(0), torch.empty(0, dtype=torch.long), failed)
            continue
        yield SceneBatch(start_batch + k, positions, scenes.to(device, non_blocking=True),
                         labels.to(device, non_blocking=True), failed)


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """The policy's generator for one batch: a function of (seed, batch) only, so a resumed run is the
    run it would have been, whatever batches ran before."""
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


# -- the resumable per-image-mean loop ---------------------------------------------------------------


def partial_path(results: str | os.PathLike[str] | None, kind: str, key: str) -> Path:
    """Where a running job keeps its running sums (never read as a result: not a store sidecar)."""
    from canvit_results import results_root

    return results_root(results) / ".partial" / kind / f"{key}.json"


def publish(results: str | os.PathLike[str] | None, kind: str, key: str, table: Any, prov: dict[str, Any],
            extra: dict[str, Any], partial: Path) -> Any:
    """The finished table into the store, then its running sums dropped; the RunRef, or None (printed) when
    another job finished the same key first (a finished run is never overwritten)."""
    from canvit_results import RunExistsError, write_run

    try:
        ref = write_run(results, kind, key, table, prov, extra=extra)
    except RunExistsError as e:
        print(str(e), file=sys.stderr)
        return None
    partial.unlink(missing_ok=True)
    return ref


def evaluate_means(
    batches: Callable[[int], Iterator[SceneBatch]],
    step: Callable[[SceneBatch], dict[str, torch.Tensor]],
    *,
    num_batches: int,
    partial: Path | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    save_every: int = 20,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[dict[str, list[float]], int, list[int]]:
    """Mean over images of per-image, per-timestep metrics.

    `step(batch)` returns {metric: [B, T] tensor}; sums are kept in float64. With `partial`, the running
    sums are saved atomically every `save_every` batches and a restarted job with the same `fingerprint`
    continues after the last saved batch. Returns ({metric: [T] means}, number of images, failed positions).
    """
    from tqdm import tqdm

    sums: dict[str, torch.Tensor] = {}
    count, failed, start = 0, [], 0
    fp = json.loads(json.dumps(dict(fingerprint or {}), default=str))
    if partial is not None and partial.is_file():
        try:
            saved = json.loads(partial.read_text(encoding="utf-8"))
        except ValueError:
            saved = None
        if saved and saved.get("fingerprint") == fp:
            sums = {k: torch.tensor(v, dtype=torch.float64) for k, v in saved["sums"].items()}
            count, failed, start = int(saved["count"]), list(saved["failed"]), int(saved["next_batch"])
            print(f"resuming after batch {start} ({count} images) from {partial}", file=sys.stderr)
        else:
            print(f"ignoring {partial}: written by a different configuration", file=sys.stderr)

    def save(next_batch: int) -> None:
        if partial is not None:
            state = {"fingerprint": fp, "next_batch": next_batch, "count": count, "failed": failed,
                     "sums": {k: v.tolist() for k, v in sums.items()}}
            atomic_write_text(partial, json.dumps(state))

    bar = tqdm(total=num_batches, initial=start, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True)
    for k, batch in enumerate(batches(start), start=1):
        failed.extend(batch.failed)
        if batch.positions:
            for name, per_image in step(batch).items():
                s = per_image.detach().double().sum(0).cpu()  # [T]
                sums[name] = sums[name] + s if name in sums else s
            count += len(batch.positions)
        bar.update(1)
        if k % save_every == 0:
            save(batch.index + 1)
    bar.close()
    if count == 0:
        raise RuntimeError("no image could be evaluated (empty data or every image failed to decode)")
    return {k: (v / count).tolist() for k, v in sums.items()}, count, failed


# -- IN1k ------------------------------------------------------------------------------------------


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, torch.Tensor]:
    """{k: [B] bool}: is the label among the k highest logits [B, C]? (ties: torch.topk's order)."""
    kmax = min(max(ks), logits.shape[-1])
    top = logits.topk(kmax, dim=-1).indices  # [B, kmax]
    hit = top == labels[:, None]  # [B, kmax]
    return {k: hit[:, : min(k, kmax)].any(-1) for k in ks}


def in1k_step(
    classifier: Any, batch: SceneBatch, *, policy: str, num_glimpses: int, seed: int, canvas_grid: int,
    glimpse_px: int, amp: bool,
) -> dict[str, torch.Tensor]:
    """{top1, top5: [B, T] 0/1, predictions: [B, T, 5] top-5 class indices} for one batch: one rollout,
    the fused head after every glimpse."""
    from .policies import make_policy
    from .rollout import rollout

    b = batch.scenes.shape[0]
    pol = make_policy(policy, batch_size=b, num_glimpses=num_glimpses,
                      generator=batch_generator(seed, batch.index), device=batch.scenes.device)
    top1, top5, preds = [], [], []
    for st in rollout(classifier.canvit, batch.scenes, pol, num_glimpses=num_glimpses, canvas_grid=canvas_grid,
                      glimpse_px=glimpse_px, amp=amp):
        with torch.inference_mode():
            logits = classifier.classify(st.state.recurrent_cls)  # [B, C] fp32, autocast off
            hit = topk_correct(logits, batch.labels)
            preds.append(logits.topk(min(5, logits.shape[-1]), dim=-1).indices)  # [B, 5]
        top1.append(hit[1])
        top5.append(hit[5])
    return {"top1": torch.stack(top1, 1).float(), "top5": torch.stack(top5, 1).float(),
            "predictions": torch.stack(preds, 1)}


class PredictionWriter:
    """Per-image top-5 predictions (the authors' `top_k_preds`), for ReaL labels or per-image analyses.

    Each batch goes to its own file under the job's partial directory (so a resumed job keeps them);
    `finish` joins them into RESULTS/in1k/KEY.predictions.safetensors: `top5` int16 [N, T, 5],
    `labels` int64 [N], `positions` int64 [N] (the images' indices in the data source)."""

    def __init__(self, results: str | None, key: str) -> None:
        from canvit_results import results_root

        self.dir = results_root(results) / ".partial" / "in1k" / f"{key}.predictions"
        self.final = results_root(results) / "in1k" / f"{key}.predictions.safetensors"

    def add(self, batch: SceneBatch, predictions: torch.Tensor) -> None:
        from canvit_model.io import write_safetensors

        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"batch_{batch.index:07d}.safetensors"
        with atomic_path(path) as tmp:
            write_safetensors({"top5": predictions.to(torch.int16).cpu(), "labels": batch.labels.cpu(),
                               "positions": torch.tensor(batch.positions, dtype=torch.int64)}, tmp)

    def finish(self, num_batches: int) -> Path:
        import shutil

        from canvit_model.io import write_safetensors
        from safetensors.torch import load_file

        parts = [load_file(str(self.dir / f"batch_{i:07d}.safetensors")) for i in range(num_batches)
                 if (self.dir / f"batch_{i:07d}.safetensors").is_file()]
        if not parts:
            raise RuntimeError(f"no per-batch predictions under {self.dir}")
        joined = {k: torch.cat([p[k] for p in parts]) for k in ("top5", "labels", "positions")}
        with atomic_path(self.final) as tmp:
            write_safetensors(joined, tmp)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.final


def load_classifier(model: str, probe: str | None, device: torch.device) -> Any:
    """`--model` + `--probe`: the frozen fused classifier; `--model` alone: a saved classifier (fine-tuned)."""
    from canvit_model import CanViTForImageClassification

    if probe is None:
        return CanViTForImageClassification.from_pretrained(model, map_location=device)
    return CanViTForImageClassification.from_pretrained_with_probe(model, probe, map_location=device)


def add_rollout_args(p: argparse.ArgumentParser, *, policy: str | None, glimpses: int, scene: int, grid: int,
                     batch: int) -> None:
    """Flags shared with `canvit-eval ade20k`: size, batch, precision, results."""
    p.add_argument("--data", required=True, help="ImageFolder root, Hugging Face dataset id, or save_to_disk dir")
    p.add_argument("--split", default="validation", help="split (HF datasets) or sub-folder (default: validation)")
    if policy is None:
        p.add_argument("--policy", required=True, choices=POLICIES, help="viewing policy")
    else:
        p.add_argument("--policy", default=policy, choices=POLICIES, help=f"viewing policy (default {policy})")
    p.add_argument("--glimpses", type=int_at_least(1, "--glimpses"), default=glimpses, help=f"T (default {glimpses})")
    p.add_argument("--seed", type=int_at_least(0, "--seed"), default=0, help="seed of the policy's random draws (default 0)")
    p.add_argument("--scene-size", type=int_at_least(1, "--scene-size"), default=scene, help=f"scene px (default {scene})")
    p.add_argument("--canvas-grid", type=int_at_least(1, "--canvas-grid"), default=grid, help=f"canvas grid G (default {grid})")
    p.add_argument("--glimpse-px", type=int_at_least(1, "--glimpse-px"), default=128, help="glimpse px (default 128)")
    p.add_argument("--batch-size", type=int_at_least(1, "--batch-size"), default=batch, help=f"scenes per batch (default {batch})")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the model on CUDA (heads and probes always fp32; default on)")
    p.add_argument("--results", type=store_dir, default=None, help="results store root (default $CANVIT_RESULTS or results/)")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="data loader processes (decoding, resizing; default min(8, CPUs))")
    p.add_argument("--limit", type=int_at_least(1, "--limit"), default=None, help="evaluate only the first N images (smoke runs)")
    p.add_argument("--checkpoint-every", type=int_at_least(1, "--checkpoint-every"), default=20,
                   help="batches between saves of the running sums (resume point; default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_rollout_args(p: argparse.ArgumentParser, args: argparse.Namespace, patch_size: int = 16) -> None:
    if args.glimpse_px % patch_size:
        p.error(f"--glimpse-px must be a multiple of the patch size {patch_size}, got {args.glimpse_px}")
    if args.glimpse_px > args.scene_size:
        p.error(f"--glimpse-px ({args.glimpse_px}) must be <= --scene-size ({args.scene_size})")
    if args.policy == "eg-c2f":
        p.error("--policy eg-c2f needs a segmentation probe (ADE20K only); choose r-iid, f-iid, c2f, f2c or rfs")
    if args.num_workers < 0:
        p.error(f"--num-workers must be >= 0, got {args.num_workers}")


_SPLIT_ALIASES = {"validation": ("val",), "val": ("validation",), "train": ("training",), "training": ("train",)}


def open_source(p: argparse.ArgumentParser, data: str, split: str | None, labels: str | None,
                flag: str = "--data") -> Any:
    """`data` opened with `canvit_data.open_images`; a spec that does not open is a usage error naming `flag`."""
    from canvit_data import open_images

    root = Path(data)
    if split is not None and root.is_dir() and not (root / split).is_dir():
        for alias in _SPLIT_ALIASES.get(split, ()):  # ImageNet folders say val/, HF datasets validation
            if (root / alias).is_dir():
                split = alias
                break
    try:
        return open_images(data, split=split, labels=labels)
    except (FileNotFoundError, ValueError) as e:
        p.error(f"{flag} {data!r}: {e}")


def main(argv: Sequence[str] | None = None) -> int:
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
    p.add_argument("--key", default=None, help="results key (default {name}-{policy}-s{scene}-c{grid}-seed{seed})")
    args = p.parse_args(argv)
    check_rollout_args(p, args)

    from canvit_model import center_crop_transform
    from canvit_results import is_complete, provenance, run_paths

    from .inputs import check_checkpoint, local_path, usage_errors

    key = args.key or run_key(args.name or args.model, args.policy, args.scene_size, args.canvas_grid, args.seed,
                              args.limit)
    with usage_errors(p, "--key", key):
        run_paths(args.results, "in1k", key)
    device = pick_device(args.device, parser=p)
    # The input paths before a complete key is skipped (a typo must not pass as "nothing to do"): local data
    # is opened, local checkpoints must hold their files; hub ids are checked when loaded.
    with usage_errors(p, "--data", args.data):
        local_data = local_path(args.data) is not None
    source = open_source(p, args.data, args.split, "folder") if local_data else None
    for flag, spec in (("--model", args.model), ("--probe", args.probe)):
        if spec is not None:
            with usage_errors(p, flag, spec):
                check_checkpoint(spec)
    if is_complete(args.results, "in1k", key):
        print(f"in1k/{key} is complete in the results store; nothing to do")
        return 0
    if source is None:
        source = open_source(p, args.data, args.split, "folder")
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
    n = len(source) if args.limit is None else min(args.limit, len(source))
    num_batches = -(-n // args.batch_size)
    config = {k: v for k, v in vars(args).items() if k not in ("results", "no_progress", "num_workers", "checkpoint_every")}
    config["num_images"] = n

    def step(batch: SceneBatch) -> dict[str, torch.Tensor]:
        if bool((batch.labels < 0).any()) or bool((batch.labels >= clf.num_classes).any()):
            bad = batch.labels[(batch.labels < 0) | (batch.labels >= clf.num_classes)][:5].tolist()
            raise ValueError(f"labels {bad} are outside the probe's classes [0, {clf.num_classes})")
        out = in1k_step(clf, batch, policy=args.policy, num_glimpses=args.glimpses, seed=args.seed,
                        canvas_grid=args.canvas_grid, glimpse_px=args.glimpse_px, amp=args.amp)
        preds = out.pop("predictions")
        if writer is not None:
            writer.add(batch, preds)
        return out

    writer = PredictionWriter(args.results, key) if args.save_predictions else None
    t0 = time.time()
    part = partial_path(args.results, "in1k", key)
    means, count, failed = evaluate_means(
        lambda start: scene_batches(source, transform, batch_size=args.batch_size, device=device,
                                    workers=args.num_workers, start_batch=start, limit=n),
        step, num_batches=num_batches, partial=part, fingerprint=config, save_every=args.checkpoint_every,
        progress=not args.no_progress, desc=f"in1k {args.policy}",
    )
    import pandas as pd

    table = pd.DataFrame({"t": list(range(args.glimpses)), "top1": means["top1"], "top5": means["top5"]})
    extra = {"model": args.model, "probe": args.probe, "policy": args.policy, "scene_size": scene,
             "canvas_grid": args.canvas_grid, "glimpse_px": args.glimpse_px, "num_glimpses": args.glimpses,
             "seed": args.seed, "num_images": count, "failed_images": [source.key(i) for i in failed],
             "preprocessing": f"resize short side {scene} + center crop {scene}", "data": args.data,
             "split": args.split, "amp": args.amp}
    if writer is not None:
        extra["predictions"] = writer.finish(num_batches).name
    prov = provenance(config=config, seed=args.seed, checkpoint=args.model, device=device,
                      wall_time_s=time.time() - t0, argv=None if argv is None else ["canvit-eval", "in1k", *argv])
    ref = publish(args.results, "in1k", key, table, prov, extra, part)
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
