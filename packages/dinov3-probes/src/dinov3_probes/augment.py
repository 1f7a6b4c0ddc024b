"""Train-time "Inception crop" (RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3) + horizontal flip), seeded
per image so an augmentation epoch is reproducible and resumable part by part.

The crop sampling follows torchvision's RandomResizedCrop algorithm (10 attempts at a random area
fraction and log-uniform aspect ratio, then a centre-crop fallback clamped to the ratio range); the
crop is then resized with `canvit_model.preprocess.resize` (bilinear, antialiased, float32).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from canvit_model.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize, resize, to_float_image

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10


def crop_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one image of one augmentation epoch (independent of batch and part boundaries)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def random_resized_crop_box(
    height: int, width: int, rng: np.random.Generator,
    scale: tuple[float, float] = SCALE, ratio: tuple[float, float] = RATIO,
) -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of a random-resized crop of a height x width image."""
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width} must be positive")
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: the whole image, cropped centrally to the nearest allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def inception_crop(
    image: Any, size: int, rng: np.random.Generator,
    mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """PIL image / image tensor [3, H, W] -> normalized float32 [3, size, size]: random-resized crop,
    resize, horizontal flip with probability 1/2."""
    x = to_float_image(image)  # [3, H, W] in [0, 1]
    top, left, h, w = random_resized_crop_box(x.shape[-2], x.shape[-1], rng)
    x = resize(x[..., top : top + h, left : left + w], size)
    if rng.uniform() < 0.5:
        x = x.flip(-1)
    return normalize(x, mean, std)
