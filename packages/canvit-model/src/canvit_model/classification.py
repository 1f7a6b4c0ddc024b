"""Frozen ImageNet-1k classification with CanViT: the DINOv3 linear probe read through the CLS readout.

The recurrent CLS token is mapped into the teacher's CLS space by the pretraining readout (LN -> Linear),
destandardized with the teacher CLS statistics (x * sigma + mu), and classified by a linear probe trained
on DINOv3 CLS features (paper App. F.2). The three affine maps after the LayerNorm are fused, in float64,
into one Linear:

    W = W_probe @ diag(sigma) @ W_proj                    # [C, D]
    b = W_probe @ (sigma * b_proj + mu) + b_probe         # [C]

so the head is LayerNorm -> Linear and runs in float32 with autocast off (a bf16 head flips ~0.4% of
top-1 predictions). The CLS standardizer has one set of statistics (the c = 32 ones of the published
checkpoints), whatever canvas grid is used at inference.

Probe layout (the published `releases.dinov3_in1k_probe(backbone)` repos, also written by
`dinov3-probes`): `config.json` with `in_features`, `out_features` (+ free metadata) and
`model.safetensors` with exactly `weight` [C, D] and `bias` [C], float32.

Classifier layout (canvit-pytorch 0.2): `config.json` {canvit_config, n_classes, ...} and keys
`canvit.*`, `readout.norm.*`, `readout.proj.*`; the 0.1 layout ({backbone_name, model_config, n_classes};
`norm.*`, `head.*`) is read too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .canvit import CanViT, CanViTForPretraining, RecurrentState, _check_config, _check_int
from ._pytree import register_dataclass
from .config import CanViTConfig
from .convert import _config_from_v01, rename_v01_key
from .geometry import Viewpoint
from .hub import PushToHubMixin
from .io import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_load_options,
    load_checked,
    read_json,
    read_safetensors,
    resolve_files,
    save_atomic,
)
from .layers.heads import STANDARDIZER_EPS, PositionStandardizer, Readout


@dataclass(frozen=True)
class LinearProbe:
    """A linear classifier on teacher CLS features: weight [C, D], bias [C] (float32), plus its config."""

    weight: torch.Tensor
    bias: torch.Tensor
    config: dict[str, Any]

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


def load_linear_probe(
    repo_or_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> LinearProbe:
    """Read a probe in the published layout (local directory or hub repo id); checks keys and shapes.

    The weight and bias come back float32 on the CPU (they are fused in float64, then the head runs in
    float32: no map_location / dtype). revision / token / cache_dir / local_files_only: as in
    `CanViTForPretraining.from_pretrained`.
    """
    files = resolve_files(repo_or_dir, [CONFIG_NAME, WEIGHTS_NAME], revision=revision, token=token,
                          cache_dir=cache_dir, local_files_only=local_files_only)
    cfg = read_json(files[CONFIG_NAME])
    sd = read_safetensors(files[WEIGHTS_NAME])
    src = os.fspath(repo_or_dir)
    if set(sd) != {"weight", "bias"}:
        raise ValueError(f"probe {src}: model.safetensors must hold exactly 'weight' and 'bias', got {sorted(sd)}")
    w, b = sd["weight"], sd["bias"]
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"probe {src}: expected weight [C, D] and bias [C], got {list(w.shape)} and {list(b.shape)}")
    for key, dim in (("in_features", w.shape[1]), ("out_features", w.shape[0])):
        if key not in cfg:
            raise ValueError(f"probe {src}: config.json lacks {key!r} (has {sorted(cfg)})")
        if int(cfg[key]) != dim:
            raise ValueError(f"probe {src}: config.json says {key}={cfg[key]} but the weight implies {dim}")
    return LinearProbe(weight=w.float(), bias=b.float(), config=cfg)


def save_linear_probe(
    save_directory: str | os.PathLike[str],
    weight: torch.Tensor,
    bias: torch.Tensor,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write a probe in the published layout (config.json last, atomically)."""
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(f"weight must be [C, D] and bias [C], got {list(weight.shape)} and {list(bias.shape)}")
    cfg = {**(config or {}), "in_features": int(weight.shape[1]), "out_features": int(weight.shape[0])}
    return save_atomic(save_directory, cfg, {"weight": weight.float(), "bias": bias.float()})


class ClassificationReadout(nn.Module):
    """LayerNorm -> Linear on the recurrent CLS, always float32 with autocast disabled."""

    def __init__(self, dim: int, num_classes: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.proj(self.norm(x.float()))


def fuse_probe(
    cls_readout: Readout,
    cls_standardizer: PositionStandardizer,
    probe: LinearProbe | tuple[torch.Tensor, torch.Tensor],
) -> ClassificationReadout:
    """Fuse readout projection -> destandardize -> probe into one LN -> Linear (computed in float64)."""
    w_c, b_c = (probe.weight, probe.bias) if isinstance(probe, LinearProbe) else probe
    w_p = cls_readout.proj.weight.detach().double()  # [T, D]
    b_p = cls_readout.proj.bias.detach().double()  # [T]
    if cls_standardizer.num_positions != 1:
        raise ValueError(f"cls_standardizer must have 1 position, got {cls_standardizer.num_positions}")
    if not bool(cls_standardizer.fitted):
        raise ValueError(
            "the teacher CLS standardizer is not fitted (mean 0, var 1): the checkpoint carries no teacher "
            "statistics, so the probe cannot be applied in teacher space"
        )
    mu = cls_standardizer.mean[0].detach().double()  # [T]
    sigma = torch.sqrt(cls_standardizer.var[0].detach().double() + STANDARDIZER_EPS)  # [T]
    w_c, b_c = w_c.detach().double().cpu(), b_c.detach().double().cpu()
    if w_c.ndim != 2 or w_c.shape[1] != w_p.shape[0] or b_c.shape != (w_c.shape[0],):
        raise ValueError(
            f"probe weight {list(w_c.shape)} / bias {list(b_c.shape)} do not fit the CLS readout: the probe "
            f"must take {w_p.shape[0]} teacher features (weight [C, {w_p.shape[0]}], bias [C])"
        )
    w_p, b_p, mu, sigma = w_p.cpu(), b_p.cpu(), mu.cpu(), sigma.cpu()
    weight = w_c @ (sigma[:, None] * w_p)  # [C, D]
    bias = w_c @ (sigma * b_p + mu) + b_c  # [C]
    norm = cls_readout.norm
    head = ClassificationReadout(w_p.shape[1], w_c.shape[0], eps=norm.eps)
    with torch.no_grad():
        head.norm.weight.copy_(norm.weight.detach().float().cpu())
        head.norm.bias.copy_(norm.bias.detach().float().cpu())
        head.proj.weight.copy_(weight.float())
        head.proj.bias.copy_(bias.float())
    return head.to(cls_readout.proj.weight.device)


@register_dataclass
@dataclass(frozen=True)
class ClassificationOutput:
    state: RecurrentState
    logits: torch.Tensor  # [B, C] float32


class CanViTForImageClassification(PushToHubMixin, nn.Module):
    """CanViT + a classification readout on the recurrent CLS (one prediction per glimpse)."""

    def __init__(
        self,
        canvit_config: CanViTConfig | None = None,
        num_classes: int | None = None,
        *,
        n_classes: int | None = None,
    ) -> None:
        """`n_classes` (keyword-only) is canvit-pytorch's name, `num_classes` ours; give either (default 1000)."""
        super().__init__()
        if num_classes is not None and n_classes is not None and num_classes != n_classes:
            raise ValueError(f"n_classes={n_classes!r} and num_classes={num_classes!r} disagree: give one of them")
        name = "n_classes" if n_classes is not None else "num_classes"
        classes = n_classes if n_classes is not None else num_classes if num_classes is not None else 1000
        classes = _check_int(classes, name)
        self.canvit_config = _check_config(canvit_config)
        self.canvit = CanViT(self.canvit_config)
        self.readout = ClassificationReadout(self.canvit_config.backbone.dim, classes)
        self.hub_extra: dict[str, Any] = {}

    @property
    def n_classes(self) -> int:
        """The number of classes C (the readout's output width; canvit-pytorch's name)."""
        return self.readout.proj.out_features

    @property
    def num_classes(self) -> int:
        """Same as `n_classes`."""
        return self.readout.proj.out_features

    @property
    def config(self) -> CanViTConfig:
        """The CanViT architecture (canvit-pytorch's name); also `canvit_config`."""
        return self.canvit_config

    def init_state(self, batch_size: int, canvas_grid_size: int) -> RecurrentState:
        return self.canvit.init_state(batch_size=batch_size, canvas_grid_size=canvas_grid_size)

    def classify(self, recurrent_cls: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] (float32, autocast off) from the recurrent CLS [B, 1, D]."""
        if recurrent_cls.ndim != 3 or recurrent_cls.shape[1] != 1:
            raise ValueError(f"recurrent_cls must be [B, 1, D], got {list(recurrent_cls.shape)}")
        return self.readout(recurrent_cls[:, 0])

    def forward(
        self,
        glimpse: torch.Tensor,
        state: RecurrentState,
        viewpoint: Viewpoint,
        canvas_grid_size: int | None = None,
    ) -> ClassificationOutput:
        out = self.canvit(glimpse, state, viewpoint, canvas_grid_size)
        return ClassificationOutput(state=out.state, logits=self.classify(out.state.recurrent_cls))

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def from_pretraining_model(
        cls, pretrained: CanViTForPretraining, probe: LinearProbe | tuple[torch.Tensor, torch.Tensor]
    ) -> CanViTForImageClassification:
        """Frozen classifier: the pretraining model's CanViT + the probe fused behind its CLS readout."""
        head = fuse_probe(pretrained.teacher_cls_readout, pretrained.teacher_cls_standardizer, probe)
        model = cls(canvit_config=pretrained.canvit_config, n_classes=head.proj.out_features)
        model.canvit.load_state_dict(pretrained.canvit.state_dict())
        model.readout.load_state_dict(head.state_dict())
        model.hub_extra = {"fused_from": {"pretrained": pretrained.hub_extra}}
        device = next(pretrained.parameters()).device
        return model.to(device).eval()

    @classmethod
    def from_pretrained_with_probe(
        cls,
        pretrained_repo_or_dir: str | os.PathLike[str],
        probe_repo_or_dir: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> CanViTForImageClassification:
        """Load a pretraining checkpoint and a DINOv3 CLS probe (hub ids or directories) and fuse them, in eval mode.

        Fusion runs on the CPU in float64 from the float32 weights; then the model moves to `map_location`.
        dtype: cast the CanViT backbone (e.g. torch.bfloat16; None keeps float32); the fused head always stays
        float32 (paper D.3). revision / token / cache_dir / local_files_only apply to both repos, as in
        `CanViTForPretraining.from_pretrained`.
        """
        device, dtype = check_load_options(map_location, dtype)
        hub = dict(revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
        pretrained = CanViTForPretraining.from_pretrained(pretrained_repo_or_dir, **hub)
        probe = load_linear_probe(probe_repo_or_dir, **hub)
        model = cls.from_pretraining_model(pretrained, probe)
        model.hub_extra = {
            "fused_from": {"pretrained": os.fspath(pretrained_repo_or_dir), "probe": os.fspath(probe_repo_or_dir)}
        }
        return model._placed(device, dtype)

    def _placed(self, device: torch.device, dtype: torch.dtype | None) -> CanViTForImageClassification:
        """Move to `device`; cast only the CanViT to `dtype` (the head stays float32, paper D.3); eval mode."""
        self.to(device)
        if dtype is not None:
            self.canvit.to(dtype=dtype)
        return self.eval()

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> CanViTForImageClassification:
        """A saved classifier (0.2 or 0.1 layout), e.g. the fine-tuned release or our `save_pretrained`, in eval mode.

        map_location: device for the weights. dtype: cast the CanViT backbone (None keeps float32); the head
        always stays float32 (paper D.3). revision / token / cache_dir / local_files_only: as in
        `CanViTForPretraining.from_pretrained`.
        """
        device, dtype = check_load_options(map_location, dtype)
        files = resolve_files(repo_or_dir, [CONFIG_NAME, WEIGHTS_NAME], revision=revision, token=token,
                              cache_dir=cache_dir, local_files_only=local_files_only)
        raw = read_json(files[CONFIG_NAME])
        sd = read_safetensors(files[WEIGHTS_NAME])
        if "n_classes" not in raw:
            raise ValueError(f"{os.fspath(repo_or_dir)}: config.json lacks 'n_classes' (has {sorted(raw)})")
        source = os.fspath(files[CONFIG_NAME])
        if "canvit_config" in raw:
            cfg, layout = CanViTConfig.from_dict(raw["canvit_config"], source), "0.2"
        elif "model_config" in raw and "backbone_name" in raw:
            cfg, layout = _config_from_v01(raw, source)[0], "0.1"

            def rename(k: str) -> str:
                if k.startswith("canvit."):
                    return rename_v01_key(k[len("canvit."):])
                return {"norm.weight": "readout.norm.weight", "norm.bias": "readout.norm.bias",
                        "head.weight": "readout.proj.weight", "head.bias": "readout.proj.bias"}.get(k, k)

            sd = {rename(k): v for k, v in sd.items()}
        else:
            raise ValueError(
                f"{os.fspath(repo_or_dir)}: config.json is not a CanViT classifier config (needs 'canvit_config' "
                f"or 'model_config' + 'backbone_name'); it has keys {sorted(raw)}"
            )
        model = cls(canvit_config=cfg, n_classes=int(raw["n_classes"]))
        load_checked(model, sd, source=f"{os.fspath(repo_or_dir)} ({layout} layout)")
        model.hub_extra = {k: v for k, v in raw.items() if k not in ("canvit_config", "n_classes")}
        return model._placed(device, dtype)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """config.json {canvit_config, n_classes, ...} + model.safetensors (canvit-pytorch 0.2 layout)."""
        cfg = {"canvit_config": self.canvit_config.to_dict(), "n_classes": self.n_classes, **self.hub_extra}
        return save_atomic(save_directory, cfg, self.state_dict())
