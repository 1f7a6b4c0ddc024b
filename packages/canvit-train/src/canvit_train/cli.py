"""`canvit-train SUBCOMMAND` and the `pretrain` shortcut."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from canvit_results import dispatch

COMMANDS = {
    "export-teacher-features": ("canvit_train.data.export", "precompute DINOv3 teacher features into safetensors shards"),
    "verify-features": ("canvit_train.data.verify", "check shards: counts, positions, sha256, NaN; optional recompute"),
    "compute-standardizers": ("canvit_train.data.standardizers", "per-position mean/variance of teacher features"),
    "pretrain": ("canvit_train.pretrain.cli", "passive-to-active dense latent distillation (same as `pretrain`)"),
    "benchmark": ("canvit_train.pretrain.benchmark", "training glimpses/s and peak memory of a preset"),
    "synthetic-data": ("canvit_train.data.synthetic_data", "generated scenes, ImageFolder, ADE20K and a tiny teacher "
                       "(the README's tiny end-to-end walkthrough)"),
}

EXAMPLES = (
    "canvit-train export-teacher-features --scenes /data/in21k --out /features/in21k --dry-run",
    "canvit-train pretrain --preset smoke",
)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("canvit-train", "CanViT pretraining: teacher features, standardizers, training.", COMMANDS, argv, EXAMPLES)


def pretrain_main(argv: Sequence[str] | None = None) -> int:
    """The `pretrain` console script (and `python -m canvit_train.pretrain.cli`): the run's own status only.

    Ctrl-C outside the training loop is one line and 130 (inside it, the loop checkpoints first); the
    output streams are flushed here, where a failure (a closed pipe) cannot turn a finished run's 0 into the
    interpreter's exit status 120 at shutdown.
    """
    from canvit_results.cli import run_main

    from canvit_train.pretrain.cli import RESUME_HINT
    from canvit_train.pretrain.cli import main as run

    rc = run_main("pretrain", run, list(sys.argv[1:] if argv is None else argv), resume_hint=RESUME_HINT)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said anyway
            try:  # and the interpreter's own flush at exit must not fail on it again
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
