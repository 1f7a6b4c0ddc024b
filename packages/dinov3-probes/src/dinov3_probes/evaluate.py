"""`dinov3-probes evaluate`: top-1 / top-5 / ReaL top-1 of a probe (ours or a published one) on cached val features."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from canvit_model import releases

EXAMPLE = f"""Example (the published ViT-B probe on features from `dinov3-probes extract --split val`):
    dinov3-probes evaluate --probe {releases.IN1K_PROBE} \\
        --features features/vitb16 --real-labels real.json"""


def build_parser() -> argparse.ArgumentParser:
    from canvit_results.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="dinov3-probes evaluate", description=__doc__, epilog=EXAMPLE,
                                formatter_class=HelpFormatter)
    p.add_argument("--probe", required=True, help="probe directory or hub repo (config.json + model.safetensors)")
    p.add_argument("--features", required=True, help="features directory holding val/")
    p.add_argument("--real-labels", default=None, help="real.json (if not stored at val extraction)")
    p.add_argument("--loss", choices=("softmax", "sigmoid"), default=None,
                   help="loss to report (default: the probe's trial_params.objective, else softmax)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available; default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from canvit_results.cli import pick_device

    device = pick_device(args.device, parser=parser)

    from .extract import named
    from .features import load_split
    from .metrics import align_real_labels, read_real_json, real_tensor
    from .probe import load_probe
    from .train import evaluate

    with named("--probe", args.probe):
        probe, cfg = load_probe(args.probe)
    with named("--features", args.features):
        val = load_split(args.features, "val")
    fs = val.sets[0]
    if fs.x.shape[1] != probe.in_features:
        raise SystemExit(f"--probe takes {probe.in_features}-d features but {args.features} holds {fs.x.shape[1]}-d ones")
    real = val.real
    if args.real_labels:
        real = align_real_labels(read_real_json(args.real_labels, probe.out_features), fs.keys, source=args.real_labels)
    loss = args.loss or (cfg.get("trial_params") or {}).get("objective") or "softmax"
    metrics = evaluate(probe.to(device), fs.to(device), loss, real_tensor(real, device) if real is not None else None)
    print(json.dumps({"probe": str(args.probe), "images": fs.x.shape[0], "loss_kind": loss, **metrics}, indent=1))
    return 0
