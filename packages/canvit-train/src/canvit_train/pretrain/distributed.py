"""Data-parallel set-up for pretraining: one process or many (torchrun), NCCL on CUDA, gloo on CPU.

Every rank runs the step on its rows of the global batch, then the gradients are all-reduced explicitly
(averaged) before clipping. Why not torch's DDP wrapper: a step is several forward/backward pairs (one
backward per TBPTT chunk) whose parameters differ (the initial canvas and CLS only in the first chunk),
and the teacher readout heads run outside the model's forward. Checked with torch 2.15 on 2 gloo ranks:
with `no_sync` on all but the last chunk, DDP's default (`find_unused_parameters=False`) leaves the
gradients un-reduced without an error until the next step, and `find_unused_parameters=True` reduces
them but fails ("Expected to mark a variable ready only once") as soon as a parameter is used outside
`forward`, as the readout heads are. One explicit all-reduce of every gradient per step cannot skip
one; a test checks 2 processes against 1 process on the same global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from canvit_results.cli import pick_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def run_device(device: str | None, d: Dist) -> torch.device:
    """This process's device: `--device` (default cuda if available, else cpu); cuda without an index is this
    rank's GPU (cuda:LOCAL_RANK), made the current one."""
    dev = pick_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", d.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def broadcast_model(model: torch.nn.Module, d: Dist) -> None:
    """Rank 0's parameters and buffers everywhere (one model, whatever each rank loaded or fitted)."""
    if d.enabled:
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def all_reduce_gradients(params: list[torch.nn.Parameter], world_size: int, bucket_bytes: int = 64 << 20) -> None:
    """Average every parameter's gradient over ranks (a missing gradient counts as zeros)."""
    bucket: list[torch.Tensor] = []
    size = 0

    def flush() -> None:
        nonlocal bucket, size
        if not bucket:
            return
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(world_size)
        off = 0
        for g in bucket:
            g.copy_(flat[off : off + g.numel()].view_as(g))
            off += g.numel()
        bucket, size = [], 0

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= bucket_bytes:
            flush()
    flush()


def any_rank(flag: bool | torch.Tensor, d: Dist) -> bool:
    """True on every rank if any rank has `flag` (signals reach ranks at slightly different times; a
    non-finite loss may appear on one rank only). A host sync: called at log steps only."""
    if isinstance(flag, torch.Tensor):
        t = flag.detach().float().reshape(1).clone()
    else:
        t = torch.tensor([1.0 if flag else 0.0])
    if d.enabled:
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """`t` averaged over ranks (in place on a copy); `t` itself on one process."""
    if not d.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / d.world_size


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
