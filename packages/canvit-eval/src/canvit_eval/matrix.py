"""`canvit-eval matrix`: the paper's evaluation runs as one plan; run them, skip what is done.

The plan (paper Tables 3-7, Figure 4):
- `ade20k`: CanViT-B x policies {c2f, eg-c2f, f-iid, r-iid, f2c, rfs} x (scene, canvas grid) in
  {(512, 32), (512, 64), (1024, 64)}, T = 21, with the released probe of each grid; stochastic policies
  once per seed, deterministic ones (eg-c2f, rfs) once;
- `ade20k-dinov3`: DINOv3 ViT-S/16 and ViT-B/16 baselines at 128 ... 512 px input (Table 5);
- `in1k`: policies {c2f, f2c, f-iid, r-iid, rfs} x seeds, T = 21, 512 px, canvas 32 (Table 7), for the
  frozen model through the DINOv3 probe and for the fine-tuned classifier (`--finetuned`, "" to skip);
- `reconstruction`: every Table 3 checkpoint (`canvit_model.PRESETS`) x seeds, T = 10 R-IID (Tables 3-4).

Jobs are ordered breadth-first over the seed index (every configuration's first run before any second
run), each runs as a fresh `python -m canvit_eval.cli SUB ...` process. A job's status comes from the same
identity key its task writes (`plan()` of the task module: weights, probe and data digests and every
setting; `canvit_eval.harness`): `done` (a complete result of this identity is stored: skipped), `to run`,
`conflicting` (results of another identity sit under the same readable prefix: the job's result goes beside
them), or `unknown` (the identity cannot be computed here, e.g. a hub id offline: run, the job decides).
An incomplete job (killed: no sidecar) is run again (the subcommands resume from their partial sums).
`--worker-index I --num-workers N` takes every N-th job (a SLURM job array: I = $SLURM_ARRAY_TASK_ID).
`--dry-run` prints the plan with an estimated GPU time per job. Either way the data paths are checked first
(`check_data`): a bad --ade20k / --imagenet is a usage error (exit 2), not a failed first job.

GPU-time estimates (H100, bf16) come from the inference throughput measured on an RTX 4090 (c32 about
1,350 glimpses/s, c64 about 430, as reported for the authors' code; not measured here), times
H100_OVER_4090 = 1.5 (our assumption), plus a fixed start-up cost per process; DINOv3 and the teacher are costed from their FLOPs at
TEACHER_TFLOPS. They are planning figures, not measurements.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from canvit_model import releases
from canvit_results.cli import int_at_least, store_dir

from .harness import readable_prefix, short_name
from .tasks.reconstruction import run_prefix as reconstruction_prefix

TASK_MODULES = {"ade20k": "canvit_eval.tasks.ade20k", "in1k": "canvit_eval.tasks.in1k",
                "reconstruction": "canvit_eval.tasks.reconstruction"}

CANVIT_B = releases.FLAGSHIP
IN1K_PROBE = releases.IN1K_PROBE
FINETUNED = releases.FINETUNED_IN1K  # the paper's 84.5%
TEACHER = releases.TEACHER
ADE20K_CONFIGS = ((512, 32), (512, 64), (1024, 64))
ADE20K_POLICIES = ("c2f", "eg-c2f", "f-iid", "r-iid", "f2c", "rfs")
IN1K_POLICIES = ("c2f", "f2c", "f-iid", "r-iid", "rfs")
DETERMINISTIC = frozenset({"eg-c2f", "rfs"})
DINOV3_SIZES = releases.DINOV3_SHORT
DINOV3_INPUT_PX = (128, 144, 160, 192, 256, 384, 512)
KINDS = ("ade20k", "ade20k-dinov3", "in1k", "reconstruction")

# Sizes of the evaluation sets.
ADE20K_VAL = 2000
IN1K_VAL = 50000

# Planning figures (see module docstring).
GLIMPSES_PER_S_4090 = {32: 1350.0, 64: 430.0}
H100_OVER_4090 = 1.5
STARTUP_S = 60.0  # process start, model + probe download / load, data listing
TEACHER_TFLOPS = 100.0  # sustained bf16/TF32 throughput assumed for plain ViT forwards on an H100


def ade20k_probe(scene: int, grid: int, model_short: str = "in21k") -> str:
    return releases.ade20k_probe(scene, grid, model_short)


def dinov3_probe(backbone: str, px: int) -> str:
    return releases.dinov3_ade20k_probe(backbone, px)


def glimpse_seconds(num_glimpses: int, canvas_grid: int) -> float:
    """Estimated H100 seconds for `num_glimpses` CanViT-B glimpses (forward only) at this canvas grid."""
    if canvas_grid <= 32:
        rate = GLIMPSES_PER_S_4090[32]
    else:  # canvas attention dominates beyond c32: scale with the number of canvas tokens
        rate = GLIMPSES_PER_S_4090[64] * (64 / canvas_grid) ** 2
    return num_glimpses / (rate * H100_OVER_4090)


def vit_seconds(num_images: int, backbone: str, px: int) -> float:
    """Estimated seconds for DINOv3 forwards (FLOPs from canvit_eval.flops at TEACHER_TFLOPS)."""
    from .flops import dinov3

    return num_images * dinov3(backbone, px, px).total / (TEACHER_TFLOPS * 1e12)


@dataclass(frozen=True)
class Job:
    kind: str  # results kind the job writes
    key: str  # the readable prefix of its results key (the task appends the identity digest)
    argv: tuple[str, ...]  # `canvit-eval` arguments (subcommand first)
    gpu_s: float  # estimated H100 seconds
    round: int = 0  # seed index: the plan runs round 0 of everything first

    def command(self) -> str:
        return shlex.join(["canvit-eval", *self.argv])


@dataclass
class MatrixConfig:
    model: str = CANVIT_B
    ade20k: str = "ADEChallengeData2016"
    imagenet: str = "imagenet"
    imagenet_split: str = "val"
    in1k_probe: str = IN1K_PROBE
    finetuned: str | None = FINETUNED  # IN1k runs of the fine-tuned classifier too (None: skip)
    results: str | None = None
    kinds: tuple[str, ...] = KINDS
    ade20k_seeds: int = 10
    in1k_seeds: int = 5
    reconstruction_seeds: int = 5
    ade20k_policies: tuple[str, ...] = ADE20K_POLICIES
    in1k_policies: tuple[str, ...] = IN1K_POLICIES
    presets: tuple[str, ...] | None = None  # default: every PRESETS entry with a released checkpoint
    extra: tuple[str, ...] = field(default_factory=tuple)  # appended to every job (e.g. --limit 100)
    limit: int | None = None


def _seeds(policy: str, n: int) -> range:
    return range(1 if policy in DETERMINISTIC else n)


def plan(cfg: MatrixConfig) -> list[Job]:
    """Every job of the matrix, breadth-first over seeds (stable order)."""
    from canvit_model import PRESETS

    jobs: list[Job] = []
    common = (["--results", cfg.results] if cfg.results else []) + list(cfg.extra)
    lim = ["--limit", str(cfg.limit)] if cfg.limit else []
    n_ade = min(cfg.limit or ADE20K_VAL, ADE20K_VAL)
    n_in1k = min(cfg.limit or IN1K_VAL, IN1K_VAL)
    if "ade20k" in cfg.kinds:
        for scene, grid in ADE20K_CONFIGS:
            for policy in cfg.ade20k_policies:
                for seed in _seeds(policy, cfg.ade20k_seeds):
                    key = readable_prefix(short_name(cfg.model), policy, scene, grid, seed, cfg.limit)
                    argv = ["ade20k", "--model", cfg.model, "--probe", ade20k_probe(scene, grid), "--data", cfg.ade20k,
                            "--policy", policy, "--glimpses", "21", "--seed", str(seed), "--scene-size", str(scene),
                            "--canvas-grid", str(grid), *lim, *common]
                    jobs.append(Job("ade20k", key, tuple(argv), STARTUP_S + glimpse_seconds(n_ade * 21, grid), seed))
    if "ade20k-dinov3" in cfg.kinds:
        for backbone in DINOV3_SIZES:
            for px in DINOV3_INPUT_PX:
                key = f"dinov3-{backbone}-{px}px" + (f"-limit{cfg.limit}" if cfg.limit else "")
                argv = ["ade20k", "--dinov3", backbone, "--input-px", str(px), "--probe", dinov3_probe(backbone, px),
                        "--data", cfg.ade20k, *lim, *common]
                jobs.append(Job("ade20k-dinov3", key, tuple(argv), STARTUP_S + vit_seconds(n_ade, backbone, px)))
    if "in1k" in cfg.kinds:
        for policy in cfg.in1k_policies:
            for seed in _seeds(policy, cfg.in1k_seeds):
                key = readable_prefix(short_name(cfg.model), policy, 512, 32, seed, cfg.limit)
                argv = ["in1k", "--model", cfg.model, "--probe", cfg.in1k_probe, "--data", cfg.imagenet,
                        "--split", cfg.imagenet_split, "--policy", policy, "--glimpses", "21", "--seed", str(seed),
                        "--scene-size", "512", "--canvas-grid", "32", *lim, *common]
                jobs.append(Job("in1k", key, tuple(argv), STARTUP_S + glimpse_seconds(n_in1k * 21, 32), seed))
                if cfg.finetuned:  # a saved classifier: no probe
                    key = readable_prefix(short_name(cfg.finetuned), policy, 512, 32, seed, cfg.limit)
                    argv = ["in1k", "--model", cfg.finetuned, "--data", cfg.imagenet, "--split", cfg.imagenet_split,
                            "--policy", policy, "--glimpses", "21", "--seed", str(seed), "--scene-size", "512",
                            "--canvas-grid", "32", *lim, *common]
                    jobs.append(Job("in1k", key, tuple(argv), STARTUP_S + glimpse_seconds(n_in1k * 21, 32), seed))
    if "reconstruction" in cfg.kinds:
        presets = cfg.presets or tuple(n for n, p in PRESETS.items() if p.hub_repo)
        for name in presets:
            if name not in PRESETS:
                raise ValueError(f"preset {name!r} is unknown; valid presets: {list(PRESETS)}")
            for seed in range(cfg.reconstruction_seeds):
                key = reconstruction_prefix(name, seed, limit=cfg.limit)
                argv = ["reconstruction", "--model", name, "--teacher", TEACHER, "--data", cfg.ade20k,
                        "--seed", str(seed), *lim, *common]
                est = STARTUP_S + glimpse_seconds(n_ade * 10, 32) + vit_seconds(n_ade, "vitb16", 512)
                jobs.append(Job("reconstruction", key, tuple(argv), est, seed))
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(jobs, key=lambda j: (j.round, order[j.kind]))  # stable: configuration order kept


def shard(jobs: Sequence[Job], worker_index: int, num_workers: int) -> list[Job]:
    """Every `num_workers`-th job starting at `worker_index` (jobs of one worker run in plan order)."""
    return [j for i, j in enumerate(jobs) if i % num_workers == worker_index]


def run_job(job: Job, *, in_process: bool = False) -> int:
    """Run one job: a fresh process (default) or, for debugging, in this process."""
    if in_process:
        from .cli import main as cli_main

        try:
            return int(cli_main(list(job.argv)) or 0)
        except SystemExit as e:  # argparse errors
            return int(e.code) if isinstance(e.code, int) else 1
    return subprocess.run([sys.executable, "-m", "canvit_eval.cli", *job.argv], check=False).returncode


def _fmt_time(seconds: float) -> str:
    h, rem = divmod(round(seconds), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def job_identity(job: Job) -> Any:
    """The `RunIdentity` the job's task will write under (its own `plan()` on the job's arguments, on the device
    the job would use), or a one-line reason why it cannot be computed here."""
    import contextlib
    import importlib
    import io

    import torch

    from .inputs import local_path

    sub, argv = job.argv[0], list(job.argv[1:])
    data = argv[argv.index("--data") + 1] if "--data" in argv else None
    try:
        if data is not None and local_path(data) is None:
            return f"hub dataset {data}: listed when the job runs"
    except FileNotFoundError as e:
        return str(e)
    mod = importlib.import_module(TASK_MODULES[sub])
    parser = mod.build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
            return mod.plan(parser, args, torch.device("cuda" if torch.cuda.is_available() else "cpu"))[0]
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        return lines[-1].split("error: ", 1)[-1] if lines else "cannot compute the identity"


@functools.lru_cache(maxsize=None)
def _cached_identity(job: Job) -> Any:
    return job_identity(job)


def job_status(results: str | None, job: Job) -> tuple[str, str]:
    """(status, detail): 'done' (a complete result of the job's identity is stored), 'to run', 'conflicting'
    (other identities under the same prefix; detail names them) or 'unknown' (detail says why)."""
    ident = _cached_identity(job)
    if isinstance(ident, str):
        return "unknown", ident
    st = ident.status(results)
    if st.status == "done":
        return "done", st.key
    if st.status == "conflicting":
        return "conflicting", f"{st.key} goes beside {', '.join(st.others)}"
    return "to run", st.key


def describe(jobs: Sequence[Job], results: str | None) -> str:
    lines = [f"{'#':>4}  {'status':11}  {'kind':15}  {'est. GPU':>8}  key / command"]
    todo_s, counts = 0.0, {"done": 0, "to run": 0, "conflicting": 0, "unknown": 0}
    for i, j in enumerate(jobs):
        status, detail = job_status(results, j)
        counts[status] += 1
        todo_s += 0 if status == "done" else j.gpu_s
        lines.append(f"{i:>4}  {status:11}  {j.kind:15}  {_fmt_time(j.gpu_s):>8}  {j.key}  ({detail})")
        lines.append(f"{'':>4}  {'':11}  {'':15}  {'':>8}  {j.command()}")
    total = sum(j.gpu_s for j in jobs)
    lines.append(f"{len(jobs)} jobs: {counts['done']} done, {counts['to run']} to run, {counts['conflicting']} "
                 f"conflicting (a new result beside another identity's), {counts['unknown']} unknown until run; "
                 f"estimated GPU time {_fmt_time(todo_s)} to run ({_fmt_time(total)} for the whole plan; H100 "
                 "estimates, see --help)")
    return "\n".join(lines)


EXAMPLE = """examples:
  canvit-eval matrix --dry-run --ade20k /data/ADEChallengeData2016 --imagenet /data/imagenet
  canvit-eval matrix --ade20k /data/ADEChallengeData2016 --imagenet /data/imagenet --results results/
  # SLURM array of 16 GPUs:  #SBATCH --array=0-15
  canvit-eval matrix --worker-index $SLURM_ARRAY_TASK_ID --num-workers 16 --ade20k ... --imagenet ...
  # smoke test of every command on 64 images per run, one seed:
  canvit-eval matrix --limit 64 --ade20k-seeds 1 --in1k-seeds 1 --reconstruction-seeds 1 ..."""


def check_data(p: argparse.ArgumentParser, cfg: MatrixConfig, kinds: set[str]) -> None:
    """The data the jobs of `kinds` read, checked as those jobs check it (a usage error naming --ade20k /
    --imagenet): a local path is opened (layout, split, images), a hub id is left to the jobs; nothing is
    downloaded, so a dry run can check too."""
    from .ade20k.data import open_ade20k
    from .harness import open_source
    from .inputs import local_path, usage_errors
    from .tasks.reconstruction import ade20k_images

    reads = [("--ade20k", cfg.ade20k)] if kinds & {"ade20k", "ade20k-dinov3", "reconstruction"} else []
    reads += [("--imagenet", cfg.imagenet)] if "in1k" in kinds else []
    for flag, spec in reads:
        with usage_errors(p, flag, spec):
            if local_path(spec) is None:
                continue
            if flag == "--imagenet":
                open_source(p, spec, cfg.imagenet_split, "folder", flag=flag)
            elif kinds & {"ade20k", "ade20k-dinov3"}:  # images + annotations
                open_ade20k(spec, "validation")
            else:  # reconstruction reads the validation images only
                open_source(p, *ade20k_images(spec, "validation"), None, flag=flag)


def _csv(choices: Sequence[str], name: str):
    def parse(v: str) -> tuple[str, ...]:
        items = tuple(x for x in v.split(",") if x)
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{name}: {bad or v!r} not in {', '.join(choices)}")
        return items

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    from canvit_model import PRESETS

    p = argparse.ArgumentParser(
        prog="canvit-eval matrix",
        description="The paper's evaluation runs (ADE20K, DINOv3 baselines, ImageNet-1k, reconstruction): print "
                    "the plan, run it job after job in fresh processes, skip runs whose complete result exists.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=CANVIT_B, help="CanViT-B checkpoint for the ADE20K and IN1k runs")
    p.add_argument("--ade20k", default="ADEChallengeData2016", help="ADE20K root (or HF dataset id / save_to_disk dir)")
    p.add_argument("--imagenet", default="imagenet", help="ImageNet root with val/ class folders (or HF dataset id)")
    p.add_argument("--in1k-probe", default=IN1K_PROBE, help=f"DINOv3 IN1k probe (default {IN1K_PROBE})")
    p.add_argument("--finetuned", default=FINETUNED, help=f"fine-tuned classifier also run on IN1k ('' to skip; "
                   f"default {FINETUNED})")
    p.add_argument("--imagenet-split", default="val", help="split / sub-folder of --imagenet (default val)")
    p.add_argument("--results", type=store_dir, default=None, help="results store (default $CANVIT_RESULTS or results/)")
    p.add_argument("--only", type=_csv(KINDS, "--only"), default=KINDS, help=f"comma-separated kinds ({', '.join(KINDS)})")
    p.add_argument("--ade20k-policies", type=_csv(ADE20K_POLICIES, "--ade20k-policies"), default=ADE20K_POLICIES)
    p.add_argument("--in1k-policies", type=_csv(IN1K_POLICIES, "--in1k-policies"), default=IN1K_POLICIES)
    p.add_argument("--presets", type=_csv(tuple(PRESETS), "--presets"), default=None,
                   help="reconstruction checkpoints (default: every preset with a released checkpoint)")
    p.add_argument("--ade20k-seeds", type=int_at_least(0, "--ade20k-seeds"), default=10, help="runs per stochastic ADE20K policy (10)")
    p.add_argument("--in1k-seeds", type=int_at_least(0, "--in1k-seeds"), default=5, help="runs per stochastic IN1k policy (5)")
    p.add_argument("--reconstruction-seeds", type=int_at_least(0, "--reconstruction-seeds"), default=5, help="runs per checkpoint (5)")
    p.add_argument("--limit", type=int_at_least(1, "--limit"), default=None, help="smoke runs on the first N images (keys get -limitN; default: all)")
    p.add_argument("--extra", default="", help="extra arguments appended to every job, e.g. \"--batch-size 16\"")
    p.add_argument("--worker-index", type=int_at_least(0, "--worker-index"), default=0, help="this worker's index (job array)")
    p.add_argument("--num-workers", type=int_at_least(0, "--num-workers"), default=1, help="workers sharing the plan")
    p.add_argument("--dry-run", action="store_true", help="print the plan with estimated GPU time; run nothing")
    p.add_argument("--keep-going", action="store_true", help="continue after a failed job (exit 1 at the end)")
    p.add_argument("--in-process", action="store_true", help="run jobs in this process (debugging)")
    args = p.parse_args(argv)
    if args.num_workers < 1:
        p.error(f"--num-workers must be >= 1, got {args.num_workers}")
    if args.worker_index >= args.num_workers:
        p.error(f"--worker-index must be in [0, {args.num_workers}) for --num-workers {args.num_workers}, "
                f"got {args.worker_index}")
    try:
        extra = tuple(shlex.split(args.extra))
    except ValueError as e:
        p.error(f"--extra {args.extra!r}: {e}")
    cfg = MatrixConfig(
        model=args.model, ade20k=args.ade20k, imagenet=args.imagenet, imagenet_split=args.imagenet_split,
        in1k_probe=args.in1k_probe, finetuned=args.finetuned or None,
        results=args.results, kinds=args.only, ade20k_seeds=args.ade20k_seeds, in1k_seeds=args.in1k_seeds,
        reconstruction_seeds=args.reconstruction_seeds, ade20k_policies=args.ade20k_policies,
        in1k_policies=args.in1k_policies, presets=args.presets, extra=extra,
        limit=args.limit or None,
    )
    jobs = shard(plan(cfg), args.worker_index, args.num_workers)
    check_data(p, cfg, {j.kind for j in jobs})  # dry run or not: a bad path fails now, not in the first job
    if args.num_workers > 1:
        print(f"worker {args.worker_index} of {args.num_workers}: {len(jobs)} jobs")
    print(describe(jobs, args.results))
    if args.dry_run:
        return 0

    failed: list[str] = []
    for i, job in enumerate(jobs):
        status, detail = job_status(args.results, job)
        if status == "done":
            print(f"[{i + 1}/{len(jobs)}] skip {job.kind}/{detail} (complete)")
            continue
        print(f"[{i + 1}/{len(jobs)}] run  {job.kind}/{job.key} ({status}: {detail}): {job.command()}", flush=True)
        t0 = time.time()
        rc = run_job(job, in_process=args.in_process)
        _cached_identity.cache_clear()
        after, _ = job_status(args.results, job)
        ok = rc == 0 and after in ("done", "unknown")
        print(f"[{i + 1}/{len(jobs)}] {'done' if ok else 'FAILED'} {job.kind}/{job.key} in {_fmt_time(time.time() - t0)}"
              + ("" if ok else f" (exit code {rc}{', no complete result' if rc == 0 else ''})"), flush=True)
        if not ok:
            failed.append(f"{job.kind}/{job.key}")
            if not args.keep_going:
                print("stopping; rerun the same command to continue (finished runs are skipped)", file=sys.stderr)
                return 1
    if failed:
        print(f"{len(failed)} jobs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
