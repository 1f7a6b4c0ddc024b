"""A tiny offline scene set + tiny teacher + export, for tests and smoke runs of the pipeline.

    data = make_smoke_data(root, num_scenes=24)      # image folder, `datasets` dataset, tiny teacher
    manifest = smoke_export(data, root / "features")  # shards of 8 at 32 px (grid 2x2, dim 32)

The folder holds `num_scenes` procedurally drawn images of varied sizes plus one corrupt JPEG; the
dataset holds the same number of (valid) scenes, saved with `save_to_disk`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .teacher import write_tiny_teacher


@dataclass
class SmokeData:
    scenes: Path  # image folder (with one corrupt file)
    dataset: Path  # `datasets` DatasetDict saved to disk (split "train")
    teacher: Path  # tiny DINOv3 in the transformers layout
    corrupt_key: str


def make_smoke_data(root: str | os.PathLike[str], num_scenes: int = 24, seed: int = 0) -> SmokeData:
    from canvit_data.synthetic import write_corrupt_image, write_dataset, write_image_folder

    root = Path(root)
    write_image_folder(root / "scenes", num_scenes, seed=seed)
    write_corrupt_image(root / "scenes" / "part_1" / "broken.jpg")
    write_dataset(root / "dataset", num_scenes, seed=seed + 1)
    write_tiny_teacher(root / "teacher", seed)
    return SmokeData(root / "scenes", root / "dataset", root / "teacher", "part_1/broken.jpg")


def smoke_export(data: SmokeData, out: str | os.PathLike[str], *, scenes: str | None = None, **kw: Any):
    """Export the smoke scenes with small settings (overridable); returns the merged Manifest."""
    from .export import ExportConfig, export_features

    args: dict[str, Any] = dict(
        teacher=str(data.teacher),
        scenes=str(scenes or data.scenes),
        out=str(out),
        shard_size=8,
        resolution=32,
        batch_size=4,
        device="cpu",
        loader_workers=0,
        results=None,
        progress=False,
    )
    args.update(kw)
    return export_features(ExportConfig(**args))
