"""Provenance for every stored result: what ran, on what code, where, for how long."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "canvit-model", "canvit-train", "canvit-eval", "dinov3-probes", "canvit-results",
    "torch", "numpy", "pandas", "safetensors", "huggingface-hub", "datasets", "optuna", "pillow",
)


def code_version(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """{"git_commit": sha or None, "git_dirty": bool or None} of the checkout holding `path` (default: cwd)."""
    cwd = Path(path) if path is not None else Path.cwd()
    if cwd.is_file():
        cwd = cwd.parent

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def cpu_name() -> str:
    """The CPU model name (/proc/cpuinfo "model name"; elsewhere what `platform` knows): benchmark tables name it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_info(device: Any = None) -> dict[str, Any]:
    """Host and accelerator description (torch imported only if already loaded or a device is given)."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is None and device is not None:
        import torch  # noqa: F811
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if device is not None:
            dev = torch.device(device)
            info["device"] = str(dev)
            if dev.type == "cuda" and torch.cuda.is_available():
                info["device_name"] = torch.cuda.get_device_name(dev)
    return info


def provenance(
    *,
    config: Mapping[str, Any] | Any = None,
    seed: int | None = None,
    checkpoint: str | None = None,
    device: Any = None,
    wall_time_s: float | None = None,
    argv: Sequence[str] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The provenance record of one run (stored in the sidecar by `write_run`)."""
    return {
        "command": list(sys.argv if argv is None else argv),
        "config": config,
        "seed": seed,
        "checkpoint": checkpoint,
        "code": code_version(Path(__file__)),
        "packages": package_versions(),
        "device": device_info(device),
        "wall_time_s": wall_time_s,
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **more,
    }
