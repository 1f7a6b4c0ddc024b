"""canvit-model: CanViT (Canvas Vision Transformer) for inference, loadable from the official checkpoints.

    from canvit_model import CanViTForPretraining, Viewpoint, sample_at_viewpoint
"""

from .canvit import CanViT, CanViTForPretraining, CanViTOutput, RecurrentState, canvit_num_params
from .config import BACKBONES, CanViTConfig, ViTConfig
from .dinov3 import DINOv3, DINOv3Features
from .geometry import Viewpoint, grid_coords, sample_at_viewpoint
from .layers.fast import CPU_MODES, cpu_inference, cpu_training
from .presets import PRESETS, TEST_PRESETS, Preset, preset
from .viewpoints import IID_LAWS, MIN_SCALE, IIDViewpoints, iid_viewpoint, quadtree_tiles, quadtree_viewpoint
from .viewpoints import random_viewpoints
from .metrics import RECONSTRUCTION_METRICS, model_reconstruction_cosines, reconstruction_cosines
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
    "IID_LAWS",
    "IIDViewpoints",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_SCALE",
    "PRESETS",
    "RECONSTRUCTION_METRICS",
    "Preset",
    "RecurrentState",
    "TEST_PRESETS",
    "ViTConfig",
    "Viewpoint",
    "canvit_num_params",
    "center_crop_transform",
    "cpu_inference",
    "cpu_training",
    "grid_coords",
    "iid_viewpoint",
    "imagenet_denormalize",
    "model_reconstruction_cosines",
    "preset",
    "quadtree_tiles",
    "quadtree_viewpoint",
    "random_viewpoints",
    "reconstruction_cosines",
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
