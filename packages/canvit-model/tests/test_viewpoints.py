import math

import pytest
import torch

from canvit_model.viewpoints import MIN_SCALE, quadtree_tiles, quadtree_viewpoint, random_viewpoints


def test_random_law_scale_distribution_and_validity():
    g = torch.Generator().manual_seed(0)
    vp = random_viewpoints(200_000, generator=g)
    s = vp.scales
    assert s.dtype == torch.float32 and float(s.min()) >= MIN_SCALE and float(s.max()) <= 1
    assert float((vp.centers.abs() + s[:, None]).max()) <= 1 + 1e-6
    # p(s) ∝ (1 - s) on [s_min, 1]: CDF F(s) = 1 - ((1 - s) / (1 - s_min))^2
    for q in (0.1, 0.3, 0.5, 0.8):
        expect = 1 - ((1 - q) / (1 - MIN_SCALE)) ** 2
        assert float((s <= q).float().mean()) == pytest.approx(expect, abs=0.005)
    # E[s] = s_min + (1 - s_min) / 3
    assert float(s.mean()) == pytest.approx(MIN_SCALE + (1 - MIN_SCALE) / 3, abs=0.003)


def test_random_law_is_seeded():
    a = random_viewpoints(8, generator=torch.Generator().manual_seed(1))
    b = random_viewpoints(8, generator=torch.Generator().manual_seed(1))
    c = random_viewpoints(8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.centers, b.centers) and torch.equal(a.scales, b.scales)
    assert not torch.equal(a.scales, c.scales)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_random_law_rejects_bad_batch(bad):
    with pytest.raises(ValueError, match="batch_size"):
        random_viewpoints(bad)


def test_quadtree_tiles_cover_the_scene():
    for level in range(4):
        centers, scale = quadtree_tiles(level)
        n = 2**level
        assert centers.shape == (n * n, 2) and scale == 1 / n
        # tiles are disjoint and cover [-1, 1]^2: total area = 1, corners touch the border
        assert (centers.abs() + scale).max().item() == pytest.approx(1.0)
        assert len({tuple(c.tolist()) for c in centers}) == n * n
        assert n * n * (2 * scale) ** 2 == pytest.approx(4.0)
    c1, _ = quadtree_tiles(1)
    assert c1.tolist() == [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]  # row-major (y, x)


def test_quadtree_viewpoint_and_errors():
    vp = quadtree_viewpoint(2, torch.tensor([0, 15]))
    assert vp.scales.tolist() == [0.25, 0.25]
    assert vp.centers.tolist() == [[-0.75, -0.75], [0.75, 0.75]]
    with pytest.raises(ValueError, match="tile_index"):
        quadtree_viewpoint(1, torch.tensor([4]))
    with pytest.raises(ValueError, match="level"):
        quadtree_tiles(-1)
    assert math.isclose(quadtree_tiles(0)[1], 1.0)


def test_our_laws_stay_inside_the_scene():
    # Viewpoint itself accepts out-of-scene crops (canvit-pytorch semantics); our laws never emit them.
    from canvit_model import quadtree_viewpoint, random_viewpoints

    vp = random_viewpoints(4096, generator=torch.Generator().manual_seed(0))
    assert bool(vp.in_scene(tolerance=0).all())
    for level in range(4):
        tiles = quadtree_viewpoint(level, torch.arange(4**level))
        assert bool(tiles.in_scene().all())
