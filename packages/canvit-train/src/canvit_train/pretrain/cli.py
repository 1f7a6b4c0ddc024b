"""`pretrain` / `canvit-train pretrain`: the command line of the pretraining loop."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import PRESETS, PretrainConfig

EXAMPLES = """\
examples:
  # a couple of minutes on any CPU: generated scenes, tiny model, tiny random teacher
  pretrain --preset smoke

  # CanViT-B exactly as the paper (Table 2) on one H100, from an export of teacher features
  pretrain --preset canvit-b --features /data/in21k-dv3b16-512 --scenes /data/in21k --compile --run-dir runs/canvitb

  # the same on 8 GPUs (global batch stays 64: 8 per GPU)
  torchrun --standalone --nproc-per-node 8 -m canvit_train.pretrain.cli --preset canvit-b \\
      --features /data/in21k-dv3b16-512 --scenes /data/in21k --compile --run-dir runs/canvitb

  # continue after a crash, a pre-emption or the end of a SLURM task (bit-for-bit the same run)
  pretrain --run-dir runs/canvitb --resume --features /data/in21k-dv3b16-512 --scenes /data/in21k

presets: """ + ", ".join(PRESETS) + """
signals: SIGTERM/SIGINT checkpoint and stop after the current step (exit status 0 / 130); SIGUSR1
checkpoints and continues
"""

RESUME_HINT = "continue with the same command plus --resume (and the same --run-dir)"

# Fields that only steer logging / checkpoint cadence: they may change on --resume.
BOOKKEEPING = ("log_every", "checkpoint_every", "validate_every", "validation_glimpses", "validation_scenes")
SKIP = ("backbone_override",)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _metavar(default: Any) -> str:
    return {bool: "", int: "INT", float: "FLOAT", str: "STR"}.get(type(default), "V")


def build_parser() -> argparse.ArgumentParser:
    from canvit_results.cli import HelpFormatter, output_dir, store_dir

    p = argparse.ArgumentParser(
        prog="pretrain",
        description="CanViT passive-to-active dense latent distillation (paper §5, Appendices D-E). "
        "A preset gives the recipe; flags override its fields.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--preset", default=None, choices=list(PRESETS), metavar="NAME",
                   help="recipe: " + ", ".join(PRESETS) + " (default canvit-b = Table 2; with --resume: the run's own)")
    p.add_argument("--list-presets", action="store_true", help="print the presets and their recipes, then exit")
    run = p.add_argument_group("run")
    run.add_argument("--run-dir", metavar="DIR", type=output_dir, help="checkpoints, metrics.csv, final/ (default: runs/PRESET-TIMESTAMP)")
    run.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --run-dir "
                     "(without --run-dir: the newest runs/PRESET-* with a checkpoint)")
    run.add_argument("--max-steps", type=int, metavar="N", help="stop this invocation at global step N (the recipe is unchanged)")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (backward_pass_autocast='off')")
    run.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda:LOCAL_RANK when available, else cpu)")
    run.add_argument("--keep-checkpoints", type=int, default=3, metavar="K", help="complete checkpoints kept (default 3)")
    run.add_argument("--export-final", action="store_true", help="export the newest checkpoint of --run-dir to RUN_DIR/final "
                     "(save_pretrained) and exit")
    run.add_argument("--results", type=store_dir, metavar="DIR", help="results store root (default $CANVIT_RESULTS or results/)")
    run.add_argument("--no-results", action="store_true", help="do not write the loss curves to the results store")
    run.add_argument("--run-name", help="results store key (default: the run directory's name)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--tensorboard", action="store_true", help="also log to RUN_DIR/tensorboard (needs tensorboard)")
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own; smoke: 1)")
    run.add_argument("--cpu-training", choices=["fp32", "eager"], default="fp32",
                     help="CPU fp32 training only: 'fp32' runs the linears' forward and input-gradient GEMMs on "
                          "oneDNN-packed weights (same gradients to float rounding, faster); 'eager' the plain ops "
                          "exactly (canvit_model.cpu_training). GPU runs never use it (default: fp32)")

    from .data import add_data_arguments

    add_data_arguments(p)
    rec = p.add_argument_group("recipe (override the preset's fields; default: the preset's value, shown for "
                               "canvit-b and smoke)")
    smoke = PRESETS["smoke"]
    for f in dataclasses.fields(PretrainConfig):
        if f.name in SKIP:
            continue
        default = f.default
        b, s = default, getattr(smoke, f.name)
        shown = lambda v: " ".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
        what = "bookkeeping; may change on --resume" if f.name in BOOKKEEPING else "recipe field"
        text = f"{what} {f.name} (default: the preset's; canvit-b {shown(b)}, smoke {shown(s)})"
        if isinstance(default, bool):
            rec.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif isinstance(default, tuple):
            typ = type(default[0]) if default else str
            rec.add_argument(_flag(f.name), dest=f.name, nargs="+", type=typ, default=None,
                             metavar=_metavar(default[0]) if default else "V", help=text)
        else:
            rec.add_argument(_flag(f.name), dest=f.name, type=type(default), default=None,
                             metavar=_metavar(default), help=text)
    return p


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(PretrainConfig):
        v = getattr(args, f.name, None)
        if f.name not in SKIP and v is not None:
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def default_run_dir(preset: str) -> Path:
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and run_id and run_id != "none":
        return Path("runs") / f"{preset}-torchrun-{run_id}"  # the same directory on every rank
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{preset}-{stamp}"


def newest_run(preset: str) -> Path | None:
    from .checkpoint import latest_checkpoint

    runs = [d for d in Path("runs").glob(f"{preset}-*") if d.is_dir() and latest_checkpoint(d) is not None]
    return max(runs, key=lambda d: latest_checkpoint(d).path.stat().st_mtime) if runs else None


def _err(msg: str) -> int:
    print(f"pretrain: error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    preset_given = args.preset
    args.preset = args.preset or "canvit-b"
    if args.list_presets:
        for name, c in PRESETS.items():
            model = c.model_preset
            if c.backbone_override:  # smoke: a tiny model, not the preset's architecture
                model += f" with backbone {c.backbone_override.get('backbone_name', '?')} (overridden)"
            print(f"{name}: model {model}, rollouts {'+'.join(c.rollouts)}, K={c.tbptt_chunk}, "
                  f"p_stop={c.stop_probability}, {c.steps} steps (warmup {c.warmup_steps}), batch {c.batch_size}, "
                  f"lr {c.lr_peak}, dense loss {c.dense_loss}")
        return 0
    if args.threads or args.preset == "smoke":
        import torch

        # smoke: one thread; tiny ops are latency-bound and oversubscribed cores make threads spin
        torch.set_num_threads(args.threads or 1)
    from . import checkpoint as ckpt
    from .data import DataMissing, build_data
    from .trainer import NonFiniteLoss, RunOptions, train

    over = overrides(args)
    try:
        cfg = PRESETS[args.preset].replace(**over)
        cfg.validate()
    except (TypeError, ValueError) as e:
        return _err(str(e))

    if args.run_dir:
        run_dir = Path(args.run_dir)
    elif args.resume or args.export_final:
        found = newest_run(args.preset)
        if found is None:
            return _err(f"--resume/--export-final: no run of preset {args.preset!r} with a checkpoint under runs/; pass --run-dir")
        run_dir = found
    else:
        run_dir = default_run_dir(args.preset)

    from .checks import (
        resume_problem,
        run_dir_problem,
        same_export_problem,
        scenes_problem,
        standardizers_problem,
    )

    problem = run_dir_problem(run_dir)
    if problem:
        return _err(problem)
    latest = ckpt.latest_checkpoint(run_dir) if (args.resume or args.export_final) else None
    if latest is not None:  # the checkpoint's recipe wins; only bookkeeping may change
        saved = PretrainConfig.from_dict(latest.state["config"])
        saved_preset = latest.state.get("preset")
        # the same preset (or none): only the explicit flags are compared; another preset: its whole recipe
        other = preset_given is not None and preset_given != saved_preset
        asked = (PRESETS[preset_given] if other else saved).replace(**over)
        problem = resume_problem(saved, asked, over, preset_given if other else None, saved_preset, BOOKKEEPING)
        if problem:
            return _err(problem)
        cfg = saved.replace(**{k: v for k, v in over.items() if k in BOOKKEEPING})
        preset_name = saved_preset or args.preset
        if args.resume:
            problem = same_export_problem(run_dir, args.features)
            if problem:
                return _err(problem)
    else:
        preset_name = args.preset
    if args.export_final:
        if latest is None:
            return _err(f"--export-final: no complete checkpoint under {run_dir / 'checkpoints'}")
        return export_final(latest, cfg, run_dir)

    no_data = args.features is None and args.images is None and not args.synthetic and cfg.teacher != "tiny-random"
    if no_data:
        from .data import NO_DATA_HELP

        print(NO_DATA_HELP, file=sys.stderr)
        return 2

    for problem in (standardizers_problem(args.standardizers),
                    scenes_problem("--scenes", args.images, args.split, args.image_column),
                    scenes_problem("--val-scenes", args.val_images)):
        if problem:
            return _err(problem)
    if args.images is not None and args.features is None and cfg.teacher == "tiny-random":
        return _err(f"--scenes {args.images} needs a real teacher: --preset {preset_name}'s teacher 'tiny-random' is "
                    "generated only with its own scenes (drop --scenes), or pass --teacher ID_OR_DIR")

    import torch

    from canvit_results.cli import pick_device

    from .trainer import init_distributed, run_device

    d = init_distributed(pick_device(args.device, parser=parser).type)
    device = run_device(args.device, d)
    try:
        data = build_data(args, cfg, run_dir, device, rank=d.rank)
        opts = RunOptions(run_dir=run_dir, resume=args.resume, device=args.device, compile=args.compile,
                          max_steps=args.max_steps, keep_checkpoints=args.keep_checkpoints, results=args.results,
                          write_results=not args.no_results, run_name=args.run_name, progress=not args.no_progress,
                          tensorboard=args.tensorboard, preset=preset_name, argv=["pretrain", *argv])
        from canvit_model import cpu_training

        with cpu_training(args.cpu_training):
            summary = train(cfg, data, opts)
    except DataMissing as e:
        print(str(e), file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"pretrain: stopped: {e}", file=sys.stderr)
        return 3
    except OSError as e:  # missing files, an unreachable hub without a cached teacher, a full disk
        return _err(str(e))
    except ValueError as e:
        if type(e).__name__ == "ShardError" or str(e).startswith(("canvas_grid=", "batch_size=", "invalid pretraining")):
            return _err(_last_line(str(e)))
        raise
    if summary["status"] == "interrupted":
        print(f"pretrain: interrupted ({summary['stopped_by']}) at step {summary['step']}; checkpoint in "
              f"{run_dir / 'checkpoints'}; continue with --run-dir {run_dir} --resume", file=sys.stderr)
        # Ctrl-C: 130 like every command; SIGTERM (a scheduler's pre-emption): 0, the run is safely checkpointed
        return 130 if "SIGINT" in (summary["stopped_by"] or "") else 0
    elif d.main:
        trend = ""
        if "loss_first" in summary:
            trend = (f"; mean loss of the first {summary['loss_window']} steps {summary['loss_first']:.4f} -> "
                     f"last {summary['loss_window']} steps {summary['loss_last']:.4f}")
        print(f"pretrain: done at step {summary['step']}{trend}; weights: {summary.get('final')}", file=sys.stderr)
    return 0


def _last_line(msg: str) -> str:
    """A loader worker's error comes back wrapped with its traceback ("Caught ShardError in DataLoader worker
    process 0. Original Traceback ..."): keep the error's own line."""
    lines = [ln for ln in msg.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return msg
    last = lines[-1]
    return last.split("Error: ", 1)[1] if "Error: " in last else last


def export_final(latest: Any, cfg: PretrainConfig, run_dir: Path) -> int:
    """On-demand export: the newest checkpoint's weights to RUN_DIR/final (canvit-pytorch 0.2 layout)."""
    from canvit_model import CanViTForPretraining
    from safetensors.torch import load_file

    sd = load_file(os.fspath(latest.path / "model.safetensors"))
    dim = sd["teacher_cls_standardizer.mean"].shape[-1]
    grid = math.isqrt(sd["teacher_patch_standardizer.mean"].shape[0])
    model = CanViTForPretraining(cfg.canvit_config(), teacher_dim=dim, teacher_patch_grid=grid)
    model.load_state_dict(sd, strict=True)
    model.hub_extra = {"training": {"recipe": "canvit-train pretrain", "preset": latest.state.get("preset"),
                                    "steps_done": latest.step, **latest.state["config"]}}
    model.save_pretrained(run_dir / "final")
    print(f"pretrain: step {latest.step} exported to {run_dir / 'final'}", file=sys.stderr)
    return 0


def pretrain_main(argv: Sequence[str] | None = None) -> int:
    """The `pretrain` console script (and `python -m canvit_train.pretrain.cli`): the run's own status only.

    Ctrl-C outside the training loop is one line and 130 (inside it, the loop checkpoints first); the
    output streams are flushed here, where a failure (a closed pipe) cannot turn a finished run's 0 into the
    interpreter's exit status 120 at shutdown.
    """
    from canvit_results.cli import run_main

    rc = run_main("pretrain", main, list(sys.argv[1:] if argv is None else argv), resume_hint=RESUME_HINT)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said anyway
            try:  # and the interpreter's own flush at exit must not fail on it again
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass
    return rc


if __name__ == "__main__":  # torchrun -m canvit_train.pretrain.cli ...
    raise SystemExit(pretrain_main())
