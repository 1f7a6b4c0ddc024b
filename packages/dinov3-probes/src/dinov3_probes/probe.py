"""The linear probe (nn.Linear(D, C) on the CLS token) and its published on-disk layout.

A probe directory holds `model.safetensors` (`weight` [C, D] float32, `bias` [C] float32) and
`config.json` (`in_features`, `out_features`, `val_results`, `trial_params`, `config_metadata`, ...),
the layout of the published `canvit_model.releases.dinov3_in1k_probe(backbone)` repos.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from canvit_model.io import CONFIG_NAME, WEIGHTS_NAME, read_json, read_safetensors, resolve_files, save_atomic

INITS = ("dinov3", "pytorch")


def make_probe(in_features: int, out_features: int, init: str, seed: int, device: torch.device | str = "cpu") -> nn.Linear:
    """A seeded probe: "dinov3" = weight ~ N(0, 0.01), bias 0 (DINOv3's linear eval); "pytorch" = nn.Linear's
    default (Kaiming-uniform weight, uniform bias)."""
    if init not in INITS:
        raise ValueError(f"init={init!r}; valid: {', '.join(INITS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = nn.Linear(in_features, out_features)  # default init, drawn from the seeded CPU generator
        if init == "dinov3":
            with torch.no_grad():
                probe.weight.normal_(0.0, 0.01)
                probe.bias.zero_()
    return probe.to(device)


def save_probe(directory: str | os.PathLike[str], probe: nn.Linear, config: dict[str, Any]) -> Path:
    """Write the published layout atomically (config.json last: a directory with it is complete)."""
    cfg = {"in_features": probe.in_features, "out_features": probe.out_features, **config}
    state = {"weight": probe.weight.detach().float().cpu(), "bias": probe.bias.detach().float().cpu()}
    return save_atomic(directory, cfg, state)


def load_probe(repo_or_dir: str | os.PathLike[str], **hub: Any) -> tuple[nn.Linear, dict[str, Any]]:
    """(nn.Linear, config) from a probe directory or hub repo in the published layout."""
    files = resolve_files(repo_or_dir, [CONFIG_NAME, WEIGHTS_NAME], **hub)
    cfg = read_json(files[CONFIG_NAME])
    state = read_safetensors(files[WEIGHTS_NAME])
    if set(state) != {"weight", "bias"}:
        raise ValueError(f"{repo_or_dir}: {WEIGHTS_NAME} must hold exactly 'weight' and 'bias', got {sorted(state)}")
    c, d = state["weight"].shape
    if state["bias"].shape != (c,):
        raise ValueError(f"{repo_or_dir}: bias shape {list(state['bias'].shape)} does not match weight [{c}, {d}]")
    if (cfg.get("in_features"), cfg.get("out_features")) != (d, c):
        raise ValueError(f"{repo_or_dir}: config says in_features={cfg.get('in_features')}, "
                         f"out_features={cfg.get('out_features')} but the weight is [{c}, {d}]")
    probe = nn.Linear(d, c)
    with torch.no_grad():
        probe.weight.copy_(state["weight"].float())
        probe.bias.copy_(state["bias"].float())
    return probe.eval(), cfg
