"""canvit-model: CanViT (Canvas Vision Transformer) for inference, loadable from the official checkpoints.

    from canvit_model import CanViTForPretraining, Viewpoint, sample_at_viewpoint
"""

from .canvit import CanViT, CanViTForPretraining, CanViTOutput, RecurrentState, canvit_num_params
from .config import BACKBONES, CanViTConfig, ViTConfig
from .dinov3 import DINOv3, DINOv3Features
from .geometry import Viewpoint, grid_coords, sample_at_viewpoint
from .layers.fast import CPU_MODES, cpu_inference
from .presets import PRESETS, Preset, preset
from .viewpoints import MIN_SCALE, quadtree_tiles, quadtree_viewpoint, random_viewpoints
from .classification import (
    CanViTForImageClassification,
    ClassificationOutput,
    ClassificationReadout,
    LinearProbe,
    fuse_probe,
    load_linear_probe,
    save_linear_probe,
)
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, center_crop_transform, square_resize_transform
from .preprocess import center_crop_labels, imagenet_denormalize
from .segmentation import CanViTForSemanticSegmentation, SegmentationProbe, ade20k_targets

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "CPU_MODES",
    "CanViT",
    "CanViTConfig",
    "CanViTForPretraining",
    "CanViTOutput",
    "DINOv3",
    "DINOv3Features",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_SCALE",
    "PRESETS",
    "Preset",
    "RecurrentState",
    "ViTConfig",
    "Viewpoint",
    "canvit_num_params",
    "center_crop_transform",
    "cpu_inference",
    "grid_coords",
    "imagenet_denormalize",
    "preset",
    "quadtree_tiles",
    "quadtree_viewpoint",
    "random_viewpoints",
    "sample_at_viewpoint",
    "square_resize_transform",
    "CanViTForImageClassification",
    "ClassificationOutput",
    "ClassificationReadout",
    "LinearProbe",
    "fuse_probe",
    "load_linear_probe",
    "save_linear_probe",
    "CanViTForSemanticSegmentation",
    "SegmentationProbe",
    "ade20k_targets",
    "center_crop_labels",
]
