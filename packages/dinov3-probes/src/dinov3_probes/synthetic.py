"""Synthetic feature stores for tests and smoke runs: class-conditional Gaussians written in the exact
layout `dinov3-probes extract` produces (so tune / export / evaluate run on them unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .features import FORMAT, REAL_NAME, atomic_write_text, write_part


def write_gaussian_features(root: str | Path, *, n_train: int = 400, n_val: int = 200, dim: int = 16,
                            num_classes: int = 4, aug_epochs: int = 2, separation: float = 2.0, noise: float = 1.0,
                            scale: float = 1.0, part_size: int = 128, seed: int = 0, real: bool = True) -> Path:
    """Features x = scale * (separation * mu_y + noise * eps); each augmentation epoch redraws eps.

    With `real`, val/real_labels.json gets each image's true label, plus a second "also correct" label
    for every 5th image and an empty list for every 7th (skipped by ReaL top-1)."""
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, dim, generator=g)
    means = means / means.norm(dim=1, keepdim=True)
    classes = [f"class_{c:02d}" for c in range(num_classes)]

    def labels(n: int) -> torch.Tensor:
        return torch.arange(n) % num_classes

    def draw(y: torch.Tensor) -> torch.Tensor:
        return scale * (separation * means[y] + noise * torch.randn(len(y), dim, generator=g))

    def write_set(directory: Path, y: torch.Tensor, keys: list[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        x = draw(y)
        for p, s in enumerate(range(0, len(y), part_size)):
            sl = slice(s, s + part_size)
            write_part(directory, p, x[sl], y[sl], torch.arange(len(y))[sl], keys[sl], [])

    for split, n in (("train", n_train), ("val", n_val)):
        y = labels(n)
        keys = [f"{classes[int(c)]}/{split}_{i:06d}.png" for i, c in enumerate(y)]
        split_dir = root / split
        split_dir.mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "split": split, "model": "synthetic-gaussians", "backbone": "synthetic",
                    "dim": dim, "resolution": 0, "data": "synthetic", "num_images": n, "num_classes": num_classes,
                    "classes": classes, "part_size": part_size, "seed": seed, "transform": "gaussian"}
        atomic_write_text(split_dir / "manifest.json", json.dumps(manifest))
        if split == "train":
            for e in range(aug_epochs):
                write_set(split_dir / f"aug{e:03d}", y, keys)
        else:
            write_set(split_dir, y, keys)
            if real:
                lists = []
                for i, c in enumerate(y.tolist()):
                    lists.append([] if i % 7 == 3 else ([c, (c + 1) % num_classes] if i % 5 == 0 else [c]))
                atomic_write_text(split_dir / REAL_NAME, json.dumps({"source": "synthetic", "labels": dict(zip(keys, lists))}))
    return root
