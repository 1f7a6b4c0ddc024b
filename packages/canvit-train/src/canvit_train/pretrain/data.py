"""Where pretraining batches come from: the data issue's loaders, wired from the command line.

- shards:  `--features DIR --scenes SRC`  -> `canvit_train.data.loader.FeatureShardLoader`
           (precomputed DINOv3 targets, the paper's setup; `canvit-train export-teacher-features` makes DIR)
- online:  `--scenes SRC [--teacher ID]`   -> `canvit_train.data.loader.OnlineTeacherLoader`
           (the frozen teacher computes targets on the fly; no export needed)
- smoke:   `--preset smoke` with neither   -> `canvit_train.data.smoke.make_smoke_data` (generated scenes,
           a tiny random teacher), online
- `SyntheticBatches`: random scenes with targets that are a fixed function of them (tests, benchmark).

Validation scenes: `--val-features DIR --val-scenes SRC` (an export of held-out scenes), or in online
mode `--val-scenes SRC` through the same teacher. Without them there is no validation.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from canvit_model import releases

from .config import PretrainConfig

NO_DATA_HELP = f"""\
pretrain needs scenes and teacher targets, and none were given.

  The paper's setup (ImageNet-21k winter21_whole at 512 px, DINOv3 ViT-B/16 targets):
    1. export the teacher features once (resumable; ~8 H100-hours for 13.2M images):
         uv run --package canvit-train canvit-train export-teacher-features --scenes /data/in21k --out /data/in21k-dv3b16-512
    2. the per-position standardizers (first 4096 scenes; optional: pretrain fits them itself otherwise):
         uv run --package canvit-train canvit-train compute-standardizers /data/in21k-dv3b16-512 \
             --out /data/in21k-dv3b16-512/standardizers.safetensors
    3. train:
         uv run --package canvit-train pretrain --preset canvit-b --features /data/in21k-dv3b16-512 --scenes /data/in21k --compile

  Without an export, targets can come from the teacher on the fly (slower per step):
         uv run --package canvit-train pretrain --preset canvit-b --scenes /data/in21k
    (the teacher {releases.TEACHER} is gated on the Hugging Face hub: accept its
     licence there and `huggingface-cli login`, or pass --teacher /path/to/a/local/copy)

  To try the whole pipeline on this machine in a couple of minutes (generated scenes, tiny model):
         uv run --package canvit-train pretrain --preset smoke
"""


@dataclass
class DataSetup:
    """Where batches come from (built here from the command line by `build_data`, or by tests).

    train(start_position, rank, world_size) -> an iterable of TrainingBatch (this rank's rows of each
    global batch of cfg.batch_size, starting at global sample `start_position`).
    validation() -> one held-out TrainingBatch (all rows), or None.
    """

    train: Callable[[int, int, int], Iterable[Any]]
    teacher_dim: int
    teacher_grid: int
    validation: Callable[[], Any] | None = None
    standardizers: str | None = None  # a compute-standardizers file; None: fit on the stream's first scenes
    features: Callable[[], Iterable[tuple[Any, Any]]] | None = None  # (patches, cls) chunks in stored order
    description: dict[str, Any] = field(default_factory=dict)


class DataMissing(ValueError):
    """Raised (and printed without a traceback by the CLI) when no data source was given."""


def _training_batch(scenes: torch.Tensor, patches: torch.Tensor, cls: torch.Tensor, positions: torch.Tensor):
    from canvit_train.data.loader import TrainingBatch

    return TrainingBatch(scenes, patches, cls, positions)


class SyntheticBatches:
    """An infinite stream of random scenes whose targets are a fixed linear map of their 16-px patches.

    Sample k is a function of (seed, k) only, so rank slicing and resume behave like the real loaders
    (global batch j holds samples [start + jB, start + (j+1)B); rank r yields its B/W rows).
    `reuse=True` builds one batch and yields it forever (benchmarks: no data cost).
    """

    def __init__(self, scene_size: int, dim: int, batch_size: int, start_position: int = 0, rank: int = 0,
                 world_size: int = 1, *, seed: int = 0, reuse: bool = False, patch: int = 16) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must be divisible by world_size={world_size}")
        self.r, self.d, self.patch = scene_size, dim, patch
        self.global_b, self.local_b = batch_size, batch_size // world_size
        self.start, self.rank, self.seed, self.reuse = start_position, rank, seed, reuse
        g = torch.Generator().manual_seed(seed + 7919)
        self.proj = torch.randn(3 * patch * patch, dim, generator=g) / patch  # [3p², D]

    def sample(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        scene = torch.randn(3, self.r, self.r, generator=g)  # [3, R, R]
        p = self.patch
        tiles = scene.unfold(1, p, p).unfold(2, p, p)  # [3, G, G, p, p]
        grid = tiles.shape[1]
        flat = tiles.permute(1, 2, 0, 3, 4).reshape(grid * grid, 3 * p * p)  # [G², 3p²]
        patches = torch.tanh(flat @ self.proj)  # [G², D]
        return scene, patches, patches.mean(0)

    def batch(self, j: int):
        first = self.start + j * self.global_b + self.rank * self.local_b
        ks = range(first, first + self.local_b)
        s, p, c = zip(*(self.sample(k) for k in ks), strict=True)
        return _training_batch(torch.stack(s), torch.stack(p).half(), torch.stack(c).half(),
                               torch.tensor(list(ks), dtype=torch.int64))

    def __iter__(self) -> Iterator[Any]:
        if self.reuse:
            b = self.batch(0)
            while True:
                yield b
        j = 0
        while True:
            yield self.batch(j)
            j += 1


def synthetic_setup(cfg: PretrainConfig, *, dim: int = 32, seed: int = 0, reuse: bool = False,
                    validation: bool = True) -> DataSetup:
    """DataSetup over SyntheticBatches (tests and benchmarks)."""
    grid = cfg.scene_size // 16

    def train(start: int, rank: int, world: int) -> Any:
        return SyntheticBatches(cfg.scene_size, dim, cfg.batch_size, start, rank, world, seed=seed, reuse=reuse)

    def val() -> Any:
        return SyntheticBatches(cfg.scene_size, dim, cfg.validation_scenes, seed=seed + 1).batch(0)

    return DataSetup(train=train, teacher_dim=dim, teacher_grid=grid, validation=val if validation else None,
                     description={"source": "synthetic", "dim": dim, "seed": seed})


# -- real data -----------------------------------------------------------------------------------


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--features", metavar="DIR", help="teacher-feature export (canvit-train export-teacher-features)")
    g.add_argument("--scenes", "--images", dest="images", metavar="SRC", help="the scenes: an image folder, or a Hugging Face dataset id / save_to_disk directory")
    g.add_argument("--split", help="dataset split of --scenes (Hugging Face datasets)")
    g.add_argument("--image-column", help="image column of --scenes (Hugging Face datasets)")
    g.add_argument("--order", metavar="PATH", help="online mode: order.parquet of the scenes (default: a seeded "
                   "order, saved to RUN_DIR/order.parquet)")
    g.add_argument("--val-features", metavar="DIR", help="export of held-out scenes for validation")
    g.add_argument("--val-scenes", "--val-images", dest="val_images", metavar="SRC", help="held-out scenes for validation")
    g.add_argument("--standardizers", metavar="FILE", help="per-position statistics from `canvit-train "
                   "compute-standardizers` (default: FEATURES/standardizers.safetensors if present, else fitted "
                   "on the first --standardizer-samples scenes)")
    from canvit_results.cli import default_workers, int_at_least

    g.add_argument("--workers", type=int_at_least(0, "--workers"), default=default_workers(),
                   help="data loader worker processes (default: min(8, CPUs) = %(default)s)")
    g.add_argument("--synthetic", type=int, metavar="DIM", help="no data: random scenes with DIM-dim targets that are "
                   "a fixed function of them (pipeline checks, tests, benchmarks)")
    g.add_argument("--smoke-data", metavar="DIR", help="smoke: where to generate the scene set (default RUN_DIR/data)")


def _first(loader_iter: Any, n: int):
    """The first n rows of a loader as one batch."""
    from canvit_train.data.loader import TrainingBatch

    parts, got = [], 0
    for b in loader_iter:
        parts.append(b)
        got += len(b)
        if got >= n:
            break
    cat = lambda name: torch.cat([getattr(b, name) for b in parts])[:n]
    return TrainingBatch(cat("scenes"), cat("patches"), cat("cls"), cat("positions"))


def build_data(args: argparse.Namespace, cfg: PretrainConfig, run_dir: Path, device: torch.device,
               rank: int = 0) -> DataSetup:
    """The DataSetup for the command line (raises DataMissing with instructions when there is none)."""
    from canvit_train.data.loader import FeatureShardLoader, OnlineTeacherLoader
    from canvit_train.data.scenes import SceneOrder, open_scenes
    from canvit_train.data.shards import Manifest
    from canvit_train.data.teacher import load_teacher

    if getattr(args, "synthetic", None):
        return synthetic_setup(cfg, dim=args.synthetic, seed=cfg.seed)
    workers = args.workers
    images, features, val_images, val_features = args.images, args.features, args.val_images, args.val_features
    teacher_id = cfg.teacher
    desc: dict[str, Any] = {}
    if features is None and images is None:
        if cfg.teacher != "tiny-random":
            raise DataMissing(NO_DATA_HELP)
        from canvit_train.data.smoke import make_smoke_data

        size = (cfg.scene_size + cfg.scene_size // 4,) * 2
        smoke = make_smoke_data(Path(args.smoke_data) if args.smoke_data else run_dir / "data", 256, cfg.seed,
                                val_scenes=16, size=size, ext=".jpg", pipeline_extras=False)
        images, val_images, teacher_id, workers = str(smoke.scenes), str(smoke.val), str(smoke.teacher), 0
        desc["smoke_data"] = str(smoke.scenes.parent)
    if features is not None and images is None:
        raise DataMissing("--features needs --scenes: the scenes the export was made from (the student sees pixels)")
    kw = dict(split=args.split, image_column=args.image_column)
    for flag, value in (("--scenes", images), ("--features", features), ("--val-scenes", val_images),
                        ("--val-features", val_features), ("--standardizers", args.standardizers)):
        local = value is not None and (str(value).startswith(("/", ".", "~")) or flag.endswith(("features", "standardizers")))
        if local and not Path(value).expanduser().exists():
            raise DataMissing(f"pretrain: error: {flag} {value}: no such file or directory")

    if features is not None:
        manifest = Manifest.load(features)
        if manifest.resolution != cfg.scene_size:
            raise ValueError(f"--features {features} holds {manifest.resolution}px scenes but scene_size={cfg.scene_size}; "
                             f"pass --scene-size {manifest.resolution} or export at {cfg.scene_size}")
        dim, grid = manifest.dim, manifest.grid
        from .checks import export_record

        desc.update(mode="shards", features=str(features), images=str(images), **export_record(features))

        def train(start: int, r: int, w: int) -> Any:
            return FeatureShardLoader(features, images, cfg.batch_size, start_position=start, num_workers=workers,
                                      rank=r, world_size=w, **kw)

        teacher = None
        default_stats = Path(features) / "standardizers.safetensors"
        standardizers = args.standardizers or (str(default_stats) if default_stats.is_file() else None)

        def shard_features() -> Any:
            from canvit_train.data.standardizers import iter_shard_features

            return iter_shard_features(features, checksum=True)
    else:
        standardizers, shard_features = args.standardizers, None
        teacher = load_teacher(teacher_id, device)
        dim, grid = teacher.cfg.dim, cfg.scene_size // teacher.cfg.patch_size
        if args.order:
            order: Any = args.order
        else:
            order_path = run_dir / "order.parquet"
            if order_path.exists():
                order = str(order_path)
            else:
                order = SceneOrder.from_source(open_scenes(images, **kw), cfg.seed)
                if rank == 0:
                    run_dir.mkdir(parents=True, exist_ok=True)
                    order.save(order_path)
        desc.update(mode="online", images=str(images), teacher=str(teacher_id),
                    order=str(args.order or run_dir / "order.parquet"))

        def train(start: int, r: int, w: int) -> Any:
            return OnlineTeacherLoader(teacher, images, order, cfg.batch_size, start_position=start, device=device,
                                       rank=r, world_size=w, num_workers=workers, resolution=cfg.scene_size, **kw)

    validation = None  # no held-out scenes: no periodic validation
    if val_features is not None:
        if val_images is None:
            raise DataMissing("--val-features needs --val-scenes (the held-out scenes the export was made from)")

        def from_shards() -> Any:
            return _first(iter(FeatureShardLoader(val_features, val_images, cfg.validation_scenes, num_workers=0)),
                          cfg.validation_scenes)
        validation = from_shards
    elif val_images is not None and teacher is not None:
        val_source = open_scenes(val_images)

        def online() -> Any:
            loader = OnlineTeacherLoader(teacher, val_source, SceneOrder.identity(val_source), cfg.validation_scenes,
                                         device=device, num_workers=0, resolution=cfg.scene_size)
            return _first(iter(loader), cfg.validation_scenes)
        validation = online
    elif val_images is not None:
        raise DataMissing("--val-scenes with --features needs --val-features (their exported targets)")
    desc["validation"] = str(val_features or val_images or "none")
    desc["standardizers"] = standardizers or "fitted at the start"
    return DataSetup(train=train, teacher_dim=dim, teacher_grid=grid, validation=validation,
                     standardizers=standardizers, features=shard_features, description=desc)
