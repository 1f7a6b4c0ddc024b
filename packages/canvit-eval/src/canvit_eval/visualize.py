"""`canvit-eval visualize`: what a CanViT sees and remembers, glimpse by glimpse (Figures 1 and 5).

For one image and a viewing policy, after every glimpse t:
- scene: the scene with the glimpse's box (earlier boxes faded);
- glimpse: the pixels the model received;
- canvas: the canvas spatial tokens as an image, their three principal components -> RGB (one PCA fitted
  on all timesteps together, so colours are comparable over time; each component scaled by its 1st-99th
  percentile);
- change: the cosine dissimilarity 1 - cos(canvas_t, canvas_{t-1}) per canvas cell (t = 0 against the
  initial canvas), one colour scale for all t >= 1;
- segmentation (with `--probe`): the probe's labels (logits bilinearly upsampled, then argmax).

Writes `strip.png` (rows = panels, columns = timesteps), `rollout.gif` (one frame per timestep, panels
side by side) and `visualize.json` (viewpoints + provenance) into `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from canvit_model import releases
from canvit_results import atomic_path, atomic_write_text

EXAMPLE = f"""example (CPU is fine: one image, 10 glimpses, the released CanViT-B and ADE20K probe):
  canvit-eval visualize --model {releases.FLAGSHIP} \\
      --image cat.jpg --policy c2f --glimpses 10 --out viz/ \\
      --probe {releases.ade20k_probe(512, 32)}"""


# -- pictures from tensors --------------------------------------------------------------------------


@dataclass(frozen=True)
class PCABasis:
    """A fitted canvas -> RGB projection: token mean [D], top-3 principal directions [k, D] (signs fixed), and
    each component's 1st / 99th percentile [k] over the fitted tokens (the colour range)."""

    mean: torch.Tensor
    components: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


def _project(basis_mean: torch.Tensor, components: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """tokens [N, D] (float64) -> [N, 3] coordinates on the components (zero-padded when rank < 3)."""
    proj = (x - basis_mean) @ components.T  # [N, k]
    if proj.shape[1] < 3:
        proj = torch.cat([proj, proj.new_zeros(proj.shape[0], 3 - proj.shape[1])], 1)
    return proj


def fit_pca(canvases: torch.Tensor) -> PCABasis:
    """Fit the top-3 principal components of every token of canvases [..., D] (e.g. [T, G, G, D])."""
    x = canvases.reshape(-1, canvases.shape[-1]).double()
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)  # rows of vh: principal directions
    comps = vh[:3]  # [k, D], k = min(3, rank)
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))  # deterministic orientation
    comps = comps * signs
    proj = _project(mean, comps, x)
    return PCABasis(mean=mean, components=comps, lo=torch.quantile(proj, 0.01, dim=0),
                    hi=torch.quantile(proj, 0.99, dim=0))


def apply_pca(basis: PCABasis, canvases: torch.Tensor) -> np.ndarray:
    """canvases [..., D] -> uint8 RGB [..., 3] through a fitted basis (so colours agree across calls)."""
    x = canvases.reshape(-1, canvases.shape[-1]).double()
    proj = _project(basis.mean, basis.components, x)
    img = ((proj - basis.lo) / (basis.hi - basis.lo).clamp_min(1e-12)).clamp(0, 1)
    return (img.reshape(*canvases.shape[:-1], 3).numpy() * 255).round().astype(np.uint8)


def pca_rgb(canvases: torch.Tensor) -> np.ndarray:
    """canvases [T, G, G, D] -> uint8 RGB [T, G, G, 3]: the top-3 principal components of all T*G*G tokens."""
    return apply_pca(fit_pca(canvases), canvases)


def change_maps(canvases: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """1 - cos(canvas_t, canvas_{t-1}) per cell: canvases [T, G, G, D], initial [G, G, D] -> [T, G, G]."""
    prev = torch.cat([initial[None], canvases[:-1]], 0)
    return 1 - F.cosine_similarity(canvases.float(), prev.float(), dim=-1)


def colormap(values: np.ndarray, vmax: float, name: str = "magma") -> np.ndarray:
    """values [..] in [0, vmax] -> uint8 RGB [.., 3] through a matplotlib colormap."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    v = np.clip(values / max(vmax, 1e-12), 0, 1)
    return (cmap(v)[..., :3] * 255).round().astype(np.uint8)


def palette(num_classes: int) -> np.ndarray:
    """A fixed colour per class [C, 3] uint8 (seeded, so pictures of different runs agree)."""
    return np.random.default_rng(0).integers(40, 256, size=(num_classes, 3), dtype=np.uint8)


def to_display(scene: torch.Tensor) -> np.ndarray:
    """Normalized [3, H, W] -> uint8 [H, W, 3] (ImageNet mean/std undone)."""
    from canvit_model import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = (scene.detach().float().cpu() * std + mean).clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def box_px(center: Sequence[float], scale: float, size: int) -> tuple[float, float, float, float]:
    """Viewpoint (centre (y, x) in [-1, 1], scale) -> (left, top, right, bottom) pixels of a size x size panel."""
    cy, cx = float(center[0]), float(center[1])
    to_px = lambda v: (v + 1) / 2 * size
    return to_px(cx - scale), to_px(cy - scale), to_px(cx + scale), to_px(cy + scale)


def _panel(array: np.ndarray, size: int, nearest: bool) -> Any:
    from PIL import Image

    im = Image.fromarray(array)
    return im.resize((size, size), Image.NEAREST if nearest else Image.BILINEAR)


# -- the rollout ------------------------------------------------------------------------------------


def visualize(
    model: Any,
    scene: torch.Tensor,
    *,
    policy: str,
    num_glimpses: int,
    canvas_grid: int,
    glimpse_px: int,
    seed: int = 0,
    probe: Any = None,
    amp: bool = True,
    panel_px: int = 256,
) -> dict[str, Any]:
    """Run one rollout on scene [3, S, S] (normalized) and build the panels.

    Returns {"rows": {name: [T PIL images]}, "viewpoints": [(cy, cx, s)]}.
    """
    from canvit_model.rollout import no_autocast, rollout
    from PIL import ImageDraw

    from .policies import make_policy

    device = next(model.parameters()).device
    scenes = scene[None].to(device)
    pol = make_policy(policy, batch_size=1, num_glimpses=num_glimpses, generator=torch.Generator().manual_seed(seed),
                      device=device)
    canvit = model.canvit
    seg = None
    if probe is not None:
        from canvit_model import CanViTForSemanticSegmentation

        seg = CanViTForSemanticSegmentation(canvit, probe).eval()
    with torch.inference_mode():
        initial = canvit.canvas_patch_grid(canvit.init_state(1, canvas_grid).canvas)[0].float().cpu()
    canvases, glimpses, viewpoints, labels = [], [], [], []
    from canvit_model import sample_at_viewpoint

    for st in rollout(canvit, scenes, pol, num_glimpses=num_glimpses, canvas_grid=canvas_grid, glimpse_px=glimpse_px,
                      amp=amp, probe=seg.logits if seg is not None else None):
        with torch.inference_mode(), no_autocast(device):
            canvases.append(canvit.canvas_patch_grid(st.state.canvas)[0].float().cpu())  # [G, G, D_can]
            glimpses.append(sample_at_viewpoint(scenes, st.viewpoint, glimpse_px)[0].cpu())
            if seg is not None:
                from canvit_model.segmentation import upsample_logits

                labels.append(upsample_logits(st.seg_logits, panel_px).argmax(1)[0].cpu().numpy())
        viewpoints.append((*st.viewpoint.centers[0].tolist(), float(st.viewpoint.scales[0])))
    stack = torch.stack(canvases)  # [T, G, G, D_can]
    pcs = pca_rgb(stack)
    change = change_maps(stack, initial).numpy()  # [T, G, G]
    vmax = float(np.quantile(change[1:] if len(change) > 1 else change, 0.99))

    base = _panel(to_display(scene), panel_px, nearest=False)
    rows: dict[str, list[Any]] = {"scene": [], "glimpse": [], "canvas": [], "change": []}
    for t, (cy, cx, s) in enumerate(viewpoints):
        im = base.copy()
        draw = ImageDraw.Draw(im)
        for py, px, ps in viewpoints[:t]:
            draw.rectangle(box_px((py, px), ps, panel_px), outline=(200, 200, 200), width=1)
        draw.rectangle(box_px((cy, cx), s, panel_px), outline=(255, 40, 40), width=max(2, panel_px // 128))
        draw.text((4, panel_px - 14), f"t={t}", fill=(255, 255, 255))
        rows["scene"].append(im)
        rows["glimpse"].append(_panel(to_display(glimpses[t]), panel_px, nearest=False))
        rows["canvas"].append(_panel(pcs[t], panel_px, nearest=True))
        rows["change"].append(_panel(colormap(change[t], vmax), panel_px, nearest=True))
    if seg is not None:
        pal = palette(probe.num_classes)
        rows["segmentation"] = [_panel(pal[lab], panel_px, nearest=True) for lab in labels]
    return {"rows": rows, "viewpoints": viewpoints}


def write_outputs(rows: dict[str, list[Any]], out: Path, *, frame_ms: int = 700) -> tuple[Path, Path]:
    """strip.png (rows x timesteps) and rollout.gif (one frame per timestep, panels side by side)."""
    from PIL import Image

    names = list(rows)
    num_t = len(rows[names[0]])
    size = rows[names[0]][0].size[0]
    out.mkdir(parents=True, exist_ok=True)
    strip = Image.new("RGB", (num_t * size, len(names) * size), "white")
    for r, name in enumerate(names):
        for t, im in enumerate(rows[name]):
            strip.paste(im, (t * size, r * size))
    frames = []
    for t in range(num_t):
        frame = Image.new("RGB", (len(names) * size, size), "white")
        for r, name in enumerate(names):
            frame.paste(rows[name][t], (r * size, 0))
        frames.append(frame.convert("P", palette=Image.ADAPTIVE))
    png, gif = out / "strip.png", out / "rollout.gif"
    for path, save in ((png, lambda p: strip.save(p, format="PNG")),
                       (gif, lambda p: frames[0].save(p, format="GIF", save_all=True, append_images=frames[1:],
                                                      duration=frame_ms, loop=0))):
        with atomic_path(path) as tmp:
            save(tmp)
    return png, gif


def main(argv: Sequence[str] | None = None) -> int:
    from canvit_results.cli import int_at_least, output_dir, pick_device

    from .policies import POLICY_NAMES

    p = argparse.ArgumentParser(
        prog="canvit-eval visualize",
        description="Per glimpse: the glimpse box on the scene, the glimpse, the canvas as a PCA image, the "
                    "cosine-dissimilarity change map and (with --probe) the segmentation; a PNG strip + GIF.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="CanViT pretraining checkpoint: hub id, directory or preset name")
    p.add_argument("--image", required=True, help="an image file")
    p.add_argument("--policy", default="c2f", choices=POLICY_NAMES, help="viewing policy (default c2f)")
    p.add_argument("--glimpses", type=int_at_least(1, "--glimpses"), default=10, help="T (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the policy's random draws")
    p.add_argument("--scene-size", type=int_at_least(1, "--scene-size"), default=512, help="scene px (default 512)")
    p.add_argument("--canvas-grid", type=int_at_least(1, "--canvas-grid"), default=None,
                   help="canvas grid G (default scene size / 16)")
    p.add_argument("--glimpse-px", type=int_at_least(1, "--glimpse-px"), default=128, help="glimpse px (default 128)")
    p.add_argument("--resize", choices=("squish", "crop"), default="squish",
                   help="scene: resize to a square (ADE20K protocol, default) or short side + centre crop")
    p.add_argument("--probe", default=None, help="ADE20K segmentation probe of this canvas grid (hub id or dir)")
    p.add_argument("--out", required=True, type=output_dir, help="output directory")
    p.add_argument("--panel-px", type=int_at_least(1, "--panel-px"), default=256, help="side of each panel in px (default 256)")
    p.add_argument("--frame-ms", type=int_at_least(1, "--frame-ms"), default=700, help="GIF frame duration (default 700 ms)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on CUDA")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    args = p.parse_args(argv)
    grid = args.canvas_grid or args.scene_size // 16
    if grid < 1:
        p.error(f"--canvas-grid must be >= 1, got {grid}")
    if args.glimpse_px % 16 or args.glimpse_px > args.scene_size:
        p.error(f"--glimpse-px must be a multiple of 16 and <= --scene-size ({args.scene_size}), got {args.glimpse_px}")
    if args.policy == "eg-c2f" and args.probe is None:
        p.error("--policy eg-c2f needs --probe (it ranks tiles by the probe's predictive entropy)")
    if not Path(args.image).is_file():
        p.error(f"--image {args.image!r} is not a file")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out {args.out!r} is a file; expected a directory")

    from canvit_data import ImageDecodeError, decode_image
    from canvit_model import (
        PRESETS,
        CanViTForPretraining,
        SegmentationProbe,
        center_crop_transform,
        square_resize_transform,
    )
    from canvit_results import provenance

    device = pick_device(args.device, parser=p)
    try:
        image = decode_image(Path(args.image), args.image)
    except ImageDecodeError as e:
        p.error(f"--image: {e}")
    checkpoint = PRESETS[args.model].hub_repo if args.model in PRESETS else args.model
    try:
        model = CanViTForPretraining.from_pretrained(checkpoint, map_location=device)
        probe = SegmentationProbe.from_pretrained(args.probe, map_location=device) if args.probe else None
    except (OSError, ValueError) as e:
        p.error(f"cannot load --model / --probe: {e}")
    if probe is not None and probe.config.embed_dim != model.canvit.canvas_dim:
        p.error(f"--probe takes {probe.config.embed_dim}-dim features; this model's canvas has {model.canvit.canvas_dim}")
    transform = square_resize_transform if args.resize == "squish" else center_crop_transform
    scene = transform(image, args.scene_size)
    t0 = time.time()
    res = visualize(model, scene, policy=args.policy, num_glimpses=args.glimpses, canvas_grid=grid,
                    glimpse_px=args.glimpse_px, seed=args.seed, probe=probe, amp=args.amp, panel_px=args.panel_px)
    out = Path(args.out)
    png, gif = write_outputs(res["rows"], out, frame_ms=args.frame_ms)
    meta = {"rows": list(res["rows"]), "viewpoints": [{"t": t, "center_yx": v[:2], "scale": v[2]}
                                                      for t, v in enumerate(res["viewpoints"])],
            "provenance": provenance(config={**vars(args), "canvas_grid": grid}, seed=args.seed,
                                     checkpoint=checkpoint, device=device, wall_time_s=time.time() - t0,
                                     argv=None if argv is None else ["canvit-eval", "visualize", *argv])}
    atomic_write_text(out / "visualize.json", json.dumps(meta, indent=2, default=str) + "\n")
    print(f"wrote {png} ({len(res['rows'])} rows x {args.glimpses} timesteps) and {gif}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
