"""`canvit-train export-teacher-features`: precompute frozen-DINOv3 targets into safetensors shards.

Per image of the global seeded order: patches [G², D] and CLS [D] after the final LayerNorm (registers
dropped), stored float16, with the image's position. Layout and manifest: see `shards.py`.

Resumable and launcher-agnostic: a shard is complete once its record (`shards/NNNNN.json`) exists and
the shard file has the recorded size; anything else is redone. Worker I of N (`--num-workers N
--worker-index I`, or RANK / WORLD_SIZE under torchrun) owns shards s with s % N == I, so workers write
disjoint files without talking to each other; each rewrites `manifest.json` from the records on disk when
it finishes (atomic), and the last one to finish leaves the complete manifest.

Python API: `export_features(ExportConfig(...))` returns the merged `Manifest`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from canvit_model import releases

from .scenes import ORDER_FILE, SceneOrder, open_scenes, try_load_scene
from .shards import (
    EXPORT_FILE,
    FORMAT,
    SHARD_DIR,
    Manifest,
    ShardError,
    merge_manifest,
    num_shards,
    read_json,
    record_path,
    sha256_file,
    shard_path,
    shard_range,
    write_json,
    write_shard,
)
from .teacher import DEFAULT_TEACHER, load_teacher, teacher_targets

IN21K_IMAGES = 13_200_000  # the paper's ImageNet-21k count, for the storage estimate
IDENTITY = (
    "format",
    "teacher",
    "scenes",
    "split",
    "image_column",
    "resolution",
    "grid",
    "dim",
    "dtype",
    "shard_size",
    "seed",
    "num_images",
)


@dataclass
class ExportConfig:
    teacher: str
    scenes: str
    out: str
    shard_size: int = 4096
    resolution: int = 512
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    split: str | None = None
    image_column: str | None = None
    streaming: bool = False
    num_workers: int | None = None  # export processes (machines / GPUs); None: WORLD_SIZE or 1
    worker_index: int | None = None  # None: RANK or 0
    loader_workers: int = 4  # image-decoding processes per export process
    results: str | None = "results"
    progress: bool = True

    def __post_init__(self) -> None:
        for name, lo in (("shard_size", 1), ("resolution", 16), ("batch_size", 1), ("loader_workers", 0), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"--{name.replace('_', '-')}={v!r} must be an int >= {lo}")
        if self.num_workers is None:
            self.num_workers = int(os.environ.get("WORLD_SIZE", 1))
        if self.worker_index is None:
            self.worker_index = int(os.environ.get("RANK", 0)) if self.num_workers > 1 else 0
        if self.num_workers < 1 or not 0 <= self.worker_index < self.num_workers:
            raise ValueError(f"--worker-index={self.worker_index} must be in [0, --num-workers={self.num_workers})")
        if self.device == "auto":
            local = int(os.environ.get("LOCAL_RANK", 0))
            self.device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"


def teacher_shape(teacher: str) -> tuple[int, int]:
    """(patch size, dim) of a teacher from its config.json only (no weights), for --dry-run. The released
    DINOv3 hub ids are known offline."""
    from canvit_model.config import backbone_config
    from canvit_model import io
    from canvit_model.convert import config_from_hf
    from canvit_model.dinov3 import HUB_REPOS

    known = {repo: name for name, repo in HUB_REPOS.items()}
    if teacher in known:  # no hub request: offline, it would spend ~30 s in retries before falling back
        cfg = backbone_config(known[teacher])
    else:
        cfg, _ = config_from_hf(io.read_json(io.resolve_files(teacher, [io.CONFIG_NAME])[io.CONFIG_NAME]))
    return cfg.patch_size, cfg.dim


def bytes_per_image(grid: int, dim: int) -> int:
    """float16 patches + float16 CLS + int64 position."""
    return grid * grid * dim * 2 + dim * 2 + 8


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def _check_resolution(resolution: int, patch: int) -> int:
    if resolution % patch:
        raise ValueError(f"--resolution={resolution} must be a multiple of the teacher's patch size {patch}")
    return resolution // patch


class _Images(torch.utils.data.Dataset):
    """Global position -> (scene or empty, position, failure reason or '')."""

    def __init__(self, source: Any, order: SceneOrder, resolution: int) -> None:
        self.source, self.indices, self.resolution = source, order.indices, resolution

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, p: int) -> tuple[torch.Tensor, int, str]:
        x, reason = try_load_scene(self.source, int(self.indices[p]), self.resolution)
        if x is None:
            return torch.zeros(0), p, reason or "unknown"
        return x, p, ""


def _collate(items: list[tuple[torch.Tensor, int, str]]) -> list[tuple[torch.Tensor, int, str]]:
    return items


def _prepare(cfg: ExportConfig, source: Any, grid: int, dim: int) -> SceneOrder:
    """Write (or check) export.json and order.parquet: the identity every worker must share (local paths
    resolved, so the same export resumes from any working directory)."""
    from canvit_results.cli import resolved_location, same_location

    out = Path(cfg.out)
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    identity = {
        "format": FORMAT,
        "teacher": resolved_location(cfg.teacher),
        "scenes": resolved_location(cfg.scenes),
        "split": cfg.split,
        "image_column": cfg.image_column,
        "resolution": cfg.resolution,
        "grid": grid,
        "dim": dim,
        "dtype": "float16",
        "shard_size": cfg.shard_size,
        "seed": cfg.seed,
        "num_images": len(source),
    }
    path = out / EXPORT_FILE
    if path.is_file():
        old = read_json(path)
        same = lambda k: old.get(k) == identity[k] or (  # noqa: E731 - a relative path stored by older versions
            k in ("teacher", "scenes") and same_location(old.get(k), identity[k]))
        diff = {k: (old.get(k), identity[k]) for k in IDENTITY if not same(k)}
        if diff:
            raise ValueError(
                f"{out} already holds an export with other settings: "
                + ", ".join(f"{k}: stored {a!r}, requested {b!r}" for k, (a, b) in diff.items())
                + ". Use another --out, or the same settings to resume."
            )
    else:
        from canvit_results.provenance import code_version

        write_json(
            path,
            {
                **identity,
                "batch_size": cfg.batch_size,  # informational: another batch size resumes validly, not bit-identically
                "code": code_version(Path(__file__)),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    order = SceneOrder.identity(source) if cfg.streaming else SceneOrder.from_source(source, cfg.seed)
    opath = out / ORDER_FILE
    if opath.is_file():
        stored = SceneOrder.load(opath)
        if not stored.equals(order):
            raise ValueError(
                f"{opath} does not match the order of {cfg.scenes!r} with --seed {cfg.seed}: "
                "the scene source changed since the export started"
            )
    else:
        order.save(opath)
    return order


def _shard_done(out: Path, shard: int) -> bool:
    rec_p, sp = record_path(out, shard), shard_path(out, shard)
    if not (rec_p.is_file() and sp.is_file()):
        return False
    try:
        return read_json(rec_p)["bytes"] == sp.stat().st_size
    except (ShardError, KeyError):
        return False


def _clean_partial(out: Path, shard: int) -> None:
    """Remove a killed attempt's leftovers for a shard this worker owns."""
    for p in (out / SHARD_DIR).glob(f".{shard:05d}.*.tmp"):
        p.unlink(missing_ok=True)
    record_path(out, shard).unlink(missing_ok=True)
    shard_path(out, shard).unlink(missing_ok=True)


class _ShardBuffer:
    """One shard's rows as they arrive: preallocated float16 [shard_size, G², D] (no concatenation copy)."""

    def __init__(self, shard: int, start: int, end: int, grid: int, dim: int) -> None:
        self.shard, self.start, self.end = shard, start, end
        self.patches = torch.empty(end - start, grid * grid, dim, dtype=torch.float16)
        self.cls = torch.empty(end - start, dim, dtype=torch.float16)
        self.positions: list[int] = []
        self.failed: list[dict[str, Any]] = []
        self.seen = 0
        self.t0 = time.perf_counter()

    def add(self, patches: torch.Tensor, cls: torch.Tensor, positions: list[int]) -> None:
        n, r = len(positions), len(self.positions)
        self.patches[r : r + n] = patches.to(torch.float16).cpu()
        self.cls[r : r + n] = cls.to(torch.float16).cpu()
        self.positions += positions

    @property
    def done(self) -> bool:
        return self.seen == self.end - self.start


def _write_shard(cfg: ExportConfig, buf: _ShardBuffer) -> dict[str, Any]:
    """Write the shard file atomically, then its record (whose presence marks the shard complete)."""
    out = Path(cfg.out)
    rows = len(buf.positions)
    path = shard_path(out, buf.shard)
    meta = {
        "format": FORMAT,
        "shard": str(buf.shard),
        "start": str(buf.start),
        "end": str(buf.end),
        "teacher": cfg.teacher,
        "resolution": str(cfg.resolution),
    }
    write_shard(path, buf.patches[:rows], buf.cls[:rows], torch.tensor(buf.positions, dtype=torch.int64), meta)
    record = {
        "shard": buf.shard,
        "file": f"{SHARD_DIR}/{path.name}",
        "start": buf.start,
        "end": buf.end,
        "rows": rows,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "failed": buf.failed,
        "seconds": round(time.perf_counter() - buf.t0, 3),
        "worker": f"{cfg.worker_index}/{cfg.num_workers}",
    }
    write_json(record_path(out, buf.shard), record)
    return record


def export_shards(
    cfg: ExportConfig, teacher: Any, source: Any, order: SceneOrder, shards: list[int], bar: Any = None
) -> list[dict[str, Any]]:
    """Compute and write `shards`. One DataLoader streams all of them (decoding runs ahead across shard
    boundaries); a batch never spans two shards, so every shard's batches, hence its bytes, depend
    only on the shard. Each finished shard is written by a background thread while the next computes."""
    from concurrent.futures import Future, ThreadPoolExecutor

    grid, dim = cfg.resolution // teacher.cfg.patch_size, teacher.cfg.dim
    ranges = {s: shard_range(s, cfg.shard_size, len(order)) for s in shards}
    batches: list[list[int]] = []  # global positions, never across a shard boundary
    for s in shards:
        first, end = ranges[s]
        batches += [list(range(b, min(b + cfg.batch_size, end))) for b in range(first, end, cfg.batch_size)]
    dl = torch.utils.data.DataLoader(
        _Images(source, order, cfg.resolution),
        batch_sampler=batches,
        num_workers=cfg.loader_workers,
        collate_fn=_collate,
        pin_memory=torch.device(cfg.device).type == "cuda",
    )
    records: list[dict[str, Any]] = []
    pending: Future | None = None
    buf: _ShardBuffer | None = None
    with ThreadPoolExecutor(max_workers=1) as writer:
        try:
            for items in dl:
                p0 = items[0][1]
                if buf is None:
                    s = p0 // cfg.shard_size
                    buf = _ShardBuffer(s, *ranges[s], grid, dim)
                ok = [it for it in items if not it[2]]
                buf.failed += [{"position": p, "key": order.key(p), "reason": r} for _, p, r in items if r]
                if ok:
                    scenes = torch.stack([x for x, _, _ in ok]).to(cfg.device, non_blocking=True)
                    pt, ct = teacher_targets(teacher, scenes)
                    buf.add(pt, ct, [p for _, p, _ in ok])
                buf.seen += len(items)
                if bar is not None:
                    bar.update(len(items))
                if buf.done:
                    if pending is not None:
                        records.append(pending.result())
                    pending, buf = writer.submit(_write_shard, cfg, buf), None
        finally:
            if pending is not None:  # a finished shard is worth keeping even if the next one failed
                records.append(pending.result())
    return records


def export_features(cfg: ExportConfig) -> Manifest:
    """Run (or resume) this worker's part of an export; returns the merged manifest."""
    source = open_scenes(cfg.scenes, split=cfg.split, image_column=cfg.image_column, streaming=cfg.streaming)
    teacher = load_teacher(cfg.teacher, cfg.device)
    grid = _check_resolution(cfg.resolution, teacher.cfg.patch_size)
    order = _prepare(cfg, source, grid, teacher.cfg.dim)
    out = Path(cfg.out)
    n = num_shards(len(order), cfg.shard_size)
    mine = [s for s in range(n) if s % cfg.num_workers == cfg.worker_index]
    todo = [s for s in mine if not _shard_done(out, s)]
    total = sum(e - b for b, e in (shard_range(s, cfg.shard_size, len(order)) for s in todo))
    print(
        f"export: {len(order)} images, {n} shards of {cfg.shard_size}; worker {cfg.worker_index}/{cfg.num_workers} "
        f"owns {len(mine)}, {len(mine) - len(todo)} already complete, {len(todo)} to do ({total} images) "
        f"on {cfg.device}",
        file=sys.stderr,
    )
    from tqdm import tqdm

    bar = tqdm(
        total=int(total),
        unit="img",
        desc=f"export w{cfg.worker_index}",
        disable=not cfg.progress,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    for s in todo:
        _clean_partial(out, s)
    try:
        export_shards(cfg, teacher, source, order, todo, bar)
    finally:
        bar.close()
    manifest = merge_manifest(out)
    if manifest.complete and manifest.num_rows == 0:
        raise EmptyExport(f"--scenes {cfg.scenes}: none of the {manifest.num_images} images decoded, so the export "
                          f"{out} holds 0 rows (first failure: {manifest.failed[0]['key']}: "
                          f"{manifest.failed[0]['reason']})" if manifest.failed else f"{out}: 0 rows")
    if manifest.complete:
        _record_results(cfg, manifest)
    return manifest


class EmptyExport(ShardError):
    """Every image failed: a complete export with nothing in it is an error, not a result."""


def _record_results(cfg: ExportConfig, manifest: Manifest) -> None:
    if not cfg.results:
        return
    import pandas as pd
    from canvit_results import RunExistsError, is_complete, provenance, write_run

    name = lambda s: re.sub(r"[^A-Za-z0-9._=+-]+", "_", str(s).strip("/")).strip("._") or "x"  # noqa: E731
    key = f"{name(Path(cfg.scenes).name or cfg.scenes)}-{name(Path(cfg.teacher).name or cfg.teacher)}-{cfg.resolution}"
    if is_complete(cfg.results, "teacher-export", key):
        return
    recs = [manifest.records[s] for s in sorted(manifest.records)]
    table = pd.DataFrame(
        {
            "shard": [r["shard"] for r in recs],
            "rows": [r["rows"] for r in recs],
            "seconds": [r["seconds"] for r in recs],
        }
    )
    prov = provenance(
        config=asdict(cfg),
        seed=cfg.seed,
        checkpoint=cfg.teacher,
        device=cfg.device,
        wall_time_s=float(table["seconds"].sum()),
        num_failed=len(manifest.failed),
    )
    try:
        write_run(
            cfg.results,
            "teacher-export",
            key,
            table,
            prov,
            extra={"teacher": cfg.teacher, "resolution": cfg.resolution, "out": str(Path(cfg.out).resolve())},
        )
    except RunExistsError:  # another worker finished at the same moment
        pass


def dry_run(cfg: ExportConfig) -> str:
    source = open_scenes(cfg.scenes, split=cfg.split, image_column=cfg.image_column, streaming=cfg.streaming)
    patch, dim = teacher_shape(cfg.teacher)
    grid = _check_resolution(cfg.resolution, patch)
    per = bytes_per_image(grid, dim)
    n = len(source)
    lines = [
        f"scenes:     {cfg.scenes} ({n} images)",
        f"teacher:    {cfg.teacher} (patch {patch}, dim {dim}); resolution {cfg.resolution} -> grid {grid}x{grid}",
        f"per image:  {human(per)} ({per} bytes: float16 patches [{grid * grid}, {dim}] + float16 cls [{dim}]"
        " + int64 position)",
        f"per shard:  {human(per * cfg.shard_size)} ({cfg.shard_size} images)",
        f"total:      {human(per * n)} in {num_shards(n, cfg.shard_size)} shards",
        f"for {IN21K_IMAGES / 1e6:.1f}M images (ImageNet-21k): {human(per * IN21K_IMAGES)} "
        f"in {math.ceil(IN21K_IMAGES / cfg.shard_size)} shards",
    ]
    return "\n".join(lines)


EXAMPLE = f"""examples:
  # ImageNet-21k on one GPU (resumable: re-run the same command after an interruption)
  canvit-train export-teacher-features --teacher {releases.TEACHER} \\
      --scenes /data/imagenet21k/winter21_whole --out /features/in21k-vitb16-512 --device cuda
  # 8 GPUs on one machine (each rank exports shards s % 8 == rank), then check
  torchrun --nproc-per-node 8 -m canvit_train.data.export --teacher ... --scenes ... --out ...
  canvit-train verify-features /features/in21k-vitb16-512
  # storage estimate only
  canvit-train export-teacher-features --scenes /data/imagenet21k/winter21_whole --out x --dry-run
"""


def build_parser() -> argparse.ArgumentParser:
    from canvit_results.cli import HelpFormatter, default_workers, output_dir, store_dir

    ap = argparse.ArgumentParser(
        prog="canvit-train export-teacher-features",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE,
        formatter_class=HelpFormatter,
    )
    ap.add_argument(
        "--teacher",
        default=DEFAULT_TEACHER,
        help="hub id or local directory (transformers DINOv3 layout); default %(default)s",
    )
    ap.add_argument(
        "--scenes", required=True, help="image folder (recursive) or Hugging Face dataset (hub id or local directory)"
    )
    ap.add_argument("--out", required=True, type=output_dir, help="export directory (shards, order.parquet, manifest.json)")
    ap.add_argument("--split", default=None, help="dataset split (datasets only)")
    ap.add_argument("--image-column", default=None, help="dataset image column (default: auto-detected)")
    ap.add_argument(
        "--streaming", action="store_true", help="stream a hub dataset (no permutation: the stream's own order)"
    )
    ap.add_argument("--shard-size", type=int, default=4096, help="images per shard file (the paper: 4096)")
    ap.add_argument("--resolution", type=int, default=512,
                    help="scene side in px after Resize + CenterCrop; a multiple of the teacher's patch size")
    ap.add_argument("--batch-size", type=int, default=64, help="images per teacher forward")
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu; default: cuda:$LOCAL_RANK when available")
    ap.add_argument("--seed", type=int, default=0, help="seed of the global permutation")
    ap.add_argument(
        "--num-workers", type=int, default=None, help="export processes sharing the work (default $WORLD_SIZE or 1)"
    )
    ap.add_argument("--worker-index", type=int, default=None, help="this process's index (default $RANK or 0)")
    ap.add_argument("--loader-workers", type=int, default=default_workers(),
                    help="image-decoding processes per export process (default: min(8, CPUs) = %(default)s)")
    ap.add_argument("--results", type=store_dir, default="results", help="results store for the export's provenance ('' to skip)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--dry-run", action="store_true", help="print image count and storage estimate, then exit")
    return ap


def main(argv: list[str] | None = None) -> int:
    from canvit_results.cli import pick_device

    ap = build_parser()
    args = ap.parse_args(argv)
    pick_device(args.device, parser=ap)  # a bad --device fails now, not after the teacher has loaded
    try:
        cfg = ExportConfig(
            teacher=args.teacher,
            scenes=args.scenes,
            out=args.out,
            shard_size=args.shard_size,
            resolution=args.resolution,
            batch_size=args.batch_size,
            device=args.device,
            seed=args.seed,
            split=args.split,
            image_column=args.image_column,
            streaming=args.streaming,
            num_workers=args.num_workers,
            worker_index=args.worker_index,
            loader_workers=args.loader_workers,
            results=args.results or None,
            progress=not args.no_progress,
        )
        if args.dry_run:
            print(dry_run(cfg))
            return 0
        m = export_features(cfg)
    except (ValueError, OSError) as e:  # ShardError is a ValueError
        print(f"canvit-train export-teacher-features: error: {e}", file=sys.stderr)
        return 2
    state = "complete" if m.complete else f"{len(m.missing_shards)} shards still missing (other workers?)"
    print(
        f"{m.root}: {len(m.records)}/{m.num_shards} shards, {m.num_rows} rows, {len(m.failed)} failed images; {state}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
