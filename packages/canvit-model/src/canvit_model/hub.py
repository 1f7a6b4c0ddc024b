"""Checkpoints: Hugging Face hub repos or local directories holding config.json + model.safetensors.

Reads the canvit-pytorch 0.2 layout (on `main` of the official repos) and the older 0.1 layout
(hub revision "canvit-pytorch-0.1"), renaming 0.1 keys on load; writes the 0.2 layout. Weights are
read with safetensors only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import CanViTConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


# -- locating files ---------------------------------------------------------------------------------


def resolve_files(
    repo_or_dir: str | os.PathLike[str],
    filenames: Sequence[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> dict[str, Path]:
    """Paths of `filenames` in a local directory, or downloaded (and cached) from a hub repo."""
    local = Path(os.fspath(repo_or_dir)).expanduser()
    if local.is_dir():
        missing = [f for f in filenames if not (local / f).is_file()]
        if missing:
            present = sorted(p.name for p in local.iterdir())
            raise FileNotFoundError(f"{local} is missing {missing} (it holds {present})")
        return {f: local / f for f in filenames}
    repo = os.fspath(repo_or_dir)
    if repo.startswith((".", "/", "~")) or repo.count("/") != 1:
        raise FileNotFoundError(
            f"{repo!r} is neither an existing local directory nor a hub repo id of the form 'owner/name'"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    out: dict[str, Path] = {}
    for name in filenames:
        try:
            out[name] = Path(
                hf_hub_download(
                    repo,
                    name,
                    revision=revision,
                    token=token,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                )
            )
        except GatedRepoError as e:
            raise OSError(
                f"hub repo {repo!r} is gated: accept its terms on the hub, then log in "
                "(`hf auth login`) or set HF_TOKEN"
            ) from e
        except RepositoryNotFoundError as e:
            raise OSError(f"hub repo {repo!r} not found (or private: log in or set HF_TOKEN)") from e
        except RevisionNotFoundError as e:
            raise OSError(f"hub repo {repo!r} has no revision {revision!r}") from e
        except LocalEntryNotFoundError as e:
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
            why = "HF_HUB_OFFLINE is set" if offline or local_files_only else "the hub could not be reached"
            raise OSError(
                f"cannot load {name!r} of hub repo {repo!r}: {why} and there is no cached copy. "
                f"Download it once on a connected machine (e.g. `hf download {repo}`), copy the Hugging Face "
                "cache (HF_HOME) here, and run with HF_HUB_OFFLINE=1; or pass a local directory holding "
                f"{', '.join(filenames)}."
            ) from e
        except EntryNotFoundError as e:
            raise OSError(f"hub repo {repo!r} (revision {revision or 'main'}) has no file {name!r}") from e
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; invalid JSON or another top-level type raise a ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (JSON expected): {e.reason} at byte {e.start}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file on the CPU; a truncated or corrupt file raises naming it."""
    if Path(path).suffix != ".safetensors":
        raise ValueError(f"refusing to read {path}: only .safetensors weights are loaded (no pickle)")
    size = os.path.getsize(path)
    if size < 8:
        raise ValueError(f"{path} is not a safetensors file: {size} bytes, shorter than its 8-byte header length")
    try:
        return load_file(os.fspath(path), device="cpu")
    except Exception as e:  # safetensors raises SafetensorError (and sometimes OSError) with terse messages
        raise ValueError(
            f"{path} is not a readable safetensors file ({size} bytes): truncated or corrupt? "
            f"Re-download or re-save it. safetensors says: {e}"
        ) from None


def load_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load with an error listing every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [f"checkpoint {source} does not match the model built from its config:"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
        if shapes:
            parts.append(f"  shape mismatches ({len(shapes)}): {shapes}")
        raise ValueError("\n".join(parts))
    model.load_state_dict(dict(state_dict), strict=True)


def write_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> None:
    """Write `tensors` (any device, any strides; views of one storage are fine) with safetensors' own writer.

    Byte-reproducible only with at most one metadata key: safetensors stores `__metadata__` in a hash
    map, so several keys are written in an order that changes from one process to the next.
    """
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()  # safetensors refuses tensors that share memory (e.g. the q/k/v views of a fused qkv)
        seen.add(ptr)
        out[k] = t
    save_file(out, os.fspath(path), metadata=metadata)


def save_atomic(
    directory: str | os.PathLike[str],
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    readme: str | None = None,
) -> Path:
    """Write model.safetensors, README.md (optional) and config.json, last: a directory with a
    config.json is complete. Weights and config land via a temporary file and an atomic rename."""
    out = Path(os.fspath(directory))
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    tmp_w = out / f".{WEIGHTS_NAME}.tmp"
    write_safetensors(tensors, tmp_w, metadata={"format": "pt"})
    os.replace(tmp_w, out / WEIGHTS_NAME)
    if readme:
        (out / "README.md").write_text(readme, encoding="utf-8")
    tmp_c = out / f".{CONFIG_NAME}.tmp"
    tmp_c.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_c, out / CONFIG_NAME)
    return out


# -- CanViT layouts -------------------------------------------------------------------------------

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


def json_int(d: Mapping[str, Any], key: str, source: str, *, default: Any = None, minimum: int = 1) -> int:
    """An integer field of a config.json dict: a real JSON integer (not true/false, not 3.7, not "3")."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{source}: {key} must be an integer, got {v!r} ({type(v).__name__})")
    if v < minimum:
        raise ValueError(f"{source}: {key}={v} must be >= {minimum}")
    return v


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


def check_load_options(map_location: Any, dtype: Any) -> tuple[torch.device, torch.dtype | None]:
    """Validate `from_pretrained`'s map_location / dtype before any file is read."""
    try:
        device = torch.device(map_location)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"map_location={map_location!r} is not a torch device (e.g. 'cpu', 'cuda:0'): {e}") from None
    if dtype is None:
        return device, None
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                 "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}.get(dtype, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point torch.dtype (torch.float32, torch.bfloat16, torch.float16) or None, "
            f"got {dtype!r}"
        )
    return device, dtype


def load_pretraining_model(
    repo_or_dir: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
):
    from .canvit import CanViTForPretraining

    device, dtype = check_load_options(map_location, dtype)
    files = resolve_files(
        repo_or_dir,
        [CONFIG_NAME, WEIGHTS_NAME],
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
    raw = read_json(files[CONFIG_NAME])
    cfg, teacher_dim, grid, layout = parse_pretraining_config(raw, source=os.fspath(files[CONFIG_NAME]))
    state_dict = read_safetensors(files[WEIGHTS_NAME])
    if layout == "0.1":
        state_dict = {rename_v01_key(k): v for k, v in state_dict.items()}
    model = CanViTForPretraining(cfg, teacher_dim=teacher_dim, teacher_patch_grid=grid)
    load_checked(model, state_dict, source=f"{os.fspath(repo_or_dir)} ({layout} layout)")
    model.hub_extra = {k: raw[k] for k in ("metadata", "training") if k in raw}
    return model.to(device=device, dtype=dtype).eval()


def pretraining_config_dict(model) -> dict[str, Any]:
    cfg = {
        "canvit_config": model.canvit_config.to_dict(),
        "teacher_dim": model.teacher_dim,
        "teacher_patch_grid": model.teacher_patch_grid,
    }
    cfg.update(model.hub_extra)
    return cfg


def save_pretraining_model(model, save_directory: str | os.PathLike[str]) -> Path:
    return save_atomic(save_directory, pretraining_config_dict(model), model.state_dict(), readme=MODEL_CARD)


class PushToHubMixin:
    """`push_to_hub` for every model class that has `save_pretrained` (one implementation)."""

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """`save_pretrained` into a temporary directory, then upload it to hub repo `repo_id` (created if
        needed) in one commit. Returns huggingface_hub's CommitInfo."""
        import tempfile

        from huggingface_hub import HfApi

        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")):
            raise ValueError(f"repo_id must be a hub repo id 'owner/name', got {repo_id!r}")
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory(prefix="canvit-push-") as tmp:
            self.save_pretrained(tmp)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                repo_type="model",
                revision=revision,
                commit_message=commit_message or f"Upload {type(self).__name__} (canvit-model)",
                create_pr=create_pr,
            )
MODEL_CARD = """---
library_name: canvit-model
license: mit
tags:
- canvit
- active-vision
---

A CanViT checkpoint (canvit-pytorch 0.2 layout: config.json + model.safetensors), written by `canvit-model`.
Load it with `canvit_model.CanViTForPretraining.from_pretrained(path_or_repo)` or with canvit-pytorch.
"""
