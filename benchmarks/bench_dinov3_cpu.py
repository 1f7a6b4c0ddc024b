"""CPU forward latency: canvit_model.DINOv3 vs transformers' DINOv3ViTModel, same weights, same process.

    uv run python benchmarks/bench_dinov3_cpu.py                      # ViT-B/16, 512x512, batch 1 and 8
    uv run python benchmarks/bench_dinov3_cpu.py --arch vits16 --size 224 --batch-sizes 1 --repeats 5

Both models get identical random weights (ours loaded from transformers' state dict). Timings alternate
ours / transformers within each repeat so drift (thermal, other load) hits both alike; the table gives
min and median milliseconds per forward (fp32, torch.inference_mode) and the ratio ours / transformers
(< 1 means ours is faster). transformers is a dev-only dependency (root `dev` group).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def build(arch: str):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    from canvit_model import DINOv3
    from canvit_model.convert import hf_config, state_dict_from_hf

    ours = DINOv3(arch)
    cfg = {k: v for k, v in hf_config(ours.cfg, ours.num_registers).items() if k not in ("architectures", "model_type")}
    theirs = DINOv3ViTModel(DINOv3ViTConfig(**cfg)).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p) * 0.02)
    sd = state_dict_from_hf(theirs.state_dict(), ours.cfg, ours.num_registers)
    ours.load_state_dict(sd)
    return ours.eval(), theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vitb16")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    ours, theirs = build(args.arch)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}; {args.arch} {args.size}x{args.size} fp32, "
          f"{args.repeats} repeats (alternating), {args.warmup} warmup")
    rows = []
    for bs in args.batch_sizes:
        x = torch.randn(bs, 3, args.size, args.size)
        fns = {
            "ours": lambda: ours(x),
            "transformers": lambda: theirs(pixel_values=x).last_hidden_state,
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        with torch.inference_mode():
            a, b = fns["ours"](), fns["transformers"]()
            err = ((a - b).abs().max() / b.abs().max()).item()
            for _ in range(args.warmup):
                for f in fns.values():
                    f()
            for _ in range(args.repeats):
                for name, f in fns.items():
                    t0 = time.perf_counter()
                    f()
                    times[name].append((time.perf_counter() - t0) * 1e3)
        o, t = times["ours"], times["transformers"]
        rows.append((bs, min(o), statistics.median(o), min(t), statistics.median(t), err))

    print()
    print("| batch | ours min (ms) | ours median (ms) | transformers min (ms) | transformers median (ms) "
          "| ratio min | ratio median | max rel diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for bs, omin, omed, tmin, tmed, err in rows:
        print(f"| {bs} | {omin:.1f} | {omed:.1f} | {tmin:.1f} | {tmed:.1f} | {omin / tmin:.3f} | "
              f"{omed / tmed:.3f} | {err:.1e} |")


if __name__ == "__main__":
    main()
