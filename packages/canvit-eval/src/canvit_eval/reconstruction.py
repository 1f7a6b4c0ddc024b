"""`canvit-eval reconstruction`: how well the canvas reconstructs the teacher, per timestep (Tables 3 Δ, 4).

On held-out scenes (ADE20K val, Resize(512) + CenterCrop(512)), the DINOv3 teacher runs once per scene in
float32 (autocast off); the CanViT sees T = 10 R-IID glimpses (`canvit_eval.rollout`), and after every
glimpse its readouts predict the teacher's patch tokens (from the canvas) and CLS token (from the
recurrent CLS). Four per-image numbers per timestep, averaged over images:

- `cos_patch_raw`, `cos_cls_raw`: cosine similarity between the **destandardized** prediction
  (x * sqrt(var + 1e-6) + mean, the checkpoint's teacher statistics) and the raw teacher features;
- `cos_patch_std`, `cos_cls_std`: cosine similarity between the prediction as the readout emits it
  (standardized space) and the **standardized** teacher features.

Patch cosines are taken per position (one cosine per canvas cell / teacher patch) and averaged over the
G x G positions of the image, then over images. (One reading of the authors' code compares a
standardized prediction with raw teacher features under the name "raw"; we do not: raw is raw vs raw.)
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
import torch.nn.functional as F
from canvit_model import releases
from canvit_results.cli import pick_device

from .in1k import (
    SceneBatch,
    add_rollout_args,
    batch_generator,
    check_rollout_args,
    evaluate_means,
    open_source,
    partial_path,
    publish,
)

TEACHER = releases.TEACHER
METRICS = ("cos_patch_raw", "cos_cls_raw", "cos_patch_std", "cos_cls_std")
EXAMPLE = f"""example (one H100; Table 4 baseline row, run seeds 0..4 for the 95% CI):
  canvit-eval reconstruction --model canvitb16 --teacher {TEACHER} \\
      --data /datasets/ADEChallengeData2016 --seed 0 --results results/
  --model takes a preset name (its released Table 3 checkpoint; canvitb16 = the ablation baseline
  {releases.ABLATION_BASELINE}), a hub id or a directory; for your own checkpoint, name its
  preset: --model runs/no-reads/final --preset no-reads"""


def reconstruction_cosines(
    pred_patches: torch.Tensor,
    pred_cls: torch.Tensor,
    teacher_patches: torch.Tensor,
    teacher_cls: torch.Tensor,
    patch_standardizer: Any,
    cls_standardizer: Any,
) -> dict[str, torch.Tensor]:
    """Per-image cosines {name: [B]} (float32).

    pred_patches [B, N, D] and pred_cls [B, D]: readout outputs (standardized space);
    teacher_patches [B, N, D] and teacher_cls [B, D]: raw teacher features (after DINOv3's final LN).
    raw = cos(destandardize(pred), teacher); std = cos(pred, standardize(teacher)).
    """
    pp, pc = pred_patches.float(), pred_cls.float()
    tp, tc = teacher_patches.float(), teacher_cls.float()
    if pp.shape != tp.shape:
        raise ValueError(f"predicted patches {list(pp.shape)} and teacher patches {list(tp.shape)} differ in shape")
    if pc.shape != tc.shape:
        raise ValueError(f"predicted CLS {list(pc.shape)} and teacher CLS {list(tc.shape)} differ in shape")
    pc1, tc1 = pc[:, None], tc[:, None]  # [B, 1, D]: the CLS standardizer has one position
    return {
        "cos_patch_raw": F.cosine_similarity(patch_standardizer.destandardize(pp), tp, dim=-1).mean(-1),
        "cos_cls_raw": F.cosine_similarity(cls_standardizer.destandardize(pc1), tc1, dim=-1)[:, 0],
        "cos_patch_std": F.cosine_similarity(pp, patch_standardizer.standardize(tp), dim=-1).mean(-1),
        "cos_cls_std": F.cosine_similarity(pc1, cls_standardizer.standardize(tc1), dim=-1)[:, 0],
    }


def reconstruction_step(
    model: Any, teacher: Any, batch: SceneBatch, *, policy: str, num_glimpses: int, seed: int, canvas_grid: int,
    glimpse_px: int, amp: bool,
) -> dict[str, torch.Tensor]:
    """{metric: [B, T]} for one batch: the teacher once (fp32), then one rollout with readouts per step."""
    from .policies import make_policy
    from .rollout import no_autocast, rollout

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
        with torch.inference_mode(), no_autocast(device):
            pred_patches = model.predict_teacher_patches(st.state.canvas.float())  # [B, G*G, D_t]
            pred_cls = model.predict_teacher_cls(st.state.recurrent_cls.float())  # [B, D_t]
            cos = reconstruction_cosines(pred_patches, pred_cls, feats.patches, feats.cls,
                                         model.teacher_patch_standardizer, model.teacher_cls_standardizer)
        for m in METRICS:
            per_t[m].append(cos[m])
    return {m: torch.stack(v, 1) for m, v in per_t.items()}


# Table 3's baseline row is the short-run ablation baseline (same recipe and budget as the ablations),
# not the flagship release that `PRESETS["canvitb16"].hub_repo` names.
ABLATION_BASELINE = releases.ABLATION_BASELINE


def table3_checkpoint(preset: str) -> str:
    """The released checkpoint of a Table 3 row: the ablation baseline for `canvitb16`, else the preset's."""
    from canvit_model import PRESETS

    return ABLATION_BASELINE if preset == "canvitb16" else PRESETS[preset].hub_repo


def resolve_model(model: str, preset: str | None) -> tuple[str, str, str]:
    """(checkpoint to load, preset, key name) from `--model` (a preset name = its Table 3 checkpoint, a hub
    id or a directory) and `--preset`. The flagship release gets the key name `canvitb16-flagship` so it
    never mixes with Table 3's baseline run."""
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
    raise ValueError(
        f"--model {model!r} is not a released Table 3 checkpoint: name its preset with --preset "
        f"(one of {list(PRESETS)})"
    )


def ade20k_images(data: str, split: str) -> tuple[str, str | None]:
    """ADEChallengeData2016 roots hold images/{training,validation}: point at the images of `split`."""
    from .in1k import _SPLIT_ALIASES

    root = Path(data)
    for base in (root, root / "ADEChallengeData2016"):
        for name in (split, *_SPLIT_ALIASES.get(split, ())):
            if (base / "images" / name).is_dir():
                return str(base / "images" / name), None
    return data, split


def run_key(preset: str, seed: int, policy: str = "r-iid", num_glimpses: int = 10, limit: int | None = None) -> str:
    """`{preset}-seed{seed}` (canvit-results `reconstruction` key); other policies, horizons and smoke runs
    (`--limit N`) are suffixed so they never pass for the paper's runs."""
    key = f"{preset}-seed{seed}"
    if policy != "r-iid":
        key += f"-{policy}"
    if num_glimpses != 10:
        key += f"-t{num_glimpses}"
    if limit is not None:
        key += f"-limit{limit}"
    return key


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="canvit-eval reconstruction",
        description="Cosine similarity between the canvas' teacher predictions and DINOv3 features per timestep "
                    "(raw = destandardized prediction vs raw teacher; std = both standardized). Tables 3 Δ and 4.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="CanViT pretraining checkpoint: a preset name (its Table 3 "
                   "checkpoint; canvitb16 = the ablation baseline), a hub id or a directory")
    p.add_argument("--preset", default=None, help="the checkpoint's preset (canvit_model.PRESETS) if --model is not one")
    p.add_argument("--teacher", default=TEACHER, help=f"DINOv3 teacher (hub id or directory; default {TEACHER})")
    add_rollout_args(p, policy="r-iid", glimpses=10, scene=512, grid=32, batch=32)
    p.add_argument("--key", default=None, help="results key (default {preset}-seed{seed})")
    args = p.parse_args(argv)
    check_rollout_args(p, args)

    from canvit_model import CanViTForPretraining, DINOv3, center_crop_transform
    from canvit_results import is_complete, provenance, run_paths

    from .inputs import check_checkpoint, local_path, usage_errors

    try:
        checkpoint, preset, key_name = resolve_model(args.model, args.preset)
    except ValueError as e:
        p.error(str(e))
    key = args.key or run_key(key_name, args.seed, args.policy, args.glimpses, args.limit)
    with usage_errors(p, "--key", key):
        run_paths(args.results, "reconstruction", key)
    device = pick_device(args.device, parser=p)
    # The input paths before a complete key is skipped (a typo must not pass as "nothing to do"): local data
    # is opened, local checkpoints must hold their files; hub ids are checked when loaded.
    with usage_errors(p, "--data", args.data):
        local_data = local_path(args.data) is not None
    data, split = ade20k_images(args.data, args.split)
    source = open_source(p, data, split, None) if local_data else None
    with usage_errors(p, "--model", checkpoint):
        check_checkpoint(checkpoint)
    with usage_errors(p, "--teacher", args.teacher):
        check_checkpoint(args.teacher, official=True)
    if is_complete(args.results, "reconstruction", key):
        print(f"reconstruction/{key} is complete in the results store; nothing to do")
        return 0
    if source is None:
        source = open_source(p, data, split, None)
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
    n = len(source) if args.limit is None else min(args.limit, len(source))
    config = {k: v for k, v in vars(args).items() if k not in ("results", "no_progress", "num_workers", "checkpoint_every")}
    config.update(num_images=n, checkpoint=checkpoint, preset=preset)

    def step(batch: SceneBatch) -> dict[str, torch.Tensor]:
        return reconstruction_step(model, teacher, batch, policy=args.policy, num_glimpses=args.glimpses,
                                   seed=args.seed, canvas_grid=args.canvas_grid, glimpse_px=args.glimpse_px,
                                   amp=args.amp)

    from .in1k import scene_batches

    t0 = time.time()
    part = partial_path(args.results, "reconstruction", key)
    means, count, failed = evaluate_means(
        lambda start: scene_batches(source, transform, batch_size=args.batch_size, device=device,
                                    workers=args.num_workers, start_batch=start, limit=n),
        step, num_batches=-(-n // args.batch_size), partial=part, fingerprint=config, save_every=args.checkpoint_every,
        progress=not args.no_progress, desc=f"reconstruction {preset}",
    )
    import pandas as pd

    table = pd.DataFrame({"t": list(range(args.glimpses)), **{m: means[m] for m in METRICS}})
    extra = {"model": checkpoint, "preset": preset, "num_glimpses": args.glimpses, "seed": args.seed,
             "policy": args.policy, "teacher": args.teacher, "scene_size": args.scene_size,
             "canvas_grid": args.canvas_grid, "glimpse_px": args.glimpse_px, "num_images": count,
             "failed_images": [source.key(i) for i in failed], "data": args.data, "split": args.split,
             "preprocessing": f"resize short side {args.scene_size} + center crop {args.scene_size}",
             "definition": "raw: cos(destandardize(prediction), teacher); std: cos(prediction, standardize(teacher)); "
                           "patch cosines per position, averaged over positions then images"}
    prov = provenance(config=config, seed=args.seed, checkpoint=checkpoint, device=device,
                      wall_time_s=time.time() - t0, argv=None if argv is None else ["canvit-eval", "reconstruction", *argv])
    ref = publish(args.results, "reconstruction", key, table, prov, extra, part)
    if ref is None:
        return 0
    last = table.iloc[-1]
    print(f"reconstruction/{key}: {count} images, t={int(last.t)} patch raw {last.cos_patch_raw:.4f} "
          f"cls raw {last.cos_cls_raw:.4f} -> {ref.table_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
