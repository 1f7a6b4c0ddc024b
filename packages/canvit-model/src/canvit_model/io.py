"""Checkpoint files: locating them (local directory or hub repo), reading them (JSON, safetensors only:
nothing is ever unpickled), checking them against a model, and writing them atomically.

Every model class loads and saves through these functions; the layouts (key names, config fields) are
in `convert.py`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

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


# -- atomic writes --------------------------------------------------------------------------------


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process umask: what `open()` gives a new file (0o644 under umask 022).

    `tempfile.mkstemp` creates 0o600 files; a renamed temp file would keep that mode, so a checkpoint
    shared by a group could not be read by the others. The umask is read from /proc (Linux), else by
    setting and restoring it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return mode & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mode & ~mask


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename is durable only once its directory is synced)."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a unique temp path beside `path` for any writer that wants a file name. When the block ends
    cleanly the file gets the umask's mode, is fsynced and renamed onto `path`, and the directory is
    fsynced; on an exception the temp file is removed and `path` keeps its previous content. Readers see
    the old file or the whole new one, never a part. The parent directory must exist."""
    path = Path(os.fspath(path))
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def save_atomic(
    directory: str | os.PathLike[str],
    config: dict[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    readme: str | None = None,
) -> Path:
    """Write model.safetensors, README.md (optional) and config.json, last, each with `atomic_file`:
    a directory with a config.json is complete."""
    out = Path(os.fspath(directory))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / WEIGHTS_NAME) as tmp:
        write_safetensors(state_dict, tmp, metadata={"format": "pt"})
    if readme:
        with atomic_file(out / "README.md") as tmp:
            tmp.write_text(readme, encoding="utf-8")
    with atomic_file(out / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out
