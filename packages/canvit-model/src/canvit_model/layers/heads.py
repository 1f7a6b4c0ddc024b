"""Readouts into teacher space and per-position standardizers (paper §5.1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .fast import FastLinear

STANDARDIZER_EPS = 1e-6


class Readout(nn.Module):
    """Token-wise LayerNorm -> Linear; the LayerNorm gain starts at 1/sqrt(dim)."""

    def __init__(self, in_dim: int, out_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim, eps=eps)
        self.proj = FastLinear(in_dim, out_dim)
        nn.init.constant_(self.norm.weight, 1 / math.sqrt(in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


class PositionStandardizer(nn.Module):
    """Per-position z-scoring of teacher features: mean/var [N, D] (population variance), eps 1e-6."""

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_positions, dim))
        self.register_buffer("var", torch.ones(num_positions, dim))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def num_positions(self) -> int:
        return self.mean.shape[0]

    def _check(self, x: torch.Tensor) -> None:
        n = x.shape[-2] if x.ndim >= 2 else 1
        if self.num_positions > 1 and n != self.num_positions:
            raise ValueError(
                f"standardizer has statistics for {self.num_positions} positions "
                f"(grid {math.isqrt(self.num_positions)}x{math.isqrt(self.num_positions)}) but got features "
                f"with {n} positions (shape {list(x.shape)}); statistics exist only for that grid"
            )
        if x.shape[-1] != self.mean.shape[-1]:
            raise ValueError(f"features have dim {x.shape[-1]}, standardizer expects {self.mean.shape[-1]}")

    def _std(self) -> torch.Tensor:
        return torch.sqrt(self.var + STANDARDIZER_EPS)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return (x - self.mean) / self._std()

    def destandardize(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x * self._std() + self.mean

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        """features: [num_samples, N, D] (or [num_samples, D] for one position); population variance."""
        f = features.double().reshape(features.shape[0], self.num_positions, -1)
        self.mean.copy_(f.mean(0))
        self.var.copy_(f.var(0, unbiased=False))
        self.fitted.fill_(True)
