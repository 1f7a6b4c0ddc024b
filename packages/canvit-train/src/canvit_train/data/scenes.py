"""Scenes: the image source, the one global seeded order, and the paper's preprocessing.

Public API (used by export, the loaders and pretraining):

- `open_scenes(spec, split=None, image_column=None, streaming=False)` -> a `canvit_data.ImageSource`
  over an image folder (recursive) or a Hugging Face `datasets` dataset (hub id / local directory).
- `SceneOrder.from_source(source, seed)`: one global seeded permutation of the source's images;
  `order.save(dir_or_file)` writes `order.parquet` (columns `position`, `source_index`, `key`; the
  seed, source name and count in the schema metadata); `SceneOrder.load(dir_or_file)` reads it and
  `order.check_source(source)` proves the source still holds the same images (keys) at those indices.
- `load_scene(source, index, resolution)` -> float32 [3, R, R]: Resize(R, shorter side, bilinear) +
  CenterCrop(R) + ImageNet mean/std (`canvit_model.preprocess.center_crop_transform`); no augmentation.
- `valid_position(v, failed)`: the v-th position of the order that is not a failed image (failed images
  are skipped everywhere without shifting any other position).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from canvit_data import ImageDecodeError, ImageSource, open_images
from canvit_results import atomic_path

ORDER_FILE = "order.parquet"


def open_scenes(
    spec: str | os.PathLike[str] | ImageSource,
    *,
    split: str | None = None,
    image_column: str | None = None,
    streaming: bool = False,
) -> ImageSource:
    """An image source over a folder or a `datasets` dataset (already-open sources pass through)."""
    if isinstance(spec, ImageSource):
        return spec
    if streaming:
        from canvit_data import open_streaming_images  # indexable view over a streamed dataset

        return open_streaming_images(spec, split=split, image_column=image_column)
    return open_images(spec, split=split, image_column=image_column)


def load_scene(source: ImageSource, index: int, resolution: int) -> torch.Tensor:
    """Decode image `index` and preprocess it exactly as the paper: float32 [3, R, R] (ImageDecodeError)."""
    from canvit_model.preprocess import center_crop_transform

    return center_crop_transform(source.load(int(index)), resolution)


def valid_position(v: int | np.ndarray, failed: np.ndarray) -> np.ndarray | int:
    """Position in the order of the v-th non-failed image (failed: sorted int64 positions)."""
    if len(failed) == 0:
        return v
    shifted = failed - np.arange(len(failed))  # number of valid positions before each failure
    return v + np.searchsorted(shifted, v, side="right")


@dataclass
class SceneOrder:
    """Position -> source image. `indices[p]` is the source index at global position p."""

    indices: np.ndarray  # [N] int64
    keys: list[str]
    seed: int | None = None
    source_name: str = ""

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        if len(self.indices) != len(self.keys):
            raise ValueError(f"order has {len(self.indices)} indices but {len(self.keys)} keys")

    def __len__(self) -> int:
        return len(self.indices)

    def index(self, position: int) -> int:
        return int(self.indices[position])

    def key(self, position: int) -> str:
        return self.keys[position]

    @classmethod
    def from_source(cls, source: ImageSource, seed: int) -> SceneOrder:
        """The global seeded permutation (numpy PCG64 with `seed`): same source + seed -> same order."""
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative int")
        n = len(source)
        perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
        keys_all = [source.key(i) for i in range(n)]
        return cls(perm, [keys_all[i] for i in perm], seed, source.name)

    @classmethod
    def identity(cls, source: ImageSource) -> SceneOrder:
        """The source's own order (streamed sources, which cannot be permuted)."""
        n = len(source)
        return cls(np.arange(n, dtype=np.int64), [source.key(i) for i in range(n)], None, source.name)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write `order.parquet` atomically (a directory gets `DIR/order.parquet`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        if path.is_dir():
            path = path / ORDER_FILE
        table = pa.table(
            {
                "position": pa.array(np.arange(len(self), dtype=np.int64)),
                "source_index": pa.array(self.indices),
                "key": pa.array(self.keys, type=pa.string()),
            }
        )
        meta = {
            b"seed": str(self.seed).encode(),
            b"source": self.source_name.encode(),
            b"count": str(len(self)).encode(),
        }
        table = table.replace_schema_metadata(meta)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SceneOrder:
        import pyarrow.parquet as pq

        path = Path(path)
        if path.is_dir():
            path = path / ORDER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no scene order at {str(path)!r} (written by `canvit-train export-teacher-features`)"
            )
        table = pq.read_table(path)
        pos = table.column("position").to_numpy()
        if not np.array_equal(pos, np.arange(len(pos))):
            raise ValueError(f"{path}: positions are not 0..{len(pos) - 1} in order")
        meta = table.schema.metadata or {}
        seed = meta.get(b"seed", b"None").decode()
        return cls(
            table.column("source_index").to_numpy().astype(np.int64),
            table.column("key").to_pylist(),
            None if seed == "None" else int(seed),
            meta.get(b"source", b"").decode(),
        )

    def check_source(self, source: ImageSource, what: str = "order.parquet") -> None:
        """Raise if `source` does not hold the same images as when the order was made."""
        if len(source) != len(self):
            raise ValueError(
                f"{what} covers {len(self)} images but the scene source {source.name!r} has {len(source)}: "
                "pass the same --scenes (and --split) as the export"
            )
        if not self.keys:
            return
        probe = np.unique(np.linspace(0, len(self) - 1, num=min(len(self), 1000)).astype(np.int64))
        for p in probe:
            if source.key(int(self.indices[p])) != self.keys[p]:
                raise ValueError(
                    f"{what}: position {p} should be {self.keys[p]!r} but the scene source {source.name!r} has "
                    f"{source.key(int(self.indices[p]))!r} at index {self.indices[p]}: not the same scenes"
                )

    def equals(self, other: SceneOrder) -> bool:
        return np.array_equal(self.indices, other.indices) and self.keys == other.keys


def try_load_scene(source: ImageSource, index: int, resolution: int) -> tuple[torch.Tensor | None, str | None]:
    """(scene, None) or (None, reason) when the image does not decode."""
    try:
        return load_scene(source, index, resolution), None
    except ImageDecodeError as e:
        return None, e.reason
