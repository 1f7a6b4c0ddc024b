"""Image preprocessing shared by the teacher, the baselines and the evaluations (no torchvision).

Two recipes, both ending with ImageNet mean/std normalization:

- `center_crop_transform(image, size, resize_size=None)`: resize the shorter side to `resize_size`
  (default `size`), then take the central `size` x `size` crop (ImageNet classification; the DINOv3
  probes use resize_size = size, the classic "256 / 224" recipe uses resize_size = 256, size = 224).
- `square_resize_transform(image, size)`: resize to exactly `size` x `size`, ignoring the aspect ratio
  (the ADE20K "resize to square" scene recipe, and transformers' DINOv3 image processor).

Inputs: a PIL image (any mode; converted to RGB first; PIL is imported only when one is passed), a
uint8 tensor [3, H, W] or [B, 3, H, W] (0..255), or a float tensor of the same shapes with values in
[0, 1]. Outputs are float32 [3, S, S] or [B, 3, S, S]. Float tensors that look like 0..255 values
(maximum above 1.5) or already normalized (minimum below -0.5) are refused with a message.

PIL images follow torchvision exactly (`Resize(resize_size)` + `CenterCrop(size)`, or
`Resize((S, S))`, then `ToTensor` + `Normalize`): the resize is PIL's own `Image.resize(...,
BILINEAR)` on the uint8 image (antialiased), the long side becomes int(size * long / short) and the
crop starts at int(round((H - S) / 2)), then /255 and (x - mean) / std in float32. So features match
what the released probes were trained on, bit for bit.

Tensors take a float path: bilinear antialiased `F.interpolate` in float32, never rounded back to
uint8; the same sizes and offsets, within about one intensity level of the PIL path.

Label maps (segmentation annotations) take the same geometry with nearest neighbour and no value change:
`center_crop_labels(labels, size)`, and as canvit-pytorch's transforms `preprocess(size)` (images) /
`preprocess_labels(size)` (label maps: PIL label map -> [1, size, size] integer tensor).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Normalized ImageNet images lie in about [-2.2, 2.7]; 0..255 pixel values (normalized or not) go far beyond.
NORMALIZED_ABS_MAX = 8.0


def check_normalized(images: torch.Tensor, name: str = "images") -> None:
    """Refuse what cannot be a mean/std-normalized image: integer tensors, and floats beyond +-8
    (0..255 pixels, normalized or not). Skipped under torch.compile (it reads a value back)."""
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be a normalized float image (ImageNet mean/std), got dtype {images.dtype}: convert "
            "with canvit_model.preprocess (center_crop_transform / square_resize_transform / to_float_image + normalize)"
        )
    if torch.compiler.is_compiling() or images.numel() == 0:
        return
    peak = float(images.detach().abs().amax())
    if not peak <= NORMALIZED_ABS_MAX:
        raise ValueError(
            f"{name} has values up to {peak:.4g} in magnitude: that looks like 0..255 pixels, not an image "
            f"normalized with ImageNet mean/std (values within about [-2.2, 2.7]). Divide by 255 and normalize, "
            "e.g. with canvit_model.preprocess.normalize, or use center_crop_transform / square_resize_transform"
        )


def _size2(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair, got {size!r}")
    return int(size[0]), int(size[1])


def _pil_module(image: Any) -> Any:
    """PIL.Image if `image` is a PIL image, else None (PIL is imported only when it is already loaded)."""
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil if pil is not None and isinstance(image, pil.Image) else None


def _pil_rgb(image: Any) -> Any:
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _pil_to_uint8(image: Any) -> torch.Tensor:
    """An RGB PIL image -> uint8 [3, H, W] (torchvision's `pil_to_tensor`)."""
    rgb = _pil_rgb(image)
    w, h = rgb.size
    data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return data.view(h, w, 3).permute(2, 0, 1).contiguous()


def to_float_image(image: Any, name: str = "image") -> torch.Tensor:
    """PIL image / uint8 tensor / float tensor in [0, 1] -> float32 [3, H, W] or [B, 3, H, W] in [0, 1]."""
    if image is None:
        raise TypeError(f"{name} must be a PIL image or an image tensor, got None")
    if not isinstance(image, torch.Tensor):
        if _pil_module(image) is None:
            raise TypeError(
                f"{name} must be a PIL image or a torch.Tensor [3, H, W] / [B, 3, H, W], got {type(image).__name__}"
            )
        image = _pil_to_uint8(image)
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(
            f"{name} must be an image tensor [3, H, W] or [B, 3, H, W] (RGB, channels first), got {list(image.shape)}"
        )
    if image.dtype == torch.uint8:
        return image.float() / 255
    if not image.is_floating_point():
        raise ValueError(f"{name} tensors must be uint8 (0..255) or floating point (0..1), got {image.dtype}")
    if image.numel() and not torch.compiler.is_compiling():
        lo, hi = float(image.detach().amin()), float(image.detach().amax())
        if not hi <= 1.5:
            raise ValueError(
                f"{name} is a float tensor with values up to {hi:.4g}: that looks like 0..255 pixels. Float "
                "images must be in [0, 1]: divide by 255, or pass a uint8 tensor (converted for you)"
            )
        if not lo >= -0.5:
            raise ValueError(
                f"{name} is a float tensor with values down to {lo:.4g}: it looks already normalized. "
                "Preprocessing expects pixels in [0, 1] (float) or 0..255 (uint8)"
            )
    return image.float()


def imagenet_denormalize(
    image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undo `normalize`: x * std + mean per channel, for [3, H, W] or [..., 3, H, W] (e.g. to display a glimpse)."""
    if not isinstance(image, torch.Tensor) or image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"image must be a [..., 3, H, W] tensor, got {getattr(image, 'shape', type(image).__name__)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float (normalized) tensor, got dtype {image.dtype}")
    m = torch.tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return image * s + m


def _resized_size(h: int, w: int, size: int) -> tuple[int, int]:
    """torchvision `Resize(int)` output (H, W): the short side becomes `size`, the long int(size * long / short)."""
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


def _pil_resize(image: Any, hw: tuple[int, int]) -> Any:
    """torchvision's Resize on a PIL image: PIL's BILINEAR resize (antialiased), uint8 in and out."""
    pil = _pil_module(image)
    h, w = hw
    if image.size == (w, h):
        return image
    return image.resize((w, h), resample=pil.Resampling.BILINEAR)


def _pil_center_crop(image: Any, hw: tuple[int, int]) -> Any:
    ch, cw = hw
    w, h = image.size
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the image {h}x{w}")
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return image.crop((left, top, left + cw, top + ch))


def resize(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear antialiased resize of a float image [3, H, W] / [B, 3, H, W] to `size` (int = square)."""
    h, w = _size2(size, "size")
    batched = image.ndim == 4
    x = image if batched else image[None]
    if tuple(x.shape[-2:]) != (h, w):
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x if batched else x[0]


def _check_size(size: Any, name: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {size!r}")
    return size


def resize_short_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is `size`, keeping the aspect ratio (torchvision `Resize(int)` sizes)."""
    _check_size(size, "size")
    h, w = image.shape[-2:]
    return resize(image, _resized_size(h, w, size))


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
    """Resize the shorter side to `resize_size` (default `size`), centre-crop `size` x `size`, normalize.

    A PIL image goes through PIL exactly as torchvision's Resize + CenterCrop + ToTensor + Normalize.
    """
    _check_size(size, "size")
    short = _check_size(size if resize_size is None else resize_size, "resize_size")
    if _pil_module(image) is not None:
        rgb = _pil_rgb(image)
        w, h = rgb.size
        rgb = _pil_center_crop(_pil_resize(rgb, _resized_size(h, w, short)), (size, size))
        return normalize(to_float_image(rgb), mean, std)
    x = to_float_image(image)
    x = resize_short_side(x, short)
    return normalize(center_crop(x, size), mean, std)


def square_resize_transform(
    image: Any,
    size: int | Sequence[int],
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Resize to exactly `size` x `size` (aspect ratio not kept; the ADE20K scene recipe), normalize.

    A PIL image goes through PIL exactly as torchvision's Resize((S, S)) + ToTensor + Normalize.
    """
    hw = _size2(size, "size")
    if _pil_module(image) is not None:
        return normalize(to_float_image(_pil_resize(_pil_rgb(image), hw)), mean, std)
    return normalize(resize(to_float_image(image), hw), mean, std)


def _pil_nearest_resize(image: Any, hw: tuple[int, int]) -> Any:
    """torchvision's Resize(..., NEAREST) on a PIL image: PIL's own nearest neighbour (pixel-centre rule)."""
    h, w = hw
    if image.size == (w, h):
        return image
    return image.resize((w, h), resample=_pil_module(image).Resampling.NEAREST)


def center_crop_labels(labels: Any, size: int) -> torch.Tensor:
    """A label map resized (short side -> `size`, nearest neighbour) and centre-cropped to `size` x `size`.

    The geometry of `center_crop_transform(image, size)` (same resized sizes, same crop offsets); the
    values are copied, never interpolated or changed. labels: a single-channel PIL image (modes L, P, I,
    I;16, ...) or an integer tensor / array [H, W] or [1, H, W]. Returns an integer tensor [1, size, size]
    of the input's dtype (PIL: torchvision's PILToTensor dtype, uint8 for L / P).
    Tensors pick the same source pixels as PIL's NEAREST (`resize_labels`).
    """
    _check_size(size, "size")
    if labels is None:
        raise TypeError("labels must be a PIL label map or an integer [H, W] / [1, H, W] tensor, got None")
    if _pil_module(labels) is not None:
        if len(labels.getbands()) != 1:
            raise ValueError(f"labels must be a single-channel label map (modes L, P, I, ...), got mode {labels.mode}")
        w, h = labels.size
        img = _pil_center_crop(_pil_nearest_resize(labels, _resized_size(h, w, size)), (size, size))
        return torch.from_numpy(np.array(img, copy=True))[None]  # [1, S, S]
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(np.asarray(labels))
        except Exception:
            raise TypeError(
                f"labels must be a PIL label map or an integer [H, W] / [1, H, W] tensor, got {type(labels).__name__}"
            ) from None
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3 or labels.shape[0] != 1 or labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"labels must be an integer label map [H, W] or [1, H, W], got dtype {labels.dtype} and shape "
            f"{list(labels.shape)}"
        )
    h, w = labels.shape[-2:]
    return center_crop(resize_labels(labels, _resized_size(h, w, size)), size).contiguous()


def _pil_nearest_index(n_in: int, n_out: int) -> torch.Tensor:
    """The source index of each of n_out pixels, exactly as PIL's NEAREST resize picks it: a pixel-centre
    rule, (i + 0.5) * n_in / n_out rounded down, accumulated in float64 the way PIL does (so boundary
    cases, where a centre falls on a source pixel edge, go the same way as PIL's)."""
    step = n_in / n_out
    pos, out = step * 0.5, []
    for _ in range(n_out):
        out.append(min(int(pos), n_in - 1))
        pos += step
    return torch.tensor(out, dtype=torch.long)


def resize_labels(labels: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a label map [..., H, W] to `hw`, picking the same source pixels as PIL's
    `Image.resize(..., NEAREST)` (torchvision's Resize(..., NEAREST) on PIL images); values only copied."""
    h, w = labels.shape[-2:]
    if (h, w) == tuple(hw):
        return labels
    rows = _pil_nearest_index(h, hw[0]).to(labels.device)
    cols = _pil_nearest_index(w, hw[1]).to(labels.device)
    return labels[..., rows[:, None], cols[None, :]]


def preprocess(size: int) -> Callable[[Any], torch.Tensor]:
    """canvit-pytorch's image transform: image -> normalized [3, size, size] (short side resized, centre crop).

    Same as `center_crop_transform(image, size)`, as a one-argument callable.
    """
    _check_size(size, "size")
    return functools.partial(center_crop_transform, size=size)


def preprocess_labels(size: int) -> Callable[[Any], torch.Tensor]:
    """canvit-pytorch's label-map transform, the twin of `preprocess(size)`: label map -> [1, size, size]
    integer tensor, with that geometry (nearest neighbour, centre crop) and the values unchanged.

    Same as `center_crop_labels(labels, size)`, as a one-argument callable.
    """
    _check_size(size, "size")
    return functools.partial(center_crop_labels, size=size)
