"""Teacher-feature shards on disk: layout, atomic writes, per-shard records and the merged manifest.

Layout of an export directory (`--out DIR`):

    DIR/export.json              the export's identity: teacher, resolution, dtype, shard size, seed,
                                 image count, grid, dim (written once; a re-run with other values refuses)
    DIR/order.parquet            position -> source key (scenes.SceneOrder)
    DIR/shards/00000.safetensors patches [N, G², D] f16, cls [N, D] f16, position [N] int64
    DIR/shards/00000.json        that shard's record: rows, position range, bytes, sha256, failed images,
                                 seconds (written after the shard, atomically: its presence = shard complete)
    DIR/manifest.json            export.json + every shard record + all failed images, merged from the
                                 records by whichever worker finishes (atomic; any worker may rewrite it)

Shard s covers global positions [s * shard_size, min((s + 1) * shard_size, N)); its rows are the
positions of that range whose image decoded, in order (failed images are recorded, never stored, never
shift another position). Shards are plain safetensors (memory-mappable, never pickled).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from canvit_results import atomic_path, atomic_write_bytes, sha256_file

EXPORT_FILE = "export.json"
MANIFEST_FILE = "manifest.json"
SHARD_DIR = "shards"
FORMAT = "canvit-teacher-features/1"


class ShardError(ValueError):
    """A shard or manifest problem; the message names the file and what is wrong."""


def shard_path(root: str | os.PathLike[str], shard: int) -> Path:
    return Path(root) / SHARD_DIR / f"{shard:05d}.safetensors"


def record_path(root: str | os.PathLike[str], shard: int) -> Path:
    return Path(root) / SHARD_DIR / f"{shard:05d}.json"


def num_shards(num_images: int, shard_size: int) -> int:
    return -(-num_images // shard_size)


def shard_range(shard: int, shard_size: int, num_images: int) -> tuple[int, int]:
    return shard * shard_size, min((shard + 1) * shard_size, num_images)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: Path, what: str = "") -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ShardError(f"{path}: missing{' (' + what + ')' if what else ''}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from None


def write_shard(
    path: Path, patches: torch.Tensor, cls: torch.Tensor, position: torch.Tensor, metadata: Mapping[str, str]
) -> None:
    """Write one shard atomically (temp file, fsync, rename). Bytes depend only on the inputs.

    safetensors keeps `__metadata__` in a hash map, so several keys come out in a different order from
    one process to the next; the shard metadata therefore travels as ONE key holding sorted JSON
    (`"canvit"`), which keeps the file's bytes (and its sha256) reproducible.
    """
    from canvit_model.io import write_safetensors

    header = {"canvit": json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))}
    with atomic_path(path) as tmp:
        write_safetensors({"patches": patches, "cls": cls, "position": position}, tmp, header)


def check_shard_file(path: Path, record: Mapping[str, Any], *, checksum: bool) -> None:
    """Existence, size (truncation) and optionally sha256 of a shard against its record."""
    if not path.is_file():
        raise ShardError(f"{path}: missing (the manifest lists it with {record['rows']} rows)")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise ShardError(f"{path}: truncated or overwritten ({size} bytes, the manifest says {record['bytes']})")
    if checksum:
        digest = sha256_file(path)
        if digest != record["sha256"]:
            raise ShardError(
                f"{path}: checksum mismatch (sha256 {digest[:16]}..., the manifest says {record['sha256'][:16]}...)"
            )


def open_shard(path: Path):
    """A memory-mapped safetensors handle (safe_open); header errors become ShardError naming the file."""
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ShardError(f"{path}: not a readable safetensors shard ({type(e).__name__}: {e})") from None


def check_rows(path: Path, patches: torch.Tensor, cls: torch.Tensor, rows: slice | None = None) -> None:
    """NaN / inf in features -> ShardError naming the file and the first bad row."""
    for name, t in (("patches", patches), ("cls", cls)):
        bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            first = int(bad.nonzero()[0, 0]) + (rows.start if rows is not None else 0)
            raise ShardError(f"{path}: {name} has NaN/inf values (row {first}; {int(bad.sum())} bad rows)")


class Manifest:
    """The merged view of an export directory (export.json + shard records)."""

    def __init__(self, root: str | os.PathLike[str], export: dict[str, Any], records: dict[int, dict[str, Any]]):
        self.root = Path(root)
        self.export = export
        self.records = records

    # identity
    @property
    def num_images(self) -> int:
        return int(self.export["num_images"])

    @property
    def shard_size(self) -> int:
        return int(self.export["shard_size"])

    @property
    def resolution(self) -> int:
        return int(self.export["resolution"])

    @property
    def grid(self) -> int:
        return int(self.export["grid"])

    @property
    def dim(self) -> int:
        return int(self.export["dim"])

    @property
    def num_shards(self) -> int:
        return num_shards(self.num_images, self.shard_size)

    @property
    def missing_shards(self) -> list[int]:
        return [s for s in range(self.num_shards) if s not in self.records]

    @property
    def complete(self) -> bool:
        return not self.missing_shards

    @property
    def failed(self) -> list[dict[str, Any]]:
        return sorted((f for r in self.records.values() for f in r["failed"]), key=lambda f: f["position"])

    def failed_positions(self) -> np.ndarray:
        return np.asarray([f["position"] for f in self.failed], dtype=np.int64)

    @property
    def num_rows(self) -> int:
        return sum(r["rows"] for r in self.records.values())

    def to_json(self) -> dict[str, Any]:
        return {
            **self.export,
            "complete": self.complete,
            "num_rows": self.num_rows,
            "num_failed": len(self.failed),
            "failed_images": self.failed,
            "shards": [self.records[s] for s in sorted(self.records)],
        }

    @classmethod
    def scan(cls, root: str | os.PathLike[str]) -> Manifest:
        """Build the manifest from export.json and the shard records present on disk."""
        root = Path(root)
        export = read_json(root / EXPORT_FILE, "written at the start of `canvit-train export-teacher-features`")
        records = {}
        n = num_shards(int(export["num_images"]), int(export["shard_size"]))
        for p in sorted((root / SHARD_DIR).glob("*.json")):
            if p.name.startswith("."):
                continue
            rec = read_json(p)
            s = int(rec["shard"])
            if not 0 <= s < n or p.name != f"{s:05d}.json":
                raise ShardError(f"{p}: record of shard {s}, which does not belong to an export of {n} shards")
            records[s] = rec
        return cls(root, export, records)

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> Manifest:
        """Read `manifest.json` (falls back to scanning the records when it is missing or stale)."""
        root = Path(root)
        path = root / MANIFEST_FILE
        if not path.is_file():
            if (root / EXPORT_FILE).is_file():
                return cls.scan(root)
            raise ShardError(f"{path}: missing; {root} is not a teacher-feature export directory")
        m = read_json(path)
        export = {k: m[k] for k in m if k not in ("complete", "num_rows", "num_failed", "failed_images", "shards")}
        manifest = cls(root, export, {int(r["shard"]): r for r in m["shards"]})
        if not manifest.complete and (root / EXPORT_FILE).is_file():
            return cls.scan(root)  # other workers may have finished shards since
        return manifest

    def write(self) -> Path:
        """Rewrite manifest.json atomically from the records (safe to call from any worker, any time)."""
        path = self.root / MANIFEST_FILE
        write_json(path, self.to_json())
        return path


def merge_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Re-scan the records on disk and rewrite manifest.json (what every export worker does at the end)."""
    m = Manifest.scan(root)
    m.write()
    return m
