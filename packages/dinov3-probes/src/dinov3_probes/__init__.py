"""dinov3-probes: Optuna-tuned ImageNet-1k linear probes for DINOv3 ViTs (paper App. H, Tables 17-18).

    dinov3-probes extract --model DINOV3 --data IMAGENET --split train --epochs 10 --out F
    dinov3-probes extract ... --split val --real-labels real.json
    dinov3-probes tune --features F --storage sqlite:///vitb16.db --study vitb16 --trials 100
    dinov3-probes export --storage sqlite:///vitb16.db --study vitb16 --features F --out probe/

DINOV3: a DINOv3 hub id (`canvit_model.releases.dinov3("vitb16")`) or directory.
Python: `load_probe(dir_or_repo) -> (nn.Linear, config)`, `save_probe`, `fit`, `ProbeParams`.
"""

from .probe import load_probe, make_probe, save_probe
from .train import ProbeData, ProbeParams, Schedule, fit

__all__ = ["ProbeData", "ProbeParams", "Schedule", "fit", "load_probe", "make_probe", "save_probe"]
