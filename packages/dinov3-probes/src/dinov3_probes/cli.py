"""`dinov3-probes SUBCOMMAND`: ImageNet-1k linear probes for DINOv3 ViTs (paper App. H, Tables 17-18)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from canvit_model import releases
from canvit_results import dispatch

COMMANDS = {
    "extract": ("dinov3_probes.extract", "cache CLS features (train: Inception crop per augmentation epoch; val)"),
    "tune": ("dinov3_probes.tune", "Optuna search over the App. H.3 space on a persistent, shareable study"),
    "export": ("dinov3_probes.export", "retrain the best trial, write the published probe layout + results"),
    "evaluate": ("dinov3_probes.evaluate", "top-1 / top-5 / ReaL top-1 of a probe on cached val features"),
}

EXAMPLES = (
    f"dinov3-probes extract --model {releases.TEACHER} --data /data/imagenet --split val "
    "--out features/vitb16",
    "dinov3-probes tune --features features/vitb16 --storage sqlite:///studies/vitb16.db --study vitb16-holdout",
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return dispatch("dinov3-probes", "ImageNet-1k linear probes for DINOv3 ViTs (App. H, Tables 17-18).",
                        COMMANDS, argv, EXAMPLES)
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line (DINOV3_PROBES_TRACEBACK=1 for more)
        if os.environ.get("DINOV3_PROBES_TRACEBACK"):
            raise
        print(f"dinov3-probes: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
