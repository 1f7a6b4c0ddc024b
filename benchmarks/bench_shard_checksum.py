"""What verifying each teacher-feature shard's sha256 when the training loader first opens it costs.

    uv run python benchmarks/bench_shard_checksum.py                  # ~1 min on 2 cores
    uv run python benchmarks/bench_shard_checksum.py --images 256 --rounds 5 --num-workers 2

1. sha256 throughput of a shard file (`canvit_train.data.shards.sha256_file`, file in the page cache): GB/s,
   the best of `--rounds`; from it, the seconds one paper-sized shard (4096 scenes x [1024, 768] float16,
   6.4 GB) takes on one core.
2. One epoch of `FeatureShardLoader` (batch `--batch`, 512 px JPEG decode + preprocess, ViT-B-shaped float16
   targets memory-mapped from the shards) with `verify_on_open=True` (the default) and `False`, alternating
   in one process, `--rounds` times each: seconds per epoch, and the ratio on / off (min and median).

Nothing touches the network; everything is written under a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import write_fake_export, write_jpegs  # noqa: E402

PAPER_SHARD_BYTES = 4096 * (1024 * 768 * 2 + 768 * 2 + 8)  # float16 patches + cls + int64 position


def epoch_seconds(feats: Path, scenes: Path, batch: int, workers: int, verify: bool) -> float:
    from canvit_train.data.loader import FeatureShardLoader

    loader = FeatureShardLoader(feats, scenes, batch_size=batch, num_workers=workers, verify_on_open=verify)
    n = loader.samples_per_epoch // batch
    t0 = time.perf_counter()
    it = iter(loader)
    for _ in range(n):
        next(it)
    dt = time.perf_counter() - t0
    del it
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=128, help="scenes in the export (default 128)")
    ap.add_argument("--shard-size", type=int, default=64, help="scenes per shard (default 64: ~100 MB shards)")
    ap.add_argument("--batch", type=int, default=16, help="loader batch (default 16)")
    ap.add_argument("--num-workers", type=int, default=0, help="loader workers (default 0: one process)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = ap.parse_args()
    from canvit_results import cpu_name
    from canvit_train.data.shards import sha256_file, shard_path

    tmp = Path(tempfile.mkdtemp(prefix="bench-sha-"))
    try:
        print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, load avg before {os.getloadavg()[0]:.1f}")
        scenes, feats = tmp / "scenes", tmp / "features"
        write_jpegs(scenes, args.images, seed=2)
        write_fake_export(feats, scenes, args.shard_size, 512, 32, 768)
        shard = shard_path(feats, 0)
        size = shard.stat().st_size
        sha256_file(shard)  # page cache
        rates = []
        for _ in range(max(3, args.rounds)):
            t0 = time.perf_counter()
            sha256_file(shard)
            rates.append(size / (time.perf_counter() - t0) / 1e9)
        best = max(rates)
        print(f"sha256: {size / 1e6:.0f} MB shard, best {best:.2f} GB/s (median {statistics.median(rates):.2f}); "
              f"a paper shard ({PAPER_SHARD_BYTES / 1e9:.2f} GB) takes {PAPER_SHARD_BYTES / 1e9 / best:.1f} s "
              "on one core")
        on, off = [], []
        epoch_seconds(feats, scenes, args.batch, args.num_workers, False)  # warm caches
        for _ in range(args.rounds):
            off.append(epoch_seconds(feats, scenes, args.batch, args.num_workers, False))
            on.append(epoch_seconds(feats, scenes, args.batch, args.num_workers, True))
        ratios = [a / b for a, b in zip(on, off, strict=True)]
        print(f"loader epoch ({args.images} scenes, {args.images // args.shard_size} shards, batch {args.batch}, "
              f"{args.num_workers} workers): verify off min {min(off):.2f} s median {statistics.median(off):.2f} s; "
              f"on min {min(on):.2f} s median {statistics.median(on):.2f} s; on/off min-ratio "
              f"{min(on) / min(off):.3f}, median of per-round ratios {statistics.median(ratios):.3f}; "
              f"load avg after {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
