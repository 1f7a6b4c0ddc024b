"""Inference latency of CanViT-B (one glimpse) vs DINOv3 ViT-B/16 (whole scene): paper Appendix I, Table 19.

The paper's protocol (Appendix I.1), which this follows:

* latency, not throughput: batch 1, device synchronisation before and after every timed call;
* CanViT-B with random weights: timed call = `init_state(1, scene/16)` + one forward of a 128 px
  glimpse (the canvas grid is scene/16, so the canvas matches DINOv3's patch grid); DINOv3 ViT-B/16
  (random weights): one forward of a scene x scene image;
* 3 warm-up calls (not timed; the first triggers torch.compile), then timed calls until a time
  budget is spent (paper: 30 s CPU, 60 s CUDA), at least --min-iters and at most --max-iters;
* every (model, scene, threads, precision, pass) configuration runs in a fresh Python process, the
  configurations in a seeded random order;
* CPU: eager, at several `torch.set_num_threads` values, in three modes (`--precisions`): "fp32" =
  the plain fp32 ops (the paper's setting, `canvit_model.cpu_inference("eager")`), "fp32-fast" = the
  oneDNN fast path (canvit-model's CPU default), "bf16-fast" = its opt-in bf16 variant (bf16 linears;
  canvas, RoPE, VPE, LayerNorm and residuals fp32); CUDA: fp32 and AMP bf16 (weights fp32,
  `torch.autocast`), `torch.compile`d; CUDA peak memory = `torch.cuda.max_memory_allocated` over the
  timed calls, the counter reset after warm-up;
* every configuration also records its error: max |out - out_fp32| / max |out_fp32| of the output (the
  canvas for CanViT, all tokens for DINOv3) against the plain fp32 eager forward, same weights and inputs.

Every timed call becomes one row of a tidy table, appended one finished configuration at a time.
By default the run goes to the results store as kind `latency`, key `<host>-<date>` (`--results DIR`,
default `results/` or $CANVIT_RESULTS; `--key` to name it): rows accumulate in
`results/latency/<key>.csv` and the provenance sidecar is written when every configuration is done,
which marks the run complete. `--out FILE.csv` appends to a plain CSV instead (no sidecar). Either
way, re-running the same command skips configurations already measured, so an interrupted run
resumes. Every argument is checked before anything runs; `--dry-run` prints the plan and an
estimated duration. Tables and figures take the minimum:

    uv run --package canvit-eval canvit-latency --dry-run                       # the plan and how long it takes
    uv run --package canvit-eval canvit-latency --budget-s 2 --min-iters 2      # quick CPU run, 1 and 2 threads
    uv run --package canvit-eval canvit-latency --threads 1 4 8 16 32           # the paper's CPU sweep
    uv run --package canvit-eval canvit-latency --device cuda                   # fp32 + bf16, compiled, 128-2048 px
    uv run paper/make_tables.py --only 19                                       # Table 19
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MODELS = ("canvit-b", "dinov3-b")
CPU_SCENES = (128, 256, 512, 1024)
CUDA_SCENES = (128, 256, 512, 1024, 2048)
PATCH = 16

COLUMNS = [
    "machine",  # CPU model name (/proc/cpuinfo) or GPU name
    "device",  # cpu | cuda
    "threads",  # torch.get_num_threads() in the worker
    "precision",  # fp32 (plain ops) | fp32-fast | bf16-fast (CPU fast paths) | bf16 (AMP autocast, weights fp32)
    "compiled",  # 1 = torch.compile, 0 = eager
    "model",  # canvit-b | dinov3-b
    "scene_px",  # scene side in px
    "grid",  # canvas grid (CanViT) or patch grid (DINOv3) side: scene_px / 16
    "glimpse_px",  # CanViT glimpse side (128); empty for DINOv3
    "pass",  # 1..passes
    "iteration",  # 0-based timed iteration
    "ms",  # wall time of one synchronised call
    "peak_mem_mib",  # CUDA: max_memory_allocated over the timed calls, MiB; empty on CPU
    "torch",
    "date",  # UTC date of the run
    "host",
    "loadavg1",  # 1-minute load average when the configuration started (contention check)
    "budget_s",
    "seed",
    "max_rel_diff",  # the output's max relative difference to the plain fp32 eager forward (same inputs)
]
LEGACY_COLUMNS = COLUMNS[:-1]  # files written before max_rel_diff existed: appended to in their own layout
# --precisions values -> (canvit_model.cpu_inference mode, autocast bf16?)
PRECISIONS = {"fp32": ("eager", False), "fp32-fast": ("fp32", False), "bf16-fast": ("bf16", False),
              "bf16": ("eager", True)}
CPU_ONLY_PRECISIONS = ("fp32-fast", "bf16-fast")
KEY = ("machine", "device", "threads", "precision", "compiled", "model", "scene_px", "glimpse_px", "pass")


@dataclass(frozen=True)
class Config:
    model: str
    scene_px: int
    device: str
    threads: int
    precision: str
    compiled: bool
    pass_index: int
    glimpse_px: int = 128

    @property
    def grid(self) -> int:
        return self.scene_px // PATCH

    def label(self) -> str:
        what = (f"{self.model} scene {self.scene_px} px (canvas {self.grid}², {self.glimpse_px} px glimpse)"
                if self.model == "canvit-b" else f"{self.model} scene {self.scene_px} px ({self.grid}² patches)")
        how = f"{self.device} {self.threads}T {self.precision} {'compiled' if self.compiled else 'eager'}"
        return f"{what}, {how}, pass {self.pass_index}"


# -- machine description -------------------------------------------------------------------------


def cpu_name() -> str:
    """canvit_results' CPU name, imported on use: this module's workers start without pandas."""
    from canvit_results.provenance import cpu_name as _cpu_name

    return _cpu_name()


def machine_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return cpu_name()


def loadavg1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# -- the worker: one configuration in this (fresh) process ---------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def make_call(cfg: Config, seed: int):
    """Build the model (random weights) and inputs; return the zero-argument timed call and the plain
    fp32 eager call on the same weights and inputs (the reference of `max_rel_diff`)."""
    import torch

    from canvit_model import DINOv3, CanViT, CanViTConfig, Viewpoint, cpu_inference

    torch.manual_seed(seed)
    dev = torch.device(cfg.device)
    if cfg.model == "canvit-b":
        model = CanViT(CanViTConfig()).eval().to(dev)
        glimpse = torch.randn(1, 3, cfg.glimpse_px, cfg.glimpse_px, device=dev)
        viewpoint = Viewpoint.full_scene(batch_size=1, device=dev)
        grid = cfg.grid
        fwd = torch.compile(model) if cfg.compiled else model

        def call(f=fwd):
            state = model.init_state(batch_size=1, canvas_grid_size=grid)
            return f(glimpse, state, viewpoint).state.canvas

    elif cfg.model == "dinov3-b":
        model = DINOv3("vitb16").eval().to(dev)
        images = torch.randn(1, 3, cfg.scene_px, cfg.scene_px, device=dev)
        fwd = torch.compile(model) if cfg.compiled else model

        def call(f=fwd):
            return f(images)

    else:
        raise ValueError(f"unknown model {cfg.model!r}; valid: {MODELS}")

    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {cfg.precision!r}; valid: {', '.join(PRECISIONS)}")
    mode, autocast = PRECISIONS[cfg.precision]

    def timed():
        with cpu_inference(mode), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
            return call()

    def reference():
        with cpu_inference("eager"):
            return call(model)

    return timed, reference


def run_config(cfg: Config, *, seed: int, warmup: int, budget_s: float, min_iters: int, max_iters: int) -> dict:
    """Warm up, then time calls until the budget is spent. Returns ms per call and peak memory."""
    import torch

    torch.set_num_threads(cfg.threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
    call, reference = make_call(cfg, seed)
    times: list[float] = []
    peak = None
    with torch.inference_mode():
        out, ref = call().float(), reference().float()
        err = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
        for _ in range(warmup):
            _sync(cfg.device)
            call()
            _sync(cfg.device)
        if cfg.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < budget_s):
            _sync(cfg.device)
            t0 = time.perf_counter()
            call()
            _sync(cfg.device)
            times.append((time.perf_counter() - t0) * 1e3)
        if cfg.device == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
    return {
        "ms": times,
        "peak_mem_mib": peak,
        "threads": torch.get_num_threads(),
        "machine": machine_name(cfg.device),
        "torch": torch.__version__,
        "max_rel_diff": err,
    }


def _worker(args: argparse.Namespace) -> int:
    spec = json.loads(args.worker)
    cfg = Config(**spec["config"])
    result = run_config(cfg, **spec["run"])
    Path(spec["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


# -- the driver ----------------------------------------------------------------------------------


def default_key() -> str:
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname()).strip("-._") or "host"
    return f"{host}-{date}"


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def row_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in KEY)


def config_key(cfg: Config, machine: str) -> tuple[str, ...]:
    return row_key({
        "machine": machine, "device": cfg.device, "threads": cfg.threads, "precision": cfg.precision,
        "compiled": int(cfg.compiled), "model": cfg.model, "scene_px": cfg.scene_px,
        "glimpse_px": cfg.glimpse_px if cfg.model == "canvit-b" else "", "pass": cfg.pass_index,
    })


def check_header(path: Path) -> None:
    """An existing, non-empty CSV must have our columns (else we would append garbage to someone's file)."""
    if path.exists() and path.stat().st_size > 0:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
        if header not in (COLUMNS, LEGACY_COLUMNS):
            raise ValueError(f"{path} has columns {header}; expected the canvit-latency columns {COLUMNS}")


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append complete rows in one write (header first if the file is new), then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    check_header(path)
    header = COLUMNS
    if not new:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f))
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    if new:
        w.writeheader()
    w.writerows(rows)
    with open(path, "a", newline="", encoding="utf-8") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def plan(args: argparse.Namespace) -> list[Config]:
    cuda = args.device == "cuda"
    scenes = args.scenes or (CUDA_SCENES if cuda else CPU_SCENES)
    precisions = args.precisions or (["fp32", "bf16"] if cuda else ["fp32", "fp32-fast", "bf16-fast"])
    threads = args.threads or ([torch_threads_default()] if cuda else [1, 2])
    compiled = {"auto": cuda, "on": True, "off": False}[args.compile]
    configs = [
        Config(model=m, scene_px=s, device=args.device, threads=t, precision=p, compiled=compiled,
               pass_index=k, glimpse_px=args.glimpse_px)
        for m in args.models for s in scenes for t in threads for p in precisions
        for k in range(1, args.passes + 1)
    ]
    random.Random(args.seed).shuffle(configs)
    return configs


def torch_threads_default() -> int:
    return os.cpu_count() or 1


# Rough per-configuration cost besides the timed budget: a fresh Python + torch import + random
# weights (a few seconds), warm-up calls, and for compiled runs torch.compile (tens of seconds).
STARTUP_S = {"eager": 6.0, "compiled": 45.0}
WARMUP_CALL_S = {"cpu": 0.5, "cuda": 0.05}


def estimate_seconds(configs: list[Config], args: argparse.Namespace) -> float:
    """A planning estimate (not a measurement): start-up + warm-up + the timed budget per configuration."""
    total = 0.0
    for c in configs:
        total += STARTUP_S["compiled" if c.compiled else "eager"]
        total += args.warmup * WARMUP_CALL_S[c.device]
        total += args.budget_s
    return total


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_worker_process(cfg: Config, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "result.json"
        spec = {
            "config": asdict(cfg),
            "run": {"seed": args.seed, "warmup": args.warmup, "budget_s": args.budget_s,
                    "min_iters": args.min_iters, "max_iters": args.max_iters},
            "out": str(out),
        }
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(cfg.threads)  # size the OpenMP pool from the start
        env["MKL_NUM_THREADS"] = str(cfg.threads)
        r = subprocess.run([sys.executable, "-m", "canvit_eval.latency", "--worker", json.dumps(spec)], env=env)
        if r.returncode != 0 or not out.exists():
            raise RuntimeError(f"worker for {cfg.label()} failed with exit code {r.returncode}")
        return json.loads(out.read_text(encoding="utf-8"))


def _writable_dir(path: Path) -> str | None:
    """None if files can be created under `path` (creating it if needed), else why not."""
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        return f"{p} exists and is not a directory"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    return None


def validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every argument before any work; report the first problem as one line (exit code 2)."""
    def positive_int(name: str, value: int, minimum: int) -> None:
        if value < minimum:
            ap.error(f"{name} must be >= {minimum}, got {value}")

    for t in args.threads or []:
        positive_int("--threads", t, 1)
    for sc in args.scenes or []:
        if sc % PATCH or sc < PATCH:
            ap.error(f"--scenes: scene size {sc} px is not a positive multiple of the patch size {PATCH}")
    if args.glimpse_px % PATCH or args.glimpse_px < PATCH:
        ap.error(f"--glimpse-px must be a positive multiple of the patch size {PATCH}, got {args.glimpse_px}")
    if args.budget_s is not None and not (args.budget_s >= 0 and args.budget_s != float("inf")):
        ap.error(f"--budget-s must be a finite number of seconds >= 0, got {args.budget_s}")
    if args.device != "cpu":
        for p in args.precisions or []:
            if p in CPU_ONLY_PRECISIONS:
                ap.error(f"--precisions {p} is a CPU mode; with --device {args.device} use fp32 or bf16")
    positive_int("--warmup", args.warmup, 0)
    positive_int("--passes", args.passes, 1)
    positive_int("--min-iters", args.min_iters, 1)
    if args.max_iters < args.min_iters:
        ap.error(f"--max-iters ({args.max_iters}) must be >= --min-iters ({args.min_iters})")
    if args.out is not None:
        if args.key is not None:
            ap.error("--key names a results-store run; it cannot be combined with --out")
        if args.out.exists() and args.out.is_dir():
            ap.error(f"--out {args.out} is a directory; give a CSV file path")
        if args.out.exists() and not os.access(args.out, os.W_OK):
            ap.error(f"--out {args.out} is not writable")
        why = _writable_dir(args.out.parent)
        if why:
            ap.error(f"--out {args.out}: {why}")
        try:
            check_header(args.out)
        except ValueError as e:
            ap.error(f"--out: {e}; use another file")
    else:
        from canvit_results import results_root, run_paths

        args.results = results_root(args.results)
        try:
            ref = run_paths(args.results, "latency", args.key or default_key())
        except ValueError as e:
            ap.error(f"--key: {e}")
        why = _writable_dir(ref.table_path.parent)
        if why:
            ap.error(f"--results {args.results}: {why}")
        try:
            check_header(ref.table_path)
        except ValueError as e:
            ap.error(f"--results: {e}")


def main(argv: list[str] | None = None) -> int:
    from canvit_results.cli import output_file, store_dir

    ap = argparse.ArgumentParser(
        prog="canvit-latency", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="default: cpu")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="default: both")
    ap.add_argument("--scenes", type=int, nargs="+", metavar="PX",
                    help=f"scene sides in px, multiples of 16 (default: {' '.join(map(str, CPU_SCENES))} on cpu, "
                         f"{' '.join(map(str, CUDA_SCENES))} on cuda)")
    ap.add_argument("--threads", type=int, nargs="+", metavar="N",
                    help="torch.set_num_threads values, >= 1 (default: 1 2 on cpu; os.cpu_count() on cuda)")
    ap.add_argument("--precisions", nargs="+", choices=list(PRECISIONS),
                    help="fp32 (plain fp32 ops), fp32-fast / bf16-fast (canvit-model's CPU fast paths, cpu only), "
                         "bf16 (AMP autocast, fp32 weights) (default: fp32 fp32-fast bf16-fast on cpu, "
                         "fp32 bf16 on cuda)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                    help="torch.compile the model: auto = on for cuda, off (eager) for cpu, as the paper")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds of timed calls per configuration, >= 0 (default: 30 on cpu, 60 on cuda, as the paper)")
    ap.add_argument("--min-iters", type=int, default=5, help="timed calls at least, budget or not, >= 1 (default: 5)")
    ap.add_argument("--max-iters", type=int, default=500, help="timed calls at most, >= --min-iters (default: 500)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up calls, >= 0 (default: 3, as the paper)")
    ap.add_argument("--passes", type=int, default=1,
                    help="fresh-process passes per configuration, >= 1 (default: 1; the authors ran 3)")
    ap.add_argument("--glimpse-px", type=int, default=128,
                    help="CanViT glimpse side in px, a multiple of 16 (default: 128)")
    ap.add_argument("--seed", type=int, default=42, help="weights, inputs and the order of configurations")
    ap.add_argument("--results", type=lambda v: Path(store_dir(v)), default=None, metavar="DIR",
                    help="results store root (default: $CANVIT_RESULTS or results/); the run is kind 'latency'")
    ap.add_argument("--key", default=None,
                    help="run key in the results store (default: <host>-<date>); re-use it to resume")
    ap.add_argument("--out", type=lambda v: Path(output_file(v)), default=None, metavar="FILE.csv",
                    help="append to this plain CSV instead of the results store; configurations already in it "
                         "are skipped")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its estimated duration, run nothing")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one configuration (JSON spec)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)

    validate(ap, args)
    if args.budget_s is None:
        args.budget_s = 60.0 if args.device == "cuda" else 30.0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("canvit-latency: --device cuda but no CUDA GPU is visible to torch", file=sys.stderr)
            return 2

    if args.out is not None:
        out, ref, where = args.out, None, str(args.out)
    else:
        from canvit_results import is_complete, run_paths

        key = args.key or default_key()
        ref = run_paths(args.results, "latency", key)
        out, where = ref.table_path, f"results store {args.results} (latency/{key})"
        if is_complete(args.results, "latency", key):
            print(f"canvit-latency: latency/{key} in {args.results} is already complete; finished runs are never "
                  "changed. Pass another --key for a new run.")
            return 0
    machine = machine_name(args.device)
    configs = plan(args)
    done = {row_key(r) for r in read_rows(out)}
    todo = [c for c in configs if config_key(c, machine) not in done]
    print(f"canvit-latency: {machine}; {len(configs)} configurations, {len(configs) - len(todo)} already in {where}; "
          f"budget {args.budget_s:g} s each, {args.warmup} warm-up, {args.min_iters}-{args.max_iters} timed calls")
    if args.dry_run:
        for c in todo:
            print("  " + c.label())
        est = estimate_seconds(todo, args)
        print(f"estimated duration: about {_fmt_duration(est)} for {len(todo)} configurations "
              f"(budget + start-up/warm-up each; more if single calls are slower than the budget)")
        print(f"would write: {out}" + ("" if ref is None else f" and its sidecar {ref.meta_path}"))
        return 0
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    host = socket.gethostname()
    started = time.perf_counter()
    for i, cfg in enumerate(todo, 1):
        load = loadavg1()
        t0 = time.perf_counter()
        res = run_worker_process(cfg, args)
        ms = res["ms"]
        rows = [{
            "machine": res["machine"], "device": cfg.device, "threads": res["threads"], "precision": cfg.precision,
            "compiled": int(cfg.compiled), "model": cfg.model, "scene_px": cfg.scene_px, "grid": cfg.grid,
            "glimpse_px": cfg.glimpse_px if cfg.model == "canvit-b" else "", "pass": cfg.pass_index,
            "iteration": it, "ms": f"{t:.4f}",
            "peak_mem_mib": "" if res["peak_mem_mib"] is None else f"{res['peak_mem_mib']:.1f}",
            "torch": res["torch"], "date": date, "host": host,
            "loadavg1": "" if load is None else f"{load:.2f}", "budget_s": f"{args.budget_s:g}", "seed": args.seed,
            "max_rel_diff": f"{res['max_rel_diff']:.3g}",
        } for it, t in enumerate(ms)]
        append_rows(out, rows)
        mem = f", peak {res['peak_mem_mib']:.0f} MiB" if res["peak_mem_mib"] is not None else ""
        busy = load is not None and load > (os.cpu_count() or 1) + 0.5
        warn = f" [1-min load {load:.1f} > {os.cpu_count()} cores: timings may be contended]" if busy else ""
        print(f"[{i}/{len(todo)}] {cfg.label()}: {len(ms)} calls, min {min(ms):.2f} ms, "
              f"median {statistics.median(ms):.2f} ms{mem}, max rel diff vs fp32 {res['max_rel_diff']:.1e} ({time.perf_counter() - t0:.1f} s){warn}", flush=True)
    if ref is not None:
        finish_store_run(args, ref, machine, time.perf_counter() - started)
    print(f"wrote {out}")
    return 0


def finish_store_run(args: argparse.Namespace, ref, machine: str, wall_s: float) -> None:
    """Seal the run: rewrite the accumulated rows through `write_run`, which adds the sidecar last."""
    import pandas as pd

    from canvit_results import provenance, write_run

    table = pd.read_csv(ref.table_path, dtype=str, keep_default_na=False)  # the CSV's strings, unchanged
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"}
    write_run(args.results, "latency", ref.key, table,
              provenance(config=config, seed=args.seed, device=args.device, wall_time_s=wall_s),
              extra={"machine": machine})


if __name__ == "__main__":
    sys.exit(main())
