"""The results store: one tidy table per run, one folder per experiment kind, provenance beside it.

Layout (default root `results/`, relative to the working directory; every command takes `--results DIR`):

    results/
      <kind>/                      # ade20k, in1k, reconstruction, pretrain, teacher-export, dinov3-probes, latency, ...
        <key>.csv                  # the run's tidy table: one row per observation (per timestep t, per cell)
        <key>.json                 # sidecar: provenance + "complete": true, written LAST (atomically)

A run is complete exactly when its sidecar exists and the table's sha256 matches the one recorded in
it; a killed job leaves at most a `.tmp` file or a table without a sidecar, which readers skip. A
finished run is never overwritten: `write_run` refuses an existing complete key (use a new key, e.g.
another seed). The key names the run's identity (`c2f-s512-c32-seed3`), so a job runner can ask
`is_complete(kind, key)` and skip what is done.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_write_bytes

DEFAULT_ROOT = Path("results")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")

# Columns the reader adds to every row (run identity); tables should not use these names themselves.
RUN_COLUMNS = ("kind", "run_key")


class RunExistsError(FileExistsError):
    """A complete run with this key is already in the store (finished runs are never overwritten)."""


def results_root(path: str | os.PathLike[str] | None = None) -> Path:
    """The results directory: `path` if given, else $CANVIT_RESULTS, else ./results."""
    if path is not None:
        return Path(path)
    env = os.environ.get("CANVIT_RESULTS")
    return Path(env) if env else DEFAULT_ROOT


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 24) -> str:
    """The hex sha256 of one file's bytes (read `chunk` bytes at a time: results tables, weights, shards)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value.endswith(".tmp"):
        raise ValueError(
            f"{what}={value!r} is not a valid results name: use letters, digits and . _ = + - "
            "(no slashes or spaces, not starting with a dot)"
        )
    return value


def _jsonable(x: Any) -> Any:
    """Config values -> JSON (dataclasses, paths, tensors' scalars, numpy scalars)."""
    import dataclasses

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _jsonable(dataclasses.asdict(x))
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


@dataclass(frozen=True)
class RunRef:
    kind: str
    key: str
    table_path: Path
    meta_path: Path


def run_paths(root: str | os.PathLike[str] | None, kind: str, key: str) -> RunRef:
    base = results_root(root) / _check_name(kind, "kind")
    _check_name(key, "key")
    return RunRef(kind, key, base / f"{key}.csv", base / f"{key}.json")


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar of a complete run, or None if it is missing, unreadable or not marked complete."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("complete") is not True:
        return None
    return meta


def is_complete(root: str | os.PathLike[str] | None, kind: str, key: str) -> bool:
    """True when the run's sidecar says complete and its table still has the recorded sha256."""
    ref = run_paths(root, kind, key)
    meta = read_meta(ref.meta_path)
    if meta is None or not ref.table_path.is_file():
        return False
    return meta.get("table_sha256") == sha256_file(ref.table_path)


def write_run(
    root: str | os.PathLike[str] | None,
    kind: str,
    key: str,
    table: pd.DataFrame,
    provenance: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
) -> RunRef:
    """Store one finished run: the tidy `table` (CSV) and then, last, its sidecar.

    `provenance` is what `canvit_results.provenance(...)` returns (command line, config, seed,
    checkpoint, code version, packages, device, wall time); `extra` is free-form run metadata.
    Raises RunExistsError if a complete run with this key exists.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if table.empty:
        raise ValueError(f"refusing to store an empty table for {kind}/{key}")
    clash = [c for c in RUN_COLUMNS if c in table.columns]
    if clash:
        raise ValueError(f"table columns {clash} are reserved by the results store ({list(RUN_COLUMNS)})")
    ref = run_paths(root, kind, key)
    if is_complete(root, kind, key):
        raise RunExistsError(f"{ref.table_path} is a complete run; finished runs are never overwritten")
    ref.meta_path.unlink(missing_ok=True)  # a stale sidecar of an incomplete run
    atomic_write_bytes(ref.table_path, table.to_csv(index=False).encode("utf-8"))
    meta = {
        "kind": kind,
        "key": key,
        "complete": True,
        "table": ref.table_path.name,
        "table_sha256": sha256_file(ref.table_path),
        "rows": int(len(table)),
        "columns": [str(c) for c in table.columns],
        "provenance": _jsonable(dict(provenance)),
        "extra": _jsonable(dict(extra or {})),
    }
    atomic_write_bytes(ref.meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return ref


_NOTED: set[Path] = set()


def _note_tampered(ref: RunRef) -> None:
    """One stderr note per table and process: a sidecar says complete but the table's bytes changed since."""
    if ref.table_path in _NOTED:
        return
    _NOTED.add(ref.table_path)
    print(f"canvit-results: note: {ref.table_path} no longer matches the sha256 recorded in {ref.meta_path.name} "
          "(edited or damaged since it was written): treated as not done", file=sys.stderr)


def _check_store(root: str | os.PathLike[str] | None, missing_ok: bool | None) -> None:
    """An explicitly named store that does not exist is a mistake (a typo reads as "no results" otherwise);
    the default store (`root=None`) may simply not have been created yet."""
    if missing_ok is None:
        missing_ok = root is None
    if not missing_ok and not Path(root if root is not None else results_root()).is_dir():
        path = Path(root if root is not None else results_root())
        raise FileNotFoundError(f"results store {os.fspath(path)!r}: "
                                + ("not a directory" if path.exists() else "no such directory"))


def list_runs(root: str | os.PathLike[str] | None, kind: str, *, missing_ok: bool | None = True) -> list[RunRef]:
    """Complete runs of `kind`, sorted by key. Incomplete runs are skipped; a table whose sha256 no longer
    matches its sidecar is skipped with a note on stderr. `missing_ok=None`: a missing store is an error
    when `root` is given (see `load_runs`)."""
    _check_store(root, missing_ok)
    base = results_root(root) / _check_name(kind, "kind")
    if not base.is_dir():
        return []
    refs = []
    for meta_path in sorted(base.glob("*.json")):
        key = meta_path.stem
        if not _NAME.match(key):
            continue
        if not is_complete(root, kind, key):
            ref = run_paths(root, kind, key)
            if read_meta(ref.meta_path) is not None and ref.table_path.is_file():
                _note_tampered(ref)
            continue
        refs.append(run_paths(root, kind, key))
    return refs


def load_runs(root: str | os.PathLike[str] | None, kind: str, *, with_meta: Sequence[str] = (),
              missing_ok: bool | None = None) -> pd.DataFrame:
    """All complete runs of `kind` as one DataFrame, with `kind` and `run_key` columns added.

    `with_meta` names sidecar fields to add as columns, dotted into the JSON
    (e.g. "provenance.seed", "extra.policy"). Returns an empty DataFrame when there are none.
    A store passed explicitly (`root` not None) that does not exist raises FileNotFoundError, unless
    `missing_ok=True` (a reader of a default location that may not have been created yet).
    """
    frames = []
    for ref in list_runs(root, kind, missing_ok=missing_ok):
        df = pd.read_csv(ref.table_path)
        df.insert(0, "run_key", ref.key)
        df.insert(0, "kind", kind)
        if with_meta:
            meta = read_meta(ref.meta_path) or {}
            for field in with_meta:
                value = _dig(meta, field)
                # a dict or list (e.g. extra.trial_params) goes into every row as one object
                df[field] = pd.Series([value] * len(df), index=df.index, dtype=object) \
                    if isinstance(value, (Mapping, list)) else value
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def _dig(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, Mapping) or part not in d:
            return None
        d = d[part]
    return d


def load_meta(root: str | os.PathLike[str] | None, kind: str, *, missing_ok: bool | None = None
              ) -> dict[str, dict[str, Any]]:
    """Sidecars of all complete runs of `kind`, by key (a missing store: as in `load_runs`)."""
    return {ref.key: read_meta(ref.meta_path) or {} for ref in list_runs(root, kind, missing_ok=missing_ok)}


# -- summaries ---------------------------------------------------------------------------------------


def bootstrap_ci(
    values: Iterable[float], *, n_boot: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of the mean over runs: (mean, low, high).

    Resamples the n run values with replacement `n_boot` times (numpy default_rng(seed)), takes each
    resample's mean, and returns the (1-level)/2 and (1+level)/2 percentiles (numpy's linear rule).
    One run gives (v, v, v): a deterministic policy has no spread to report.
    """
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, mean, mean)
    if not 0 < level < 1:
        raise ValueError(f"level={level} must lie in (0, 1)")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return (mean, float(lo), float(hi))


def summarize(
    df: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Group repeated runs and summarize each metric: one row per group with, per metric m,
    `m` (mean over runs), `m_lo`, `m_hi` (bootstrap CI) and `n` (number of runs).

    Rows of one run that share the same `by` values are first averaged, so `n` counts runs, not rows.
    """
    out_cols = [*by, "n"] + [f"{m}{s}" for m in metrics for s in ("", "_lo", "_hi")]
    if df.empty:
        return pd.DataFrame(columns=out_cols)
    missing = [c for c in [*by, *metrics] if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the results table (have {list(df.columns)})")
    per_run = df.groupby([*by, "run_key"], dropna=False, sort=True)[list(metrics)].mean().reset_index()
    rows = []
    for group, g in per_run.groupby(list(by), dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        row: dict[str, Any] = dict(zip(by, group))
        row["n"] = int(g["run_key"].nunique())
        for m in metrics:
            mean, lo, hi = bootstrap_ci(g[m], n_boot=n_boot, level=level, seed=seed)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean, lo, hi
        rows.append(row)
    return pd.DataFrame(rows, columns=out_cols)
