"""The fp32 GEMM peak of this CPU at CanViT-B glimpse shapes: what "% of peak" in RESULTS.md divides by.

For each thread count, times the backbone / canvas-attention GEMM shapes of a 128 px glimpse (M = 71
tokens: VPE, CLS, 5 registers, 64 patches) through each library torch offers here: MKL (`F.linear`),
oneDNN on prepacked fp32 weights (`torch.ops.mkldnn._linear_pointwise`), oneDNN bf16 (for reference),
and onnxruntime's MLAS when onnxruntime is installed. Prints GFLOP/s per shape (min time over repeats)
and the peak = the best fp32 figure over libraries and shapes.

    uv run python benchmarks/bench_gemm_peak.py --threads 1 2
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# (M, K, N): qkv, proj, fc1, fc2 of a ViT-B block and the canvas-side maps at 1024 px (4112 canvas tokens)
SHAPES = [(71, 768, 2304), (71, 768, 768), (71, 768, 3072), (71, 3072, 768), (71, 768, 1024), (71, 1024, 768)]


def _time(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _ort_linear(w: torch.Tensor, b: torch.Tensor, m: int):
    """An onnxruntime session computing x @ w.T + b (MLAS), or None without onnxruntime."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    k = w.shape[1]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, w.shape[0]])],
        [numpy_helper.from_array(w.numpy(), "w"), numpy_helper.from_array(b.numpy(), "b")],
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(helper.make_model(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    return lambda: sess.run(None, {"x": x})


def gemm_peak(threads: int, repeats: int = 30, verbose: bool = True) -> dict[str, float]:
    """GFLOP/s per library (best over SHAPES) with `threads` threads; key "peak_fp32" = best fp32 one."""
    torch.set_num_threads(threads)
    best: dict[str, float] = {}
    for m, k, n in SHAPES:
        x, w, b = torch.randn(1, m, k), torch.randn(n, k) * 0.02, torch.randn(n)
        fns = {"mkl_fp32": lambda: F.linear(x, w, b)}
        if hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available():
            wp = torch.ops.mkldnn._reorder_linear_weight(w, None)
            wb = torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), None)
            xb, bb = x.bfloat16(), b.bfloat16()
            fns["onednn_fp32"] = lambda: torch.ops.mkldnn._linear_pointwise(x, wp, b, "none", [], "")
            fns["onednn_bf16"] = lambda: torch.ops.mkldnn._linear_pointwise(xb, wb, bb, "none", [], "")
        ort_fn = _ort_linear(w, b, m)
        if ort_fn is not None:
            fns["mlas_fp32"] = ort_fn
        flops = 2 * m * k * n
        with torch.inference_mode():
            rates = {name: flops / _time(fn, repeats) / 1e9 for name, fn in fns.items()}
        if verbose:
            print(f"  {threads}T {m}x{k}x{n}: " + ", ".join(f"{k_} {v:.0f}" for k_, v in rates.items()) + " GFLOP/s")
        for name, r in rates.items():
            best[name] = max(best.get(name, 0.0), r)
    best["peak_fp32"] = max(v for k_, v in best.items() if k_.endswith("fp32"))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values (default 1 2)")
    ap.add_argument("--repeats", type=int, default=30, help="timed calls per shape and library (default 30)")
    args = ap.parse_args()
    for t in args.threads:
        best = gemm_peak(t, args.repeats)
        print(f"{t} thread(s): " + ", ".join(f"{k} {v:.0f}" for k, v in best.items()) + " GFLOP/s")


if __name__ == "__main__":
    main()
