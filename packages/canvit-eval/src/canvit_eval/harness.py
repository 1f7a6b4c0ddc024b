"""The evaluation harness every task runs on (`canvit_eval.tasks`): scenes, seeding, identity, resume, publish.

- Scenes: `scene_batches` yields fixed-order `SceneBatch`es from any indexable source with `len` / `key(i)`
  (a `canvit_data` ImageSource, an ADE20K `SegmentationSet`), decoded in loader processes by the task's
  `item(i) -> (scene [3, S, S], target)`; an undecodable image is skipped and reported.
- Seeding (the ONE rule): the policy of batch b of a run with `--seed s` draws from a CPU `torch.Generator`
  seeded with `numpy.random.SeedSequence([s, b]).generate_state(1, uint64)[0] >> 1` (`batch_generator`).
  It depends on (seed, batch index) only, so a resumed run is the run it would have been; train-probe uses
  the same rule with the optimizer step as the index.
- Identity: `RunIdentity` keys a result by what was evaluated (digests of weights, probe and data, and every
  setting that changes a number; `canvit_results.identity`): `{readable prefix}-{8 hex digits}`. Same
  identity: "complete; nothing to do" (also after the model directory was copied); same prefix, another
  identity: a new result beside the old one.
- Resume + publish: `accumulate` adds each batch's totals (per-image metric sums, confusion counts) and saves
  them atomically every few batches under RESULTS/.partial/, tagged with the identity digest; a restarted
  job continues only from a partial state of the same identity. `publish` writes the finished table.
- CLI: `add_rollout_args` / `check_rollout_args` (shared flags and their validation), `open_source`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from canvit_results import atomic_path, digest_files, digest_json, identity_record, identity_status
from canvit_results.cli import int_at_least, store_dir

from .policies import POLICY_NAMES as POLICIES

SEEDING = "torch CPU Generator seeded with numpy SeedSequence([seed, batch_index]).generate_state(1, uint64)[0] >> 1"


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """The policy's generator for one batch (see the module docstring: the one seeding rule)."""
    s = int(np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s)


# -- scenes ----------------------------------------------------------------------------------------


class SceneDataset(torch.utils.data.Dataset):
    """(index, scene [3, S, S] | None if undecodable, target) for the task's `item(i) -> (scene, target)`."""

    def __init__(self, item: Callable[[int], tuple[torch.Tensor, Any]]) -> None:
        self.item = item

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, Any]:
        from canvit_data import ImageDecodeError

        try:
            scene, target = self.item(i)
        except ImageDecodeError:
            return i, None, None
        return i, scene, target


def _collate(items: list[tuple[int, torch.Tensor | None, Any]]) -> tuple[list[int], torch.Tensor | None, torch.Tensor, list[int]]:
    ok = [it for it in items if it[1] is not None]
    failed = [it[0] for it in items if it[1] is None]
    scenes = torch.stack([it[1] for it in ok]) if ok else None
    if ok and isinstance(ok[0][2], torch.Tensor):
        targets = torch.stack([it[2] for it in ok])  # [B, S, S] segmentation masks
    else:
        targets = torch.tensor([it[2] for it in ok], dtype=torch.long)  # [B] class labels
    return [it[0] for it in ok], scenes, targets, failed


@dataclass(frozen=True)
class SceneBatch:
    index: int  # batch number (fixed by the batch size, so resuming skips whole batches)
    positions: list[int]  # source positions of the decoded scenes (= places in the evaluation order)
    scenes: torch.Tensor  # [B, 3, S, S] normalized, on the device
    labels: torch.Tensor  # [B] long class labels (-1 = none) or [B, S, S] masks, on the device
    failed: list[int]  # source positions in this batch that could not be decoded


def scene_batches(
    item: Callable[[int], tuple[torch.Tensor, Any]],
    n: int,
    *,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
    start_batch: int = 0,
) -> Iterator[SceneBatch]:
    """Fixed-order batches of the first `n` items (decoding and resizing in `workers` processes)."""
    indices = list(range(start_batch * batch_size, n))
    if not indices:
        return
    subset = torch.utils.data.Subset(SceneDataset(item), indices)
    loader = torch.utils.data.DataLoader(
        subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    for k, (positions, scenes, labels, failed) in enumerate(loader):
        if scenes is None:
            yield SceneBatch(start_batch + k, [], torch.empty(0), torch.empty(0, dtype=torch.long), failed)
            continue
        yield SceneBatch(start_batch + k, positions, scenes.to(device, non_blocking=True),
                         labels.to(device, non_blocking=True), failed)


class ClassifyItem:
    """`item(i)` of an ImageSource: (transform(image), label or -1); picklable for loader processes."""

    def __init__(self, source: Any, transform: Callable[[Any], torch.Tensor]) -> None:
        self.source, self.transform = source, transform

    def __call__(self, i: int) -> tuple[torch.Tensor, int]:
        label = self.source.label(i)
        return self.transform(self.source.load(i)), -1 if label is None else int(label)


# -- identity ---------------------------------------------------------------------------------------


def short_name(spec: str | os.PathLike[str]) -> str:
    """A results-key-safe short name of a model / probe id or directory: its last path component."""
    import re

    name = Path(str(spec).rstrip("/")).name or str(spec)
    name = re.sub(r"[^A-Za-z0-9._=+-]", "-", name).lstrip(".")
    return name or "model"


def readable_prefix(name: str, policy: str, scene_size: int, canvas_grid: int, seed: int,
                    limit: int | None = None) -> str:
    """`{name}-{policy}-s{scene}-c{grid}-seed{seed}` (+ `-limit{N}` for smoke runs on the first N images): the
    readable part of an `ade20k` / `in1k` key; `RunIdentity.key` appends the identity digest."""
    key = f"{name}-{policy}-s{scene_size}-c{canvas_grid}-seed{seed}"
    return key if limit is None else f"{key}-limit{limit}"


def hub_revision(repo_id: str) -> str:
    """The commit a hub id resolves to: the local cache's refs/main, else the hub's answer (OSError if neither;
    asked once per process, as the matrix plans many jobs of one model)."""
    rev, why = _hub_revision(repo_id)
    if rev is None:
        raise OSError(why)
    return rev


@functools.lru_cache(maxsize=256)
def _hub_revision(repo_id: str) -> tuple[str | None, str]:
    try:
        return _ask_hub_revision(repo_id), ""
    except OSError as e:
        return None, str(e)


def _ask_hub_revision(repo_id: str) -> str:
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    if ref.is_file():
        return ref.read_text().strip()
    if constants.HF_HUB_OFFLINE:
        raise OSError(f"cannot resolve the hub revision of {repo_id!r}: not in the local cache and HF_HUB_OFFLINE is set")
    try:
        from huggingface_hub import HfApi

        return str(HfApi().model_info(repo_id).sha)
    except Exception as e:  # offline, unknown repo, auth
        raise OSError(f"cannot resolve the hub revision of {repo_id!r} ({type(e).__name__}: {e})") from None


def checkpoint_identity(spec: str | os.PathLike[str]) -> dict[str, str]:
    """{"digest", "path"} of a checkpoint: the sha256 of its weights files (a directory's *.safetensors, or a
    .pth file / a directory's one .pth) with the resolved absolute path, or a hub id's resolved revision."""
    from .inputs import local_path

    path = local_path(spec)
    if path is None:
        return {"digest": f"hub:{spec}@{hub_revision(str(spec))}", "path": str(spec)}
    path = path.resolve()
    if path.is_file():
        files = [path]
    else:
        files = sorted(path.glob("*.safetensors")) or sorted(p for p in path.iterdir() if p.suffix in (".pth", ".pt"))
    if not files:
        raise FileNotFoundError(f"{path} holds no weights (*.safetensors or .pth)")
    stats = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return {"digest": _digest_files(stats), "path": str(path)}


@functools.lru_cache(maxsize=64)
def _digest_files(stats: tuple[tuple[str, int, int], ...]) -> str:
    """`digest_files`, computed once per (files, sizes, modification times) in a process (the matrix asks often)."""
    return digest_files([s[0] for s in stats])


_CANONICAL_SPLIT = {"val": "validation", "training": "train"}


def data_identity(source: Any, split: str | None, n: int, spec: str) -> dict[str, Any]:
    """{"digest", "path"}: the source type, the split and the ordered keys of the first `n` items."""
    keys = [source.key(i) for i in range(n)]
    split = _CANONICAL_SPLIT.get(split, split) if split else None
    local = Path(spec).expanduser()
    return {"digest": digest_json({"source": type(source).__name__, "split": split, "n": n, "keys": keys}),
            "path": str(local.resolve()) if local.exists() else spec}


@dataclass
class RunIdentity:
    """One evaluation result's identity: results kind, readable prefix, digests (`parts`: model, probe, data,
    ... each {"digest", "path"}) and the settings that change a number."""

    kind: str
    name: str  # the model's readable name (the first part of the prefix)
    prefix: str
    parts: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    fields: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.fields = {"kind": self.kind, **{k: v["digest"] for k, v in self.parts.items()},
                       "settings": self.settings, "seeding": SEEDING}

    def status(self, results: str | os.PathLike[str] | None):
        return identity_status(results, self.kind, self.prefix, self.fields)

    @property
    def key(self) -> str:
        from canvit_results import identity_key

        return identity_key(self.prefix, self.fields)

    @property
    def digest(self) -> str:
        return digest_json(self.fields)

    def record(self) -> dict[str, Any]:
        """The sidecar's `extra.identity`: prefix, full digest, the fields and every resolved absolute path."""
        return {**identity_record(self.fields, self.prefix),
                "paths": {k: v.get("path") for k, v in self.parts.items()}}

    def label(self) -> str:
        """How tables name the model of this run: `{model name}@{8 hex digits of its weights digest}`."""
        return model_label(self.name, self.parts["model"]["digest"])


def model_label(name: str, digest: str) -> str:
    """`name@` + 8 hex digits of the weights digest (of the resolved revision for a hub id)."""
    return f"{name}@{digest.rsplit('@', 1)[-1][:8]}"


def skip_if_complete(ident: RunIdentity, results: str | None) -> bool:
    """Print what the store holds for this identity; True when a complete run of it exists."""
    st = ident.status(results)
    if st.status == "done":
        print(f"{ident.kind}/{st.key} is already complete in the results store; nothing to do")
        return True
    if st.status == "conflicting":
        print(f"{ident.kind}: {', '.join(st.others)} evaluated another identity under the prefix "
              f"{ident.prefix!r}; this run goes beside it as {st.key}", file=sys.stderr)
    return False


# -- the resumable accumulation loop -----------------------------------------------------------------


def partial_path(results: str | os.PathLike[str] | None, kind: str, key: str) -> Path:
    """Where a running job keeps its running totals (never read as a result: not a store sidecar)."""
    from canvit_results import results_root

    return results_root(results) / ".partial" / kind / f"{key}.safetensors"


@dataclass
class Totals:
    sums: dict[str, torch.Tensor]  # {name: additive total} (float64 metric sums, int64 confusion counts)
    count: int  # images evaluated
    failed: list[int]  # source positions that could not be decoded


def image_sums(per_image: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{metric: [B, T]} per-image values -> {metric: [T] float64 sums on the CPU} (a step's additive totals)."""
    return {k: v.detach().double().sum(0).cpu() for k, v in per_image.items()}


def accumulate(
    batches: Callable[[int], Iterator[SceneBatch]],
    step: Callable[[SceneBatch], Mapping[str, torch.Tensor]],
    *,
    num_batches: int,
    partial: Path | None = None,
    identity: str = "",
    device: torch.device | str = "cpu",
    save_every: int = 20,
    progress: bool = True,
    desc: str = "eval",
) -> Totals:
    """Add up `step(batch)` ({name: tensor}) over the batches, resumably.

    With `partial`, the totals are saved atomically every `save_every` batches (tagged with `identity`), and a
    restarted job with the same identity continues after the last saved batch (`batches(start)` must yield
    from batch `start`). Loaded totals go to `device` (where the step's totals live).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file
    from tqdm import tqdm

    sums: dict[str, torch.Tensor] = {}
    count, failed, start = 0, [], 0
    if partial is not None and partial.is_file():
        try:
            with safe_open(str(partial), "pt") as f:
                meta = f.metadata() or {}
        except Exception:  # a torn or foreign file: never trusted
            meta = {}
        if meta.get("identity") == identity:
            sums = {k: v.to(device) for k, v in load_file(str(partial)).items()}
            count, start, failed = int(meta["count"]), int(meta["next_batch"]), json.loads(meta["failed"])
            print(f"resuming after batch {start} ({count} images) from {partial}", file=sys.stderr)
        else:
            print(f"ignoring {partial}: written by a run of another identity", file=sys.stderr)

    def save(next_batch: int) -> None:
        from canvit_model.io import write_safetensors

        if partial is not None:
            meta = {"identity": identity, "next_batch": str(next_batch), "count": str(count), "failed": json.dumps(failed)}
            with atomic_path(partial) as tmp:
                write_safetensors({k: v.contiguous() for k, v in sums.items()}, tmp, metadata=meta)

    bar = tqdm(total=num_batches, initial=start, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True)
    for k, batch in enumerate(batches(start), start=1):
        failed.extend(batch.failed)
        if batch.positions:
            for name, total in step(batch).items():
                sums[name] = sums[name] + total if name in sums else total
            count += len(batch.positions)
        bar.update(1)
        if k % save_every == 0 and batch.index + 1 < num_batches:
            save(batch.index + 1)
    bar.close()
    if count == 0:
        raise RuntimeError("no image could be evaluated (empty data or every image failed to decode)")
    return Totals(sums, count, failed)


def rollout_settings(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The settings of an `add_rollout_args` run that change a number (part of its identity)."""
    return {"policy": args.policy, "glimpses": args.glimpses, "seed": args.seed, "scene_size": args.scene_size,
            "canvas_grid": args.canvas_grid, "glimpse_px": args.glimpse_px, "batch_size": args.batch_size,
            "amp": args.amp and device.type == "cuda", "limit": args.limit,
            "preprocessing": "resize short side + center crop"}


def image_means(ident: RunIdentity, args: argparse.Namespace, item: Callable[[int], tuple[torch.Tensor, Any]], n: int,
                step: Callable[[SceneBatch], Mapping[str, torch.Tensor]], device: torch.device
                ) -> tuple[dict[str, list[float]], int, list[int]]:
    """A per-image evaluation (`in1k`, `reconstruction`) on the resumable loop: ({metric: [T] means over
    images}, images evaluated, undecodable positions); `step` returns `image_sums` of its per-image metrics."""
    totals = accumulate(
        lambda start: scene_batches(item, n, batch_size=args.batch_size, device=device, workers=args.num_workers,
                                    start_batch=start),
        step, num_batches=-(-n // args.batch_size), partial=partial_path(args.results, ident.kind, ident.key),
        identity=ident.digest, save_every=args.checkpoint_every, progress=not args.no_progress,
        desc=f"{ident.kind} {ident.prefix}",
    )
    return {k: (v / totals.count).tolist() for k, v in totals.sums.items()}, totals.count, totals.failed


def publish(results: str | os.PathLike[str] | None, ident: RunIdentity, table: Any, prov: dict[str, Any],
            extra: dict[str, Any], partial: Path) -> Any:
    """The finished table into the store under the identity's key (its record in `extra.identity`), then the
    running totals dropped; the RunRef, or None (printed) when another job finished the same identity first."""
    from canvit_results import RunExistsError, write_run

    try:
        ref = write_run(results, ident.kind, ident.key, table, prov, extra={**extra, "identity": ident.record()})
    except RunExistsError as e:
        print(str(e), file=sys.stderr)
        return None
    partial.unlink(missing_ok=True)
    return ref


# -- per-batch outputs (predictions, viewpoints) -----------------------------------------------------------


class BatchParts:
    """Per-batch tensors kept under the job's partial directory (so a resumed job keeps them), joined in
    batch order at the end."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def add(self, index: int, tensors: Mapping[str, torch.Tensor]) -> None:
        from canvit_model.io import write_safetensors

        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / f"batch_{index:07d}.safetensors") as tmp:
            write_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)

    def join(self, num_batches: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        parts = [load_file(str(p)) for i in range(num_batches) if (p := self.dir / f"batch_{i:07d}.safetensors").is_file()]
        if not parts:
            raise RuntimeError(f"no per-batch parts under {self.dir}")
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def drop(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


VIEWPOINT_COLUMNS = ("scene", "t", "center_y", "center_x", "scale")


class ViewpointWriter:
    """`--save-viewpoints PATH.parquet`: every glimpse's viewpoint, columns `scene` (position in the evaluation
    order), `t`, `center_y`, `center_x`, `scale` (the model's own coordinates: centres in [-1, 1], scale =
    the crop's half side)."""

    def __init__(self, path: str | os.PathLike[str], results: str | None, kind: str, key: str) -> None:
        from canvit_results import results_root

        self.path = Path(path).resolve()
        self.parts = BatchParts(results_root(results) / ".partial" / kind / f"{key}.viewpoints")

    def recorder(self, batch: SceneBatch, num_glimpses: int) -> Callable[[int, Any], None]:
        """`record(t, viewpoint)` for one batch's rollout; the batch is written when the last step arrives."""
        rows: list[torch.Tensor] = []

        def record(t: int, vp: Any) -> None:
            b = vp.scales.shape[0]
            rows.append(torch.stack([torch.tensor(batch.positions, dtype=torch.float64), torch.full((b,), float(t), dtype=torch.float64),
                                     vp.centers[:, 0].double().cpu(), vp.centers[:, 1].double().cpu(),
                                     vp.scales.double().cpu()], 1))  # [B, 5]
            if t == num_glimpses - 1:
                self.parts.add(batch.index, {"rows": torch.cat(rows)})

        return record

    def finish(self, num_batches: int) -> Path:
        import pandas as pd

        rows = self.parts.join(num_batches)["rows"].numpy()
        df = pd.DataFrame({c: rows[:, i] for i, c in enumerate(VIEWPOINT_COLUMNS)})
        df["scene"] = df["scene"].astype("int64")
        df["t"] = df["t"].astype("int64")
        df = df.sort_values(["scene", "t"], kind="stable").reset_index(drop=True)
        with atomic_path(self.path) as tmp:
            df.to_parquet(tmp, index=False)
        self.parts.drop()
        return self.path


def viewpoints_path(p: argparse.ArgumentParser, value: str | None) -> None:
    """`--save-viewpoints`: a .parquet path whose folder exists or can be made (checked before any work)."""
    if value is None:
        return
    path = Path(value)
    if path.suffix != ".parquet":
        p.error(f"--save-viewpoints {value!r}: expected a .parquet file name")
    if path.is_dir():
        p.error(f"--save-viewpoints {value!r} is a directory")
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        p.error(f"--save-viewpoints {value!r}: {parent} is not a writable folder")


# -- the shared command-line arguments ----------------------------------------------------------------


def add_rollout_args(p: argparse.ArgumentParser, *, policy: str | None, glimpses: int, scene: int, grid: int,
                     batch: int) -> None:
    """Flags shared by the per-image evaluations (`in1k`, `reconstruction`): data, policy, size, batch,
    precision, results, viewpoints."""
    p.add_argument("--data", required=True, help="ImageFolder root, Hugging Face dataset id, or save_to_disk dir")
    p.add_argument("--split", default="validation", help="split (HF datasets) or sub-folder (default: validation)")
    if policy is None:
        p.add_argument("--policy", required=True, choices=POLICIES, help="viewing policy")
    else:
        p.add_argument("--policy", default=policy, choices=POLICIES, help=f"viewing policy (default {policy})")
    p.add_argument("--glimpses", type=int_at_least(1, "--glimpses"), default=glimpses, help=f"T (default {glimpses})")
    p.add_argument("--seed", type=int_at_least(0, "--seed"), default=0, help="seed of the policy's random draws (default 0)")
    p.add_argument("--scene-size", type=int_at_least(1, "--scene-size"), default=scene, help=f"scene px (default {scene})")
    p.add_argument("--canvas-grid", type=int_at_least(1, "--canvas-grid"), default=grid, help=f"canvas grid G (default {grid})")
    p.add_argument("--glimpse-px", type=int_at_least(1, "--glimpse-px"), default=128, help="glimpse px (default 128)")
    p.add_argument("--batch-size", type=int_at_least(1, "--batch-size"), default=batch, help=f"scenes per batch (default {batch})")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the model on CUDA (heads and probes always fp32; default on)")
    p.add_argument("--results", type=store_dir, default=None, help="results store root (default $CANVIT_RESULTS or results/)")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="data loader processes (decoding, resizing; default min(8, CPUs))")
    p.add_argument("--limit", type=int_at_least(1, "--limit"), default=None, help="evaluate only the first N images (smoke runs)")
    p.add_argument("--checkpoint-every", type=int_at_least(1, "--checkpoint-every"), default=20,
                   help="batches between saves of the running sums (resume point; default 20)")
    add_viewpoints_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_viewpoints_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save-viewpoints", default=None, metavar="PATH.parquet",
                   help="also write every glimpse's viewpoint (columns scene, t, center_y, center_x, scale) to "
                        "this parquet file (default: not written)")


def check_rollout_args(p: argparse.ArgumentParser, args: argparse.Namespace, patch_size: int = 16) -> None:
    if args.glimpse_px % patch_size:
        p.error(f"--glimpse-px must be a multiple of the patch size {patch_size}, got {args.glimpse_px}")
    if args.glimpse_px > args.scene_size:
        p.error(f"--glimpse-px ({args.glimpse_px}) must be <= --scene-size ({args.scene_size})")
    if args.policy == "eg-c2f":
        p.error("--policy eg-c2f needs a segmentation probe (ADE20K only); choose r-iid, f-iid, c2f, f2c or rfs")
    if args.num_workers < 0:
        p.error(f"--num-workers must be >= 0, got {args.num_workers}")
    viewpoints_path(p, args.save_viewpoints)


SPLIT_ALIASES = {"validation": ("val",), "val": ("validation",), "train": ("training",), "training": ("train",)}


def _split_folders(root: Path) -> list[str]:
    """Sub-folders of `root` that look like splits (they hold folders, e.g. class folders), not classes."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and any(c.is_dir() for c in d.iterdir()))


def open_source(p: argparse.ArgumentParser, data: str, split: str | None, labels: str | None,
                flag: str = "--data") -> tuple[Any, str | None]:
    """(source, split used): `data` opened with `canvit_data.open_images`. A spec that does not open is a
    usage error naming `flag`; so is a `--split` that a folder of splits does not have (naming the ones it has)."""
    from canvit_data import open_images

    root = Path(data)
    if split is not None and root.is_dir() and not (root / split).is_dir():
        for alias in SPLIT_ALIASES.get(split, ()):  # ImageNet folders say val/, HF datasets validation
            if (root / alias).is_dir():
                split = alias
                break
        else:
            try:
                available = _split_folders(root)
            except OSError:
                available = []
            if available:
                p.error(f"--split {split!r}: {data} has no such folder; available splits: {', '.join(available)}")
    try:
        return open_images(data, split=split, labels=labels), split
    except (FileNotFoundError, ValueError) as e:
        p.error(f"{flag} {data!r}: {e}")
