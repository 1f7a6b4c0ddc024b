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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import releases
from .config import BACKBONES, ViTConfig, backbone_config
from .geometry import grid_coords_hw
from .hub import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    PushToHubMixin,
    check_load_options,
    json_int,
    load_checked,
    read_json,
    read_safetensors,
    resolve_files,
    save_atomic,
)
from .layers.rope import Rope, rope_periods
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



# -- Hugging Face (transformers) layout -------------------------------------------------------------


def _swiglu_ratio(dim: int, hidden: int) -> float:
    # ViTConfig: int(int(dim * r) * 2 / 3) rounded up to a multiple of 8 must give `hidden`.
    m = -(-hidden * 3 // 2)
    return (m + 0.5) / dim


def make_vit_config(
    *, dim: int, num_heads: int, depth: int, ffn_hidden: int, mlp: str, patch_size: int = 16,
    rope_base: float = 100.0, norm_eps: float = 1e-5,
) -> ViTConfig:
    """The ViTConfig for these numbers: the registry entry when one matches exactly, else a new one."""
    key = (dim, num_heads, depth, ffn_hidden, mlp, patch_size, float(rope_base), float(norm_eps))
    for c in BACKBONES.values():
        if (c.dim, c.num_heads, c.depth, c.ffn_hidden, c.mlp, c.patch_size, c.rope_base, c.norm_eps) == key:
            return c
    if mlp not in ("gelu", "swiglu"):
        raise ValueError(f"unsupported MLP kind {mlp!r} (valid: 'gelu', 'swiglu')")
    ratio = (ffn_hidden + 0.5) / dim if mlp == "gelu" else _swiglu_ratio(dim, ffn_hidden)
    cfg = ViTConfig(
        dim=dim, num_heads=num_heads, depth=depth, patch_size=patch_size, ffn_ratio=ratio, mlp=mlp,
        rope_base=float(rope_base), norm_eps=float(norm_eps),
    )
    if cfg.ffn_hidden != ffn_hidden:
        raise ValueError(f"{mlp} hidden width {ffn_hidden} is not representable (SwiGLU widths are multiples of 8)")
    return cfg


def _json_float(c: dict[str, Any], key: str, default: Any, source: str) -> float:
    v = c.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise TypeError(f"{source}: {key} must be a positive number, got {v!r} ({type(v).__name__})")
    return float(v)


def _json_bool(c: dict[str, Any], key: str, default: bool, source: str) -> bool:
    v = c.get(key, default)
    if not isinstance(v, bool):
        raise TypeError(f"{source}: {key} must be true or false, got {v!r} ({type(v).__name__})")
    return v


def config_from_hf(c: dict[str, Any], source: str = "config.json") -> tuple[ViTConfig, int]:
    """(ViTConfig, number of registers) from a transformers DINOv3ViTConfig dict (config.json).

    Every field used is type-checked; errors name `source` (the file) and the field.
    """
    if c.get("model_type", "dinov3_vit") != "dinov3_vit":
        raise ValueError(f"{source} has model_type={c.get('model_type')!r}; expected 'dinov3_vit'")
    required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if k not in c]
    if missing:
        raise ValueError(f"{source} lacks required DINOv3 fields {missing}")
    gated = _json_bool(c, "use_gated_mlp", False, source)
    act = c.get("hidden_act", "silu" if gated else "gelu")
    if (gated and act != "silu") or (not gated and act != "gelu"):
        raise ValueError(
            f"{source}: hidden_act={act!r} with use_gated_mlp={gated} is not supported "
            "(DINOv3 uses gelu MLPs or silu SwiGLU)"
        )
    for flag in ("proj_bias", "mlp_bias"):
        if not _json_bool(c, flag, True, source):
            raise ValueError(f"{source}: {flag}=false is not supported (every released DINOv3 ViT has these biases)")
    if json_int(c, "num_channels", source, default=3) != 3:
        raise ValueError(f"{source}: num_channels={c['num_channels']} is not supported (RGB only)")
    patch = c.get("patch_size", 16)
    if isinstance(patch, (list, tuple)):
        if len(patch) != 2 or len(set(patch)) != 1:
            raise ValueError(f"{source}: non-square patch_size={patch} is not supported")
        patch = patch[0]
    patch = json_int({"patch_size": patch}, "patch_size", source)
    rope_base = c.get("rope_theta")
    if rope_base is None:  # newer transformers may nest it in rope_parameters
        rope_base = (c.get("rope_parameters") or {}).get("rope_theta", 100.0)
    cfg = make_vit_config(
        dim=json_int(c, "hidden_size", source), num_heads=json_int(c, "num_attention_heads", source),
        depth=json_int(c, "num_hidden_layers", source), ffn_hidden=json_int(c, "intermediate_size", source),
        mlp="swiglu" if gated else "gelu", patch_size=patch,
        rope_base=_json_float({"rope_theta": rope_base}, "rope_theta", 100.0, source),
        norm_eps=_json_float(c, "layer_norm_eps", 1e-5, source),
    )
    return cfg, json_int(c, "num_register_tokens", source, default=0, minimum=0)


def hf_config(cfg: ViTConfig, num_registers: int) -> dict[str, Any]:
    """A transformers DINOv3ViTConfig dict (config.json) for this architecture."""
    gated = cfg.mlp == "swiglu"
    return {
        "architectures": ["DINOv3ViTModel"],
        "model_type": "dinov3_vit",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.num_heads,
        "hidden_act": "silu" if gated else "gelu",
        "use_gated_mlp": gated,
        "layer_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_base,
        "patch_size": cfg.patch_size,
        "num_channels": 3,
        "num_register_tokens": num_registers,
        "image_size": 224,
        "query_bias": True,
        "key_bias": False,
        "value_bias": True,
        "proj_bias": True,
        "mlp_bias": True,
        "layerscale_value": 1.0,
        "attention_dropout": 0.0,
        "drop_path_rate": 0.0,
        "initializer_range": 0.02,
        "pos_embed_shift": None,
        "pos_embed_jitter": None,
        "pos_embed_rescale": 2.0,
    }


def _block_map(cfg: ViTConfig) -> list[tuple[str, str]]:
    """(native suffix, HF suffix) within one block, qkv excluded."""
    pairs = [
        ("norm1.weight", "norm1.weight"), ("norm1.bias", "norm1.bias"),
        ("attn.proj.weight", "attention.o_proj.weight"), ("attn.proj.bias", "attention.o_proj.bias"),
        ("ls1.gamma", "layer_scale1.lambda1"),
        ("norm2.weight", "norm2.weight"), ("norm2.bias", "norm2.bias"),
        ("ls2.gamma", "layer_scale2.lambda1"),
    ]
    if cfg.mlp == "swiglu":
        mlp = [("w1", "gate_proj"), ("w2", "up_proj"), ("w3", "down_proj")]
    else:
        mlp = [("fc1", "up_proj"), ("fc2", "down_proj")]
    for ours, theirs in mlp:
        pairs += [(f"mlp.{ours}.weight", f"mlp.{theirs}.weight"), (f"mlp.{ours}.bias", f"mlp.{theirs}.bias")]
    return pairs


_TOP_MAP = [
    ("cls_token", "embeddings.cls_token"),
    ("storage_tokens", "embeddings.register_tokens"),
    ("patch_embed.proj.weight", "embeddings.patch_embeddings.weight"),
    ("patch_embed.proj.bias", "embeddings.patch_embeddings.bias"),
    ("norm.weight", "norm.weight"),
    ("norm.bias", "norm.bias"),
]


def state_dict_from_hf(
    sd: dict[str, torch.Tensor], cfg: ViTConfig, num_registers: int, source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """transformers DINOv3ViTModel keys (`layer.N.` or `model.layer.N.`) -> native (official) keys."""
    sd = {re.sub(r"^model\.layer\.", "layer.", k): v for k, v in sd.items()}
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def take(key: str, optional: bool = False) -> torch.Tensor | None:
        if key in sd:
            used.add(key)
            return sd[key]
        if not optional:
            missing.append(key)
        return None

    for ours, theirs in _TOP_MAP:
        t = take(theirs)
        if t is not None:
            out[ours] = t
    mask = take("embeddings.mask_token", optional=True)
    out["mask_token"] = mask.reshape(1, -1) if mask is not None else torch.zeros(1, cfg.dim)
    d = cfg.dim
    for i in range(cfg.depth):
        pre = f"layer.{i}."
        for ours, theirs in _block_map(cfg):
            t = take(pre + theirs)
            if t is not None:
                out[f"blocks.{i}.{ours}"] = t
        ws = [take(pre + f"attention.{p}_proj.weight") for p in "qkv"]
        if all(w is not None for w in ws):
            out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(ws, dim=0)
        # q/v biases may be absent (query_bias/value_bias false): zero. A k bias must be zero or absent:
        # DINOv3 masks it (and with RoPE it would not cancel in the softmax).
        bq = take(pre + "attention.q_proj.bias", optional=True)
        bk = take(pre + "attention.k_proj.bias", optional=True)
        bv = take(pre + "attention.v_proj.bias", optional=True)
        if bk is not None and bool(bk.ne(0).any()):
            raise ValueError(f"{source}: {pre}attention.k_proj.bias is nonzero; DINOv3 has no key bias")
        dtype = ws[0].dtype if ws[0] is not None else torch.float32
        zeros = torch.zeros(d, dtype=dtype)
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat(
            [bq if bq is not None else zeros, zeros, bv if bv is not None else zeros]
        )
    unknown = sorted(set(sd) - used)
    if missing or unknown:
        parts = [f"checkpoint {source} (Hugging Face layout) does not match a DINOv3 ViT built from its config:"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {sorted(missing)}")
        if unknown:
            parts.append(f"  unexpected keys ({len(unknown)}): {unknown}")
        raise ValueError("\n".join(parts))
    return out


def hf_state_dict(model: DINOv3) -> dict[str, torch.Tensor]:
    """Native weights -> transformers DINOv3ViTModel keys (4.x `layer.N.` spelling, which 5.x also reads)."""
    sd = model.state_dict()
    cfg, d = model.cfg, model.cfg.dim
    out = {theirs: sd[ours] for ours, theirs in _TOP_MAP}
    out["embeddings.mask_token"] = sd["mask_token"].reshape(1, 1, d)
    for i in range(cfg.depth):
        pre, src = f"layer.{i}.", f"blocks.{i}."
        for ours, theirs in _block_map(cfg):
            out[pre + theirs] = sd[src + ours]
        q, k, v = sd[src + "attn.qkv.weight"].split(d, dim=0)
        bq, _, bv = sd[src + "attn.qkv.bias"].split(d, dim=0)
        out[pre + "attention.q_proj.weight"], out[pre + "attention.k_proj.weight"] = q, k
        out[pre + "attention.v_proj.weight"] = v
        out[pre + "attention.q_proj.bias"], out[pre + "attention.v_proj.bias"] = bq, bv
    return out


# -- official (facebookresearch/dinov3) layout ------------------------------------------------------

_OFFICIAL_TRAINING_ONLY = ("local_cls_norm.weight", "local_cls_norm.bias")


def config_from_official(sd: dict[str, torch.Tensor]) -> tuple[ViTConfig, int]:
    """Infer (ViTConfig, registers) from an official state dict's shapes (head_dim from the periods)."""
    for k in ("cls_token", "storage_tokens", "patch_embed.proj.weight", "blocks.0.norm1.weight"):
        if k not in sd:
            raise ValueError(f"not an official DINOv3 state dict: key {k!r} is missing (it has {len(sd)} keys)")
    dim = sd["cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"^blocks\.(\d+)\.", k)))
    swiglu = "blocks.0.mlp.w1.weight" in sd
    hidden = sd["blocks.0.mlp.w1.weight" if swiglu else "blocks.0.mlp.fc1.weight"].shape[0]
    mlp = "swiglu" if swiglu else "gelu"
    patch = sd["patch_embed.proj.weight"].shape[-1]
    for c in BACKBONES.values():  # the five released models
        if (c.dim, c.depth, c.mlp, c.ffn_hidden, c.patch_size) == (dim, depth, mlp, hidden, patch):
            return c, sd["storage_tokens"].shape[1]
    if "rope_embed.periods" not in sd:
        raise ValueError("cannot infer the number of heads (no rope_embed.periods): pass config=")
    head_dim = 4 * sd["rope_embed.periods"].numel()
    cfg = make_vit_config(dim=dim, num_heads=dim // head_dim, depth=depth, ffn_hidden=hidden, mlp=mlp,
                          patch_size=patch)
    return cfg, sd["storage_tokens"].shape[1]


def state_dict_from_official(
    sd: dict[str, torch.Tensor], cfg: ViTConfig, source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Official keys -> native keys: fold `qkv.bias_mask` into `qkv.bias`, check and drop `rope_embed.periods`."""
    out = dict(sd)
    periods = out.pop("rope_embed.periods", None)
    if periods is not None:
        ours = rope_periods(cfg.head_dim, cfg.rope_base)
        if periods.shape != ours.shape or not torch.allclose(periods.float(), ours, rtol=1e-2, atol=0):
            raise ValueError(
                f"{source}: rope_embed.periods {periods.tolist()} do not match this architecture's "
                f"base^(j/nf) periods {ours.tolist()} (even allowing for bf16 rounding)"
            )
        # Ignored on purpose: the stored periods are bf16-rounded; we use exact float32 periods (module doc).
    for k in _OFFICIAL_TRAINING_ONLY:
        out.pop(k, None)  # SAT-493M ViT-L / 7B: a training-only norm for local crops
    for i in range(cfg.depth):
        mk = f"blocks.{i}.attn.qkv.bias_mask"
        bk = f"blocks.{i}.attn.qkv.bias"
        mask = out.pop(mk, None)
        if mask is not None and bk in out:
            if not bool(torch.isfinite(mask).all()):
                raise ValueError(f"{source}: {mk} is not finite (a checkpoint saved before the bias_mask init fix?)")
            out[bk] = out[bk] * mask.to(out[bk].dtype)  # exactly the official masked bias
    if "mask_token" in out:
        out["mask_token"] = out["mask_token"].reshape(1, -1)
    return out


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
