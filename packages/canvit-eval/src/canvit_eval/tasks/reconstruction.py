"""`canvit-eval reconstruction`: how well the canvas reconstructs the teacher, per timestep (Tables 3 Δ, 4).

On held-out scenes (ADE20K val, Resize(512) + CenterCrop(512)), the DINOv3 teacher runs once per scene in
float32 (autocast off); the CanViT sees T = 10 R-IID glimpses (`canvit_eval.rollout`), and after every
glimpse its readouts predict the teacher's patch tokens (from the canvas) and CLS token (from the
recurrent CLS). Four per-image numbers per timestep (`canvit_model.metrics`), averaged over images:

- `cos_patch_raw`, `cos_cls_raw`: cosine similarity between the **destandardized** prediction
  (x * sqrt(var + 1e-6) + mean, the checkpoint's teacher statistics) and the raw teacher features;
- `cos_patch_std`, `cos_cls_std`: cosine similarity between the prediction as the readout emits it
  (standardized space) and the **standardized** teacher features.

Patch cosines are taken per position (one cosine per canvas cell / teacher patch) and averaged over the
G x G positions of the image, then over images. The authors' canvit-pytorch 0.2.1 defines "raw" the same
way (it destandardizes the prediction before comparing it with the raw features).
The patch standardizer has statistics for one grid (32 x 32 for the published models), so the canvas
grid must equal the teacher's patch grid (scene size / 16).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from canvit_model import releases
from canvit_model.metrics import RECONSTRUCTION_METRICS, model_reconstruction_cosines
from canvit_results.cli import pick_device

from ..harness import (
    SPLIT_ALIASES,
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
    rollout_settings,
    short_name,
    skip_if_complete,
)

TEACHER = releases.TEACHER
METRICS = RECONSTRUCTION_METRICS
EXAMPLE = f"""example (one H100; Table 4 baseline row, run seeds 0..4 for the 95% CI):
  canvit-eval reconstruction --model canvitb16 --teacher {TEACHER} \\
      --data /datasets/ADEChallengeData2016 --seed 0 --results results/
  --model takes a preset name (its released Table 3 checkpoint; canvitb16 = the ablation baseline
  {releases.ABLATION_BASELINE}), a hub id or a directory; your own checkpoint needs no preset
  (--model runs/no-reads/final), though --preset no-reads files it under Table 3's no-reads row"""


def reconstruction_step(
    model: Any, teacher: Any, batch: SceneBatch, *, policy: str, num_glimpses: int, seed: int, canvas_grid: int,
    glimpse_px: int, amp: bool, on_viewpoint: Any = None,
) -> dict[str, torch.Tensor]:
    """{metric: [B, T]} for one batch: the teacher once (fp32), then one rollout with readouts per step
    (`on_viewpoint(t, viewpoint)` sees each glimpse's viewpoint)."""
    from ..policies import make_policy
    from ..rollout import no_autocast, rollout

    scenes = batch.scenes
    device = scenes.device
    with torch.inference_mode(), no_autocast(device):
        feats = teacher.forward_features(scenes.float())  # fp32: cls [B, D_t], patches [B, N, D_t]
    b = scenes.shape[0]
    pol = make_policy(policy, batch_size=b, num_glimpses=num_glimpses, generator=batch_generator(seed, batch.index),
                      device=device)
    per_t: dict[str, list[torch.Tensor]] = {m: [] for m in METRICS}
    for st in rollout(model.canvit, scenes, pol, num_glimpses=num_glimpses, canvas_grid=canvas_grid,
                      glimpse_px=glimpse_px, amp=amp):
        if on_viewpoint is not None:
            on_viewpoint(st.t, st.viewpoint)
        with torch.inference_mode():
            cos = model_reconstruction_cosines(model, st.state.canvas, st.state.recurrent_cls, feats.patches, feats.cls)
        for m in METRICS:
            per_t[m].append(cos[m])
    return {m: torch.stack(v, 1) for m, v in per_t.items()}


# Table 3's baseline row is the short-run ablation baseline (same recipe and budget as the ablations),
# not the flagship release that `PRESETS["canvitb16"].hub_repo` names.
ABLATION_BASELINE = releases.ABLATION_BASELINE


def table3_checkpoint(preset: str) -> str:
    """The released checkpoint of a Table 3 row: the ablation baseline for `canvitb16`, else the preset's."""
    return releases.table3_row(preset).hub_id


def resolve_model(model: str, preset: str | None) -> tuple[str, str | None, str]:
    """(checkpoint to load, preset or None, key name) from `--model` (a preset name = its Table 3 checkpoint, a
    hub id or a directory) and `--preset`. The flagship release gets the key name `canvitb16-flagship` so it
    never mixes with Table 3's baseline run; a local directory without `--preset` is named by its folder."""
    from canvit_model import PRESETS

    flagship = PRESETS["canvitb16"].hub_repo
    if model in PRESETS:
        if preset is not None and preset != model:
            raise ValueError(f"--model {model!r} is a preset name but --preset says {preset!r}")
        if not table3_checkpoint(model):
            raise ValueError(f"preset {model!r} has no released checkpoint; pass --model DIR --preset {model}")
        return table3_checkpoint(model), model, model
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"--preset {preset!r} is unknown; valid presets: {list(PRESETS)}")
        return model, preset, ("canvitb16-flagship" if model.rstrip("/") == flagship else preset)
    if model.rstrip("/") == flagship:
        return model, "canvitb16", "canvitb16-flagship"
    for name in PRESETS:
        if table3_checkpoint(name) == model.rstrip("/"):
            return model, name, name
    if Path(model).expanduser().exists():
        return model, None, short_name(model)
    raise ValueError(
        f"--model {model!r} is neither a local directory nor a released Table 3 checkpoint: name its preset "
        f"with --preset (one of {list(PRESETS)})"
    )


def ade20k_images(data: str, split: str) -> tuple[str, str | None]:
    """ADEChallengeData2016 roots hold images/{training,validation}: point at the images of `split`."""
    root = Path(data)
    for base in (root, root / "ADEChallengeData2016"):
        for name in (split, *SPLIT_ALIASES.get(split, ())):
            if (base / "images" / name).is_dir():
                return str(base / "images" / name), None
    return data, split


def run_prefix(preset: str, seed: int, policy: str = "r-iid", num_glimpses: int = 10, limit: int | None = None) -> str:
    """`{preset}-seed{seed}`, the readable part of a `reconstruction` key (the identity digest follows); other
    policies, horizons and smoke runs (`--limit N`) are suffixed so they never pass for the paper's runs."""
    key = f"{preset}-seed{seed}"
    if policy != "r-iid":
        key += f"-{policy}"
    if num_glimpses != 10:
        key += f"-t{num_glimpses}"
    if limit is not None:
        key += f"-limit{limit}"
    return key


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="canvit-eval reconstruction",
        description="Cosine similarity between the canvas' teacher predictions and DINOv3 features per timestep "
                    "(raw = destandardized prediction vs raw teacher; std = both standardized). Tables 3 Δ and 4.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="CanViT pretraining checkpoint: a preset name (its Table 3 "
                   "checkpoint; canvitb16 = the ablation baseline), a hub id or a directory")
    p.add_argument("--preset", default=None, help="the checkpoint's preset (canvit_model.PRESETS): needed for a hub id "
                   "that is not a Table 3 release; optional for a directory (files the run under that Table 3 row)")
    p.add_argument("--teacher", default=TEACHER, help=f"DINOv3 teacher (hub id or directory; default {TEACHER})")
    add_rollout_args(p, policy="r-iid", glimpses=10, scene=512, grid=32, batch=32)
    p.add_argument("--key", default=None, help="readable results-key prefix (default {preset or folder name}-seed{seed}); "
                   "the identity digest is appended either way")
    return p


def plan(p: argparse.ArgumentParser, args: argparse.Namespace, device: torch.device
         ) -> tuple[RunIdentity, Any, int, str, str | None]:
    """(identity, source, number of images, checkpoint, preset) of a run: inputs checked, the data listed, the
    checkpoints digested; nothing loaded."""
    from ..inputs import check_checkpoint, local_path, usage_errors

    try:
        checkpoint, preset, key_name = resolve_model(args.model, args.preset)
    except ValueError as e:
        p.error(str(e))
    with usage_errors(p, "--data", args.data):
        local_path(args.data)  # a path that is not here and not an owner/name hub id
    data, split = ade20k_images(args.data, args.split)
    source, split = open_source(p, data, split, None)
    parts = {}
    for flag, spec, official in (("--model", checkpoint, False), ("--teacher", args.teacher, True)):
        with usage_errors(p, flag, spec):
            check_checkpoint(spec, official=official)
            parts[flag[2:]] = checkpoint_identity(spec)
    n = len(source) if args.limit is None else min(args.limit, len(source))
    parts["data"] = data_identity(source, split, n, args.data)
    prefix = args.key or run_prefix(key_name, args.seed, args.policy, args.glimpses, args.limit)
    settings = {**rollout_settings(args, device), "preset": preset}
    return RunIdentity("reconstruction", key_name, prefix, parts, settings), source, n, checkpoint, preset


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_rollout_args(p, args)

    from canvit_model import CanViTForPretraining, DINOv3, center_crop_transform
    from canvit_results import provenance, run_paths

    from ..inputs import usage_errors

    device = pick_device(args.device, parser=p)
    ident, source, n, checkpoint, preset = plan(p, args, device)
    with usage_errors(p, "--key", args.key or ident.prefix):
        run_paths(args.results, "reconstruction", ident.key)
    if skip_if_complete(ident, args.results):
        return 0
    key = ident.key
    try:
        model = CanViTForPretraining.from_pretrained(checkpoint, map_location=device)
    except (OSError, ValueError) as e:
        p.error(f"cannot load --model {checkpoint!r}: {e}")
    try:
        teacher = DINOv3.from_pretrained(args.teacher, map_location=device).float()
    except (OSError, ValueError) as e:
        p.error(f"cannot load --teacher {args.teacher!r}: {e}")
    if teacher.embed_dim != model.teacher_dim:
        p.error(f"--teacher has dim {teacher.embed_dim} but --model predicts {model.teacher_dim}-dim teacher features")
    grid = model.teacher_patch_grid
    patch = teacher.cfg.patch_size
    if args.scene_size != grid * patch or args.canvas_grid != grid:
        p.error(f"the model's patch statistics are for a {grid}x{grid} grid: use --scene-size {grid * patch} "
                f"--canvas-grid {grid} (got {args.scene_size} / {args.canvas_grid})")
    if not bool(model.teacher_patch_standardizer.fitted) or not bool(model.teacher_cls_standardizer.fitted):
        p.error(f"--model {checkpoint!r} has unfitted teacher standardizers: raw cosines would be meaningless")

    transform = functools.partial(center_crop_transform, size=args.scene_size)
    config = {k: v for k, v in vars(args).items() if k not in ("results", "no_progress", "num_workers", "checkpoint_every")}
    config.update(num_images=n, checkpoint=checkpoint, preset=preset)
    viewpoints = ViewpointWriter(args.save_viewpoints, args.results, "reconstruction", key) if args.save_viewpoints else None
    num_batches = -(-n // args.batch_size)

    def step(batch: SceneBatch) -> dict[str, torch.Tensor]:
        return image_sums(reconstruction_step(
            model, teacher, batch, policy=args.policy, num_glimpses=args.glimpses, seed=args.seed,
            canvas_grid=args.canvas_grid, glimpse_px=args.glimpse_px, amp=args.amp,
            on_viewpoint=viewpoints.recorder(batch, args.glimpses) if viewpoints else None))

    t0 = time.time()
    means, count, failed = image_means(ident, args, ClassifyItem(source, transform), n, step, device)
    import pandas as pd

    table = pd.DataFrame({"t": list(range(args.glimpses)), **{m: means[m] for m in METRICS}})
    extra = {"model": checkpoint, "model_label": ident.label(), "preset": preset, "num_glimpses": args.glimpses,
             "seed": args.seed, "policy": args.policy, "teacher": args.teacher, "scene_size": args.scene_size,
             "canvas_grid": args.canvas_grid, "glimpse_px": args.glimpse_px, "num_images": count,
             "failed_images": [source.key(i) for i in failed], "data": args.data, "split": args.split,
             "preprocessing": f"resize short side {args.scene_size} + center crop {args.scene_size}",
             "definition": "raw: cos(destandardize(prediction), teacher); std: cos(prediction, standardize(teacher)); "
                           "patch cosines per position, averaged over positions then images"}
    if viewpoints is not None:
        extra["viewpoints"] = str(viewpoints.finish(num_batches))
    prov = provenance(config=config, seed=args.seed, checkpoint=checkpoint, device=device,
                      wall_time_s=time.time() - t0, argv=None if argv is None else ["canvit-eval", "reconstruction", *argv])
    ref = publish(args.results, ident, table, prov, extra, partial_path(args.results, "reconstruction", key))
    if ref is None:
        return 0
    last = table.iloc[-1]
    print(f"reconstruction/{key}: {count} images, t={int(last.t)} patch raw {last.cos_patch_raw:.4f} "
          f"cls raw {last.cos_cls_raw:.4f} -> {ref.table_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
