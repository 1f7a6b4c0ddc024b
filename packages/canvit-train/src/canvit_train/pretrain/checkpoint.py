"""Training checkpoints: safetensors + JSON, atomic, with every RNG state and the data position.

Layout of one checkpoint (a directory under RUN_DIR/checkpoints/):

    step-000004992/
      model.safetensors       model state dict (standardizers included)
      optimizer.safetensors   AdamW per-parameter state, keys "state.<index>.<name>"
      rng.safetensors         torch CPU (and CUDA) generator states as uint8 tensors
      state.json              step, data position, optimizer param groups, python/numpy RNG states,
                              config, code version, metrics row count; written last

The directory is written with `canvit_results.atomic_dir` (a temp directory beside it, every file fsynced,
swapped into place), so a directory named `step-*` is complete; a crash leaves at most a `.step-*.tmp`
directory, which the next save removes. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from canvit_results import atomic_dir
from safetensors.torch import load_file, save_file

PREFIX = "step-"
FORMAT = "canvit-train-checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int  # optimizer steps completed
    state: dict[str, Any]  # state.json


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, os.fspath(path))


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG state of this process: (tensors for safetensors, JSON-able python/numpy states)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    np_json = {
        "bit_generator": np_state["bit_generator"],
        "state": {k: int(v) if isinstance(v, (int, np.integer)) else v.tolist() if hasattr(v, "tolist") else v
                  for k, v in np_state["state"].items()},
        "has_gauss": int(np_state["has_gauss"]),
        "gauss": float(np_state["gauss"]),
    }
    return tensors, {"python": [version, list(internal), gauss], "numpy": np_json}


def set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    st = js["numpy"]
    state = dict(st["state"])
    if isinstance(state.get("key"), list):
        state["key"] = np.asarray(state["key"], dtype=np.uint32)
    np.random.set_state({"bit_generator": st["bit_generator"], "state": state,
                         "has_gauss": st["has_gauss"], "gauss": st["gauss"]})


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"optimizer state {idx}.{name} is {type(v).__name__}, not a tensor")
            tensors[f"state.{idx}.{name}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    extra: dict[str, Any],
    *,
    keep: int = 3,
) -> Path:
    """Write checkpoint `step` atomically; keep the newest `keep` (older complete ones are removed)."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    for stale in [*ckpt_root.glob(f".{PREFIX}*.tmp"), *ckpt_root.glob(f".tmp-{PREFIX}*")]:  # crashed saves
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpt_root / f"{PREFIX}{step:09d}"
    # the same step may be saved twice (a signal right after a periodic save): atomic_dir replaces it
    with atomic_dir(final) as tmp:
        _save_tensors(dict(model.state_dict()), tmp / "model.safetensors")
        opt_t, groups = optimizer_tensors(opt)
        _save_tensors(opt_t, tmp / "optimizer.safetensors")
        rng_t, rng_js = rng_state()
        _save_tensors(rng_t, tmp / "rng.safetensors")
        state = {"format": FORMAT, "step": step, "optimizer_param_groups": groups, "rng": rng_js, **extra}
        with open(tmp / "state.json", "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1, sort_keys=True)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    out = []
    if not root.is_dir():
        return out
    for d in root.iterdir():
        if not d.is_dir() or not d.name.startswith(PREFIX):
            continue
        sj = d / "state.json"
        try:
            state = json.loads(sj.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if state.get("format") != FORMAT:
            continue
        out.append(Checkpoint(d, int(state["step"]), state))
    return sorted(out, key=lambda c: c.step)


def latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    cks = list_checkpoints(run_dir)
    return cks[-1] if cks else None


def load_checkpoint(ckpt: Checkpoint, model: torch.nn.Module, opt: torch.optim.Optimizer | None, *, restore_rng: bool = True) -> None:
    """Restore model, optimizer and (by default) every RNG state from `ckpt`."""
    sd = load_file(os.fspath(ckpt.path / "model.safetensors"), device="cpu")
    model.load_state_dict(sd, strict=True)
    if opt is not None:
        load_optimizer(opt, load_file(os.fspath(ckpt.path / "optimizer.safetensors"), device="cpu"),
                       ckpt.state["optimizer_param_groups"])
    if restore_rng:
        set_rng_state(load_file(os.fspath(ckpt.path / "rng.safetensors"), device="cpu"), ckpt.state["rng"])
