"""Top-k accuracy and ImageNet-ReaL top-1 (Beyer et al. 2020), and reading the public `real.json`.

`real.json` (google-research/reassessed-imagenet; the same file as timm's `imagenet_real_labels.json`)
is a JSON list with one entry per validation image, in sorted filename order
(`ILSVRC2012_val_00000001.JPEG` is entry 0); each entry is the list of labels judged correct. Images
with an empty list are left out of ReaL accuracy (3,163 of 50,000 in the public file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import torch

_VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})\.", re.IGNORECASE)
_ROW = re.compile(r"^row:(\d+)$")


def read_real_json(path: str | Path, num_classes: int | None = None) -> list[list[int]]:
    """Read and check a `real.json`: a list of lists of class indices. Errors name the file and the entry."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--real-labels {str(p)!r} does not exist (expected the public real.json: a JSON list "
                                "of label lists, one per validation image in sorted filename order)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--real-labels {str(p)!r} is not valid JSON ({e})") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"--real-labels {str(p)!r} must hold a non-empty JSON list of label lists, "
                         f"got {type(data).__name__}")
    for i, entry in enumerate(data):
        if not isinstance(entry, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in entry):
            raise ValueError(f"--real-labels {str(p)!r}: entry {i} must be a list of integer class indices, got {entry!r}")
        if num_classes is not None and any(not 0 <= c < num_classes for c in entry):
            raise ValueError(f"--real-labels {str(p)!r}: entry {i} = {entry} has labels outside [0, {num_classes})")
    return data


def align_real_labels(real: Sequence[Sequence[int]], keys: Sequence[str], source: str = "real.json") -> list[list[int]]:
    """The ReaL label list of each validation key.

    - ImageNet file names (`ILSVRC2012_val_00000293.JPEG`, any folder): entry number - 1, so a subset of
      the validation set works too;
    - `datasets` rows (`row:<i>`): entry i;
    - any other names: the rank of the file name in sorted order (the file must cover exactly these images).
    """
    if not keys:
        return []
    names = [PurePosixPath(k).name for k in keys]
    numbers = [_VAL_NUMBER.search(n) for n in names]
    if all(numbers):
        idx = [int(m.group(1)) - 1 for m in numbers]
    elif all(_ROW.match(k) for k in keys):
        idx = [int(_ROW.match(k).group(1)) for k in keys]
    else:
        if len(set(names)) != len(names):
            raise ValueError(f"{source}: validation file names are not unique, so sorted filename order is ambiguous")
        if len(real) != len(keys):
            raise ValueError(f"{source} has {len(real)} entries but the validation set has {len(keys)} images; "
                             "it must hold one entry per image in sorted filename order")
        rank = {n: r for r, n in enumerate(sorted(names))}
        idx = [rank[n] for n in names]
    bad = [i for i in idx if not 0 <= i < len(real)]
    if bad:
        raise ValueError(f"{source} has {len(real)} entries; validation image index {bad[0]} is out of range")
    return [list(real[i]) for i in idx]


def real_tensor(real: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> torch.Tensor:
    """Padded [N, M] int64 tensor of ReaL label lists (-1 = padding; an all -1 row = no valid label)."""
    width = max(1, max((len(r) for r in real), default=1))
    out = torch.full((len(real), width), -1, dtype=torch.int64)
    for i, r in enumerate(real):
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return out.to(device)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of rows whose label is among the top-k logits, per k (k clipped to the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [N, kmax]
    hit = top == labels[:, None]
    return {k: int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


def real_correct(pred: torch.Tensor, real: torch.Tensor) -> tuple[int, int]:
    """(correct, counted): top-1 predictions [N] among the ReaL lists [N, M]; empty lists not counted."""
    valid = (real >= 0).any(dim=1)
    hit = (real == pred[:, None]).any(dim=1) & valid
    return int(hit.sum()), int(valid.sum())
