"""`canvit-eval SUBCOMMAND`: the paper's evaluations of a frozen CanViT."""

from __future__ import annotations

from collections.abc import Sequence

from canvit_results import dispatch

COMMANDS = {
    "train-probe": ("canvit_eval.tasks.train_probe", "train an ADE20K linear segmentation probe (App. F.2.1)"),
    "ade20k": ("canvit_eval.tasks.ade20k", "ADE20K mIoU per timestep under a viewing policy (Tables 5-6)"),
    "in1k": ("canvit_eval.tasks.in1k", "ImageNet-1k top-1/top-5 per timestep through the DINOv3 probe (Table 7)"),
    "reconstruction": ("canvit_eval.tasks.reconstruction", "canvas-vs-teacher cosine per timestep (Tables 3-4)"),
    "matrix": ("canvit_eval.matrix", "the paper's run matrix: plan, run, skip what is done"),
    "visualize": ("canvit_eval.visualize", "glimpse boxes, canvas PCA, change maps: PNG strip + GIF"),
    "demo": ("canvit_eval.demo", "a browser app: place glimpses or run a policy, see boxes, canvas, classes, latency"),
    "latency": ("canvit_eval.latency", "latency benchmark (App. I protocol); same as `canvit-latency`"),
}

EXAMPLES = (
    "canvit-eval matrix --dry-run --ade20k /data/ADEChallengeData2016 --imagenet /data/imagenet",
    "canvit-eval ade20k --model CANVIT --probe PROBE --data /data/ADEChallengeData2016 --policy c2f --glimpses 21\n"
    "      (CANVIT, PROBE: hub ids or directories; `canvit-eval ade20k --help` names the released ones)",
)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("canvit-eval", "Evaluate a frozen CanViT (policies, ADE20K, ImageNet-1k, reconstruction).", COMMANDS, argv, EXAMPLES)


if __name__ == "__main__":
    raise SystemExit(main())
