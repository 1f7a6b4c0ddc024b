"""The training step reads nothing back from the device (on a GPU, every such read is a host sync).

CPU stand-in for `torch.cuda.set_sync_debug_mode("error")`: a dispatch mode sees every aten op of the step
and flags those that need device values on the host (`.item()`, `bool(t)`, `nonzero`, boolean masks,
`unique`, ...); a function mode flags `.tolist()`, `.numpy()`, `.cpu()` and printing. The plan (lengths,
viewpoints) is host work by design and is made before the detector starts, as on the GPU where it is
copied over in one non-blocking transfer.
"""

import traceback

import pytest
import torch
from canvit_train.pretrain.config import PRESETS
from canvit_train.pretrain.data import synthetic_setup
from canvit_train.pretrain.optim import make_optimizer
from canvit_train.pretrain.step import local_viewpoints, plan_step, train_step
from canvit_train.pretrain.trainer import build_model
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

pytestmark = pytest.mark.usefixtures("one_thread")

aten = torch.ops.aten
READS = {"_local_scalar_dense", "is_nonzero", "nonzero", "nonzero_static", "masked_select", "equal", "allclose",
         "_unique", "_unique2", "unique_dim", "unique_consecutive", "bincount", "histc"}
HOST_METHODS = {"tolist", "numpy", "cpu", "__repr__", "__format__", "__array__"}


class HostReads(TorchDispatchMode):
    """Collects (op, where) for every op of the block that would read device data on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._functions = _HostMethods(self.found)

    def _where(self) -> str:
        return "".join(traceback.format_stack(limit=8)[:-2])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []) if i is not None)
        no_size = name == "repeat_interleave" and "output_size" not in kwargs and isinstance(args[0], torch.Tensor) \
            and len(args) > 1 and isinstance(args[1], torch.Tensor)
        if name in READS or bool_index or no_size:
            self.found.append((str(func), self._where()))
        return func(*args, **kwargs)

    def __enter__(self):
        self._functions.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._functions.__exit__(*exc)


class _HostMethods(TorchFunctionMode):
    def __init__(self, found: list) -> None:
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_METHODS:  # (`.to(device)` can't be told from a host copy on a CPU run: not checked)
            self.found.append((f"Tensor.{name}", "".join(traceback.format_stack(limit=8)[:-1])))
        return func(*args, **(kwargs or {}))


CFG = PRESETS["smoke"].replace(scene_size=64, glimpse_size=32, canvas_grid=4, batch_size=4)


def _setup(cfg):
    data = synthetic_setup(cfg, dim=8, validation=False)
    model = build_model(cfg, data.teacher_dim, data.teacher_grid).train()
    opt = make_optimizer(model, cfg, torch.device("cpu"), fused=True)  # as on CUDA
    params = [p for p in model.parameters() if p.requires_grad]
    batch = next(iter(data.train(0, 0, 1)))
    return model, opt, params, batch


def _reads(cfg, model, opt, params, batch, steps=2, amp="bf16"):
    found = []
    for s in range(steps):
        plan = plan_step(cfg, s, cfg.batch_size)
        vps = local_viewpoints(plan, (0, cfg.batch_size), torch.device("cpu"), one_copy=True)  # host work, as on CUDA
        with HostReads() as det:
            m, gn = train_step(model, model, opt, params, batch.scenes, batch.patches, batch.cls, plan, cfg,
                               lr=1e-4, amp=amp, viewpoints=vps)
            bad = ~torch.isfinite(m[:, :2].sum()) | ~torch.isfinite(gn)  # the loop's non-finite flag
        found += det.found
        assert torch.isfinite(m).all() and not bad  # (outside the detector)
    return found


@pytest.mark.parametrize("cfg", [CFG, CFG.replace(rollouts=("r-iid", "r-iid"), tbptt_chunk=1)], ids=["canvit-b-like", "2riid-k1"])
def test_a_training_step_reads_nothing_back_from_the_device(cfg):
    found = _reads(cfg, *_setup(cfg))
    assert not found, "host reads in the step:\n" + "\n".join(f"{op}\n{where}" for op, where in found[:5])


def test_the_detector_sees_an_item_a_mask_and_a_tolist(monkeypatch):
    """The test above can fail: a stray `.item()` in the loss (a classic) is caught, and so are masks."""
    import canvit_train.pretrain.step as step_mod

    real = step_mod.mse

    def chatty(pred, target):
        out = real(pred, target)
        _ = out.item(), pred[pred > 0], target.tolist()
        return out

    monkeypatch.setattr(step_mod, "mse", chatty)
    ops = {op for op, _ in _reads(CFG, *_setup(CFG), steps=1)}
    assert {"aten._local_scalar_dense.default", "aten.index.Tensor", "Tensor.tolist"} <= ops
