"""Teacher-feature export throughput and training-loader throughput on this machine.

    uv run python benchmarks/bench_data.py                         # defaults below (~1-2 min on 2 cores)
    uv run python benchmarks/bench_data.py --export-images 64 --loader-batches 40 --num-workers 8

1. Export: `export_features` on generated JPEG scenes (varied sizes around 500-700 px) with a random
   DINOv3 ViT-B/16 (`--arch`) at `--resolution` (default 512): images/s end to end (decode, preprocess,
   teacher forward, float16 shard write with sha256). The first batch is included (no warm-up).
2. Loader: `FeatureShardLoader` at batch 64, 512 px, over synthetic ViT-B-shaped shards ([N, 1024, 768]
   float16, random values; the loader never looks at their values) and generated JPEG scenes:
   sustained batches/s after `--warmup` batches, with `--num-workers` DataLoader workers.

Nothing here touches the network; everything is written under a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_jpegs(root: Path, n: int, seed: int) -> None:
    from canvit_data.synthetic import draw_scene

    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(480, 720)), int(rng.integers(480, 720))
        path = root / f"part_{i % 4}" / f"img_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_scene(rng, h, w).image.save(path, quality=90)


def bench_export(tmp: Path, args: argparse.Namespace) -> float:
    from canvit_model import DINOv3
    from canvit_train.data.export import ExportConfig, export_features

    scenes = tmp / "export-scenes"
    write_jpegs(scenes, args.export_images, seed=1)
    torch.manual_seed(0)
    DINOv3(args.arch).save_pretrained(tmp / "teacher")
    cfg = ExportConfig(
        teacher=str(tmp / "teacher"),
        scenes=str(scenes),
        out=str(tmp / "export"),
        shard_size=args.export_images,
        resolution=args.resolution,
        batch_size=args.export_batch,
        device="cpu",
        loader_workers=args.num_workers,
        results=None,
        progress=False,
    )
    t0 = time.perf_counter()
    m = export_features(cfg)
    dt = time.perf_counter() - t0
    assert m.complete and m.num_rows == args.export_images
    return args.export_images / dt


def write_fake_export(root: Path, scenes: Path, shard_size: int, resolution: int, grid: int, dim: int) -> None:
    """A ViT-B-shaped export (random float16 targets) over `scenes`, in the real layout."""
    from canvit_data import open_images
    from canvit_train.data.scenes import SceneOrder
    from canvit_train.data.shards import (
        EXPORT_FILE,
        FORMAT,
        SHARD_DIR,
        merge_manifest,
        num_shards,
        record_path,
        sha256_file,
        shard_path,
        shard_range,
        write_json,
        write_shard,
    )

    src = open_images(scenes)
    (root / SHARD_DIR).mkdir(parents=True)
    write_json(
        root / EXPORT_FILE,
        {
            "format": FORMAT,
            "teacher": "random",
            "scenes": str(scenes),
            "split": None,
            "image_column": None,
            "resolution": resolution,
            "grid": grid,
            "dim": dim,
            "dtype": "float16",
            "shard_size": shard_size,
            "seed": 0,
            "num_images": len(src),
        },
    )
    SceneOrder.from_source(src, 0).save(root)
    g = torch.Generator().manual_seed(0)
    for s in range(num_shards(len(src), shard_size)):
        a, b = shard_range(s, shard_size, len(src))
        n = b - a
        path = shard_path(root, s)
        write_shard(
            path,
            torch.randn(n, grid * grid, dim, generator=g).half(),
            torch.randn(n, dim, generator=g).half(),
            torch.arange(a, b, dtype=torch.int64),
            {"format": FORMAT},
        )
        write_json(
            record_path(root, s),
            {
                "shard": s,
                "file": f"{SHARD_DIR}/{path.name}",
                "start": a,
                "end": b,
                "rows": n,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "failed": [],
                "seconds": 0.0,
                "worker": "0/1",
            },
        )
    merge_manifest(root)


def bench_loader(tmp: Path, args: argparse.Namespace) -> tuple[float, float]:
    from canvit_train.data.loader import FeatureShardLoader

    scenes = tmp / "loader-scenes"
    write_jpegs(scenes, args.loader_images, seed=2)
    feats = tmp / "fake-features"
    grid = args.resolution // 16
    write_fake_export(feats, scenes, args.loader_shard_size, args.resolution, grid, 768)
    loader = FeatureShardLoader(feats, scenes, batch_size=64, num_workers=args.num_workers)
    it = iter(loader)
    for _ in range(args.warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.loader_batches):
        b = next(it).to("cpu")
        assert b.patches.shape == (64, grid * grid, 768)
    dt = time.perf_counter() - t0
    return args.loader_batches / dt, 64 * args.loader_batches / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example (benchmarks/RESULTS.md):\n  uv run python benchmarks/bench_data.py --export-images 8 --loader-batches 6")
    ap.add_argument("--arch", default="vitb16")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--export-images", type=int, default=16)
    ap.add_argument("--export-batch", type=int, default=8)
    ap.add_argument("--loader-images", type=int, default=256)
    ap.add_argument("--loader-shard-size", type=int, default=128)
    ap.add_argument("--loader-batches", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--skip-export", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        print(
            f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, load avg {os.getloadavg()[0]:.1f}"
        )
        if not args.skip_export:
            ips = bench_export(tmp, args)
            print(
                f"export  {args.arch} @ {args.resolution}px, batch {args.export_batch}, {args.num_workers} decode "
                f"workers, {args.export_images} images: {ips:.2f} images/s"
            )
        bps, sps = bench_loader(tmp, args)
        print(
            f"loader  batch 64 @ {args.resolution}px, {args.num_workers} workers, {args.loader_batches} batches after "
            f"{args.warmup} warm-up: {bps:.2f} batches/s ({sps:.0f} scenes/s)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
