"""Preprocessing: sizes/offsets as torchvision, the resize filter as PIL's bilinear antialias."""

from __future__ import annotations

import pytest
import torch

np = pytest.importorskip("numpy")

from canvit_model import IMAGENET_MEAN, IMAGENET_STD, center_crop_transform, square_resize_transform
from canvit_model.preprocess import center_crop, normalize, resize, resize_short_side, to_float_image


def pil_bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] resampling matrix of PIL's bilinear filter with antialias (Resample.c, precompute_coeffs)."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = 1.0 * fscale
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        x = np.arange(lo, hi)
        w = np.clip(1 - np.abs((x - center + 0.5) / fscale), 0, None)
        m[i, lo:hi] = w / w.sum()
    return m


def reference_resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Separable float reference of PIL's antialiased bilinear (no uint8 rounding): img [C, H, W]."""
    wy, wx = pil_bilinear_weights(img.shape[1], h), pil_bilinear_weights(img.shape[2], w)
    return np.einsum("yh,chw,xw->cyx", wy, img, wx)


@pytest.mark.parametrize("src,dst", [((97, 131), (40, 57)), ((50, 60), (50, 60)), ((33, 20), (80, 45)),
                                     ((64, 64), (17, 90))])
def test_resize_matches_pil_filter(src, dst):
    img = torch.rand(3, *src, generator=torch.Generator().manual_seed(0))
    ours = resize(img, dst)
    ref = reference_resize(img.double().numpy(), *dst)
    assert ours.shape == (3, *dst)
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-6)


def test_resize_short_side_sizes_follow_torchvision():
    assert resize_short_side(torch.zeros(3, 480, 640), 224).shape[-2:] == (224, 298)
    assert resize_short_side(torch.zeros(3, 640, 480), 224).shape[-2:] == (298, 224)
    assert resize_short_side(torch.zeros(3, 333, 500), 512).shape[-2:] == (512, 768)
    assert resize_short_side(torch.zeros(2, 3, 100, 100), 64).shape == (2, 3, 64, 64)


def test_center_crop_offsets_follow_torchvision():
    x = torch.arange(7 * 9).float().view(1, 7, 9).expand(3, 7, 9)
    c = center_crop(x, 4)
    # torchvision: top = int(round((7 - 4) / 2)) = 2, left = int(round((9 - 4) / 2)) = 2
    assert torch.equal(c, x[:, 2:6, 2:6])
    assert center_crop(x, (3, 5)).shape == (3, 3, 5)
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, 8)


def test_normalize_and_uint8_float_paths_agree():
    u8 = torch.randint(0, 256, (2, 3, 40, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a = center_crop_transform(u8, 32, 36)
    b = center_crop_transform(u8.float() / 255, 32, 36)
    assert a.shape == (2, 3, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    mean_img = (torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * torch.ones(3, 8, 8))
    assert normalize(mean_img).abs().max() < 1e-6
    one = normalize(torch.ones(3, 1, 1))
    torch.testing.assert_close(one.flatten(), (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))


def test_center_crop_transform_is_resize_then_crop_then_normalize():
    img = torch.rand(3, 300, 200, generator=torch.Generator().manual_seed(2))
    out = center_crop_transform(img, 224, 256)
    expected = normalize(center_crop(resize(img, (384, 256)), 224))
    torch.testing.assert_close(out, expected)
    assert center_crop_transform(img, 128).shape == (3, 128, 128)


def test_square_resize_transform_ignores_aspect_ratio():
    img = torch.rand(1, 3, 300, 200, generator=torch.Generator().manual_seed(3))
    out = square_resize_transform(img, 512)
    assert out.shape == (1, 3, 512, 512)
    torch.testing.assert_close(out, normalize(resize(img, 512)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="channels first"):
        to_float_image(torch.zeros(40, 40, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        to_float_image(torch.zeros(3, 4, 4, dtype=torch.int32))
    with pytest.raises(TypeError):
        to_float_image([[0]])
    with pytest.raises(ValueError, match="positive int"):
        resize_short_side(torch.zeros(3, 4, 4), 0)


def test_pil_images_when_pil_is_installed():
    Image = pytest.importorskip("PIL.Image")
    arr = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    pil = Image.fromarray(arr)
    t = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    # PIL images take PIL's uint8 path (test_preprocess_pil.py), tensors the float path: ~one level apart
    diff = (center_crop_transform(pil, 64) - center_crop_transform(t, 64)).abs().max()
    assert 0 < diff <= 1.0 / 255 / min(IMAGENET_STD) + 1e-4
    torch.testing.assert_close(square_resize_transform(pil.convert("L").convert("RGB"), 32),
                               square_resize_transform(pil.convert("L"), 32))
    # against PIL's own (uint8, two-pass) bilinear resize: within ~one intensity level
    ours = resize(to_float_image(pil), (45, 60)) * 255
    theirs = torch.from_numpy(np.array(pil.resize((60, 45), Image.BILINEAR))).permute(2, 0, 1).float()
    assert (ours - theirs).abs().max() <= 1.0 + 1e-3
