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


@pytest.mark.parametrize("scale", [0.0, -0.1, 1.5, math.nan])
def test_bad_scales_are_rejected(scale):
    with pytest.raises(ValueError, match="scales"):
        Viewpoint(centers=torch.zeros(1, 2), scales=torch.tensor([scale]))


def test_crop_leaving_the_scene_is_rejected_but_border_tiles_pass():
    with pytest.raises(ValueError, match=r"leaves the scene.*\|center\| \+ scale <= 1"):
        Viewpoint(centers=torch.tensor([[0.9, 0.0]]), scales=torch.tensor([0.5]))
    # quadtree tiles touch the border exactly (up to float rounding)
    Viewpoint(centers=torch.tensor([[0.75, -0.75]]), scales=torch.tensor([0.25]))


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
