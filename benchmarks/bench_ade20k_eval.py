"""Throughput of the ADE20K evaluation inner loop: rollout + probe + bilinear decode + confusion matrix.

    uv run python benchmarks/bench_ade20k_eval.py                       # CanViT-B, 512 px, c32, T=21, B=32 on CUDA
    uv run python benchmarks/bench_ade20k_eval.py --scene-size 1024 --canvas-grid 64 --batch-size 8
    uv run python benchmarks/bench_ade20k_eval.py --device cpu --batch-size 1 --glimpses 2 --repeats 2

Random weights (throughput does not depend on them), random scenes and labels, the same code path as
`canvit-eval ade20k` (`canvit_eval.ade20k.common.canvit_confusion`, one batch of the harness loop). Prints seconds per batch
(min and median over repeats after one warm-up), images/s, glimpses/s and, on CUDA, peak memory.
Data loading is not included.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from canvit_eval.ade20k.common import canvit_confusion
from canvit_eval.ade20k.metrics import ConfusionMatrix
from canvit_model import CanViTConfig, CanViTForPretraining, SegmentationProbe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  uv run python benchmarks/bench_ade20k_eval.py --scene-size 1024 --canvas-grid 64 --batch-size 8")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--scene-size", type=int, default=512)
    p.add_argument("--canvas-grid", type=int, default=32)
    p.add_argument("--glimpse-px", type=int, default=128)
    p.add_argument("--glimpses", type=int, default=21)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--policy", default="c2f")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = CanViTForPretraining(CanViTConfig()).to(dev).eval()
    probe = SegmentationProbe(model.canvit.canvas_dim, 150).to(dev).eval()
    b, s = args.batch_size, args.scene_size
    scenes = torch.randn(b, 3, s, s, device=dev)
    labels = torch.randint(0, 150, (b, s, s), device=dev)

    def one() -> float:
        cm = ConfusionMatrix(150, streams=args.glimpses, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        cm.counts += canvit_confusion(model, probe, scenes, labels, num_classes=150, policy=args.policy,
                                      num_glimpses=args.glimpses, seed=0, batch_index=0,
                                      canvas_grid=args.canvas_grid, glimpse_px=args.glimpse_px, amp=args.amp)
        cm.counts.sum().item()  # wait for the device
        return time.perf_counter() - t0

    one()  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [one() for _ in range(args.repeats)]
    best, med = min(times), statistics.median(times)
    print(f"device={dev} amp={args.amp and dev.type == 'cuda'} scene={s} grid={args.canvas_grid} "
          f"glimpse={args.glimpse_px} T={args.glimpses} B={b} policy={args.policy}")
    print(f"s/batch min {best:.3f} median {med:.3f}; images/s {b / best:.1f}; glimpses/s {b * args.glimpses / best:.1f}")
    if dev.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
