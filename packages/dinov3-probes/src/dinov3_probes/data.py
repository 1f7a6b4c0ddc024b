"""Loading cached features into a `ProbeData` (held-out selection split, ReaL labels, device)."""

from __future__ import annotations

import os
from typing import Any

import torch

from .features import load_split
from .metrics import align_real_labels, read_real_json
from .train import ProbeData, split_holdout

SELECT_ON = ("holdout", "val")


def load_probe_data(features: str | os.PathLike[str], *, selection_fraction: float, select_on: str, seed: int,
                    device: torch.device, real_labels: str | None = None,
                    max_epochs: int | None = None) -> tuple[ProbeData, dict[str, Any]]:
    """(ProbeData on `device`, train manifest). select_on="val" trains on all training rows."""
    if select_on not in SELECT_ON:
        raise ValueError(f"--select-on {select_on!r}; valid: {', '.join(SELECT_ON)}")
    train = load_split(features, "train", max_epochs=max_epochs)
    val = load_split(features, "val")
    for k in ("model", "resolution", "dim", "classes"):
        if train.manifest.get(k) != val.manifest.get(k):
            raise ValueError(f"{features}: train and val features differ in {k} "
                             f"({train.manifest.get(k)!r} vs {val.manifest.get(k)!r})")
    num_classes = train.manifest.get("num_classes") or int(max(int(s.y.max()) for s in train.sets) + 1)
    real = val.real
    if real_labels is not None:
        real = align_real_labels(read_real_json(real_labels, num_classes), val.sets[0].keys, source=real_labels)
    fraction = selection_fraction if select_on == "holdout" else 0.0
    sets, select = split_holdout(train.sets, fraction, seed)
    manifest = train.manifest
    del train
    on_device = []
    while sets:  # move one augmentation epoch at a time, releasing its host copy (ViT-H+: ~6.6 GB each)
        on_device.append(sets.pop(0).to(device))
    sets = on_device
    data = ProbeData(train=sets, val=val.sets[0].to(device), num_classes=num_classes,
                     select=select.to(device) if select is not None else None, val_real=real)
    return data, {"train": manifest, "val": val.manifest, "aug_epochs": len(sets)}
