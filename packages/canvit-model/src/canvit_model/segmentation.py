"""Semantic segmentation on the canvas: the ADE20K linear probe and the frozen CanViT + probe wrapper.

    from canvit_model import CanViTForSemanticSegmentation, Viewpoint, sample_at_viewpoint
    from canvit_model.segmentation import upsample_logits
    from canvit_model import releases
    seg = CanViTForSemanticSegmentation.from_pretrained_with_probe(
        releases.FLAGSHIP, releases.ade20k_probe(scene=512, grid=32))      # hub ids (or local directories)
    state = seg.init_state(batch_size=1, canvas_grid_size=32)
    vp = Viewpoint.full_scene(batch_size=1)
    glimpse = sample_at_viewpoint(scene, vp, 128)                # scene: [1, 3, 512, 512] normalized
    logits, state = seg(glimpse, state, vp)                      # [1, 150, 32, 32] fp32, next state
    # or, upsampled:  up, state = seg.predict(glimpse, state, vp, target_size=(512, 512))
    labels = upsample_logits(logits, 512).argmax(1)              # [1, 512, 512], 0..149
    seg.logits(state.canvas)                                     # decode any canvas
(the inference surface of canvit-pytorch's class of the same name).

`SegmentationProbe` (paper App. F.2.1; the published probe layout, config.json + model.safetensors):
    features [B, H, W, D] -> LayerNorm(D) (CanViT canvases only; DINOv3 features are already
    normalized) -> NCHW -> Dropout2d(p) -> BatchNorm2d(D) -> Conv 1x1 (D -> C) -> logits [B, C, H, W].
It always runs in float32 with autocast disabled (paper D.3: bf16 heads flip predictions), whatever the
caller's autocast. At evaluation it must be in `eval()` mode: in train mode BatchNorm would update its
running statistics from the evaluation data (a known ~0.5 mIoU pitfall); `from_pretrained` returns it
in eval mode.

`ade20k_targets(mask, size)`: an ADE20K annotation (0 = "other", 1..150 = classes) -> int64 labels
with 0 -> 255 (ignored) and k -> k - 1, resized to size x size with nearest neighbour exactly as
torchvision's `Resize((size, size), NEAREST)` does on PIL images (PIL's pixel-centre rule; tensors pick the
same source pixels, `canvit_model.preprocess.resize_labels`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .canvit import CanViT, CanViTOutput, RecurrentState
from .geometry import Viewpoint
from .preprocess import resize_labels
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

IGNORE_INDEX = 255
ADE20K_NUM_CLASSES = 150


@dataclass(frozen=True)
class SegmentationProbeConfig:
    """The published probe config.json fields."""

    embed_dim: int
    num_classes: int = ADE20K_NUM_CLASSES
    dropout: float = 0.1
    use_ln: bool = True

    def __post_init__(self) -> None:
        for name in ("embed_dim", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.use_ln, bool):
            raise ValueError(f"use_ln must be a bool, got {self.use_ln!r}")


class SegmentationProbe(nn.Module):
    """LayerNorm? -> Dropout2d -> BatchNorm2d -> Conv 1x1 on a feature grid [B, H, W, D] (fp32)."""

    def __init__(self, embed_dim: int, num_classes: int = ADE20K_NUM_CLASSES, dropout: float = 0.1,
                 use_ln: bool = True) -> None:
        super().__init__()
        self.config = SegmentationProbeConfig(embed_dim, num_classes, dropout, use_ln)
        self.ln = nn.LayerNorm(embed_dim, eps=1e-5) if use_ln else None
        self.dropout = nn.Dropout2d(dropout)
        self.bn = nn.BatchNorm2d(embed_dim, eps=1e-5, momentum=0.1)
        self.conv = nn.Conv2d(embed_dim, num_classes, kernel_size=1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)
        self.hub_extra: dict[str, Any] = {}  # config.json "metadata" / "training", carried through save/load

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, H, W, D] (any float dtype) -> logits [B, C, H, W] float32."""
        d = self.config.embed_dim
        if not isinstance(features, torch.Tensor) or features.ndim != 4 or features.shape[-1] != d:
            shape = list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be a [B, H, W, {d}] grid (channels last), got {shape}")
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = features.float()
            if self.ln is not None:
                x = self.ln(x)
            x = x.permute(0, 3, 1, 2).contiguous()  # [B, D, H, W], standard NCHW memory layout
            return self.conv(self.bn(self.dropout(x)))

    # -- published layout -------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"embed_dim": c.embed_dim, "num_classes": c.num_classes, "dropout": c.dropout,
                               "use_ln": c.use_ln}
        out.update(self.hub_extra)
        return out

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """config.json + model.safetensors (config written last, atomically: a dir with config.json is complete)."""
        return save_atomic(save_directory, self.config_dict(), self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str | os.PathLike[str],
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        map_location: str | torch.device = "cpu",
    ) -> SegmentationProbe:
        """A released probe repo (e.g. `releases.ade20k_probe(512, 32)`) or a local directory, in eval mode.

        map_location: device for the weights. No dtype: probes run in float32 outside autocast (paper D.3).
        revision / token / cache_dir / local_files_only: as in `CanViTForPretraining.from_pretrained`.
        """
        device, _ = check_load_options(map_location, None)
        files = resolve_files(repo_or_dir, [CONFIG_NAME, WEIGHTS_NAME], revision=revision, token=token,
                              cache_dir=cache_dir, local_files_only=local_files_only)
        raw = read_json(files[CONFIG_NAME])
        fields = ("embed_dim", "num_classes", "dropout", "use_ln")
        missing = [f for f in ("embed_dim", "num_classes") if f not in raw]
        if missing:
            raise ValueError(f"{files[CONFIG_NAME]} is not a segmentation probe config: missing {missing}")
        probe = cls(**{k: raw[k] for k in fields if k in raw})
        load_checked(probe, read_safetensors(files[WEIGHTS_NAME]), source=os.fspath(repo_or_dir))
        probe.hub_extra = {k: v for k, v in raw.items() if k not in fields}
        return probe.to(device).eval()


def upsample_logits(logits: torch.Tensor, size: tuple[int, int] | int) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling of logits [B, C, h, w] to `size`, in float32."""
    if isinstance(size, int):
        size = (size, size)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)


class CanViTForSemanticSegmentation(nn.Module):
    """A frozen CanViT plus a segmentation probe on its canvas spatial tokens (keys canvit.*, probe.*)."""

    def __init__(self, canvit: CanViT, probe: SegmentationProbe) -> None:
        super().__init__()
        if probe.config.embed_dim != canvit.canvas_dim:
            raise ValueError(
                f"the probe expects {probe.config.embed_dim}-dim features but the canvas has {canvit.canvas_dim} "
                "channels: this probe was not trained on this model's canvas"
            )
        if not probe.config.use_ln:
            raise ValueError("this probe has use_ln=false (a DINOv3-feature probe); CanViT canvas probes use LayerNorm")
        self.canvit = canvit
        self.probe = probe

    @classmethod
    def from_pretrained_with_probe(
        cls,
        pretrained_repo: str | os.PathLike[str],
        probe_repo: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> CanViTForSemanticSegmentation:
        """Load a pretrained CanViT repo/dir and a probe repo/dir, in eval mode.

        map_location: device for both. dtype: cast the CanViT (None keeps float32); the probe always stays
        float32 (paper D.3). revision / token / cache_dir / local_files_only apply to both repos, as in
        `CanViTForPretraining.from_pretrained`.
        """
        from .canvit import CanViTForPretraining

        check_load_options(map_location, dtype)  # fail on a bad device / dtype before reading any file
        hub = dict(revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
        model = CanViTForPretraining.from_pretrained(pretrained_repo, map_location=map_location, dtype=dtype, **hub)
        probe = SegmentationProbe.from_pretrained(probe_repo, map_location=map_location, **hub)
        return cls(model.canvit, probe).eval()

    def init_state(self, batch_size: int, canvas_grid_size: int) -> RecurrentState:
        return self.canvit.init_state(batch_size=batch_size, canvas_grid_size=canvas_grid_size)

    @property
    def num_classes(self) -> int:
        return self.probe.num_classes

    def forward(self, glimpse: torch.Tensor, state: RecurrentState, viewpoint: Viewpoint
                ) -> tuple[torch.Tensor, RecurrentState]:
        """One CanViT step, then the probe on the new canvas: (logits [B, C, G, G] fp32, next state)."""
        out: CanViTOutput = self.canvit(glimpse, state, viewpoint)
        return self.logits(out.state.canvas), out.state

    def logits(self, canvas: torch.Tensor) -> torch.Tensor:
        """Probe logits at canvas resolution: canvas [B, R + G*G, D_can] -> [B, C, G, G] float32."""
        return self.probe(self.canvit.canvas_patch_grid(canvas))

    def predict(self, glimpse: torch.Tensor, state: RecurrentState, viewpoint: Viewpoint, *,
                target_size: tuple[int, int] | int) -> tuple[torch.Tensor, RecurrentState]:
        """`forward` with the logits bilinearly upsampled (align_corners=False) to `target_size`; argmax
        over dim 1 gives labels 0..C-1 (ADE20K: annotation value - 1)."""
        logits, state = self(glimpse, state, viewpoint)
        return upsample_logits(logits, target_size), state


def ade20k_targets(mask: Any, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """ADE20K annotation (PIL image, or integer tensor / array [H, W]) -> int64 targets [S, S] for the probe.

    Not canvit-pytorch's `preprocess_labels` (that one is `canvit_model.preprocess.preprocess_labels`:
    short side resized + centre crop, values unchanged); this one squashes to S x S and shifts the values.

    0 ("other") -> 255 (ignored), k -> k - 1. Resized with nearest neighbour as torchvision's
    `Resize((S, S), InterpolationMode.NEAREST)` on a PIL image (PIL's own `resize`); tensors pick the
    same source pixels (`resize_labels`).
    """
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
            raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    if not isinstance(mask, torch.Tensor):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None  # type: ignore[assignment]
        if Image is not None and isinstance(mask, Image.Image):
            if mask.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"mask must be a single-channel label image (mode L, P, I), got mode {mask.mode}")
            if size is not None and mask.size != (size[1], size[0]):
                mask = mask.resize((size[1], size[0]), Image.NEAREST)
            w, h = mask.size
            if mask.mode in ("L", "P"):
                t = torch.frombuffer(bytearray(mask.tobytes()), dtype=torch.uint8).view(h, w).long()
            else:
                t = torch.as_tensor(list(mask.getdata()), dtype=torch.long).view(h, w)
            return _shift_labels(t)
        try:
            mask = torch.as_tensor(mask)
        except Exception:
            raise ValueError(f"mask must be a PIL image or an integer [H, W] tensor/array, got {type(mask).__name__}") from None
    if mask.ndim != 2 or mask.is_floating_point() or mask.is_complex():
        raise ValueError(f"mask must be an integer [H, W] label map, got dtype {mask.dtype} and shape {list(mask.shape)}")
    t = mask.long()
    if size is not None and tuple(t.shape) != size:
        t = resize_labels(t, size)
    return _shift_labels(t)


def _shift_labels(t: torch.Tensor) -> torch.Tensor:
    if bool((t < 0).any()):
        raise ValueError("mask has negative labels; ADE20K annotations are 0 (other) .. 150")
    return torch.where(t == 0, torch.full_like(t, IGNORE_INDEX), t - 1)


__all__ = [
    "ADE20K_NUM_CLASSES",
    "CanViTForSemanticSegmentation",
    "IGNORE_INDEX",
    "SegmentationProbe",
    "SegmentationProbeConfig",
    "ade20k_targets",
    "upsample_logits",
]
