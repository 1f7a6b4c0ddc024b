"""PIL images are preprocessed exactly as torchvision does it (Resize + CenterCrop on the PIL image,
ToTensor, Normalize). The reference below is torchvision's recipe written out with PIL directly
(torchvision itself is not a dependency): sizes from `Resize(int)`, PIL BILINEAR resize of the uint8
image, `CenterCrop` offsets int(round((H - h) / 2)), /255, (x - mean) / std in float32."""

from __future__ import annotations

import pytest
import torch

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from canvit_model import IMAGENET_MEAN, IMAGENET_STD, center_crop_transform, imagenet_denormalize, square_resize_transform


def tv_resize(img, size):
    """torchvision.transforms.Resize(size) on a PIL image (int: short side; pair: (h, w))."""
    w, h = img.size
    if isinstance(size, int):
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        ow, oh = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        oh, ow = size
    if (ow, oh) == (w, h):
        return img
    return img.resize((ow, oh), resample=Image.BILINEAR)


def tv_center_crop(img, size):
    w, h = img.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def tv_to_tensor_normalize(img):
    arr = np.asarray(img, dtype=np.uint8)  # [H, W, 3]
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return x.sub(mean).div(std)


def random_pil(h, w, seed=0, mode="RGB"):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


@pytest.mark.parametrize(
    "hw,size,resize_size",
    [((90, 120), 64, None), ((120, 90), 64, 73), ((333, 500), 224, 256), ((64, 64), 64, None), ((37, 101), 16, 20)],
)
def test_center_crop_transform_equals_torchvision_on_pil(hw, size, resize_size):
    img = random_pil(*hw)
    ref = tv_to_tensor_normalize(tv_center_crop(tv_resize(img, resize_size or size), size))
    ours = center_crop_transform(img, size, resize_size)
    assert ours.shape == (3, size, size) and ours.dtype == torch.float32
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("hw,size", [((90, 120), 64), ((300, 200), (48, 80)), ((50, 50), 50)])
def test_square_resize_transform_equals_torchvision_on_pil(hw, size):
    img = random_pil(*hw, seed=1)
    ref = tv_to_tensor_normalize(tv_resize(img, size if isinstance(size, tuple) else (size, size)))
    assert torch.equal(square_resize_transform(img, size), ref)


def test_non_rgb_pil_images_are_converted_to_rgb_first():
    img = random_pil(40, 60, seed=2, mode="L")
    ref = tv_to_tensor_normalize(tv_center_crop(tv_resize(img.convert("RGB"), 32), 32))
    assert torch.equal(center_crop_transform(img, 32), ref)


def test_imagenet_denormalize_inverts_normalize():
    img = random_pil(32, 32, seed=3)
    x = square_resize_transform(img, 32)
    back = imagenet_denormalize(x)
    expected = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(back, expected, atol=1e-6, rtol=0)
    assert imagenet_denormalize(x[None]).shape == (1, 3, 32, 32)
