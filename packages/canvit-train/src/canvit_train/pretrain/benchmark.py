"""`canvit-train benchmark`: training glimpses/s and peak memory of a preset (the real step, synthetic data).

What is timed is exactly the training loop's step (plan, TBPTT forward/backward of every rollout, grad
clip, AdamW) on one reused synthetic batch, so data loading costs nothing. Glimpses/s counts every
glimpse of every rollout (batch x rollouts x T per step): the paper's 1B glimpses in 166 h on one H100
is about 1,700 glimpses/s at batch 64, eager. `--chunks N` fixes the rollout length (T = N·K) so runs
compare like for like; by default lengths are sampled as in training (seeded, the same sequence every run).
On CUDA one extra untimed step runs under `torch.cuda.set_sync_debug_mode("warn")` and the host syncs it
made are reported (the target is 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

EXAMPLES = """\
examples:
  canvit-train benchmark --preset canvit-b --batch-size 64 --compile          # one H100, the paper's setup
  canvit-train benchmark --preset canvit-b --batch-size 2 --chunks 2 --steps 3  # a quick CPU figure
"""


PAPER_GLIMPSES_PER_S = 1_700  # 1B glimpses in 166 h on one H100 (paper §5.2)


def main(argv: list[str] | None = None) -> int:
    from canvit_results.cli import HelpFormatter, int_at_least

    from .config import PRESETS

    ap = argparse.ArgumentParser(prog="canvit-train benchmark", description=__doc__, epilog=EXAMPLES,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--preset", default="canvit-b", choices=list(PRESETS), metavar="NAME",
                    help="the recipe whose model and step are timed: " + ", ".join(PRESETS))
    ap.add_argument("--batch-size", type=int_at_least(1, "--batch-size"), required=True, help="scenes per step")
    ap.add_argument("--steps", type=int_at_least(1, "--steps"), default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int_at_least(0, "--warmup"), default=2,
                    help="untimed steps first (compilation and allocator warm-up happen here)")
    ap.add_argument("--chunks", type=int_at_least(1, "--chunks"), help="fix the TBPTT chunks per rollout (default: sampled as in training)")
    ap.add_argument("--compile", action="store_true", help="torch.compile (backward_pass_autocast='off')")
    ap.add_argument("--device", help="default cuda when available, else cpu")
    ap.add_argument("--amp", choices=["bf16", "fp32"], help="default: the preset's (bf16) on CUDA, fp32 on CPU")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    args = ap.parse_args(argv)

    import torch
    from canvit_results import cpu_name
    from canvit_results.cli import pick_device

    from .data import synthetic_setup
    from .optim import learning_rate, make_optimizer
    from .step import StepPlan, plan_step, train_step
    from .runlog import peak_memory_gb
    from .trainer import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device, parser=ap)
    cfg = PRESETS[args.preset].replace(batch_size=args.batch_size)
    amp = args.amp or (cfg.amp if device.type == "cuda" else "fp32")
    teacher_dim = 768 if cfg.teacher != "tiny-random" else 32
    data = synthetic_setup(cfg, dim=teacher_dim, reuse=True, validation=False)
    model = build_model(cfg, data.teacher_dim, data.teacher_grid).to(device).train()
    opt = make_optimizer(model, cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if args.compile:
        torch._functorch.config.backward_pass_autocast = "off"
        model.compile()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    batch = next(iter(data.train(0, 0, 1))).to(device)

    def plan(step: int) -> StepPlan:
        p = plan_step(cfg, step, cfg.batch_size)
        if args.chunks is None:
            return p
        t = args.chunks * cfg.tbptt_chunk
        vps = {r: [seq[i % len(seq)] for i in range(t)] for r, seq in p.viewpoints.items()}
        return StepPlan(num_chunks=args.chunks, chunk=cfg.tbptt_chunk, viewpoints=vps)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(i: int) -> int:
        pl = plan(i)
        train_step(model, model, opt, params, batch.scenes, batch.patches, batch.cls, pl, cfg,
                   lr=learning_rate(cfg, i), amp=amp)
        return cfg.batch_size * len(cfg.rollouts) * pl.num_glimpses

    from tqdm import tqdm

    load0 = _loadavg()
    bar = tqdm(total=args.warmup + args.steps, desc="benchmark (warm-up)", unit="step", disable=args.no_progress,
               dynamic_ncols=True)
    for i in range(args.warmup):
        step(i)
        bar.update(1)
    sync()
    bar.set_description("benchmark (timed)")
    times, glimpses = [], []
    for i in range(args.warmup, args.warmup + args.steps):
        t0 = time.perf_counter()
        glimpses.append(step(i))
        sync()
        times.append(time.perf_counter() - t0)
        bar.update(1)
        bar.set_postfix(step_s=f"{times[-1]:.3f}")
    bar.close()
    syncs = None
    if device.type == "cuda":  # one more, untimed step under CUDA's sync debug mode: host syncs per step
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step(args.warmup + args.steps)
            finally:
                torch.cuda.set_sync_debug_mode("default")  # before our own synchronize(), which is not the step's
        sync()
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    total = sum(times)
    per_glimpse = [t / g for t, g in zip(times, glimpses, strict=True)]
    out = {
        "preset": args.preset, "batch_size": args.batch_size, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(), "amp": amp, "compile": args.compile,
        "chunks": args.chunks or "sampled", "steps": args.steps,
        "glimpses_per_s": sum(glimpses) / total,
        "step_s_median": statistics.median(times), "step_s_min": min(times),
        "ms_per_glimpse_min": 1000 * min(per_glimpse),
        "peak_mem_gb": peak_memory_gb(device), "host_syncs_per_step": syncs,
        "vs_paper_1700_glimpses_per_s": sum(glimpses) / total / PAPER_GLIMPSES_PER_S,
        "loadavg_before": load0, "loadavg_after": _loadavg(),
        "torch": torch.__version__,
    }
    print(f"{args.preset} batch {args.batch_size} on {out['device_name']} ({device}, {amp}"
          f"{', compiled' if args.compile else ''}, {out['threads']} threads): "
          f"{out['glimpses_per_s']:.1f} training glimpses/s, step median {out['step_s_median']:.3f} s "
          f"(min {out['step_s_min']:.3f} s), peak memory {out['peak_mem_gb']:.2f} GiB"
          f"{' (max RSS)' if device.type == 'cpu' else ''}; load average {load0} -> {out['loadavg_after']}")
    if device.type == "cuda":
        print(f"  = {out['vs_paper_1700_glimpses_per_s']:.2f}x the paper's ~{PAPER_GLIMPSES_PER_S:,} glimpses/s "
              f"(one H100, batch 64, eager, 18.4 GB); host syncs in one step: {syncs}")
    if args.json:
        print(json.dumps(out))
    return 0


def _loadavg() -> float | None:
    try:
        return round(float(open("/proc/loadavg").read().split()[0]), 2)
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
