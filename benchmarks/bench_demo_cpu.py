"""`canvit-eval demo` speed on this machine: one glimpse (extraction + CanViT + probes) and one page render
(boxes, glimpse, canvas PCA, segmentation, top-5, plot), CanViT-B with random weights at the demo's defaults
(512 px scene, canvas grid 32, 128 px glimpses), fp32 on the CPU. Wall time and process CPU time (the
latter tells a loaded machine's waiting apart from work: with 1 thread, CPU time ~ the wall time of an idle core).

    uv run python benchmarks/bench_demo_cpu.py --glimpses 10 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glimpses", type=int, default=10, help="glimpses per round (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each a fresh scene (default 3)")
    p.add_argument("--preset", default="canvitb16", help="model preset, random weights (default canvitb16)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from canvit_eval.demo import DemoConfig, Engine, sample_scene
    from canvit_model import CanViTForPretraining, SegmentationProbe, fuse_probe
    from canvit_results import cpu_name

    torch.manual_seed(0)
    model = CanViTForPretraining.from_preset(args.preset)
    model.teacher_cls_standardizer.fitted.fill_(True)
    head = fuse_probe(model.teacher_cls_readout, model.teacher_cls_standardizer,
                      (torch.randn(1000, model.teacher_dim), torch.randn(1000)))
    seg = SegmentationProbe(model.canvit.canvas_dim).eval()  # 150 ADE20K classes
    eng = Engine(model, DemoConfig(), device=torch.device("cpu"), seg_probe=seg, in1k_head=head)
    eng.render(eng.new_session(sample_scene("sample scene 1", 512), "warm-up"))  # first-call imports
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("load", "step", "render")}

    def timed(name, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        times[name][0].append((time.perf_counter() - wall) * 1e3)
        times[name][1].append((time.process_time() - cpu) * 1e3)
        return out

    for r in range(args.rounds):
        s = timed("load", lambda: eng.new_session(sample_scene(f"sample scene {r % 4 + 1}", 512), "bench"))
        for _ in range(args.glimpses):
            vp = eng.policy_viewpoint(s, "c2f", args.glimpses, r)
            timed("step", lambda: eng.glimpse(s, vp, "c2f"))
            timed("render", lambda: eng.render(s))
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset}")
    print("what | wall min (ms) | wall median (ms) | CPU time min (ms) | CPU time median (ms) | n")
    for key, name in (("load", "scene load (5 reference glimpses + PCA fit)"), ("step", "glimpse (model + probes)"),
                      ("render", "page pictures (boxes, PCA, segmentation, plot)")):
        wall, cpu = times[key]
        print(f"{name} | {min(wall):.0f} | {statistics.median(wall):.0f} | {min(cpu):.0f} | {statistics.median(cpu):.0f}"
              f" | {len(wall)}")


if __name__ == "__main__":
    main()
