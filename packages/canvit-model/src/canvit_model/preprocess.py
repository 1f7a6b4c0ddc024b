"""Image preprocessing shared by the teacher, the baselines and the evaluations (no torchvision).

Two recipes, both ending with ImageNet mean/std normalization:

- `center_crop_transform(image, size, resize_size=None)`: resize the shorter side to `resize_size`
  (default `size`), then take the central `size` x `size` crop (ImageNet classification; the DINOv3
  probes use resize_size = size, the classic "256 / 224" recipe uses resize_size = 256, size = 224).
- `square_resize_transform(image, size)`: resize to exactly `size` x `size`, ignoring the aspect ratio
  (the ADE20K "resize to square" scene recipe, and transformers' DINOv3 image processor).

Inputs: a PIL image (any mode; converted to RGB; PIL is imported only when one is passed), a uint8
tensor [3, H, W] or [B, 3, H, W] (0..255), or a float tensor of the same shapes with values in [0, 1].
Outputs are float32 [3, S, S] or [B, 3, S, S].

Resizing is bilinear with antialiasing (`F.interpolate(mode="bilinear", antialias=True)`), i.e. PIL's
triangle filter widened by the downscale factor. Differences from PIL / torchvision `Resize`:
- we resize in float32 and never round back to uint8, whereas PIL (and torchvision on PIL images or
  uint8 tensors) resizes uint8 in two passes, rounding after each: results differ by at most about one
  intensity level (1/255 before normalization, ~0.017 after);
- torchvision's default interpolation is also bilinear + antialias; the DINOv3 probe scripts'
  *bicubic* resize is not reproduced (their published val features used DALI's linear resize).
Output sizes and crop offsets follow torchvision exactly: the long side becomes
int(size * long / short), and the crop starts at int(round((H - S) / 2)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _size2(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair, got {size!r}")
    return int(size[0]), int(size[1])


def to_float_image(image: Any) -> torch.Tensor:
    """PIL image / uint8 tensor / float tensor in [0, 1] -> float32 [3, H, W] or [B, 3, H, W] in [0, 1]."""
    if not isinstance(image, torch.Tensor):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - a non-tensor without PIL installed
            raise TypeError(f"expected a torch.Tensor or a PIL image, got {type(image).__name__}") from None
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a torch.Tensor or a PIL image, got {type(image).__name__}")
        rgb = image.convert("RGB")
        w, h = rgb.size
        data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        image = data.view(h, w, 3).permute(2, 0, 1)
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected an image tensor [3, H, W] or [B, 3, H, W] (RGB, channels first), got {list(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float() / 255
    if not image.is_floating_point():
        raise ValueError(f"image tensors must be uint8 (0..255) or floating point (0..1), got {image.dtype}")
    return image.float()


def resize(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear antialiased resize of a float image [3, H, W] / [B, 3, H, W] to `size` (int = square)."""
    h, w = _size2(size, "size")
    batched = image.ndim == 4
    x = image if batched else image[None]
    if tuple(x.shape[-2:]) != (h, w):
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x if batched else x[0]


def resize_short_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is `size`, keeping the aspect ratio (torchvision `Resize(int)` sizes)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    h, w = image.shape[-2:]
    if h <= w:
        return resize(image, (size, int(size * w / h)))
    return resize(image, (int(size * h / w), size))


def center_crop(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """The central crop (torchvision offsets: int(round((H - h) / 2)))."""
    ch, cw = _size2(size, "size")
    h, w = image.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the image {h}x{w}")
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return image[..., top : top + ch, left : left + cw]


def normalize(
    image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """(x - mean) / std per channel, on a float image in [0, 1]."""
    m = torch.tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image - m) / s


def center_crop_transform(
    image: Any,
    size: int,
    resize_size: int | None = None,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Resize the shorter side to `resize_size` (default `size`), centre-crop `size` x `size`, normalize."""
    x = to_float_image(image)
    x = resize_short_side(x, size if resize_size is None else resize_size)
    return normalize(center_crop(x, size), mean, std)


def square_resize_transform(
    image: Any,
    size: int | Sequence[int],
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Resize to exactly `size` x `size` (aspect ratio not kept; the ADE20K scene recipe), normalize."""
    return normalize(resize(to_float_image(image), size), mean, std)
