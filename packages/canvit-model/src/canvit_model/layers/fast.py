"""The CPU fast paths: oneDNN linears on weights packed once for inference (and its opt-in bf16 variant),
and oneDNN GEMMs for the forward and input-gradient products of CPU fp32 training.

Why: on CPUs where MKL takes its generic path (AMD EPYC here), `F.linear` runs the glimpse-shaped GEMMs
at well under half of what oneDNN reaches on prepacked weights, and those GEMMs are most of a glimpse.

The rule (one place, `cpu_fast_mode`): the fast path engages only for CPU float32 inputs with autograd
off (`torch.no_grad()` / `torch.inference_mode()`), the module in `eval()`, autocast off, and not while
torch.compile / torch.export / jit tracing a graph. Anything else (CUDA, training, gradients, autocast, a
bf16 model, compiled or exported graphs, FLOP counters) runs the plain eager ops, so those numbers never change.

Modes (`cpu_inference(mode)` context, or `CanViT.precision`):
- "fp32" (default): fp32 oneDNN GEMMs; equal to eager fp32 to ~1e-6 relative (a different summation order).
- "bf16" (opt-in): the linears' weights packed in bfloat16 and their inputs rounded to bfloat16; canvas,
  coordinates, RoPE, VPE, LayerNorm, attention and the residual stream stay float32 (paper D.3).
- "eager": never take the fast path (today's eager fp32 numbers exactly).

CPU training (`cpu_training(mode)`, default "fp32"): with autograd on, float32 CPU tensors, no autocast
and no graph capture, a FastLinear computes y = x W^T + b and dL/dx = dL/dy W on oneDNN-packed copies of
W and W^T (packed once per weight version, i.e. once per optimizer step, and reused by every glimpse of
the step), and dL/dW = dL/dy^T x with the plain GEMM (faster there). Same gradients to float rounding.
"eager" turns it off. CUDA, autocast, compiled graphs and bf16 weights never take it.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

CpuMode = Literal["eager", "fp32", "bf16"]
CPU_MODES: tuple[str, ...] = ("eager", "fp32", "bf16")

_MODE: ContextVar[str] = ContextVar("canvit_cpu_inference", default="fp32")
_TRAIN_MODE: ContextVar[str] = ContextVar("canvit_cpu_training", default="fp32")
CPU_TRAIN_MODES: tuple[str, ...] = ("eager", "fp32")


def _check_mode(mode: str, modes: tuple[str, ...], what: str) -> str:
    if mode not in modes:
        raise ValueError(f"CPU {what} mode must be one of {', '.join(modes)}, got {mode!r}")
    return mode


def check_cpu_mode(mode: str) -> str:
    return _check_mode(mode, CPU_MODES, "inference")


@contextmanager
def _mode_set(var: ContextVar[str], mode: str) -> Iterator[None]:
    token = var.set(mode)
    try:
        yield
    finally:
        var.reset(token)


def cpu_inference(mode: CpuMode) -> contextlib.AbstractContextManager[None]:
    """Run CPU inference inside the block in `mode` ("eager" / "fp32" / "bf16"; default outside: "fp32")."""
    return _mode_set(_MODE, check_cpu_mode(mode))


def cpu_training(mode: Literal["eager", "fp32"]) -> contextlib.AbstractContextManager[None]:
    """CPU fp32 training inside the block: "fp32" (default outside: oneDNN forward and input-gradient
    GEMMs) or "eager" (the plain ops exactly)."""
    return _mode_set(_TRAIN_MODE, _check_mode(mode, CPU_TRAIN_MODES, "training"))


def cpu_train_fast(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when a linear on input x with `weight` takes the CPU training path (see the module docstring)."""
    if graph_capture() or _TRAIN_MODE.get() != "fp32" or not torch.is_grad_enabled():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if not (x.requires_grad or weight.requires_grad) or torch.is_autocast_enabled("cpu"):
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(x)


def current_cpu_mode() -> str:
    return _MODE.get()


def graph_capture() -> bool:
    """True while torch.compile / torch.export / jit tracing, or under a Python dispatch mode (FLOP
    counters, fake tensors): graphs and op counters must see only the plain ops."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    try:
        from torch.utils._python_dispatch import is_in_torch_dispatch_mode

        if is_in_torch_dispatch_mode():
            return True
    except ImportError:  # an older torch without the helper
        pass
    compiler = getattr(torch, "compiler", None)
    if compiler is None:
        return False
    is_exporting = getattr(compiler, "is_exporting", None)
    return bool(compiler.is_compiling() or (is_exporting is not None and is_exporting()))


def cpu_fast_mode(x: torch.Tensor, training: bool) -> str | None:
    """"fp32" / "bf16" when the CPU fast path applies to input x of a module in `training` mode, else None."""
    if graph_capture():  # first: a traced graph must not even read the mode
        return None
    mode = _MODE.get()
    if (
        mode == "eager"
        or training
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or torch.is_grad_enabled()
        or torch.is_autocast_enabled("cpu")
    ):
        return None
    return mode


_WORKSPACE = threading.local()


def workspace(name: str, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A reusable buffer for the fast path's canvas-sized temporaries (uninitialized; `like`'s device, and
    `dtype` or else `like`'s dtype).

    Why: a 1024 px canvas is 16 MiB, and allocating a fresh one for every RoPE / score / softmax
    output makes glibc hand pages back and fault them in again: ~20 such tensors a glimpse cost more
    system time than their arithmetic. Buffers are kept per thread (concurrent callers never share one)
    and per (name, dtype) (one shape at a time: a new canvas size replaces the old buffer). A buffer's contents
    never leave the fast path: outputs are always fresh tensors. `clear_workspace()` frees them; a
    server answering from a pool of threads should call it after each request, or each pool thread
    keeps its own set (~60 MiB at a 1024 px canvas).
    """
    dtype = like.dtype if dtype is None else dtype
    store: dict[tuple[str, torch.dtype], torch.Tensor] = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (name, dtype)
    buf = store.get(key)
    if buf is None or tuple(buf.shape) != tuple(shape) or buf.device != like.device:
        store.pop(key, None)  # free the old one first
        with torch.inference_mode(False):  # a normal tensor: writable in and out of inference_mode
            buf = torch.empty(shape, dtype=dtype, device=like.device)
        store[key] = buf
    return buf


def clear_workspace() -> None:
    """Free this thread's fast-path buffers (they are otherwise kept for the next glimpse)."""
    _WORKSPACE.__dict__.pop("buffers", None)


def _linear_pointwise_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _linear_pointwise_available()


class FastLinear(nn.Linear):
    """nn.Linear (same parameters and state dict) that runs CPU inference on oneDNN-packed weights.

    One packed copy per mode ("fp32", "bf16") is made lazily at that mode's first fast call and rebuilt
    whenever the weight changes (its storage or version counter: `load_state_dict`, an optimizer step,
    `.to()`); it is never saved. Keeping one per mode means switching modes never repacks (a repack of
    CanViT-B costs more than a glimpse).
    `bias` overrides the module's bias for one call (Attention masks the key bias).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kw) -> None:
        super().__init__(in_features, out_features, bias=bias, **kw)
        # mode -> (weakref to the weight, (data_ptr, version), packed weight)
        self._packed: dict[str, tuple] = {}

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        bias = self.bias if bias is None else bias
        mode = self.fast_mode(x)
        if mode is None:
            if _ONEDNN and cpu_train_fast(x, self.weight) and self._packed_weight("fp32") is not None:
                return _TrainLinear.apply(x, self.weight, bias, self)
            return F.linear(x, self.weight, bias)
        return self.packed_forward(x, mode, bias).float()

    def fast_mode(self, x: torch.Tensor) -> str | None:
        """"fp32" / "bf16" when this call takes the packed path (see `cpu_fast_mode`), else None."""
        mode = cpu_fast_mode(x, self.training) if _ONEDNN else None
        return mode if mode is not None and self._packed_weight(mode) is not None else None

    def packed_forward(self, x: torch.Tensor, mode: str, bias: torch.Tensor | None = None,
                       post: str = "none") -> torch.Tensor:
        """x W^T + b on the packed weight, then oneDNN's fused `post` op ("none" or "gelu": exact erf GELU
        on the fp32 accumulator). In "bf16" mode the result stays bfloat16 (x may be either), so a
        following packed layer takes it as it is; callers outside such a pair use `forward`."""
        bias = self.bias if bias is None else bias
        packed = self._packed_weight(mode)
        algorithm = "none" if post == "gelu" else ""  # oneDNN's name for the erf form
        if mode == "bf16":
            b = None if bias is None else bias.to(torch.bfloat16)
            return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, b, post, [], algorithm)
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, post, [], algorithm)

    def _packed_weight(self, mode: str) -> torch.Tensor | None:
        w = self.weight
        if w.dtype != torch.float32 or w.device.type != "cpu":
            return None
        try:
            key = (w.data_ptr(), w._version)
        except RuntimeError:  # an inference tensor has no version counter: cannot tell when it changes
            return None
        cached = self._packed.get(mode)
        if cached is None or cached[0]() is not w or cached[1] != key:  # weakref: a new Parameter repacks
            with torch.no_grad():
                src = w.detach()  # "fp32": W as it is
                if mode == "bf16":
                    src = src.to(torch.bfloat16)
                elif mode == "fp32_t":  # W^T, the weight of the input-gradient GEMM in CPU training
                    src = src.t().contiguous()
                cached = (weakref.ref(w), key, torch.ops.mkldnn._reorder_linear_weight(src, None))
            self._packed[mode] = cached
        return cached[2]

    def _apply(self, fn, recurse: bool = True):  # .to() / .cuda() / .half(): drop the packed copy
        self._packed = {}
        return super()._apply(fn, recurse)

    def __getstate__(self):  # pickling (torch.save of a whole module, multiprocessing): never the packed copies
        state = super().__getstate__().copy()
        state["_packed"] = {}
        return state


class _TrainLinear(torch.autograd.Function):
    """y = x W^T + b for CPU fp32 training: forward and dL/dx on the layer's packed W and W^T (oneDNN),
    dL/dW and dL/db with the plain ops. Packed copies follow the weight's version (`_packed_weight`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, layer: FastLinear) -> torch.Tensor:
        ctx.layer = layer
        ctx.save_for_backward(x, weight)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), layer._packed_weight("fp32"), bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        g2 = grad_out.reshape(-1, grad_out.shape[-1])  # [M, out]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # create_graph=True (a double backward) runs backward with grad mode on: then only the plain,
            # differentiable product, so second derivatives stay exact
            packed_t = None if torch.is_grad_enabled() else ctx.layer._packed_weight("fp32_t")
            grad_x = (torch.ops.mkldnn._linear_pointwise(grad_out, packed_t, None, "none", [], "")
                      if packed_t is not None else grad_out @ weight)
        if ctx.needs_input_grad[1]:
            grad_w = g2.t() @ x.reshape(-1, x.shape[-1])  # [out, in]
        if ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)
        return grad_x, grad_w, grad_b, None
