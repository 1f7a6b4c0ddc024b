"""One CanViT-B pretraining step: ours (canvit_train.pretrain.step) vs the authors' canvit-pytorch 0.2.1
(`canvit_pytorch.pretrain.step.training_step`), same weights, same batch, same process.

Needs an environment with both (canvit-pytorch requires Python >= 3.12), e.g.:

    PYENV_VERSION=3.11.7:3.12.1 uv venv -p 3.12 /tmp/oracle312
    uv pip install --python /tmp/oracle312 canvit-pytorch==0.2.1 pandas tabulate
    uv pip install --python /tmp/oracle312 --no-deps -e packages/canvit-model -e packages/canvit-train \
        -e packages/canvit-data -e packages/canvit-results
    /tmp/oracle312/bin/python benchmarks/bench_train_step_vs_reference.py --batch-size 2 --threads 2

What is timed, for each side: zero_grad + one step of 1 F-IID + 1 R-IID rollout of T = 2 glimpses
(one TBPTT chunk; the reference's stop probability is set to 1 so its sampled length is exactly K = 2)
at 128 px glimpses from 512 px scenes with a 32x32 canvas, fp32 (CPU), + grad clip 1.0 + AdamW. Ours runs
in each `canvit_model.cpu_training` mode of `--modes` ("eager": the plain ops; "fp32": oneDNN forward and
input-gradient GEMMs on weights packed once per step), the reference in its plain eager ops.
Calls alternate (order flipped every repeat). Prints min / median seconds per step and ours / reference.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example (benchmarks/RESULTS.md; an env with canvit-pytorch 0.2.1 + our packages):\n"
                                        "  /tmp/oracle312/bin/python benchmarks/bench_train_step_vs_reference.py --batch-size 2 --threads 2 --repeats 4")
    ap.add_argument("--batch-size", type=int, default=2, help="scenes per step (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per side (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per side first (default 1)")
    ap.add_argument("--modes", nargs="+", default=["eager", "fp32"], choices=["eager", "fp32"],
                    help="our canvit_model.cpu_training modes, each timed against the reference (default: eager fp32)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import canvit_pytorch as ref_pkg
    from canvit_pytorch.pretrain.loss import DistillationTargets
    from canvit_pytorch.pretrain.step import training_step
    from canvit_train.pretrain.config import PRESETS
    from canvit_train.pretrain.optim import make_optimizer
    from canvit_train.pretrain.step import StepPlan, plan_step, train_step
    from canvit_train.pretrain.trainer import build_model

    cfg = PRESETS["canvit-b"].replace(batch_size=args.batch_size)
    b = args.batch_size
    ours = build_model(cfg, 768, 32).train()
    with torch.no_grad():  # fitted standardizers (identity statistics): both sides refuse unfitted ones
        for std in (ours.teacher_patch_standardizer, ours.teacher_cls_standardizer):
            std.fitted.fill_(True)
    ref = ref_pkg.CanViTForPretraining(canvit_config=ref_pkg.CanViTConfig(), teacher_dim=768, teacher_patch_grid=32).train()
    ref.load_state_dict(ours.state_dict(), strict=True)  # same layout, same weights
    g = torch.Generator().manual_seed(0)
    scenes = torch.randn(b, 3, 512, 512, generator=g)
    patches, cls = torch.randn(b, 1024, 768, generator=g), torch.randn(b, 768, generator=g)
    opt_o = make_optimizer(ours, cfg, torch.device("cpu"))
    opt_r = torch.optim.AdamW(ref.parameters(), lr=4e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    p = plan_step(cfg, 0, b)
    plan = StepPlan(num_chunks=1, chunk=2, viewpoints={r: v[:2] for r, v in p.viewpoints.items()})

    params_o = [q for q in ours.parameters() if q.requires_grad]

    from canvit_model import cpu_training

    def step_ours(mode: str) -> None:  # the loop's step (zero grads, TBPTT forward/backward, clip, AdamW)
        with cpu_training(mode):
            train_step(ours, ours, opt_o, params_o, scenes, patches, cls, plan, cfg, lr=4e-4)

    def step_ref() -> None:
        opt_r.zero_grad(set_to_none=True)
        targets = DistillationTargets.standardize(ref, patches=patches, cls=cls)
        training_step(model=ref, images=scenes, targets=targets, rollout_policies=("full_then_random", "random"),
                      tbptt_chunk_glimpses=2, stop_probability=1.0, glimpse_size_px=128, canvas_grid_size=32,
                      enable_teacher_patch_loss=True, enable_teacher_cls_loss=True, autocast=contextlib.nullcontext())
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt_r.step()

    fns = {f"ours ({m})": (lambda m=m: step_ours(m)) for m in args.modes} | {"ref": step_ref}
    for _ in range(args.warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(args.repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    r = times.pop("ref")
    print(f"CanViT-B train step, batch {b}, T=2 x (F-IID + R-IID), 512 px / 32^2 canvas, fp32, "
          f"{args.threads} threads, torch {torch.__version__}, load average {load}")
    print("| side | min s/step | median s/step | glimpses/s (min) | ratio min (ours/ref) | ratio median |")
    print("|---|---|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts):.2f} | {statistics.median(ts):.2f} | {4 * b / min(ts):.2f} "
              f"| {min(ts) / min(r):.3f} | {statistics.median(ts) / statistics.median(r):.3f} |")
    print(f"| canvit-pytorch 0.2.1 | {min(r):.2f} | {statistics.median(r):.2f} | {4 * b / min(r):.2f} | 1 | 1 |")


if __name__ == "__main__":
    main()
