"""canvit-model: CanViT (Canvas Vision Transformer) for inference, loadable from the official checkpoints.

    from canvit_model import CanViTForPretraining, Viewpoint, sample_at_viewpoint
"""

from .canvit import CanViT, CanViTForPretraining, CanViTOutput, RecurrentState
from .config import BACKBONES, CanViTConfig, ViTConfig
from .geometry import Viewpoint, grid_coords, sample_at_viewpoint
from .presets import PRESETS, Preset, preset

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "CanViT",
    "CanViTConfig",
    "CanViTForPretraining",
    "CanViTOutput",
    "PRESETS",
    "Preset",
    "RecurrentState",
    "ViTConfig",
    "Viewpoint",
    "grid_coords",
    "preset",
    "sample_at_viewpoint",
]
