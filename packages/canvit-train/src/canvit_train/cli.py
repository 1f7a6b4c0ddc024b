"""`canvit-train SUBCOMMAND` and the `pretrain` shortcut."""

from __future__ import annotations

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


if __name__ == "__main__":
    raise SystemExit(main())
