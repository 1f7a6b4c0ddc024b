"""Training-time data: aligned (scene, teacher target) batches from shards or from an online teacher.

Public API (the pretraining loop uses exactly this):

    batch: TrainingBatch
        scenes    [B, 3, R, R] float32, ImageNet-normalized (Resize short side + CenterCrop, no augmentation)
        patches   [B, G², D]   raw teacher patch targets (float16 from shards, teacher dtype online)
        cls       [B, D]       raw teacher CLS targets
        positions [B] int64    global order positions of the scenes (order.parquet)
        batch.to(device)       non-blocking transfer, then the cast to float32 happens ON the device
                               (a host-side fp16->fp32 cast of a [64, 1024, 768] batch stalls ~190 ms)

    FeatureShardLoader(features_dir, scenes_source, batch_size, start_position=0, num_workers=8,
                       rank=0, world_size=1, checksum=False)
    OnlineTeacherLoader(teacher, scenes_source, order, batch_size, start_position=0, device="cpu",
                        rank=0, world_size=1, num_workers=8, resolution=512)

Both are infinite iterables (`iter(loader)` / `next(...)`), never reshuffle, and define the same stream:

- The stream is the global order (order.parquet) without the images the export recorded as failed,
  repeated forever (wrapping after the last position). Sample k of the stream (k = 0, 1, 2, ...) is
  position `valid_position(k mod n_valid, failed)`.
- `batch_size` is the GLOBAL batch size B. Global batch j holds samples [start + jB, start + (j+1)B);
  rank r of `world_size` W yields its slice [r·B/W, (r+1)·B/W) of it (B must divide by W), so the
  union over ranks is exactly the batch one process would see.
- Exact resume: `start_position` = number of samples already consumed = step × B (global). The stream
  from there equals the uninterrupted stream from the same sample on, mid-shard included.
- Workers (`num_workers`) produce whole batches round-robin (worker w makes batches w, w+n, ...);
  torch's DataLoader returns them in batch order, so the stream does not depend on the worker count.
- An image that fails to decode at training time (it decoded at export time) is replaced by the next
  sample of the stream, with a warning, so batch sizes and alignment stay fixed and resume stays exact.

The shard loader checks every shard listed by the manifest at construction (exists, size; sha256 too
with `checksum=True`, all shards up front) and, when it opens a shard, its header, its `position`
column and NaN/inf in the rows it reads. With `verify_on_open=True` (the default) no batch is built
from a shard before its sha256 has matched the manifest: one background thread of the main process
hashes the shards in the order the stream reaches them, ahead of it (each once per run, whatever the
number of workers), and a worker opening a shard waits for its verdict. A problem raises `ShardError`
naming the file before any batch of it is returned (cost: benchmarks/RESULTS.md). The online loader runs the frozen teacher
in the main process on `device` (bf16 autocast on CUDA, fp32 on CPU, no grad); its targets equal the
shards' up to the float16 rounding of storage.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from canvit_data import ImageSource
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .scenes import ORDER_FILE, SceneOrder, open_scenes, try_load_scene, valid_position
from .shards import EXPORT_FILE, Manifest, ShardError, check_rows, check_shard_file, open_shard, shard_path
from .teacher import load_teacher, teacher_targets

MAX_DECODE_RETRIES = 16


@dataclass
class TrainingBatch:
    scenes: torch.Tensor  # [B, 3, R, R] float32 normalized
    patches: torch.Tensor  # [B, G², D] raw teacher patches (f16 from shards)
    cls: torch.Tensor  # [B, D] raw teacher CLS
    positions: torch.Tensor  # [B] int64 global order positions

    def __len__(self) -> int:
        return self.scenes.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> TrainingBatch:
        """Non-blocking transfer; the cast to `dtype` runs on `device` (after the copy, not on the host)."""
        device = torch.device(device)

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True).to(dtype)

        return TrainingBatch(
            move(self.scenes), move(self.patches), move(self.cls), self.positions.to(device, non_blocking=True)
        )

    def pin_memory(self) -> TrainingBatch:
        """Called by DataLoader(pin_memory=True) so `to(device)` can copy asynchronously."""
        return TrainingBatch(
            self.scenes.pin_memory(), self.patches.pin_memory(), self.cls.pin_memory(), self.positions.pin_memory()
        )


def _rank_args(batch_size: int, rank: int, world_size: int, start_position: int) -> int:
    for name, v, lo in (
        ("batch_size", batch_size, 1),
        ("world_size", world_size, 1),
        ("start_position", start_position, 0),
    ):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name}={v!r} must be an int >= {lo}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be in [0, world_size={world_size})")
    if batch_size % world_size:
        raise ValueError(f"batch_size={batch_size} (global) must be divisible by world_size={world_size}")
    return batch_size // world_size


class _Stream(IterableDataset):
    """The sample stream and the rank's batches of it (picklable; worker-local caches built lazily)."""

    def __init__(
        self,
        source: ImageSource,
        order_indices: np.ndarray,
        failed: np.ndarray,
        resolution: int,
        batch_size: int,
        rank: int,
        world_size: int,
        start_position: int,
    ) -> None:
        self.source = source
        self.order_indices = order_indices
        self.failed = np.asarray(failed, dtype=np.int64)
        self.num_images = len(order_indices)
        self.num_valid = self.num_images - len(self.failed)
        if self.num_valid <= 0:
            raise ValueError("no usable scenes: every image of the order failed to decode")
        self.resolution = resolution
        self.batch_size = batch_size
        self.local = _rank_args(batch_size, rank, world_size, start_position)
        self.rank = rank
        self.start = int(start_position)

    def position(self, k: int) -> int:
        return int(valid_position(k % self.num_valid, self.failed))

    def scenes_for_batch(self, j: int) -> tuple[torch.Tensor, np.ndarray]:
        """Rank's slice of global batch j: scenes [b, 3, R, R] and their positions [b]."""
        first = self.start + j * self.batch_size + self.rank * self.local
        scenes, positions = [], []
        for k in range(first, first + self.local):
            for attempt in range(MAX_DECODE_RETRIES):
                p = self.position(k + attempt)
                x, reason = try_load_scene(self.source, int(self.order_indices[p]), self.resolution)
                if x is not None:
                    break
                warnings.warn(
                    f"scene at position {p} ({self.source.name}: index {self.order_indices[p]}) no "
                    f"longer decodes ({reason}); using the next scene of the stream",
                    stacklevel=2,
                )
            else:
                raise RuntimeError(
                    f"{MAX_DECODE_RETRIES} consecutive scenes from position {self.position(k)} "
                    f"failed to decode in {self.source.name}"
                )
            scenes.append(x)
            positions.append(p)
        return torch.stack(scenes), np.asarray(positions, dtype=np.int64)

    def batch(self, j: int) -> Any:
        scenes, positions = self.scenes_for_batch(j)
        return scenes, torch.from_numpy(positions)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        j, step = (info.id, info.num_workers) if info is not None else (0, 1)
        while True:
            yield self.batch(j)
            j += step


class _ShardVerifier:
    """sha256 of every shard against its record, in stream order from `first`, by one daemon thread of the
    main process; verdicts are files in a private folder (`<s>.ok`, or `<s>.bad` holding the error), which
    the stream's workers wait on (`verdict`)."""

    def __init__(self, root: Path, records: dict[int, dict[str, Any]], first: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="canvit-shard-sha-")
        order = sorted(records)
        k = order.index(first) if first in order else 0
        self._todo = order[k:] + order[:k]
        self._root, self._records, self._stop = root, records, False
        self._thread = threading.Thread(target=self._run, name="shard-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for s in self._todo:
            if self._stop:
                return
            try:
                check_shard_file(shard_path(self._root, s), self._records[s], checksum=True)
                name, text = f"{s}.ok", ""
            except Exception as e:  # noqa: BLE001 - every failure is a verdict the worker reports
                name, text = f"{s}.bad", str(e)
            tmp = os.path.join(self.dir, f".{name}.tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, os.path.join(self.dir, name))
            except OSError:  # the folder went away: the loader was closed
                return

    @staticmethod
    def verdict(directory: str, shard: int, path: Path) -> None:
        """Wait for shard `shard`'s verdict; raise its ShardError if it failed."""
        ok, bad = os.path.join(directory, f"{shard}.ok"), os.path.join(directory, f"{shard}.bad")
        while True:
            if os.path.exists(ok):
                return
            if os.path.exists(bad):
                with open(bad, encoding="utf-8") as f:
                    raise ShardError(f.read() or f"{path}: failed its sha256 check")
            if not os.path.isdir(directory):
                raise ShardError(f"{path}: its sha256 check was abandoned (the loader was closed)")
            time.sleep(0.01)

    def close(self) -> None:
        import shutil

        self._stop = True
        shutil.rmtree(self.dir, ignore_errors=True)

    def __del__(self) -> None:
        self.close()


class _ShardStream(_Stream):
    """Adds the stored targets: positions -> (shard, row) -> memory-mapped slices."""

    def __init__(self, manifest: Manifest, checksum: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.root = manifest.root
        self.shard_size = manifest.shard_size
        self.records = manifest.records
        self.checksum = checksum
        self.verdicts: str | None = None  # a _ShardVerifier's folder: wait for each shard's sha256 verdict
        self._handles: OrderedDict[int, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": None}

    def _handle(self, shard: int) -> Any:
        if self._handles is None:
            self._handles = OrderedDict()
        if shard in self._handles:
            self._handles.move_to_end(shard)
            return self._handles[shard]
        path = shard_path(self.root, shard)
        rec = self.records[shard]
        check_shard_file(path, rec, checksum=self.checksum)
        if self.verdicts is not None:
            _ShardVerifier.verdict(self.verdicts, shard, path)
        h = open_shard(path)
        stored = h.get_tensor("position")
        start, end = rec["start"], rec["end"]
        expected = np.setdiff1d(np.arange(start, end), self._failed_in(start, end))
        if stored.shape != (rec["rows"],) or not np.array_equal(stored.numpy(), expected):
            raise ShardError(
                f"{path}: its position column does not match the manifest "
                f"({stored.shape[0]} rows, expected positions {start}..{end - 1} minus failed images)"
            )
        self._handles[shard] = h
        while len(self._handles) > 2:
            self._handles.popitem(last=False)
        return h

    def _failed_in(self, start: int, end: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.failed, [start, end])
        return self.failed[lo:hi]

    def _row(self, p: int) -> tuple[int, int]:
        s = p // self.shard_size
        start = s * self.shard_size
        return s, p - start - int(np.searchsorted(self.failed, p) - np.searchsorted(self.failed, start))

    def targets(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        locs = [self._row(int(p)) for p in positions]
        runs: list[tuple[int, int, int]] = []  # (shard, first row, last row + 1), contiguous
        for s, r in locs:
            if runs and runs[-1][0] == s and runs[-1][2] == r:
                runs[-1] = (s, runs[-1][1], r + 1)
            else:
                runs.append((s, r, r + 1))
        patches, cls = [], []
        for s, a, b in runs:
            h = self._handle(s)
            p, c = h.get_slice("patches")[a:b], h.get_slice("cls")[a:b]
            check_rows(shard_path(self.root, s), p, c, slice(a, b))
            patches.append(p)
            cls.append(c)
        return torch.cat(patches), torch.cat(cls)

    def batch(self, j: int) -> TrainingBatch:
        scenes, positions = self.scenes_for_batch(j)
        patches, cls = self.targets(positions)
        return TrainingBatch(scenes, patches, cls, torch.from_numpy(positions))


def _data_loader(stream: _Stream, num_workers: int, pin_memory: bool | None, prefetch_factor: int) -> DataLoader:
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers={num_workers!r} must be an int >= 0")
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    kw: dict[str, Any] = dict(prefetch_factor=prefetch_factor, persistent_workers=True) if num_workers else {}
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin, **kw)


class FeatureShardLoader:
    """Aligned batches (scene, stored teacher targets) from an export directory; see the module doc."""

    def __init__(
        self,
        features_dir: str | os.PathLike[str],
        scenes_source: ImageSource | str | os.PathLike[str],
        batch_size: int,
        start_position: int = 0,
        num_workers: int = 8,
        rank: int = 0,
        world_size: int = 1,
        *,
        checksum: bool = False,
        verify_on_open: bool = True,
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        split: str | None = None,
        image_column: str | None = None,
    ) -> None:
        root = Path(features_dir)
        manifest = Manifest.load(root)
        if not manifest.complete:
            raise ShardError(
                f"{root / 'manifest.json'}: the export is incomplete (missing shards "
                f"{manifest.missing_shards[:10]}{' ...' if len(manifest.missing_shards) > 10 else ''}); "
                "re-run the export command to finish it"
            )
        for s in range(manifest.num_shards):  # fail now, in the main process, naming the file
            check_shard_file(shard_path(root, s), manifest.records[s], checksum=checksum)
        source = open_scenes(scenes_source, split=split, image_column=image_column)
        order = SceneOrder.load(root / ORDER_FILE)
        order.check_source(source, str(root / ORDER_FILE))
        if len(order) != manifest.num_images:
            raise ShardError(f"{root / ORDER_FILE}: {len(order)} positions but the export covers {manifest.num_images}")
        self.manifest = manifest
        self.resolution = manifest.resolution
        self.verify_on_open = verify_on_open and not checksum  # an eager check at construction covers every shard
        self._verifier: _ShardVerifier | None = None
        self.stream = _ShardStream(
            manifest,
            False,
            source=source,
            order_indices=order.indices,
            failed=manifest.failed_positions(),
            resolution=manifest.resolution,
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            start_position=start_position,
        )
        self.num_workers, self.pin_memory, self.prefetch_factor = num_workers, pin_memory, prefetch_factor

    @property
    def samples_per_epoch(self) -> int:
        """Usable scenes (images minus failed ones); the stream wraps after this many samples."""
        return self.stream.num_valid

    def __iter__(self) -> Iterator[TrainingBatch]:
        if self.verify_on_open and self._verifier is None:  # once per loader: "first opened in this run"
            st = self.stream
            first = st.position(st.start + st.rank * st.local) // self.manifest.shard_size
            self._verifier = _ShardVerifier(self.manifest.root, self.manifest.records, first)
            self.stream.verdicts = self._verifier.dir
        it = iter(_data_loader(self.stream, self.num_workers, self.pin_memory, self.prefetch_factor))
        it._shard_verifier = self._verifier  # lives as long as the iterator (removes its folder when both are gone)
        return it


def _resolve_order(order: SceneOrder | str | os.PathLike[str]) -> tuple[SceneOrder, np.ndarray | None]:
    """An order and, when `order` is an export directory, the failed positions its manifest recorded."""
    if isinstance(order, SceneOrder):
        return order, None
    path = Path(order)
    if path.is_dir() and (path / EXPORT_FILE).is_file():
        return SceneOrder.load(path), Manifest.load(path).failed_positions()
    return SceneOrder.load(path), None


class OnlineTeacherLoader:
    """The same stream as FeatureShardLoader, with targets computed on the fly by the frozen teacher.

    `teacher`: a DINOv3 module or a hub id / directory; `order`: a SceneOrder, an `order.parquet`, or an
    export directory (then its recorded failed images are skipped too, so the stream equals the shards').
    `skip_positions` overrides the failed positions. Batches come out already on `device`.
    """

    def __init__(
        self,
        teacher: Any,
        scenes_source: ImageSource | str | os.PathLike[str],
        order: SceneOrder | str | os.PathLike[str],
        batch_size: int,
        start_position: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        *,
        num_workers: int = 8,
        resolution: int = 512,
        skip_positions: Any = None,
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        split: str | None = None,
        image_column: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        if isinstance(teacher, (str, os.PathLike)):
            teacher = load_teacher(teacher, self.device)
        self.teacher = teacher.eval().requires_grad_(False)
        patch = teacher.cfg.patch_size
        if not isinstance(resolution, int) or resolution < patch or resolution % patch:
            raise ValueError(
                f"resolution={resolution!r} must be a positive multiple of the teacher's patch size {patch}"
            )
        source = open_scenes(scenes_source, split=split, image_column=image_column)
        order, failed = _resolve_order(order)
        order.check_source(source)
        if skip_positions is not None:
            failed = np.unique(np.asarray(skip_positions, dtype=np.int64))
        self.resolution = resolution
        self.stream = _Stream(
            source,
            order.indices,
            failed if failed is not None else np.zeros(0, np.int64),
            resolution,
            batch_size,
            rank,
            world_size,
            start_position,
        )
        self.num_workers, self.pin_memory, self.prefetch_factor = num_workers, pin_memory, prefetch_factor

    @property
    def samples_per_epoch(self) -> int:
        return self.stream.num_valid

    def __iter__(self) -> Iterator[TrainingBatch]:
        for scenes, positions in _data_loader(self.stream, self.num_workers, self.pin_memory, self.prefetch_factor):
            scenes = scenes.to(self.device, non_blocking=True)
            patches, cls = teacher_targets(self.teacher, scenes)
            yield TrainingBatch(scenes, patches, cls, positions.to(self.device, non_blocking=True))
