"""`canvit-train verify-features DIR`: prove an export is complete and intact before training on it.

Checks: export.json and order.parquet present and consistent; one record per shard (shard count);
each record's position range and row count (rows + failed images = range length, so positions are
contiguous over the whole order); each shard file present, not truncated, sha256 as recorded, readable
header with the expected shapes/dtypes, `position` column = its range minus failed images, no NaN/inf;
manifest.json up to date with the records; no leftovers of a killed export. With `--recompute K
--teacher ID_OR_DIR`, K random stored images are recomputed by the teacher and the max error reported
(absolute, and relative L2 per image, which `--rtol` bounds).

Exit status 0 when everything holds, 1 with one line per problem naming the file and what is wrong.
Python API: `verify_features(dir, ...) -> VerifyReport` (`.problems`, `.ok`, `.recompute`).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canvit_model import releases

from .scenes import ORDER_FILE, SceneOrder, open_scenes, try_load_scene
from .shards import (
    EXPORT_FILE,
    MANIFEST_FILE,
    SHARD_DIR,
    Manifest,
    ShardError,
    check_rows,
    check_shard_file,
    open_shard,
    read_json,
    shard_path,
    shard_range,
)
from .teacher import load_teacher, teacher_targets


@dataclass
class VerifyReport:
    root: Path
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0
    rows: int = 0
    failed_images: int = 0
    recompute: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_shard(root: Path, s: int, rec: dict[str, Any], m: Manifest, checksum: bool, chunk: int) -> list[str]:
    path = shard_path(root, s)
    start, end = shard_range(s, m.shard_size, m.num_images)
    problems = []
    if (rec.get("start"), rec.get("end")) != (start, end):
        problems.append(
            f"{path}: record covers positions [{rec.get('start')}, {rec.get('end')}) but shard {s} "
            f"must cover [{start}, {end})"
        )
    failed = sorted(f["position"] for f in rec.get("failed", []))
    if rec.get("rows", -1) + len(failed) != end - start:
        problems.append(f"{path}: {rec.get('rows')} rows + {len(failed)} failed images != {end - start} positions")
    if any(not start <= p < end for p in failed):
        problems.append(f"{path}: failed positions {failed} fall outside [{start}, {end})")
    try:
        check_shard_file(path, rec, checksum=False)  # missing / truncated: nothing else to check
    except ShardError as e:
        return problems + [str(e)]
    if checksum:
        try:
            check_shard_file(path, rec, checksum=True)
        except ShardError as e:
            problems.append(str(e))  # keep going: say what else is wrong (NaN, header, positions)
    try:
        h = open_shard(path)
        keys = set(h.keys())
        if keys != {"patches", "cls", "position"}:
            raise ShardError(f"{path}: tensors {sorted(keys)}, expected cls, patches, position")
        rows, g2, d = rec["rows"], m.grid**2, m.dim
        shapes = {k: tuple(h.get_slice(k).get_shape()) for k in keys}
        want = {"patches": (rows, g2, d), "cls": (rows, d), "position": (rows,)}
        if shapes != want:
            raise ShardError(f"{path}: shapes {shapes}, expected {want}")
        dtypes = {k: h.get_slice(k).get_dtype() for k in keys}
        if dtypes != {"patches": "F16", "cls": "F16", "position": "I64"}:
            raise ShardError(f"{path}: dtypes {dtypes}, expected patches/cls F16 and position I64")
        pos = h.get_tensor("position").numpy()
        if not np.array_equal(pos, np.setdiff1d(np.arange(start, end), failed)):
            raise ShardError(f"{path}: position column is not [{start}, {end}) minus the failed images")
        for a in range(0, rows, chunk):
            b = min(rows, a + chunk)
            check_rows(path, h.get_slice("patches")[a:b], h.get_slice("cls")[a:b], slice(a, b))
    except ShardError as e:
        problems.append(str(e))
    return problems


def _recompute(
    root: Path, m: Manifest, k: int, teacher: str, device: str, seed: int, rtol: float, scenes: str | None
) -> tuple[dict[str, Any], list[str]]:
    exp = m.export
    spec = scenes or exp["scenes"]
    try:
        source = open_scenes(spec, split=exp.get("split"), image_column=exp.get("image_column"))
    except Exception as e:  # noqa: BLE001 - a folder, a saved dataset or a hub id: each fails its own way
        if scenes is None and not Path(spec).is_absolute():
            # an export made before paths were stored resolved: relative to a working directory we do not know
            return {}, [f"{root / EXPORT_FILE}: its scenes {spec!r} are a relative path that cannot be opened from "
                        f"{os.getcwd()} ({type(e).__name__}); pass --scenes (the folder the export was made from)"]
        return {}, [f"--scenes {spec}: cannot be opened ({type(e).__name__}: {e})"]
    order = SceneOrder.load(root / ORDER_FILE)
    order.check_source(source)
    failed = set(m.failed_positions().tolist())
    valid = np.asarray([p for p in range(m.num_images) if p not in failed])
    picks = np.sort(np.random.default_rng(seed).choice(valid, size=min(k, len(valid)), replace=False))
    model = load_teacher(teacher, device)
    errs_p, errs_c, rel, problems = [], [], [], []
    for p in picks.tolist():
        s = p // m.shard_size
        rec = m.records[s]
        start = s * m.shard_size
        row = p - start - sum(1 for f in rec["failed"] if f["position"] < p)
        h = open_shard(shard_path(root, s))
        stored_p, stored_c = h.get_slice("patches")[row : row + 1].float(), h.get_slice("cls")[row : row + 1].float()
        x, reason = try_load_scene(source, order.index(p), m.resolution)
        if x is None:
            problems.append(f"{root / ORDER_FILE}: position {p} ({order.key(p)}) no longer decodes: {reason}")
            continue
        pt, ct = teacher_targets(model, x[None].to(device))
        errs_p.append(float((pt.float().cpu() - stored_p).abs().max()))
        errs_c.append(float((ct.float().cpu() - stored_c).abs().max()))
        for new, old in ((pt.float().cpu(), stored_p), (ct.float().cpu(), stored_c)):
            rel.append(float((new - old).norm() / old.norm().clamp_min(1e-12)))  # relative L2 per image
    rep = {
        "images": len(errs_p),
        "positions": picks.tolist(),
        "max_abs_err_patches": max(errs_p, default=0.0),
        "max_abs_err_cls": max(errs_c, default=0.0),
        "max_rel_err": max(rel, default=0.0),
        "rtol": rtol,
    }
    worst = rep["max_rel_err"]
    if worst > rtol:
        problems.append(
            f"{root}: recomputed features differ from the stored ones by up to {worst:.3%} "
            f"(relative L2 > --rtol {rtol}); wrong teacher, resolution or scenes?"
        )
    return rep, problems


def verify_features(
    root: str | Path,
    *,
    checksum: bool = True,
    recompute: int = 0,
    teacher: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    rtol: float = 0.02,
    scenes: str | None = None,
    chunk: int = 256,
    progress: bool = False,
    jobs: int = 1,
) -> VerifyReport:
    """Check an export directory (see the module doc); `jobs` shards are checked concurrently (threads:
    hashing, reading and the NaN scan release the GIL), which matters for a 19 TiB export."""
    root = Path(root)
    rep = VerifyReport(root)
    if not (root / EXPORT_FILE).is_file():
        rep.problems.append(f"{root / EXPORT_FILE}: missing; {root} is not a teacher-feature export directory")
        return rep
    try:
        m = Manifest.scan(root)
    except ShardError as e:
        rep.problems.append(str(e))
        return rep
    n = m.num_shards
    for s in m.missing_shards:
        rep.problems.append(f"{shard_path(root, s)}: missing (no record {s:05d}.json; shard {s} of {n} not exported)")
    for p in sorted((root / SHARD_DIR).glob(".*.tmp")):
        rep.problems.append(f"{p}: leftover temporary file of an unfinished export (re-run the export to finish)")
    for p in sorted((root / SHARD_DIR).glob("*.safetensors")):
        if p.stem.isdigit() and int(p.stem) not in m.records:
            rep.problems.append(f"{p}: shard file without a record (an interrupted write; re-run the export)")
    order_p = root / ORDER_FILE
    try:
        order = SceneOrder.load(order_p)
        if len(order) != m.num_images:
            rep.problems.append(f"{order_p}: {len(order)} positions, export.json says {m.num_images} images")
    except (FileNotFoundError, ValueError, OSError) as e:
        rep.problems.append(f"{order_p}: unreadable ({e})")
    mpath = root / MANIFEST_FILE
    if not mpath.is_file():
        rep.problems.append(f"{mpath}: missing (every export worker writes it when it finishes)")
    else:
        try:
            stored = read_json(mpath)
            if stored.get("shards") != [m.records[s] for s in sorted(m.records)]:
                rep.problems.append(f"{mpath}: stale (does not list the shard records on disk); re-run the export")
        except ShardError as e:
            rep.problems.append(str(e))
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    shards = sorted(m.records)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(lambda s: _check_shard(root, s, m.records[s], m, checksum, chunk), shards)
        for problems in tqdm(results, total=len(shards), desc="verify", unit="shard", disable=not progress):
            rep.problems += problems  # in shard order
            rep.shards_checked += 1
    rep.rows, rep.failed_images = m.num_rows, len(m.failed)
    if m.complete and m.num_rows == 0:
        rep.problems.append(f"{root}: the export holds 0 rows (all {m.num_images} images failed to decode); "
                            "nothing to train on")
    if recompute:
        if teacher is None:
            rep.problems.append("--recompute needs --teacher")
        elif m.complete and not rep.problems:
            rep.recompute, more = _recompute(root, m, recompute, teacher, device, seed, rtol, scenes)
            rep.problems += more
    return rep


EXAMPLE = f"""examples:
  canvit-train verify-features /features/in21k-vitb16-512
  canvit-train verify-features /features/in21k-vitb16-512 --recompute 16 \\
      --teacher {releases.TEACHER} --device cuda
"""


def main(argv: list[str] | None = None) -> int:
    from canvit_results.cli import HelpFormatter, default_workers, int_at_least

    ap = argparse.ArgumentParser(
        prog="canvit-train verify-features",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE,
        formatter_class=HelpFormatter,
    )
    ap.add_argument("dir", help="export directory")
    ap.add_argument("--recompute", type=int, default=0, metavar="K", help="recompute K random images with --teacher")
    ap.add_argument("--teacher", default=None, help="hub id or directory (for --recompute)")
    ap.add_argument(
        "--scenes", default=None, help="scene source, if it moved since the export (default: export.json's)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="where --recompute runs the teacher (default: cuda when available, else cpu)")
    ap.add_argument(
        "--rtol",
        type=float,
        default=0.02,
        help="max relative L2 error per image allowed by --recompute (float16 storage + bf16 autocast give "
        "well under 1%%; another teacher gives ~100%%; default %(default)s)",
    )
    ap.add_argument("--seed", type=int, default=0, help="which images --recompute picks")
    ap.add_argument("--jobs", type=int_at_least(1, "--jobs"), default=default_workers(),
                    help="shards checked concurrently (threads; default: min(8, CPUs) = %(default)s)")
    ap.add_argument("--no-checksum", action="store_true", help="skip sha256 (sizes, headers and NaN still checked)")
    args = ap.parse_args(argv)
    if args.recompute < 0:
        ap.error(f"--recompute={args.recompute} must be >= 0")
    if args.recompute:
        from canvit_results.cli import pick_device

        pick_device(args.device, parser=ap)
    rep = verify_features(
        args.dir,
        checksum=not args.no_checksum,
        recompute=args.recompute,
        teacher=args.teacher,
        device=args.device,
        seed=args.seed,
        rtol=args.rtol,
        scenes=args.scenes,
        progress=True,
        jobs=args.jobs,
    )
    if rep.recompute:
        r = rep.recompute
        print(
            f"recompute: {r['images']} images, max abs error patches {r['max_abs_err_patches']:.3g}, "
            f"cls {r['max_abs_err_cls']:.3g} relative L2 {r['max_rel_err']:.3%} (rtol {r['rtol']})"
        )
    for p in rep.problems:
        print(f"PROBLEM {p}", file=sys.stderr)
    if rep.ok:
        print(
            f"{rep.root}: OK - {rep.shards_checked} shards, {rep.rows} rows, {rep.failed_images} failed images recorded"
        )
        return 0
    print(f"{rep.root}: {len(rep.problems)} problem(s)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
