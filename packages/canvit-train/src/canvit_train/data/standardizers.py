"""`canvit-train compute-standardizers DIR --out FILE`: per-position teacher statistics.

Mean and POPULATION variance (paper-compatible; the model adds eps 1e-6 inside the sqrt) per position
and dimension over the first `--num-scenes` scenes (default 4096 = the authors' first shard) in stored
order. Saved as safetensors, float32:

    patch_mean, patch_var  [G², D]
    cls_mean,   cls_var    [1, D]

Python API:
- `fit_standardizers(features, num_scenes)`: `features` iterates (patches [n, G², D], cls [n, D]) chunks
  (any dtype) in stored order; accumulates in float64 (Chan's parallel merge) -> dict of float32 tensors.
- `iter_shard_features(dir)`: those chunks from an export directory (memory-mapped, stored order).
- `save_standardizers(stats, file, metadata)` / `load_standardizers(file)`.
- `apply_standardizers(model, stats)`: copy into `CanViTForPretraining.teacher_patch_standardizer` /
  `teacher_cls_standardizer` buffers (marks them fitted), so they ship with the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from canvit_results import atomic_path

from .shards import Manifest, ShardError, check_rows, check_shard_file, open_shard, shard_path

KEYS = ("patch_mean", "patch_var", "cls_mean", "cls_var")


class _Moments:
    """Running count / mean / M2 in float64 (Chan et al. merge of chunk statistics)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:  # x: [n, ...]
        x = x.double()
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(0)
        m2b = ((x - mb) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n

    def var(self) -> torch.Tensor:
        assert self.m2 is not None
        return self.m2 / self.n  # population variance


def fit_standardizers(
    features: Iterable[tuple[torch.Tensor, torch.Tensor]], num_scenes: int = 4096, *, require_all: bool = True
) -> dict[str, torch.Tensor]:
    """Statistics of the first `num_scenes` scenes of `features` (see the module doc)."""
    if not isinstance(num_scenes, int) or num_scenes < 1:
        raise ValueError(f"num_scenes={num_scenes!r} must be a positive int")
    patch, cls = _Moments(), _Moments()
    for p, c in features:
        take = min(num_scenes - patch.n, p.shape[0])
        if p.ndim != 3 or c.ndim != 2 or c.shape[0] != p.shape[0]:
            raise ValueError(f"expected patches [n, G², D] and cls [n, D], got {list(p.shape)} and {list(c.shape)}")
        patch.add(p[:take])
        cls.add(c[:take])
        if patch.n >= num_scenes:
            break
    if patch.n == 0:
        raise ValueError("no features to fit the standardizers on")
    if require_all and patch.n < num_scenes:
        raise ValueError(
            f"only {patch.n} scenes available, --num-scenes={num_scenes} requested (pass a smaller --num-scenes)"
        )
    return {
        "patch_mean": patch.mean.float(),
        "patch_var": patch.var().float(),
        "cls_mean": cls.mean.float().reshape(1, -1),
        "cls_var": cls.var().float().reshape(1, -1),
    }


def iter_shard_features(
    root: str | os.PathLike[str], chunk: int = 512, *, checksum: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(patches, cls) chunks of an export in stored order (shards 0, 1, ...), NaN-checked."""
    m = Manifest.load(root)
    for s in range(m.num_shards):
        if s not in m.records:
            raise ShardError(f"{shard_path(root, s)}: missing (the export is incomplete)")
        path = shard_path(root, s)
        check_shard_file(path, m.records[s], checksum=checksum)
        h = open_shard(path)
        rows = m.records[s]["rows"]
        for a in range(0, rows, chunk):
            b = min(rows, a + chunk)
            p, c = h.get_slice("patches")[a:b], h.get_slice("cls")[a:b]
            check_rows(path, p, c, slice(a, b))
            yield p, c


def save_standardizers(
    stats: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> Path:
    from canvit_model.io import write_safetensors

    path = Path(path)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        write_safetensors({k: stats[k].float().contiguous() for k in KEYS}, tmp, meta)
    return path


def load_standardizers(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    stats = load_file(str(path))
    missing = [k for k in KEYS if k not in stats]
    if missing:
        raise ValueError(f"{path}: not a standardizer file (missing {missing}; has {sorted(stats)})")
    return {k: stats[k] for k in KEYS}


def apply_standardizers(model: Any, stats: Mapping[str, torch.Tensor]) -> None:
    """Copy statistics into a CanViTForPretraining's teacher standardizer buffers (shape-checked)."""
    for prefix, std in (("patch", model.teacher_patch_standardizer), ("cls", model.teacher_cls_standardizer)):
        for name in ("mean", "var"):
            src, dst = stats[f"{prefix}_{name}"], getattr(std, name)
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(
                    f"{prefix}_{name} has shape {list(src.shape)} but the model's "
                    f"teacher_{prefix}_standardizer.{name} is {list(dst.shape)} "
                    "(teacher grid or dim differs from the model's teacher_patch_grid / teacher_dim)"
                )
            with torch.no_grad():
                dst.copy_(src.to(dst.dtype))
        std.fitted.fill_(True)


EXAMPLE = """example:
  canvit-train compute-standardizers /features/in21k-vitb16-512 \\
      --out /features/in21k-vitb16-512/standardizers.safetensors
"""


def main(argv: list[str] | None = None) -> int:
    from canvit_results.cli import HelpFormatter, output_file

    ap = argparse.ArgumentParser(
        prog="canvit-train compute-standardizers",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE,
        formatter_class=HelpFormatter,
    )
    ap.add_argument("dir", help="export directory (from export-teacher-features)")
    ap.add_argument("--out", required=True, type=output_file, help="output .safetensors file (an existing one is "
                    "refused unless --force)")
    ap.add_argument("--force", action="store_true", help="replace an existing --out file")
    ap.add_argument("--num-scenes", type=int, default=4096, help="first N scenes in stored order (default %(default)s)")
    ap.add_argument("--no-checksum", action="store_true", help="skip the sha256 check of the shards read")
    args = ap.parse_args(argv)
    if args.num_scenes < 1:
        ap.error(f"--num-scenes must be >= 1 (got {args.num_scenes})")
    if Path(args.out).exists() and not args.force:
        ap.error(f"--out {args.out}: already exists; pass --force to replace it, or choose another file")
    bar = None
    try:
        from tqdm import tqdm

        m = Manifest.load(args.dir)  # not an export directory: fail before the progress bar starts
        if m.complete and m.num_rows < args.num_scenes:  # fail now, not after reading everything
            raise ValueError(f"--num-scenes {args.num_scenes}: the export {args.dir} holds only {m.num_rows} scenes "
                             f"({m.num_images} images, {len(m.failed)} failed); pass --num-scenes {m.num_rows} or less")
        bar = tqdm(total=args.num_scenes, unit="scene", desc="standardizers", dynamic_ncols=True)

        def counted() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for p, c in iter_shard_features(args.dir, checksum=not args.no_checksum):
                bar.update(min(p.shape[0], args.num_scenes - bar.n))
                yield p, c

        stats = fit_standardizers(counted(), args.num_scenes)
        bar.close()
        path = save_standardizers(
            stats,
            args.out,
            {
                "num_scenes": str(args.num_scenes),
                "features": str(Path(args.dir).resolve()),
                "teacher": str(m.export.get("teacher")),
                "resolution": str(m.resolution),
                "variance": "population",
                "eps": "1e-6 (added inside the sqrt by the model)",
            },
        )
    except (ValueError, OSError) as e:  # ShardError is a ValueError
        if bar is not None:
            bar.close()  # the error gets a line of its own, not the end of the bar's
        print(f"canvit-train compute-standardizers: error: {e}", file=sys.stderr)
        return 2
    g = stats["patch_mean"].shape
    print(
        f"{path}: patch_mean/patch_var {list(g)}, cls_mean/cls_var {list(stats['cls_mean'].shape)} "
        f"from the first {args.num_scenes} scenes of {args.dir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
