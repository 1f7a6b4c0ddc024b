"""Figure 8: latency vs scene size, CanViT-B (one 128 px glimpse) vs DINOv3 ViT-B/16 (Appendix I).

Left: CPU, right: CUDA. Ours (from benchmarks/results/*.csv and the results store's `latency` runs): faint dots = every timed call, solid
markers + lines = minimum per configuration (CPU: best over the measured thread counts, as the paper).
Paper (Table 19 values): hollow markers, dashed lines (CPU: best of 1-32 threads). A panel without
measurements says which command fills it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from paper.tables import table19 as t19  # noqa: E402

COLORS = {"canvit-b": "tab:blue", "dinov3-b": "tab:orange"}
NAMES = {"canvit-b": "CanViT-B", "dinov3-b": "DINOv3 ViT-B/16"}


def paper_series() -> dict[str, dict[str, list[tuple[int, float]]]]:
    """panel -> label -> [(scene, ms)]; CPU = min over thread counts."""
    cpu: dict[str, dict[int, float]] = {"canvit-b": {}, "dinov3-b": {}}
    out: dict[str, dict[str, list[tuple[int, float]]]] = {"cpu": {}, "cuda": {}}
    for (machine, threads, precision), by_scene in t19.PAPER.items():
        for scene, (c, _, d, _) in by_scene.items():
            if threads is not None:
                cpu["canvit-b"][scene] = min(c, cpu["canvit-b"].get(scene, c))
                cpu["dinov3-b"][scene] = min(d, cpu["dinov3-b"].get(scene, d))
            else:
                p = "AMP bf16" if precision == "bf16" else "fp32"
                out["cuda"][f"canvit-b|paper RTX 4090 {p}"] = [(s, v[0]) for s, v in by_scene.items()]
                out["cuda"][f"dinov3-b|paper RTX 4090 {p}"] = [(s, v[2]) for s, v in by_scene.items()]
    for m, d in cpu.items():
        out["cpu"][f"{m}|paper 7950X (best of 1-32T)"] = sorted(d.items())
    one = t19.PAPER[(t19.PAPER_CPU, 1, "fp32")]
    out["cpu"]["canvit-b|paper 7950X 1T"] = [(s, v[0]) for s, v in one.items()]
    out["cpu"]["dinov3-b|paper 7950X 1T"] = [(s, v[2]) for s, v in one.items()]
    return out


def build(out_dir: Path, ctx=None) -> list[Path]:
    """`ctx` (tablelib.Context): the results store's `latency` runs and the latency CSVs to read."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = t19.load_results(*t19.ctx_results(ctx))
    raw: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        dev = r["device"]
        if dev == "cpu":  # one line per CPU mode: plain fp32, the fp32 fast path, the bf16 fast path
            mode = t19.CPU_MODE_LABELS.get(r["precision"], r["precision"]) or "fp32 plain"
            err = f", max rel. diff {float(r['max_rel_diff']):.0e}" if r.get("max_rel_diff") and r["precision"] != "fp32" else ""
            tag = f"{r['machine']} {mode}{err}"
        else:
            tag = f"{r['machine']} {'AMP bf16' if r['precision'] == 'bf16' else 'fp32'}"
        raw[(dev, r["model"], tag)].append((int(r["scene_px"]), float(r["ms"])))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    paper = paper_series()
    for ax, dev in zip(axes, ("cpu", "cuda")):
        for label, pts in paper[dev].items():
            model, name = label.split("|")
            ls = ":" if ("bf16" in name or "1T" in name) else "--"
            ax.plot([s for s, _ in pts], [v for _, v in pts], ls, marker="o", mfc="none", color=COLORS[model],
                    alpha=0.7, label=f"{NAMES[model]}, {name}")
        mine = [(k, v) for k, v in raw.items() if k[0] == dev]
        for (_, model, tag), pts in mine:
            ax.scatter([s for s, _ in pts], [v for _, v in pts], s=4, alpha=0.15, color=COLORS[model], lw=0)
            best: dict[int, float] = {}
            for s, v in pts:
                best[s] = min(v, best.get(s, v))
            xs = sorted(best)
            style = {"bf16": "^-", "fast path": "s-"}  # bf16 first: its label also says "fast path"
            fmt = next((v for k, v in style.items() if k in tag), "o-") if dev == "cpu" else "s-"
            ax.plot(xs, [best[s] for s in xs], fmt, color=COLORS[model],
                    label=f"{NAMES[model]}, ours: {tag}" + (" (best of measured threads)" if dev == "cpu" else ""))
        if not mine:
            cmd = "canvit-latency --device cuda" if dev == "cuda" else "canvit-latency"
            ax.text(0.5, 0.5, f"ours: not measured — run `uv run --package canvit-eval {cmd}`",
                    transform=ax.transAxes, ha="center", fontsize=7, color="gray")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("scene side (px); CanViT canvas = scene/16, 128 px glimpse")
        ax.set_ylabel("min latency per forward (ms, B = 1)")
        ax.set_title(f"({'A' if dev == 'cpu' else 'B'}) {'CPU, eager: plain fp32 / fast paths' if dev == 'cpu' else 'CUDA, torch.compile'}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.suptitle("Figure 8: real-time latency, CanViT-B vs DINOv3 ViT-B/16", fontsize=10)
    fig.tight_layout()
    path = out_dir / "figure08.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]
