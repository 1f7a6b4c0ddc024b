"""Viewpoint laws shared by pretraining and evaluation: the random (IID) law, the F-IID / R-IID
sequences built on it, and the quadtree tiles.

- `random_viewpoints`: the pretraining law (paper §5.2): draw an area fraction A ~ U[0, (1 - s_min)^2],
  set the scale s = 1 - sqrt(A), so p(s) ∝ (1 - s) on [s_min, 1], then the centre uniformly in the
  box that keeps the crop inside the scene, [-(1 - s), 1 - s]^2.
- `iid_viewpoint`: glimpse t of an F-IID sequence (the full scene at t = 0, then the random law) or of
  an R-IID sequence (the random law from t = 0). Pretraining rollouts, the `f-iid` / `r-iid` evaluation
  policies and training-time validation all draw through it; `IIDViewpoints` wraps it as a policy
  (`next(t)`) for `canvit_model.rollout`.
- `quadtree_tiles`: level l tiles the scene with 2^l x 2^l crops of scale 2^-l (level 0 = the whole
  scene), in row-major order: the tile set of the Coarse-to-Fine and Fine-to-Coarse policies.

Draws are made on the CPU with the given generator and then moved, so a seed gives the same
viewpoints on every device. All values are float32.
"""

from __future__ import annotations

import torch

from .geometry import Viewpoint, grid_coords

MIN_SCALE = 0.05  # s_min of the paper (a crop covers at least 0.25% of the scene)
IID_LAWS = ("f-iid", "r-iid")


def random_viewpoints(
    batch_size: int,
    *,
    min_scale: float = MIN_SCALE,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Viewpoint:
    """B independent viewpoints from the pretraining law (s in [min_scale, 1], p(s) ∝ 1 - s)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) or not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be a number in (0, 1], got {min_scale!r}")
    u = torch.rand(batch_size, 3, generator=generator, dtype=torch.float32)
    area = u[:, 0] * (1 - min_scale) ** 2
    scales = (1 - area.sqrt()).clamp(min=min_scale, max=1.0)
    centers = (u[:, 1:] * 2 - 1) * (1 - scales)[:, None]
    return Viewpoint(centers=centers, scales=scales).to(device if device is not None else "cpu")


def iid_viewpoint(
    law: str,
    t: int,
    batch_size: int,
    *,
    min_scale: float = MIN_SCALE,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Viewpoint:
    """Viewpoint t of an F-IID or R-IID sequence (`law` in IID_LAWS). F-IID's t = 0 is the full scene and
    draws nothing from `generator`; every other glimpse is one `random_viewpoints` draw. Call it for
    t = 0, 1, ... in order with one generator to get one sequence."""
    if law not in IID_LAWS:
        raise ValueError(f"law must be one of {IID_LAWS}, got {law!r}")
    if law == "f-iid" and t == 0:
        return Viewpoint.full_scene(batch_size=batch_size, device=device)
    return random_viewpoints(batch_size, min_scale=min_scale, generator=generator, device=device)


class IIDViewpoints:
    """An F-IID / R-IID sequence of `num_glimpses` viewpoints for B scenes as a viewing policy
    (`next(t, seg_logits=None)`, what `canvit_model.rollout` steps), drawing lazily with `generator`."""

    needs_logits = False

    def __init__(self, law: str, *, batch_size: int, num_glimpses: int, min_scale: float = MIN_SCALE,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None) -> None:
        if law not in IID_LAWS:
            raise ValueError(f"law must be one of {IID_LAWS}, got {law!r}")
        self.name = law
        self.batch_size = batch_size
        self.num_glimpses = num_glimpses
        self.min_scale = min_scale
        self.generator = generator
        self.device = device

    def next(self, t: int, seg_logits: torch.Tensor | None = None) -> Viewpoint:
        return iid_viewpoint(self.name, t, self.batch_size, min_scale=self.min_scale, generator=self.generator,
                             device=self.device)


def quadtree_tiles(level: int) -> tuple[torch.Tensor, float]:
    """Tile centres [4^level, 2] (y, x; row-major) and the tiles' common scale 2^-level."""
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ValueError(f"level must be an int >= 0, got {level!r}")
    n = 2**level
    return grid_coords(n).reshape(n * n, 2), 1.0 / n


def quadtree_viewpoint(level: int, tile_index: torch.Tensor, *, device: torch.device | str | None = None) -> Viewpoint:
    """Per batch element, tile `tile_index[b]` (in [0, 4^level)) of quadtree level `level`."""
    centers, scale = quadtree_tiles(level)
    idx = torch.as_tensor(tile_index, dtype=torch.long).reshape(-1).cpu()
    if idx.numel() == 0 or bool((idx < 0).any()) or bool((idx >= centers.shape[0]).any()):
        raise ValueError(f"tile_index must be in [0, {centers.shape[0]}) for level {level}, got {idx.tolist()}")
    c = centers[idx]
    s = torch.full((idx.numel(),), scale, dtype=torch.float32)
    return Viewpoint(centers=c, scales=s).to(device if device is not None else "cpu")
