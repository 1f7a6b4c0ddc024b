"""The `pretrain` command's input checks, run before anything is loaded or written.

Each returns None when the input is fine, or one line naming the flag, the file and what is wrong
(the command line prints it as "pretrain: error: ..." and exits 2):

- `run_dir_problem`: `--run-dir` must be a pretraining run directory (or new / empty), never e.g. an export.
- `resume_problem`: a `--resume` may change only bookkeeping; a preset or recipe flag that differs from the
  run's stored recipe is refused, listing every differing field.
- `same_export_problem`: a `--resume` reads the same teacher-feature export the run started with.
- `standardizers_problem`: `--standardizers` is a safetensors file with the four statistics.
- `scenes_problem`: a local `--scenes` / `--val-scenes` folder holds images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .config import PretrainConfig

# What `pretrain` itself writes into a run directory; anything else means it is some other folder.
RUN_ENTRIES = frozenset({"config.json", "checkpoints", "metrics.csv", "validation.csv", "final", "data",
                         "order.parquet", "tensorboard"})
# What marks a teacher-feature export (canvit_train.data.shards): never a run directory.
EXPORT_ENTRIES = ("export.json", "manifest.json", "shards")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run_dir_problem(run_dir: Path) -> str | None:
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        return f"--run-dir {run_dir}: is a file, not a run directory"
    entries = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    export = [e for e in EXPORT_ENTRIES if e in entries]
    if export:
        return (f"--run-dir {run_dir}: is a teacher-feature export (holds {', '.join(export)}), not a pretraining run "
                "directory; pass it as --features and pick a new --run-dir")
    foreign = sorted(entries - RUN_ENTRIES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        return (f"--run-dir {run_dir}: not a pretraining run directory (it holds {shown}); "
                "pick a new or empty folder")
    return None


def resume_problem(saved: PretrainConfig, asked: PretrainConfig, explicit: dict[str, Any], preset_given: str | None,
                   saved_preset: str | None, bookkeeping: tuple[str, ...]) -> str | None:
    """`asked` is the recipe the command line describes (the preset named by --preset, or the saved recipe when
    no --preset was given, with the flags applied); every recipe field that differs from `saved` is listed."""
    diff = []
    for f in PretrainConfig.__dataclass_fields__.values():
        if f.name in bookkeeping or not f.compare:
            continue
        a, s = getattr(asked, f.name), getattr(saved, f.name)
        if a != s:
            why = "flag" if f.name in explicit else f"preset {preset_given}"
            diff.append(f"{_flag(f.name)} {a!r} ({why}; run: {s!r})")
    if asked.backbone_override != saved.backbone_override and preset_given is not None:
        diff.append(f"backbone override {asked.backbone_override!r} (preset {preset_given}; run: {saved.backbone_override!r})")
    if not diff:
        return None
    head = "--resume: the run's recipe cannot change"
    if preset_given is not None and saved_preset and preset_given != saved_preset:
        head += f" (the run was started with --preset {saved_preset}, this command names --preset {preset_given})"
    return head + "; these differ: " + ", ".join(diff) + ". Drop them to continue the run, or pick a new --run-dir"


def _export_identity(features: str | os.PathLike[str]) -> dict[str, Any] | None:
    p = Path(features) / "export.json"
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    keys = ("teacher", "scenes", "split", "resolution", "grid", "dim", "shard_size", "seed", "num_images")
    return {k: d.get(k) for k in keys}


def export_record(features: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What a run records about its export (in RUN_DIR/config.json) so a resume can check it reads the same."""
    if features is None:
        return {}
    return {"features_resolved": str(Path(features).resolve()), "export": _export_identity(features)}


def same_export_problem(run_dir: Path, features: str | None) -> str | None:
    try:
        data = json.loads((run_dir / "config.json").read_text()).get("data") or {}
    except (OSError, ValueError):
        return None
    stored, was = data.get("export"), data.get("features_resolved") or data.get("features")
    if data.get("mode") == "shards" and features is None:
        return None  # build_data says what is missing
    if features is None or not (stored or was):
        if features is not None and data.get("mode") and data.get("mode") != "shards":
            return (f"--resume with --features {features}: the run in {run_dir} trained on "
                    f"{data.get('mode')} targets, not on an export")
        return None
    now = _export_identity(features)
    if stored is not None and now is not None:
        diff = [k for k in stored if stored[k] != now.get(k)]
        if diff:
            return (f"--resume with --features {features}: another export than the one the run started with ({was}); "
                    "they differ in " + ", ".join(f"{k} ({now.get(k)!r} vs {stored[k]!r})" for k in diff))
        return None
    if was and Path(features).resolve() != Path(was).resolve():
        return f"--resume with --features {features}: the run started with --features {was}"
    return None


def standardizers_problem(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        return f"--standardizers {path}: " + ("is a folder, not a file" if p.is_dir() else "no such file")
    from safetensors import safe_open

    from canvit_train.data.standardizers import KEYS

    try:
        with safe_open(str(p), framework="pt") as f:
            keys = set(f.keys())
    except Exception as e:  # safetensors raises its own error types on a bad header
        return f"--standardizers {path}: not a safetensors file ({type(e).__name__}: {e}); make one with " \
               "`canvit-train compute-standardizers`"
    missing = [k for k in KEYS if k not in keys]
    if missing:
        return f"--standardizers {path}: not a standardizer file (missing {missing})"
    return None


def scenes_problem(flag: str, spec: str | None, split: str | None = None, image_column: str | None = None
                   ) -> str | None:
    """A local folder given as scenes must hold at least one image (an empty one otherwise fails much later,
    naming something else)."""
    if spec is None:
        return None
    p = Path(spec).expanduser()
    if not p.is_dir() or (p / "dataset_dict.json").is_file() or (p / "dataset_info.json").is_file():
        return None  # a hub id or a saved dataset: the source itself reports
    from canvit_data import open_images

    try:
        n = len(open_images(str(p), split=split, image_column=image_column))
    except (ValueError, OSError) as e:
        return f"{flag} {spec}: {e}"
    if n == 0:
        return f"{flag} {spec}: the folder holds no images"
    return None
