"""`canvit-train synthetic-data --out DIR`: every input of the pipeline, generated, for the README's tiny
end-to-end walkthrough (seconds on any CPU, no network, no dataset licence).

    DIR/scenes/                         unlabelled scenes (the ImageNet-21k stand-in: export, pretrain)
    DIR/imagenet/{train,val}/<class>/   an ImageFolder (the ImageNet-1k stand-in: dinov3-probes, in1k)
    DIR/ade20k/ADEChallengeData2016/    the ADE20K layout with annotation PNGs (train-probe, ade20k)
    DIR/teacher/                        a tiny random DINOv3 (dim 32, patch 16; transformers layout)

Scenes are drawn by `canvit_data.synthetic` from `--seed`: shapes of a few classes with their own colour
and texture, so probes have something to learn. The teacher is random: the numbers mean nothing; the
walkthrough checks that every command runs and writes what the next one reads.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLE = """example:
  canvit-train synthetic-data --out data      # then see "Tiny end to end" in the repository README
"""


def write_synthetic_data(out: str | Path, *, scenes: int = 64, classes: int = 4, per_class: int = 8,
                         ade20k: int = 16, size: int = 160, seed: int = 0) -> dict[str, Path]:
    """Write the walkthrough's inputs under `out` (see the module doc); returns their paths."""
    from canvit_data.synthetic import write_ade20k, write_image_folder

    from .teacher import write_tiny_teacher

    out = Path(out)
    hw = (size, size)
    write_image_folder(out / "scenes", scenes, seed=seed, size=hw, ext=".jpg")
    write_image_folder(out / "imagenet" / "train", classes * per_class, seed=seed + 1, num_classes=classes, size=hw,
                       ext=".jpg")
    write_image_folder(out / "imagenet" / "val", classes * max(2, per_class // 2), seed=seed + 2,
                       num_classes=classes, size=hw, ext=".jpg")
    ade = write_ade20k(out / "ade20k", ade20k, max(4, ade20k // 2), seed=seed + 3, num_classes=classes, size=hw)
    teacher = write_tiny_teacher(out / "teacher", seed)
    return {"scenes": out / "scenes", "imagenet": out / "imagenet", "ade20k": ade, "teacher": Path(teacher)}


def main(argv: Sequence[str] | None = None) -> int:
    from canvit_results.cli import HelpFormatter, int_at_least, output_dir

    ap = argparse.ArgumentParser(prog="canvit-train synthetic-data", description=__doc__, epilog=EXAMPLE,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--out", required=True, type=output_dir, help="folder to write (must not hold data yet)")
    ap.add_argument("--scenes", type=int_at_least(1, "--scenes"), default=64, help="unlabelled scenes")
    ap.add_argument("--classes", type=int_at_least(2, "--classes"), default=4,
                    help="classes of the ImageFolder and of the ADE20K annotations")
    ap.add_argument("--per-class", type=int_at_least(2, "--per-class"), default=8,
                    help="training images per class (val: half as many)")
    ap.add_argument("--ade20k", type=int_at_least(1, "--ade20k"), default=16, help="ADE20K training images (val: half)")
    ap.add_argument("--size", type=int_at_least(32, "--size"), default=160, help="side of every image in px")
    ap.add_argument("--seed", type=int_at_least(0, "--seed"), default=0, help="what is drawn")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()):
        ap.error(f"--out {out}: not empty; pick a new folder")
    paths = write_synthetic_data(out, scenes=args.scenes, classes=args.classes, per_class=args.per_class,
                                 ade20k=args.ade20k, size=args.size, seed=args.seed)
    for name, p in paths.items():
        print(f"{name:9s} {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
