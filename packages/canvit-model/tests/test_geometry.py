import math

import pytest
import torch

from canvit_model import Viewpoint, grid_coords, sample_at_viewpoint


def test_grid_coords_cell_centres_row_major():
    g = grid_coords(4)
    assert g.shape == (4, 4, 2) and g.dtype == torch.float32
    assert torch.allclose(g[0, 0], torch.tensor([-0.75, -0.75]))
    assert torch.allclose(g[0, 3], torch.tensor([-0.75, 0.75]))  # [..., 1] is x: varies along a row
    assert torch.allclose(g[3, 0], torch.tensor([0.75, -0.75]))


def test_full_scene_glimpse_equals_plain_resize():
    img = torch.randn(2, 3, 64, 64)
    vp = Viewpoint.full_scene(batch_size=2, device=None)
    g = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=32)
    # cell-centre sampling of the whole scene at half resolution = 2x2 average pooling
    assert torch.allclose(g, torch.nn.functional.avg_pool2d(img, 2), atol=1e-5)
    same = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=64)
    assert torch.allclose(same, img, atol=1e-5)


def test_crop_is_the_right_region_and_per_element():
    img = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64).repeat(2, 1, 1, 1)
    # top-left quadrant for element 0, bottom-right for element 1
    vp = Viewpoint(centers=torch.tensor([[-0.5, -0.5], [0.5, 0.5]]), scales=torch.tensor([0.5, 0.5]))
    g = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=32)
    assert torch.equal(g[0, 0], img[0, 0, :32, :32])
    assert torch.equal(g[1, 0], img[1, 0, 32:, 32:])


def test_works_for_non_square_scenes_and_keeps_dtype():
    img = torch.randn(1, 3, 48, 80, dtype=torch.float64)
    vp = Viewpoint(centers=torch.tensor([[0.0, 0.25]]), scales=torch.tensor([0.75]))
    g = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=16)
    assert g.shape == (1, 3, 16, 16) and g.dtype == torch.float64


@pytest.mark.parametrize("scale", [0.0, -0.1, math.nan, math.inf])
def test_bad_scales_are_rejected(scale):
    with pytest.raises(ValueError, match="scales"):
        Viewpoint(centers=torch.zeros(1, 2), scales=torch.tensor([scale]))


def test_non_finite_centres_are_rejected():
    with pytest.raises(ValueError, match="centers must be finite"):
        Viewpoint(centers=torch.tensor([[math.nan, 0.0]]), scales=torch.ones(1))


def test_crops_leaving_the_scene_are_accepted_and_flagged():
    # canvit-pytorch accepts them (user policies, RL agents); in_scene() tells them apart
    vp = Viewpoint(
        centers=torch.tensor([[0.9, 0.0], [0.75, -0.75], [0.0, 0.0], [3.0, 3.0]]),
        scales=torch.tensor([0.5, 0.25, 1.5, 0.5]),
    )
    assert vp.in_scene().tolist() == [False, True, False, False]  # border tiles pass (float rounding)


def test_out_of_scene_sampling_is_zero_padding_hand_checked():
    # 4x4 scene of ones; a 2 px glimpse of the crop centred on the top-left corner, scale 0.5.
    # Crop spans y, x in [-1.5, -0.5]: its two cell centres per axis are -1.25 (outside) and -0.75
    # (pixel-centre of row/col 0 at -0.75 in a 4 px scene: inside). grid_sample(zeros, align_corners=False):
    # outside -> 0, inside -> 1; so the glimpse is [[0, 0], [0, 1]].
    img = torch.ones(1, 1, 4, 4)
    vp = Viewpoint(centers=torch.tensor([[-1.0, -1.0]]), scales=torch.tensor([0.5]))
    g = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=2)
    assert torch.equal(g[0, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    # half a pixel outside: bilinear blend with the zero padding. Pixel centres sit at -0.75, -0.25, ...;
    # y = -1.0 lies half way between the padding (at -1.25) and row 0: value 0.5 on a scene of ones.
    vp = Viewpoint(centers=torch.tensor([[-0.75, 0.0]]), scales=torch.tensor([0.5]))
    g = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=4)  # rows at y = -1.125 ... -0.375
    ys = torch.tensor([-1.125, -0.875, -0.625, -0.375])
    # pixel-space row coordinate ((y + 1) * 4 - 1) / 2; weight on the padding row = max(0, -coord)
    coord = ((ys + 1) * 4 - 1) / 2
    expected_rows = 1 - (-coord).clamp(min=0)
    torch.testing.assert_close(g[0, 0, :, 0], expected_rows)
    assert torch.equal(g[0, 0, :, 0], g[0, 0, :, 3])
    # a crop fully outside the scene is all zeros; a zoomed-out crop (scale 2) has the scene in its middle half
    far = sample_at_viewpoint(spatial=img, viewpoint=Viewpoint(torch.tensor([[5.0, 5.0]]), torch.tensor([0.5])),
                              glimpse_size_px=4)
    assert torch.equal(far, torch.zeros(1, 1, 4, 4))
    wide = sample_at_viewpoint(spatial=img, viewpoint=Viewpoint(torch.zeros(1, 2), torch.tensor([2.0])),
                               glimpse_size_px=8)
    assert torch.equal(wide[0, 0, 2:6, 2:6], torch.ones(4, 4)) and wide[0, 0, 0].abs().sum() == 0


def test_crop_box_px():
    vp = Viewpoint(centers=torch.tensor([[0.0, 0.0], [-0.5, 0.5], [-1.0, 0.0]]), scales=torch.tensor([1.0, 0.5, 0.5]))
    box = vp.crop_box_px(512)
    assert box.shape == (3, 4) and box.dtype == torch.float32
    assert box.tolist() == [[0, 0, 512, 512], [0, 256, 256, 512], [-128, 128, 128, 384]]  # (y0, x0, y1, x1)
    assert vp.crop_box_px((100, 200))[1].tolist() == [0, 100, 50, 200]
    with pytest.raises(ValueError, match="image_size_px"):
        vp.crop_box_px(0)
    with pytest.raises(TypeError, match="image_size_px"):
        vp.crop_box_px(True)


def test_viewpoint_shape_and_dtype_errors():
    with pytest.raises(ValueError, match=r"centers must be a \[B, 2\]"):
        Viewpoint(centers=torch.zeros(2, 3), scales=torch.ones(2))
    with pytest.raises(ValueError, match=r"scales must be a \[B\] tensor with B=2"):
        Viewpoint(centers=torch.zeros(2, 2), scales=torch.ones(3))
    with pytest.raises(ValueError, match="floating-point"):
        Viewpoint(centers=torch.zeros(1, 2, dtype=torch.long), scales=torch.ones(1))


def test_sample_at_viewpoint_argument_errors():
    vp = Viewpoint.full_scene(batch_size=1)
    with pytest.raises(ValueError, match="spatial must be a"):
        sample_at_viewpoint(spatial=torch.zeros(3, 8, 8), viewpoint=vp, glimpse_size_px=8)
    with pytest.raises(ValueError, match="glimpse_size_px"):
        sample_at_viewpoint(spatial=torch.zeros(1, 3, 8, 8), viewpoint=vp, glimpse_size_px=0)
    with pytest.raises(ValueError, match="batch size"):
        sample_at_viewpoint(spatial=torch.zeros(2, 3, 8, 8), viewpoint=vp, glimpse_size_px=8)
