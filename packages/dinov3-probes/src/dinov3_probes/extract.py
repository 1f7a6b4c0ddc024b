"""`dinov3-probes extract`: cache DINOv3 CLS features (final LayerNorm, bf16 autocast on GPU, stored float32).

Train images get the Inception crop (RandomResizedCrop 0.08-1, ratio 3/4-4/3, + flip), seeded per
(seed, epoch, image), one file set per augmentation epoch (`--epochs E`, `--first-epoch K` for job arrays).
Val images get Resize(S) + CenterCrop(S). Re-running skips complete parts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from canvit_model import releases
from canvit_results import provenance
from canvit_results.cli import int_at_least, pick_device, resolved_location, same_location

from .augment import crop_rng, inception_crop
from .features import FORMAT, REAL_NAME, SPLITS, atomic_write_text, num_parts, part_complete, write_part
from .metrics import align_real_labels, read_real_json


def backbone_name(model: Any) -> str:
    """The registry name (vits16, ..., vith16plus) of a DINOv3 model, or a descriptive one."""
    from canvit_model import BACKBONES

    for name, cfg in BACKBONES.items():
        if cfg == model.cfg:
            return name
    return f"custom-d{model.cfg.dim}-l{model.cfg.depth}"


class _Images(Dataset):
    """(image [3, S, S] or None, label, key, index, error) for the given source positions."""

    def __init__(self, source: Any, positions: list[int], split: str, size: int, seed: int, epoch: int) -> None:
        self.source, self.positions, self.split, self.size, self.seed, self.epoch = source, positions, split, size, seed, epoch

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[Any, int, str, int, str]:
        from canvit_data import ImageDecodeError
        from canvit_model.preprocess import center_crop_transform

        pos = self.positions[i]
        key = self.source.key(pos)
        label = self.source.label(pos)
        if label is None:
            raise ValueError(f"image {key!r} has no label: --data must be an ImageFolder (ROOT/<class>/<image>) "
                             "or a dataset with a label column")
        try:
            image = self.source.load(pos)
        except ImageDecodeError as e:
            return None, label, key, pos, e.reason
        if self.split == "train":
            x = inception_crop(image, self.size, crop_rng(self.seed, self.epoch, pos))
        else:
            x = center_crop_transform(image, self.size)
        return x, label, key, pos, ""


def _collate(batch: list[tuple[Any, int, str, int, str]]) -> tuple[torch.Tensor | None, list[tuple[Any, ...]]]:
    good = [b[0] for b in batch if b[0] is not None]
    return (torch.stack(good) if good else None), [b[1:] + (b[0] is not None,) for b in batch]


def _manifest(args: argparse.Namespace, source: Any, model: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "split": args.split,
        "model": resolved_location(args.model),
        "backbone": backbone_name(model),
        "dim": model.embed_dim,
        "resolution": args.resolution,
        "data": resolved_location(args.data),
        "num_images": len(source),
        "num_classes": len(source.classes) if source.classes else None,
        "classes": list(source.classes) if source.classes else None,
        "part_size": args.part_size,
        "seed": args.seed,
        "transform": "inception_crop(0.08-1, 3/4-4/3, flip)" if args.split == "train" else "resize+center_crop",
        "keys_sample": [source.key(i) for i in range(min(3, len(source)))],
        "provenance": provenance(config=vars(args), seed=args.seed, checkpoint=str(args.model)),
    }


_MUST_MATCH = ("model", "resolution", "num_images", "part_size", "seed", "split", "classes", "keys_sample", "dim")


def _check_or_write_manifest(split_dir: Path, manifest: dict[str, Any]) -> None:
    path = split_dir / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = [k for k in _MUST_MATCH if old.get(k) != manifest.get(k)
                and not (k == "model" and same_location(old.get(k), manifest[k]))]
        if diff:
            raise SystemExit(
                f"{split_dir} already holds features made with different settings ({', '.join(diff)}: "
                f"{[old.get(k) for k in diff]} vs now {[manifest.get(k) for k in diff]}); use another --out"
            )
        return
    split_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=1))


def extract_file_set(model: Any, source: Any, directory: Path, *, split: str, size: int, part_size: int,
                     batch_size: int, workers: int, seed: int, epoch: int, device: torch.device,
                     desc: str) -> int:
    """Extract the incomplete parts of one file set. Returns the number of parts written."""
    from tqdm import tqdm

    directory.mkdir(parents=True, exist_ok=True)
    n = len(source)
    todo = [p for p in range(num_parts(n, part_size)) if not part_complete(directory, p)]
    if not todo:
        return 0
    positions = [i for p in todo for i in range(p * part_size, min((p + 1) * part_size, n))]
    loader = DataLoader(_Images(source, positions, split, size, seed, epoch), batch_size=batch_size,
                        num_workers=workers, collate_fn=_collate, pin_memory=device.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    # Accumulate rows part by part; a batch may straddle two parts.
    rows: dict[int, list[tuple[torch.Tensor | None, int, str, int, str]]] = {p: [] for p in todo}
    sizes = {p: min((p + 1) * part_size, n) - p * part_size for p in todo}
    written = 0
    amp = device.type == "cuda"
    with tqdm(total=len(positions), desc=desc, unit="img", dynamic_ncols=True) as bar:
        for images, meta in loader:
            feats = None
            if images is not None:
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    tokens = model(images.to(device, non_blocking=True))
                feats = model.cls_of(tokens).float().cpu()  # [b, D], float32 storage
            j = 0
            for label, key, pos, reason, ok in meta:
                f = None
                if ok:
                    f = feats[j]
                    j += 1
                p = pos // part_size
                rows[p].append((f, label, key, pos, reason))
                if len(rows[p]) == sizes[p]:
                    _flush(directory, p, rows.pop(p), model.embed_dim)
                    written += 1
            bar.update(len(meta))
    return written


def _flush(directory: Path, part: int, rows: list[tuple[Any, ...]], dim: int) -> None:
    good = [r for r in rows if r[0] is not None]
    skipped = [{"key": r[2], "reason": r[4]} for r in rows if r[0] is None]
    for s in skipped:
        print(f"warning: skipped undecodable image {s['key']}: {s['reason']}", file=sys.stderr)
    cls = torch.stack([r[0] for r in good]) if good else torch.zeros(0, dim)
    write_part(directory, part, cls, torch.tensor([r[1] for r in good], dtype=torch.int64),
               torch.tensor([r[3] for r in good], dtype=torch.int64), [r[2] for r in good], skipped)


def _write_real(split_dir: Path, real_path: str, source: Any, num_classes: int | None) -> None:
    real = read_real_json(real_path, num_classes)
    keys = [source.key(i) for i in range(len(source))]
    aligned = align_real_labels(real, keys, source=real_path)
    atomic_write_text(split_dir / REAL_NAME, json.dumps({"source": str(real_path), "labels": dict(zip(keys, aligned))}))

EXAMPLE = f"""Example (one augmented pass of ImageNet train per run, then the validation set with ReaL labels):
    dinov3-probes extract --model {releases.TEACHER} --data /data/imagenet \\
        --split train --epochs 10 --out features/vitb16
    dinov3-probes extract --model {releases.TEACHER} --data /data/imagenet \\
        --split val --out features/vitb16 --real-labels real.json"""


def build_parser() -> argparse.ArgumentParser:
    from canvit_results.cli import HelpFormatter, default_workers, output_dir

    p = argparse.ArgumentParser(prog="dinov3-probes extract", description=__doc__, epilog=EXAMPLE,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help=f"DINOv3 hub id ({releases.TEACHER}) or a "
                   "directory in the transformers layout, or an official .pth")
    p.add_argument("--data", required=True, help="ImageFolder root (ROOT/<split>/<class>/<image> or the split "
                   "folder itself) or a Hugging Face dataset id / save_to_disk directory with a label column")
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--out", required=True, type=output_dir, help="features directory; writes OUT/<split>/")
    p.add_argument("--resolution", type=int, default=512, help="input side S (multiple of 16; default 512)")
    p.add_argument("--epochs", type=int_at_least(1, "--epochs"), default=1,
                   help="train: augmentation epochs (file sets, each a fresh Inception crop of every image) to extract")
    p.add_argument("--first-epoch", type=int_at_least(0, "--first-epoch"), default=0, help="train: index of the first augmentation epoch "
                   "(e.g. a job-array index with --epochs 1)")
    p.add_argument("--real-labels", default=None, help="val: ImageNet-ReaL real.json (list of label lists, sorted "
                   "filename order); without it ReaL top-1 is not reported")
    p.add_argument("--batch-size", type=int_at_least(1, "--batch-size"), default=128, help="images per forward")
    p.add_argument("--workers", type=int_at_least(0, "--workers"), default=default_workers(),
                   help="image decoding processes (default: min(8, CPUs) = %(default)s)")
    p.add_argument("--part-size", type=int_at_least(1, "--part-size"), default=10_000, help="images per stored part (the resume unit)")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available; default)")
    p.add_argument("--data-split", default=None, help="split name inside --data when it differs from --split "
                   "(e.g. 'validation' for a Hugging Face ImageNet dataset)")
    p.add_argument("--image-column", default=None, help="datasets: the image column (default: detected)")
    p.add_argument("--label-column", default=None, help="datasets: the label column (default: detected)")
    return p


@contextlib.contextmanager
def named(flag: str, value: object) -> Iterator[None]:
    """Loading what the user named failed: say which flag (the CLI prints the ValueError as one line)."""
    try:
        yield
    except (OSError, ValueError) as e:
        raise ValueError(f"{flag} {value!r}: {e}") from e


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = pick_device(args.device, parser=parser)
    if args.resolution < 16 or args.resolution % 16:
        raise SystemExit(f"--resolution {args.resolution}: must be a positive multiple of 16 (the patch size)")
    if args.split == "train" and args.real_labels:
        raise SystemExit("--real-labels applies to --split val only")
    if args.real_labels:  # fail before any compute on a missing or malformed file
        read_real_json(args.real_labels)

    from canvit_data import open_images
    from canvit_model import DINOv3

    with named("--data", args.data):
        source = open_images(args.data, split=args.data_split or args.split, labels="folder",
                             image_column=args.image_column, label_column=args.label_column)
    with named("--model", args.model):
        model = DINOv3.from_pretrained(args.model).to(device).eval()
    out = Path(args.out)
    split_dir = out / args.split
    _check_or_write_manifest(split_dir, _manifest(args, source, model))
    if args.real_labels:
        _write_real(split_dir, args.real_labels, source, len(source.classes) if source.classes else None)
    t0 = time.time()
    if args.split == "val":
        sets = [(split_dir, 0, "val")]
    else:
        sets = [(split_dir / f"aug{e:03d}", e, f"train aug{e:03d}")
                for e in range(args.first_epoch, args.first_epoch + args.epochs)]
    for directory, epoch, desc in sets:
        written = extract_file_set(model, source, directory, split=args.split, size=args.resolution,
                                   part_size=args.part_size, batch_size=args.batch_size, workers=args.workers,
                                   seed=args.seed, epoch=epoch, device=device, desc=desc)
        state = "complete (nothing to do)" if written == 0 else f"{written} part(s) written"
        print(f"{directory}: {state}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0
