"""CPU per-glimpse latency: our canvit_model.CanViT-B vs the authors' canvit-pytorch, same weights, same process.

Needs an environment with both packages (canvit-pytorch requires Python >= 3.12), e.g. from the
repository root:

    python3.12 -m venv .venv-ref && .venv-ref/bin/pip install canvit-pytorch==0.2.1
    .venv-ref/bin/pip install --no-deps -e packages/canvit-model
    .venv-ref/bin/python benchmarks/bench_vs_reference.py                  # 512/32^2 + 1024/64^2, 1 and 2 threads
    .venv-ref/bin/python benchmarks/bench_vs_reference.py --scenes 512 --threads 1 --repeats 10

What is timed is the paper's latency call (paper Appendix I): batch 1, fp32, eager,
torch.inference_mode, `init_state(1, scene/16)` + one forward of a 128 px full-scene glimpse. Both
models are CanViT-B with the same seeded random weights (the reference's state dict, loaded into ours:
the checkpoint layouts are identical). Calls alternate ours / reference (in an order that flips every
repeat) so drift hits both alike. Prints min and median ms and the ratio ours / reference (< 1 = ours
faster), plus the max relative difference of the canvas between the two as a sanity check.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from canvit_results import cpu_name


def build_pair(seed: int):
    import canvit_pytorch as ref_pkg

    import canvit_model as ours_pkg

    torch.manual_seed(seed)
    ref = ref_pkg.CanViTForPretraining(
        canvit_config=ref_pkg.CanViTConfig(), teacher_dim=768, teacher_patch_grid=32
    ).eval()
    with torch.no_grad():  # non-trivial weights (the init has zeros / ones in places)
        gen = torch.Generator().manual_seed(seed)
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    ours = ours_pkg.CanViTForPretraining(ours_pkg.CanViTConfig(), teacher_dim=768, teacher_patch_grid=32).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    return ours, ref, ours_pkg, ref_pkg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example (benchmarks/RESULTS.md; an env with canvit-pytorch 0.2.1 + canvit-model):\n"
                                        "  .venv-ref/bin/python benchmarks/bench_vs_reference.py --repeats 12")
    ap.add_argument("--scenes", type=int, nargs="+", default=[512, 1024], help="scene side px (canvas = scene/16)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per model per configuration")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--glimpse-px", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import importlib.metadata as md

    ours, ref, O, R = build_pair(args.seed)
    print(f"torch {torch.__version__}, canvit-pytorch {md.version('canvit-pytorch')}, {cpu_name()}; "
          f"CanViT-B fp32 eager batch 1, {args.glimpse_px} px glimpse, {args.repeats} alternating repeats, "
          f"{args.warmup} warmup")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for scene in args.scenes:
            grid = scene // 16
            glimpse = torch.randn(1, 3, args.glimpse_px, args.glimpse_px)
            vp_o = O.Viewpoint.full_scene(batch_size=1)
            vp_r = R.Viewpoint.full_scene(batch_size=1, device=torch.device("cpu"))

            def run_ours():
                st = ours.init_state(batch_size=1, canvas_grid_size=grid)
                return ours(glimpse=glimpse, state=st, viewpoint=vp_o).state.canvas

            def run_ref():
                st = ref.init_state(batch_size=1, canvas_grid_size=grid)
                return ref(glimpse=glimpse, state=st, viewpoint=vp_r).state.canvas

            fns = {"ours": run_ours, "reference": run_ref}
            times: dict[str, list[float]] = {k: [] for k in fns}
            with torch.inference_mode():
                a, b = run_ours(), run_ref()
                err = ((a - b).abs().max() / b.abs().max()).item()
                for _ in range(args.warmup):
                    run_ours()
                    run_ref()
                for i in range(args.repeats):
                    order = ["ours", "reference"] if i % 2 == 0 else ["reference", "ours"]
                    for name in order:
                        t0 = time.perf_counter()
                        fns[name]()
                        times[name].append((time.perf_counter() - t0) * 1e3)
            o, r = times["ours"], times["reference"]
            rows.append((threads, scene, grid, min(o), statistics.median(o), min(r), statistics.median(r), err))
            print(f"  {threads}T {scene}px/{grid}^2: ours min {min(o):.1f} ms, reference min {min(r):.1f} ms",
                  flush=True)

    print()
    print("| threads | scene / canvas | ours min ms | ours median ms | ref min ms | ref median ms "
          "| ratio min (ours/ref) | ratio median | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t, s, g, omin, omed, rmin, rmed, err in rows:
        print(f"| {t} | {s} / {g}² | {omin:.1f} | {omed:.1f} | {rmin:.1f} | {rmed:.1f} | {omin / rmin:.3f} "
              f"| {omed / rmed:.3f} | {err:.1e} |")


if __name__ == "__main__":
    main()
