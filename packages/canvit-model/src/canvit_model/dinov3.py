"""DINOv3 ViT-S/16, S+/16, B/16, L/16, H+/16: CanViT's teacher and the passive baseline.

Built from the same trunk as CanViT's backbone (`layers.vit.ViT`: patch embedding + `Block`s), plus
DINOv3's prefix tokens and final LayerNorm:

    tokens = [cls_token, 4 storage_tokens (registers), patch tokens (row-major)]
    tokens = blocks(tokens)        # 2D RoPE over patch centres; CLS and registers are not rotated
    return norm(tokens)            # [B, 1 + 4 + (H/16)(W/16), D], like transformers' last_hidden_state

Native state-dict names are the official (facebookresearch/dinov3 torch-hub) names, so the official
`.pth` maps one to one except for two buffers: `rope_embed.periods` (ignored; see below) and
`blocks.N.attn.qkv.bias_mask` (folded into `qkv.bias`). The Hugging Face layout of
released repos (`HUB_REPOS`, ids from `releases`; config.json + model.safetensors, transformers key names,
`layer.N.` or `model.layer.N.`) is read and written too.

RoPE periods are computed in float32 from the formula 100^(j/16), as transformers does. The official
checkpoints carry a `rope_embed.periods` buffer holding bf16-rounded periods (1.3359375 instead of
1.33352, ...), which the official torch-hub model uses. We ignore it (after checking it is the same
formula up to bf16 rounding), so our outputs match transformers to ~1e-6, and differ from the official
torch-hub model by ~1e-4 (up to ~4e-4 on the real ViT-S; the transformers converter tolerates 1e-3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import releases
from .config import BACKBONES, ViTConfig, backbone_config
from .convert import config_from_hf, config_from_official, hf_config, hf_state_dict, state_dict_from_hf
from .convert import state_dict_from_official
from .geometry import grid_coords_hw
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
from .layers.rope import Rope
from .layers.vit import ViT
from .preprocess import check_normalized

NUM_REGISTERS = 4

# Hub repos of the five released LVD-1689M models (gated: accept the terms, then `hf auth login` or HF_TOKEN).
HUB_REPOS: dict[str, str] = {name: releases.dinov3(name) for name in releases.DINOV3_BACKBONES}


@dataclass
class DINOv3Features:
    """Final-LayerNorm outputs split by role. grid = (H/16, W/16); patches are row-major over it."""

    cls: torch.Tensor  # [B, D]
    registers: torch.Tensor  # [B, R, D]
    patches: torch.Tensor  # [B, h*w, D]
    grid: tuple[int, int]

    def patch_map(self) -> torch.Tensor:
        """Patches as a feature map [B, D, h, w]."""
        b, _, d = self.patches.shape
        return self.patches.transpose(1, 2).reshape(b, d, *self.grid)


class DINOv3(PushToHubMixin, ViT):
    """DINOv3 ViT (`cfg`: a ViTConfig or a name in BACKBONES: vits16, vits16plus, vitb16, vitl16, vith16plus).

    `model(images)` takes normalized images [B, 3, H, W] (H, W multiples of 16, ImageNet mean/std; see
    `canvit_model.preprocess`) and returns the final-LayerNorm tokens [B, 1 + R + (H/16)(W/16), D].
    """

    def __init__(self, cfg: ViTConfig | str = "vitb16", num_registers: int = NUM_REGISTERS) -> None:
        if isinstance(cfg, str):
            cfg = backbone_config(cfg)
        if not isinstance(cfg, ViTConfig):
            raise TypeError(f"cfg must be a ViTConfig or a backbone name {sorted(BACKBONES)}, got {type(cfg).__name__}")
        if isinstance(num_registers, bool) or not isinstance(num_registers, int):
            raise TypeError(f"num_registers must be an int >= 0, got {num_registers!r}")
        super().__init__(cfg)
        if num_registers < 0:
            raise ValueError(f"num_registers={num_registers} must be >= 0")
        d = cfg.dim
        self.num_registers = num_registers
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.storage_tokens = nn.Parameter(torch.randn(1, num_registers, d) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, d))  # iBOT masking only; unused at inference
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)

    @property
    def num_prefix(self) -> int:
        """CLS + registers."""
        return 1 + self.num_registers

    @property
    def embed_dim(self) -> int:
        return self.cfg.dim

    # -- forward ----------------------------------------------------------------------------------

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        p = self.cfg.patch_size
        if height % p or width % p or height < p or width < p:
            raise ValueError(
                f"input size {height}x{width} must be a positive multiple of the patch size {p} on both sides"
            )
        return height // p, width // p

    def patch_rope(self, h: int, w: int, device: torch.device) -> Rope:
        """RoPE tables [1 + R + h*w, head_dim] for [prefix, patches]: float32, prefix rows unrotated.

        Recomputed per call (about a millisecond): a cache would leak inference-mode tensors into
        later autograd forwards.
        """
        positions = grid_coords_hw(h, w, device=device).reshape(h * w, 2)
        return self.rope(positions, self.num_prefix)

    @classmethod
    def from_preset(cls, name: str) -> DINOv3:
        """A randomly initialised DINOv3 of a registry backbone ("vits16", "vits16plus", "vitb16", ...)."""
        return cls(name)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images is None:
            raise TypeError("images must be a normalized [B, 3, H, W] float tensor, got None")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a [B, 3, H, W] tensor, got {type(images).__name__} "
                             f"{list(images.shape) if isinstance(images, torch.Tensor) else ''}")
        check_normalized(images, "images")
        b, _, height, width = images.shape
        h, w = self.grid_size(height, width)
        x = self.patch_embed(images.to(self.patch_embed.proj.weight.dtype))  # [B, h*w, D]
        prefix = torch.cat([self.cls_token, self.storage_tokens], dim=1).to(x.dtype).expand(b, -1, -1)
        x = torch.cat([prefix, x], dim=1)
        rope = self.patch_rope(h, w, x.device)
        for blk in self.blocks:
            x = blk(x, rope)
        return self.norm(x)

    def split(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> DINOv3Features:
        """Split the output of `forward` into CLS [B, D], registers [B, R, D] and patches [B, N, D]."""
        n = tokens.shape[1] - self.num_prefix
        if grid is None:
            side = int(round(n**0.5))
            if side * side != n:
                raise ValueError(f"{n} patch tokens are not a square grid: pass grid=(h, w)")
            grid = (side, side)
        return DINOv3Features(
            cls=tokens[:, 0],
            registers=tokens[:, 1 : self.num_prefix],
            patches=tokens[:, self.num_prefix :],
            grid=tuple(grid),
        )

    def forward_features(self, images: torch.Tensor) -> DINOv3Features:
        """CLS, registers and patch tokens (all after the final LayerNorm)."""
        grid = self.grid_size(images.shape[-2], images.shape[-1])
        return self.split(self(images), grid)

    def cls_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, D] CLS token of a `forward` output (= transformers' pooler_output)."""
        return tokens[:, 0]

    def patches_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, D] patch tokens (row-major) of a `forward` output."""
        return tokens[:, self.num_prefix :]

    # -- checkpoints ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        filename: str | None = None,
        config: ViTConfig | str | None = None,
    ) -> DINOv3:
        """Load from a hub repo id, a local directory or a local official `.pth` file, in eval mode.

        map_location: device for the weights. dtype: cast every floating weight (None keeps the stored
        dtype). revision / token / cache_dir / local_files_only: as huggingface_hub's `hf_hub_download`.
        filename: an official `.pth` inside a hub repo / directory. config: the architecture of an
        official `.pth` (a ViTConfig or a name in BACKBONES) when it cannot be inferred from the shapes.

        - Hugging Face layout (config.json + model.safetensors, transformers key names): a hub repo such
          as `releases.TEACHER` (ViT-B/16) or a directory written by `save_pretrained`
          (ours or transformers').
        - Official layout: a `.pth` state dict (a file, a directory holding exactly one `.pth`, or
          `filename="...pth"` inside a hub repo / directory). Read with `torch.load(weights_only=True)`;
          the architecture is inferred from the tensor shapes unless `config` is given.

        The official repos are gated: authenticate with the standard Hugging Face mechanisms
        (`hf auth login`, or the HF_TOKEN environment variable, or `token=`). The token is never logged
        or stored.
        """
        device, dtype = check_load_options(map_location, dtype)
        if config is not None and not isinstance(config, (ViTConfig, str)):
            raise TypeError(f"config must be a ViTConfig, a backbone name or None, got {type(config).__name__}")
        repo_or_dir = path_or_id
        hub = dict(revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
        local = Path(os.fspath(repo_or_dir)).expanduser()
        source = os.fspath(repo_or_dir)
        if local.is_file():
            model = _load_official(local, config, source)
        elif local.is_dir() and filename is None and not (local / CONFIG_NAME).is_file():
            pths = sorted(p for p in local.iterdir() if p.suffix in (".pth", ".pt"))
            if len(pths) != 1:
                present = sorted(p.name for p in local.iterdir())
                raise FileNotFoundError(
                    f"{local} holds neither {CONFIG_NAME} + {WEIGHTS_NAME} (Hugging Face layout) nor exactly one "
                    f".pth (official layout); it holds {present}"
                )
            model = _load_official(pths[0], config, source)
        elif filename is not None:
            path = resolve_files(repo_or_dir, [filename], **hub)[filename]
            if path.suffix not in (".pth", ".pt"):
                raise ValueError(f"filename={filename!r}: expected an official .pth checkpoint")
            model = _load_official(path, config, f"{source}/{filename}")
        else:
            files = resolve_files(repo_or_dir, [CONFIG_NAME, WEIGHTS_NAME], **hub)
            hf_cfg = read_json(files[CONFIG_NAME])
            vit_cfg, num_registers = config_from_hf(hf_cfg, source=os.fspath(files[CONFIG_NAME]))
            if config is not None:
                vit_cfg = backbone_config(config) if isinstance(config, str) else config
            model = cls(vit_cfg, num_registers)
            state = state_dict_from_hf(read_safetensors(files[WEIGHTS_NAME]), vit_cfg, num_registers, source)
            load_checked(model, state, source=f"{source} (Hugging Face layout)")
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write the Hugging Face layout (config.json + model.safetensors, transformers 4.x key names),
        loadable by `DINOv3.from_pretrained` and by transformers' `DINOv3ViTModel.from_pretrained`."""
        return save_atomic(save_directory, hf_config(self.cfg, self.num_registers), hf_state_dict(self))


def _load_official(path: Path, config: ViTConfig | str | None, source: str) -> DINOv3:
    if path.suffix not in (".pth", ".pt"):
        raise ValueError(f"{path}: expected an official .pth checkpoint (or a directory / hub repo)")
    sd = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    if config is None:
        cfg, num_registers = config_from_official(sd)
    else:
        cfg = backbone_config(config) if isinstance(config, str) else config
        num_registers = sd["storage_tokens"].shape[1] if "storage_tokens" in sd else NUM_REGISTERS
    model = DINOv3(cfg, num_registers)
    load_checked(model, state_dict_from_official(sd, cfg, source), source=f"{source} (official layout)")
    return model
