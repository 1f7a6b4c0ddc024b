"""Figure 7: analytical FLOP scaling (Appendix G formulas, convention "paper").

(A) FLOPs of one inference step vs. output resolution: CanViT-B (one 128 px glimpse + 1x1 probe,
    canvas grid G) and DINOv3-S/B (input 16G px, G x G patch grid).
(B) Total FLOPs vs. number of glimpses T: CanViT-B (T x (glimpse + probe), 32x32 canvas), AME and
    AdaGlimpse (cumulative re-encoding, O(T^2) encoder), DINOv3-B at 512 px as a one-shot reference.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from canvit_eval import flops  # noqa: E402
from canvit_model import CanViTConfig  # noqa: E402

GRIDS = [8, 12, 16, 24, 32, 48, 64, 96, 128]
STEPS = list(range(1, 17))


def panel_a() -> dict[str, list[float]]:
    cfg = CanViTConfig()
    return {
        "CanViT-B (128 px glimpse)": [
            flops.canvit_glimpse(cfg, canvas_grid=g, convention="paper", seg_head=True).gflops for g in GRIDS],
        "DINOv3 ViT-B/16": [flops.dinov3("vitb16", 16 * g, convention="paper").gflops for g in GRIDS],
        "DINOv3 ViT-S/16": [flops.dinov3("vits16", 16 * g, convention="paper").gflops for g in GRIDS],
    }


def panel_b() -> dict[str, list[float]]:
    cfg = CanViTConfig()
    step = flops.canvit_glimpse(cfg, canvas_grid=32, convention="paper", seg_head=True).gflops
    return {
        "CanViT-B (32x32 canvas)": [t * step for t in STEPS],
        "AME": [flops.ame(t, "paper").gflops for t in STEPS],
        "AdaGlimpse": [flops.adaglimpse(t, "paper").gflops for t in STEPS],
        "DINOv3 ViT-B/16 @ 512 px (one pass)": [flops.dinov3("vitb16", 512, convention="paper").gflops] * len(STEPS),
    }


def build(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, ys in panel_a().items():
        ax_a.plot([g * g for g in GRIDS], ys, marker="o", ms=3, label=label)
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    ax_a.set_xlabel("output resolution (grid$^2$ tokens)")
    ax_a.set_ylabel("GFLOPs per inference step")
    ax_a.set_title("(A) per-step FLOPs vs output resolution")
    ax_a.grid(True, which="both", alpha=0.3)
    ax_a.legend(fontsize=8)
    for label, ys in panel_b().items():
        ax_b.plot(STEPS, ys, marker="o" if "DINOv3" not in label else None, ms=3, label=label,
                  linestyle="--" if "DINOv3" in label else "-")
    ax_b.set_yscale("log")
    ax_b.set_xlabel("number of glimpses T")
    ax_b.set_ylabel("total GFLOPs")
    ax_b.set_title("(B) total FLOPs vs number of glimpses")
    ax_b.grid(True, which="both", alpha=0.3)
    ax_b.legend(fontsize=8)
    fig.suptitle("Figure 7: analytical FLOP scaling (canvit_eval.flops, Appendix G formulas)", fontsize=10)
    fig.tight_layout()
    path = out_dir / "figure07.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
