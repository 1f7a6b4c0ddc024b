"""Cheap checks of the paths a command is given, made before it skips a complete results key (or a matrix
prints its plan): nothing is loaded or downloaded.

A spec that is not an existing local path must look like a Hugging Face hub id, `owner/name` (the rule of
`canvit_model.io.resolve_files`); a hub id is checked when it is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from canvit_model.io import CONFIG_NAME, WEIGHTS_NAME


def local_path(spec: str | os.PathLike[str]) -> Path | None:
    """The existing local path `spec` names; None for a hub id; FileNotFoundError for neither."""
    path = Path(os.fspath(spec)).expanduser()
    if path.exists():
        return path
    s = os.fspath(spec)
    if s.startswith((".", "/", "~")) or s.count("/") != 1:
        raise FileNotFoundError("no such file or directory (a Hugging Face hub id has the form owner/name)")
    return None


def check_checkpoint(spec: str | os.PathLike[str], *, official: bool = False) -> None:
    """A local checkpoint directory must hold config.json + model.safetensors (`official`: or be a DINOv3
    .pth file / a directory holding exactly one .pth)."""
    path = local_path(spec)
    if path is None:
        return
    if official and path.is_file():
        return
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory (expected {CONFIG_NAME} + {WEIGHTS_NAME})")
    present = sorted(p.name for p in path.iterdir())
    if official and CONFIG_NAME not in present and sum(n.endswith((".pth", ".pt")) for n in present) == 1:
        return
    missing = [f for f in (CONFIG_NAME, WEIGHTS_NAME) if f not in present]
    if missing:
        raise FileNotFoundError(f"{path} is missing {missing} (it holds {present})")


@contextlib.contextmanager
def usage_errors(parser: argparse.ArgumentParser, flag: str, value: object) -> Iterator[None]:
    """An OSError / ValueError inside becomes `parser.error("FLAG 'VALUE': why")`: exit 2, no traceback."""
    try:
        yield
    except (OSError, ValueError) as e:
        parser.error(f"{flag} {value!r}: {e}")
