"""AdamW and the warmup-constant learning rate of Table 2.

The schedule is a pure function of the step (no scheduler object whose state could drift on resume):
step s trains at lr_start + (lr_peak - lr_start) * min(s / warmup_steps, 1).
"""

from __future__ import annotations

import torch

from .config import PretrainConfig


def learning_rate(cfg: PretrainConfig, step: int) -> float:
    """LR of 0-based step `step`: linear warmup lr_start -> lr_peak over warmup_steps, then constant."""
    if cfg.lr_schedule != "warmup-constant":
        raise ValueError(f"lr_schedule={cfg.lr_schedule!r}; the only schedule is 'warmup-constant'")
    if step >= cfg.warmup_steps:
        return cfg.lr_peak
    return cfg.lr_start + (cfg.lr_peak - cfg.lr_start) * step / cfg.warmup_steps


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig, device: torch.device,
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over every trainable parameter (random init, nothing frozen); fused (default: on CUDA).

    Fused AdamW keeps its step counters on the device, so `opt.step()` reads nothing back to the host.
    """
    if cfg.optimizer != "AdamW":
        raise ValueError(f"optimizer={cfg.optimizer!r}; the only optimizer is 'AdamW'")
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"fused": True} if (device.type == "cuda" if fused is None else fused) else {}
    return torch.optim.AdamW(
        params, lr=learning_rate(cfg, 0), betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kwargs
    )
