"""CPU per-glimpse latency: our canvit_model.CanViT-B vs the authors' canvit-pytorch, same weights, same process.

Needs an environment with both packages (canvit-pytorch requires Python >= 3.12), e.g. from the
repository root:

    python3.12 -m venv .venv-ref && .venv-ref/bin/pip install canvit-pytorch==0.2.1
    .venv-ref/bin/pip install --no-deps -e packages/canvit-model
    .venv-ref/bin/python benchmarks/bench_vs_reference.py                  # 512/32^2 + 1024/64^2, 1 and 2 threads
    .venv-ref/bin/python benchmarks/bench_vs_reference.py --scenes 512 --threads 1 --repeats 10

What is timed is the paper's latency call (paper Appendix I): batch 1,
torch.inference_mode, `init_state(1, scene/16)` + one forward of a 128 px full-scene glimpse; ours in each
CPU inference mode (`--modes`: "eager" = plain fp32 ops, "fp32" = the default oneDNN fast path, "bf16" =
the opt-in reduced-precision path), the reference in its fp32 eager. Both
models are CanViT-B with the same seeded random weights (the reference's state dict, loaded into ours:
the checkpoint layouts are identical). Calls alternate ours / reference (in an order that flips every
repeat) so drift hits both alike. Prints min and median ms and the ratio ours / reference (< 1 = ours
faster), the share of the fp32 GEMM peak measured first in the same process (bench_gemm_peak.py:
glimpse GFLOP from torch's flop counter / min time / peak), the floor that peak sets (the glimpse's
GEMM FLOPs at 100 % of the measured fp32 peak, as a ratio to the reference's min: no fp32 path on this
machine can go below it; the bf16 floor likewise at the oneDNN bf16 peak), and the max relative
difference of the canvas vs the reference's. The peaks are the best of a measurement before and one
after each thread count's timings.
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


def glimpse_gflop(model, glimpse, vp, grid) -> float:
    """GFLOP of one init_state + glimpse (matmuls and attention; torch.utils.flop_counter), eager fp32
    (the counter knows aten's GEMMs, not oneDNN's packed ones: same work, counted on the eager path)."""
    from torch.utils.flop_counter import FlopCounterMode

    from canvit_model import cpu_inference

    with cpu_inference("eager"), torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(glimpse=glimpse, state=model.init_state(batch_size=1, canvas_grid_size=grid), viewpoint=vp)
    return counter.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example (benchmarks/RESULTS.md; an env with canvit-pytorch 0.2.1 + canvit-model):\n"
                                        "  .venv-ref/bin/python benchmarks/bench_vs_reference.py --scenes 128 512 1024 "
                                        "--threads 1 2 --repeats 30")
    ap.add_argument("--scenes", type=int, nargs="+", default=[512, 1024],
                    help="scene side px (canvas = scene/16; default 512 1024)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values (default 1 2)")
    ap.add_argument("--modes", nargs="+", default=["eager", "fp32", "bf16"], choices=["eager", "fp32", "bf16"],
                    help="our CPU inference modes (canvit_model.cpu_inference), each timed against the reference "
                         "(default: eager fp32 bf16)")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per model per configuration (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls of each first (default 3)")
    ap.add_argument("--glimpse-px", type=int, default=128, help="glimpse side px (default 128)")
    ap.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    ap.add_argument("--profile", action="store_true",
                    help="after timing, print a torch.profiler table of ours per mode at the last configuration")
    args = ap.parse_args()

    import importlib.metadata as md

    from bench_gemm_peak import gemm_peak

    ours, ref, O, R = build_pair(args.seed)
    print(f"torch {torch.__version__}, canvit-pytorch {md.version('canvit-pytorch')}, {cpu_name()}; "
          f"CanViT-B batch 1, {args.glimpse_px} px glimpse, {args.repeats} alternating repeats, "
          f"{args.warmup} warmup; ours in modes {args.modes}, the reference fp32 eager")
    rows = []
    for threads in args.threads:
        # the peak: best of a measurement before and one after this thread count's timings (one taken
        # while a co-tenant holds the second vCPU would otherwise understate it)
        peak = gemm_peak(threads, verbose=False)
        torch.set_num_threads(threads)
        first_row = len(rows)
        for scene in args.scenes:
            grid = scene // 16
            glimpse = torch.randn(1, 3, args.glimpse_px, args.glimpse_px)
            vp_o = O.Viewpoint.full_scene(batch_size=1)
            vp_r = R.Viewpoint.full_scene(batch_size=1, device=torch.device("cpu"))
            gflop = glimpse_gflop(ours, glimpse, vp_o, grid)

            def run_ours(mode: str):
                with O.cpu_inference(mode):
                    st = ours.init_state(batch_size=1, canvas_grid_size=grid)
                    return ours(glimpse=glimpse, state=st, viewpoint=vp_o).state.canvas

            def run_ref():
                st = ref.init_state(batch_size=1, canvas_grid_size=grid)
                return ref(glimpse=glimpse, state=st, viewpoint=vp_r).state.canvas

            fns = {m: (lambda m=m: run_ours(m)) for m in args.modes} | {"reference": run_ref}
            times: dict[str, list[float]] = {k: [] for k in fns}
            with torch.inference_mode():
                b = run_ref()
                err = {m: ((run_ours(m) - b).abs().max() / b.abs().max()).item() for m in args.modes}
                for _ in range(args.warmup):
                    for fn in fns.values():
                        fn()
                names = list(fns)
                for i in range(args.repeats):
                    for name in names if i % 2 == 0 else names[::-1]:
                        t0 = time.perf_counter()
                        fns[name]()
                        times[name].append((time.perf_counter() - t0) * 1e3)
            r = times["reference"]
            for m in args.modes:
                o = times[m]
                rows.append([threads, scene, grid, m, min(o), statistics.median(o), min(r), statistics.median(r),
                             gflop, err[m], None])  # the last: this thread count's peaks, set below
            print(f"  {threads}T {scene}px/{grid}^2 ({gflop:.2f} GFLOP): reference min/median {min(r):.1f}/"
                  f"{statistics.median(r):.1f} ms; " + ", ".join(
                      f"{m} {min(times[m]):.1f}/{statistics.median(times[m]):.1f} ms (err {err[m]:.1e})"
                      for m in args.modes), flush=True)
        after = gemm_peak(threads, verbose=False)
        peak = {k: max(v, after.get(k, 0.0)) for k, v in peak.items()}
        print(f"  {threads}T GEMM peak at glimpse shapes (best of before / after): "
              + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) + " GFLOP/s", flush=True)
        for row in rows[first_row:]:
            row[10] = peak

    print()
    print("| threads | scene / canvas | mode | ours min ms | ours median ms | ref min ms | ref median ms "
          "| ratio min (ours/ref) | ratio median | % fp32 GEMM peak | fp32 floor | bf16 floor | max rel diff vs ref |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t, s, g, m, omin, omed, rmin, rmed, gflop, err, peak in rows:
        frac = gflop / (omin / 1e3) / peak["peak_fp32"]
        # floors: the glimpse's GEMM FLOPs at 100 % of the measured peak, over the reference's min
        floor32 = gflop / peak["peak_fp32"] * 1e3 / rmin
        floor16 = gflop / peak.get("onednn_bf16", float("nan")) * 1e3 / rmin
        print(f"| {t} | {s} / {g}² | {m} | {omin:.1f} | {omed:.1f} | {rmin:.1f} | {rmed:.1f} | {omin / rmin:.3f} "
              f"| {omed / rmed:.3f} | {100 * frac:.0f} % | {floor32:.2f} | {floor16:.2f} | {err:.1e} |")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for m in args.modes:
            with torch.inference_mode():
                run_ours(m)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(3):
                        run_ours(m)
            print(f"\nprofile: ours, mode {m}, {threads}T {scene}px, 3 calls")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
