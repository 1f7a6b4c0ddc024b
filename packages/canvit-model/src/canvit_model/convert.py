"""Checkpoint layouts: config.json parsing and state-dict key conversions, in one place.

- CanViT: the canvit-pytorch 0.2 config (`canvit_config`, `teacher_dim`, `teacher_patch_grid`) and the
  older 0.1 layout (hub revision "canvit-pytorch-0.1": `model_config` + `backbone_name`), whose keys are
  renamed to 0.2 names on load (`rename_v01_key`).
- DINOv3: the Hugging Face (transformers `DINOv3ViTModel`) config.json and key names, and the official
  facebookresearch/dinov3 `.pth` state dicts, to and from our native (official) key names.

Pure functions on dicts and tensors: no model is built here (the model classes call these).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .config import BACKBONES, CanViTConfig, ViTConfig
from .layers.rope import rope_periods


# -- config.json fields -----------------------------------------------------------------------------


def json_int(d: Mapping[str, Any], key: str, source: str, *, default: Any = None, minimum: int = 1) -> int:
    """An integer field of a config.json dict: a real JSON integer (not true/false, not 3.7, not "3")."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{source}: {key} must be an integer, got {v!r} ({type(v).__name__})")
    if v < minimum:
        raise ValueError(f"{source}: {key}={v} must be >= {minimum}")
    return v


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


# -- CanViT (canvit-pytorch 0.2 and 0.1) layouts ------------------------------------------------

# 0.1 -> 0.2 key renames (regex on the full key; first match wins).
_V01_RENAMES: list[tuple[str, str]] = [
    (r"^canvas_register_init$", "canvit.init_canvas_registers"),
    (r"^canvas_spatial_init$", "canvit.init_canvas_patch"),
    (r"^recurrent_cls_init$", "canvit.init_recurrent_cls"),
    (r"^backbone_registers$", "canvit.backbone_registers"),
    (r"^backbone\.(.*)$", r"canvit.backbone.\1"),
    (r"^canvas_read\.(\d+)\.q_proj\.(.*)$", r"canvit.canvas_reads.\1.q_map.\2"),
    (r"^canvas_read\.(\d+)\.k_proj\.(.*)$", r"canvit.canvas_reads.\1.k_map.\2"),
    (r"^canvas_read\.(\d+)\.v_proj\.(.*)$", r"canvit.canvas_reads.\1.v_map.\2"),
    (r"^canvas_read\.(\d+)\.out_proj\.(.*)$", r"canvit.canvas_reads.\1.o_map.\2"),
    (r"^canvas_read\.(\d+)\.q_norm\.(.*)$", r"canvit.canvas_reads.\1.ln_q.\2"),
    (r"^canvas_read\.(\d+)\.kv_norm\.(.*)$", r"canvit.canvas_reads.\1.ln_kv.\2"),
    (r"^canvas_write\.(\d+)\.q_proj\.(.*)$", r"canvit.canvas_writes.\1.q_map.\2"),
    (r"^canvas_write\.(\d+)\.k_proj\.(.*)$", r"canvit.canvas_writes.\1.k_map.\2"),
    (r"^canvas_write\.(\d+)\.v_proj\.(.*)$", r"canvit.canvas_writes.\1.v_map.\2"),
    (r"^canvas_write\.(\d+)\.out_proj\.(.*)$", r"canvit.canvas_writes.\1.o_map.\2"),
    (r"^canvas_write\.(\d+)\.q_norm\.(.*)$", r"canvit.canvas_writes.\1.ln_q.\2"),
    (r"^canvas_write\.(\d+)\.kv_norm\.(.*)$", r"canvit.canvas_writes.\1.ln_kv.\2"),
    (r"^vpe\.B$", "canvit.vpe.frequencies"),
    (r"^vpe\.norm\.(.*)$", r"canvit.vpe.norm.\1"),
    (r"^scene_patches_head\.(.*)$", r"teacher_patch_readout.\1"),
    (r"^scene_cls_head\.(.*)$", r"teacher_cls_readout.\1"),
    (r"^cls_standardizers\.\d+\.(mean|var)$", r"teacher_cls_standardizer.\1"),
    (r"^cls_standardizers\.\d+\._initialized$", "teacher_cls_standardizer.fitted"),
    (r"^scene_standardizers\.\d+\.(mean|var)$", r"teacher_patch_standardizer.\1"),
    (r"^scene_standardizers\.\d+\._initialized$", "teacher_patch_standardizer.fitted"),
]


def rename_v01_key(key: str) -> str:
    """0.1 key -> 0.2 key (keys that match no rule are returned unchanged and will be reported)."""
    for pattern, repl in _V01_RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return key


def _config_from_v01(cfg: dict[str, Any], source: str) -> tuple[CanViTConfig, int, int]:
    mc = cfg["model_config"]
    if not isinstance(mc, dict):
        raise ValueError(f"{source}: model_config must be a JSON object, got {type(mc).__name__}")
    mc = dict(mc)
    mode = mc.pop("canvas_update_mode", "additive")
    if mode != "additive":
        raise ValueError(
            f"{source}: canvas_update_mode={mode!r} (0.1 convex-update checkpoints) is not supported; only 'additive'"
        )
    if mc.pop("gate_bias_init", None) is not None:
        raise ValueError(f"{source}: gate_bias_init is set: convex-update checkpoints are not supported")
    raw_proj = mc.pop("canvas_proj_mode", "asymmetric")
    proj = {"asymmetric": "asymmetric", "full": "qkvo", "qkvo": "qkvo"}.get(raw_proj) if isinstance(raw_proj, str) else None
    if proj is None:
        raise ValueError(f"{source}: canvas_proj_mode={raw_proj!r} is unknown; valid: 'asymmetric', 'full'")
    grids = cfg.get("canvas_patch_grid_sizes") or [32]
    if not isinstance(grids, list) or len(grids) != 1:
        raise ValueError(
            f"{source}: canvas_patch_grid_sizes={grids!r}: only checkpoints with one standardizer grid are supported"
        )
    teacher_dim = json_int(mc, "teacher_dim", source, default=768)
    mc.pop("teacher_dim", None)
    grid = json_int({"canvas_patch_grid_sizes[0]": grids[0]}, "canvas_patch_grid_sizes[0]", source)
    renames = {"n_backbone_registers": "num_backbone_registers", "n_canvas_registers": "num_canvas_registers"}
    fields = {renames.get(k, k): v for k, v in mc.items()}
    fields["backbone_name"] = cfg["backbone_name"]
    fields["canvas_projections"] = proj
    return CanViTConfig.from_dict(fields, source), teacher_dim, grid


def parse_pretraining_config(cfg: dict[str, Any], source: str = "config.json") -> tuple[CanViTConfig, int, int, str]:
    """(canvit config, teacher_dim, teacher_patch_grid, layout '0.2' | '0.1') from a config.json dict.

    Every field is type-checked; errors name `source` (the file) and the field.
    """
    if "canvit_config" in cfg:
        for key in ("teacher_dim", "teacher_patch_grid"):
            if key not in cfg:
                raise ValueError(f"{source} (0.2 layout) lacks required key {key!r}")
        return (
            CanViTConfig.from_dict(cfg["canvit_config"], source),
            json_int(cfg, "teacher_dim", source),
            json_int(cfg, "teacher_patch_grid", source),
            "0.2",
        )
    if "model_config" in cfg and "backbone_name" in cfg:
        return (*_config_from_v01(cfg, source), "0.1")
    raise ValueError(
        f"{source} is neither the canvit-pytorch 0.2 layout (key 'canvit_config') nor the 0.1 layout "
        f"(keys 'model_config' + 'backbone_name'); it has keys {sorted(cfg)}"
    )




# -- DINOv3: Hugging Face (transformers) layout ---------------------------------------------------


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


def hf_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
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
        # Ignored on purpose: the stored periods are bf16-rounded; we use exact float32 periods (dinov3.py's docstring).
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
