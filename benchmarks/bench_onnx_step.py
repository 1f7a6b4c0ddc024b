"""Latency of one CanViT glimpse step: the exported ONNX graph in onnxruntime vs eager PyTorch, on CPU.

    uv run python benchmarks/bench_onnx_step.py                                  # 128 / 512 / 1024 px scenes
    uv run python benchmarks/bench_onnx_step.py --scenes 512 --threads 2 --repeats 20

CanViT-B (random weights: latency does not depend on them), batch 1, canvas grid = scene / 16, a 128 px
glimpse; the state is prepared beforehand, so one timed call is exactly one step (glimpse + state +
viewpoint -> next state). Per scene the step is exported with `canvit_model.export.export_onnx` (the
`canvit-export onnx` code path) into a temporary directory, then the two runtimes are timed in this one
process, alternating (order flipped every repeat), after warm-up calls; both use --threads intra-op
threads. PyTorch runs as plain eager ops (`cpu_inference("eager")`) and on the default CPU fast path
("fp32": oneDNN-packed linears, the fast canvas path). Prints min and median ms per step, the ratios
onnxruntime / eager and onnxruntime / fast, and the largest difference between the next canvases.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from canvit_model import CanViTForPretraining, Viewpoint, cpu_inference, sample_at_viewpoint
from canvit_model.export import ONNX_NAME, export_onnx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  uv run python benchmarks/bench_onnx_step.py --scenes 512 --threads 2")
    p.add_argument("--scenes", type=int, nargs="+", default=[128, 512, 1024], help="scene sizes in px (default: 128 512 1024)")
    p.add_argument("--glimpse-px", type=int, default=128, help="glimpse size (default: 128)")
    p.add_argument("--preset", default="canvitb16", help="model preset, random weights (default: canvitb16)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes (default: 1)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per runtime (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per runtime first (default: 3)")
    args = p.parse_args()

    import onnxruntime as ort

    from canvit_results import cpu_name

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CanViTForPretraining.from_preset(args.preset).eval()
    patch = model.canvit.patch_size
    print(f"# {cpu_name()}, torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s), "
          f"{args.preset} random weights, batch 1, glimpse {args.glimpse_px} px, {args.repeats} repeats")
    print("| scene / canvas | export s | eager min ms | eager median ms | fast min ms | fast median ms | ORT min ms "
          "| ORT median ms | ORT/eager min | ORT/eager median | ORT/fast min | ORT/fast median | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for scene_px in args.scenes:
        grid = scene_px // patch
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            export_onnx(model, Path(tmp), canvas_grid=grid, glimpse_px=args.glimpse_px)
            export_s = time.perf_counter() - t0
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(Path(tmp) / ONNX_NAME), so, providers=["CPUExecutionProvider"])
        g = torch.Generator().manual_seed(scene_px)
        scene = torch.randn(1, 3, scene_px, scene_px, generator=g)
        vp = Viewpoint(centers=torch.tensor([[0.1, -0.2]]), scales=torch.tensor([0.5]))
        glimpse = sample_at_viewpoint(scene, vp, args.glimpse_px)
        with torch.inference_mode():
            state = model.init_state(1, grid)
            state = model(glimpse, state, Viewpoint.full_scene(batch_size=1)).state  # a state that has seen something
        feeds = {"glimpse": glimpse.numpy(), "canvas": state.canvas.numpy(), "recurrent_cls": state.recurrent_cls.numpy(),
                 "center": vp.centers.numpy(), "scale": vp.scales.numpy()}

        def torch_step(mode: str) -> torch.Tensor:
            with torch.inference_mode(), cpu_inference(mode):
                return model(glimpse, state, vp).state.canvas

        def onnx() -> np.ndarray:
            return sess.run(["next_canvas"], feeds)[0]

        fns = {"eager": lambda: torch_step("eager"), "fast": lambda: torch_step("fp32"), "ort": onnx}
        for _ in range(args.warmup):
            for fn in fns.values():
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(args.repeats):
            order = list(fns.items())
            for name, fn in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
        nxt = onnx()
        diff = max(float(np.abs(nxt - torch_step(m).numpy()).max()) for m in ("eager", "fp32"))
        e, f, o = times["eager"], times["fast"], times["ort"]
        med = statistics.median
        print(f"| {scene_px} / {grid}² | {export_s:.0f} | {min(e):.1f} | {med(e):.1f} | {min(f):.1f} | {med(f):.1f} "
              f"| {min(o):.1f} | {med(o):.1f} | {min(o) / min(e):.3f} | {med(o) / med(e):.3f} | {min(o) / min(f):.3f} "
              f"| {med(o) / med(f):.3f} | {diff:.1e} |", flush=True)
        del sess


if __name__ == "__main__":
    main()
