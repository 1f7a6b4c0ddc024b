"""The feature store: DINOv3 CLS tokens (after the final LayerNorm) cached as float32 safetensors.

    FEATURES/
      train/manifest.json              model, resolution, data, images, part size, seed, classes
      train/aug000/part-00000.safetensors  cls [n, D] float32, labels [n] int64, index [n] int64
      train/aug000/part-00000.json     keys of those rows + undecodable images skipped; written LAST
      train/aug001/...                 one directory per augmentation epoch (Inception crop baked in)
      val/manifest.json, val/part-*.{safetensors,json}, val/real_labels.json (optional, per key)

A part is complete when its .json exists (both files land by temp file + rename, the .json last), so a
killed extraction never leaves a part that reads as complete; the next run skips complete parts.
Rows are in source order (`index` = position in the image source); training shuffles them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from canvit_model.io import write_safetensors
from canvit_results import atomic_path, atomic_write_text

FORMAT = "dinov3-probes-features/1"
SPLITS = ("train", "val")
REAL_NAME = "real_labels.json"


def write_part(directory: Path, part: int, cls: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
               keys: list[str], skipped: list[dict[str, str]]) -> None:
    """Write one part: tensors first, then the .json that marks it complete."""
    if not (cls.shape[0] == labels.shape[0] == index.shape[0] == len(keys)):
        raise ValueError("cls, labels, index and keys must have the same number of rows")
    stem = directory / f"part-{part:05d}"
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        write_safetensors({"cls": cls.float().contiguous(), "labels": labels.long(), "index": index.long()}, tmp,
                          metadata={"format": FORMAT})
    atomic_write_text(stem.with_suffix(".json"), json.dumps({"rows": len(keys), "keys": keys, "skipped": skipped}))


def part_complete(directory: Path, part: int) -> bool:
    stem = directory / f"part-{part:05d}"
    meta, weights = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not (meta.is_file() and weights.is_file()):
        return False
    try:
        rows = json.loads(meta.read_text(encoding="utf-8"))["rows"]
        with safe_open(str(weights), framework="pt") as f:
            return f.get_slice("cls").get_shape()[0] == rows
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return False


def num_parts(num_images: int, part_size: int) -> int:
    return max(1, math.ceil(num_images / part_size))


@dataclass
class FeatureSet:
    """Rows of one file set (one augmentation epoch of train, or val). x: [N, D] float32, y: [N] int64."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # [N] position of each row in the image source
    keys: list[str]

    def to(self, device: torch.device | str) -> FeatureSet:
        return FeatureSet(self.x.to(device), self.y.to(device), self.index.to(device), self.keys)

    def take(self, rows: torch.Tensor) -> FeatureSet:
        r = rows.cpu().tolist()
        return FeatureSet(self.x[rows], self.y[rows], self.index[rows], [self.keys[i] for i in r])


def read_manifest(split_dir: Path) -> dict[str, Any]:
    path = split_dir / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{split_dir} holds no manifest.json: run `dinov3-probes extract --split "
                                f"{split_dir.name} --out {split_dir.parent}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def epoch_dirs(split_dir: Path, manifest: dict[str, Any]) -> list[Path]:
    if manifest["split"] == "val":
        return [split_dir]
    return sorted(p for p in split_dir.glob("aug*") if p.is_dir())


def load_file_set(directory: Path, manifest: dict[str, Any]) -> FeatureSet:
    """Concatenate the parts of one file set; refuses an incomplete one."""
    n = num_parts(manifest["num_images"], manifest["part_size"])
    missing = [p for p in range(n) if not part_complete(directory, p)]
    if missing:
        raise FileNotFoundError(
            f"{directory} is incomplete ({len(missing)} of {n} parts missing, first part-{missing[0]:05d}): "
            "run the same `dinov3-probes extract` command again to finish it"
        )
    xs, ys, idx, keys = [], [], [], []
    for p in range(n):
        stem = directory / f"part-{p:05d}"
        t = load_file(str(stem.with_suffix(".safetensors")))
        xs.append(t["cls"])
        ys.append(t["labels"])
        idx.append(t["index"])
        keys += json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))["keys"]
    return FeatureSet(torch.cat(xs), torch.cat(ys), torch.cat(idx), keys)


@dataclass
class SplitFeatures:
    manifest: dict[str, Any]
    sets: list[FeatureSet]  # train: one per augmentation epoch; val: one
    real: list[list[int]] | None = None  # val only: ReaL labels aligned to the rows


def load_split(features: str | os.PathLike[str], split: str, *, max_epochs: int | None = None) -> SplitFeatures:
    """All complete file sets of `FEATURES/<split>`; train epochs must hold the same images in the same order."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; valid: {', '.join(SPLITS)}")
    split_dir = Path(features) / split
    manifest = read_manifest(split_dir)
    dirs = epoch_dirs(split_dir, manifest)
    if max_epochs is not None:
        dirs = dirs[:max_epochs]
    if not dirs:
        raise FileNotFoundError(f"{split_dir} holds no augmentation epochs (aug000, ...): run extract --split train")
    sets = [load_file_set(d, manifest) for d in dirs]
    for d, s in zip(dirs[1:], sets[1:]):
        if not torch.equal(s.index, sets[0].index):
            raise ValueError(f"{d} does not hold the same images as {dirs[0]} (different skipped images?)")
    real = None
    if split == "val" and (split_dir / REAL_NAME).is_file():
        by_key = json.loads((split_dir / REAL_NAME).read_text(encoding="utf-8"))["labels"]
        real = [by_key[k] for k in sets[0].keys]
    return SplitFeatures(manifest, sets, real)
