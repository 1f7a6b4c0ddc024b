"""What a pretraining run records, on the main process: metrics.csv (one row per step), validation.csv
(one row per validation timestep), TensorBoard scalars (optional), the progress bar, and at the end the
loss curves in the results store (kind `pretrain`).

On resume the CSV rows written after the checkpoint the run resumes from (or cut by a kill) are dropped,
so a resumed run's files are those of an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch
from canvit_results import atomic_write_text

from .config import PretrainConfig
from .step import METRIC_NAMES


def config_json(cfg: PretrainConfig) -> dict[str, Any]:
    """The config as plain JSON values (for config.json, checkpoints, the model card, provenance)."""
    return json.loads(json.dumps(cfg.to_dict()))


def rollout_names(rollouts: tuple[str, ...]) -> list[str]:
    """Column prefixes: 'f-iid', 'r-iid', and 'r-iid.1' for a second rollout of the same kind."""
    seen: dict[str, int] = {}
    out = []
    for r in rollouts:
        k = seen.get(r, 0)
        out.append(r if k == 0 else f"{r}.{k}")
        seen[r] = k + 1
    return out


def metric_columns(cfg: PretrainConfig) -> list[str]:
    cols = ["step", "lr", "grad_norm", "loss", "glimpses_per_rollout"]
    for r in rollout_names(cfg.rollouts):
        cols += [f"{r}/{m}" for m in METRIC_NAMES]
    cols += ["glimpses_per_s", "data_wait_frac", "peak_mem_gb", "wall_s"]
    return cols


def truncate_csv(path: Path, max_step: int) -> None:
    """Keep the header and the complete rows with step <= max_step (rows written after the checkpoint
    a run resumes from, or a line cut by a kill, are dropped); atomic."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, keep = rows[0], []
    for r in rows[1:]:
        if len(r) != len(header):
            continue
        try:
            if int(r[header.index("step")]) <= max_step:
                keep.append(r)
        except ValueError:
            continue
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(keep)
    atomic_write_text(path, buf.getvalue())


class MetricsCSV:
    """DIR/metrics.csv, one row per step; on resume rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None) -> None:
        self.path, self.columns = path, columns
        header = None
        if resume_step is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
        if header == columns:
            truncate_csv(path, resume_step)
        else:
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(columns)

    def append(self, rows: list[list[Any]]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
            f.flush()
            os.fsync(f.fileno())


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def log(msg: str) -> None:
    print(f"[pretrain] {msg}", file=sys.stderr, flush=True)


class RunLog:
    """The main process's records of one run (see the module docstring); a no-op object on other ranks."""

    def __init__(self, run_dir: Path, cfg: PretrainConfig, *, main: bool, resume_step: int | None,
                 tensorboard: bool, progress: bool, total_steps: int, start_step: int) -> None:
        self.run_dir, self.main = Path(run_dir), main
        self.columns = metric_columns(cfg)
        self.metrics = self.tb = self.bar = None
        if not main:
            return
        self.metrics = MetricsCSV(self.run_dir / "metrics.csv", self.columns, resume_step)
        if resume_step is not None:
            truncate_csv(self.run_dir / "validation.csv", resume_step)
        if tensorboard:
            self.tb = _tensorboard(self.run_dir)
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="pretrain", unit="step", dynamic_ncols=True)

    def steps(self, rows: list[list[Any]], *, loss: float, rate: float, wait: float) -> None:
        """Rows of metric_columns(cfg), one per step."""
        if self.metrics is not None:
            self.metrics.append(rows)
        if self.tb is not None:
            for r in rows:
                for c, v in zip(self.columns[1:], r[1:], strict=True):
                    self.tb.add_scalar(c, v, r[0])
        if self.bar is not None:
            self.bar.update(len(rows))
            self.bar.set_postfix(loss=f"{loss:.4f}", gps=f"{rate:.0f}", data=f"{wait:.0%}")

    def validation(self, step: int, rows: list[dict[str, float]]) -> None:
        """One validation: a row per timestep t of the validation rollout."""
        path = self.run_dir / "validation.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["step", *rows[0].keys()])
            if new:
                w.writeheader()
            w.writerows({"step": step, **r} for r in rows)
        if self.tb is not None:
            for r in rows:
                for k, v in r.items():
                    if k != "t":
                        self.tb.add_scalar(f"validation/{k}/t{r['t']}", v, step)
        last = rows[-1]
        log(f"validation step {step}: t={last['t']} cos patch raw {last['cos_patch_raw']:.4f} "
            f"cls raw {last['cos_cls_raw']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # the tensorboard package is optional
        raise SystemExit(f"--tensorboard needs the tensorboard package (pip install tensorboard): {e}") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def loss_trend(metrics_csv: Path, window: int = 10) -> dict[str, float]:
    """Mean loss over the first and the last `window` logged steps (the run's loss going down, or not)."""
    with open(metrics_csv, newline="", encoding="utf-8") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    if not losses:
        return {}
    w = min(window, len(losses))
    return {"loss_first": sum(losses[:w]) / w, "loss_last": sum(losses[-w:]) / w, "loss_window": w}


def loss_curves(metrics_csv: Path, cfg: PretrainConfig):
    """The `pretrain` results table: step, rollout, component, loss (tidy, one row per observation)."""
    import pandas as pd

    df = pd.read_csv(metrics_csv)
    parts = []
    for r in rollout_names(cfg.rollouts):
        for comp in ("patch", "cls"):
            col = f"{r}/loss_{comp}"
            parts.append(pd.DataFrame({"step": df["step"], "rollout": r, "component": comp, "loss": df[col]}))
    return pd.concat(parts, ignore_index=True)


def write_results(cfg: PretrainConfig, run_dir: Path, step: int, device: torch.device, *, results: str | None,
                  run_name: str | None, preset: str | None, argv: list[str]) -> str | None:
    """Loss curves into the results store (kind `pretrain`); a finished key is never overwritten.

    The key is the run's readable name plus a digest of what was trained (the final weights' sha256, the
    recipe, the steps done), as for every evaluation result: two runs whose folders share a name get two
    results, and the same run written again is "already stored", wherever its folder was moved."""
    from canvit_results import RunExistsError, digest_files, digest_json, identity_key, identity_record
    from canvit_results import provenance, write_run

    name = run_name or run_dir.name
    prefix = name if step >= cfg.steps else f"{name}-at-step{step}"
    weights = sorted((run_dir / "final").glob("*.safetensors"))
    identity = {"weights": digest_files(weights) if weights else None,
                "recipe": digest_json(config_json(cfg)), "steps_done": step}
    key = identity_key(prefix, identity)
    try:
        ref = write_run(
            results, "pretrain", key, loss_curves(run_dir / "metrics.csv", cfg),
            provenance(config=config_json(cfg), seed=cfg.seed, checkpoint=str((run_dir / "final").resolve()),
                       device=device, argv=argv or None),
            extra={"preset": preset, "run_dir": str(run_dir.resolve()), "steps_done": step,
                   "recipe_complete": step >= cfg.steps, "identity": identity_record(identity, prefix)},
        )
    except RunExistsError as e:
        print(f"[pretrain] results store: {e}; not rewritten", file=sys.stderr)
        return None
    return str(ref.table_path)
