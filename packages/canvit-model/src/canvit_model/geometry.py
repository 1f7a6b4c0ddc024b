"""The scene frame: viewpoints, grid coordinates and glimpse extraction (paper §3, Appendix C).

Scene coordinates span [-1, 1]^2 in (row, col) = (y, x) order; (-1, -1) is the top-left corner.
A viewpoint's scale is the crop's half side: s = 1 is the whole scene, a crop covers s^2 of its area.
A crop may leave the scene, partly or fully (and s may exceed 1): what lies outside reads as zeros, as
in canvit-pytorch's `sample_at_viewpoint`. Our own viewpoint laws and policies stay inside the scene.
All coordinate math is float32, whatever autocast is doing (paper D.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._pytree import register_dataclass

# Crops may touch the scene border up to float rounding (quadtree tiles have |c| + s == 1 exactly).
SCENE_TOLERANCE = 1e-4


def grid_coords(n: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Cell centres of an n x n grid tiling [-1, 1]^2: [n, n, 2] with [..., 0] = y, [..., 1] = x."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"grid size n must be an int >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"grid size n={n} must be >= 1")
    c = ((torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n) * 2 - 1
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([ys, xs], dim=-1)


@dataclass(frozen=True)
class Viewpoint:
    """Where a glimpse looks: crop centres [B, 2] (y, x) and scales [B] > 0 (the crop's half side).

    Centres in [-1, 1] and scales in (0, 1] with |center| + scale <= 1 keep the crop inside the scene
    (`in_scene()`); other finite values are allowed and the outside reads as zeros (zero padding).
    """

    centers: torch.Tensor
    scales: torch.Tensor

    def __post_init__(self) -> None:
        c, s = self.centers, self.scales
        if c is None or s is None:
            which = "centers" if c is None else "scales"
            raise TypeError(f"Viewpoint.{which} must be a tensor, got None")
        if not isinstance(c, torch.Tensor) or c.ndim != 2 or c.shape[-1] != 2:
            raise ValueError(f"Viewpoint.centers must be a [B, 2] tensor of (y, x), got {_desc(c)}")
        if not isinstance(s, torch.Tensor) or s.ndim != 1 or s.shape[0] != c.shape[0]:
            raise ValueError(f"Viewpoint.scales must be a [B] tensor with B={c.shape[0]}, got {_desc(s)}")
        for name, t in (("centers", c), ("scales", s)):
            if not t.is_floating_point():
                raise ValueError(f"Viewpoint.{name} must be a floating-point tensor, got dtype {t.dtype}")
        if c.device != s.device:
            raise ValueError(f"Viewpoint.centers is on {c.device} but scales is on {s.device}")
        if torch.compiler.is_compiling():
            return
        for name, t in (("centers", c), ("scales", s)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"Viewpoint.{name} must be finite, got {t.tolist()}")
        if bool((s <= 0).any()):
            raise ValueError(f"Viewpoint.scales must be > 0 (1 = whole scene), got min {s.min().item():.6g}")

    def in_scene(self, tolerance: float = SCENE_TOLERANCE) -> torch.Tensor:
        """[B] bool: does each crop stay inside the scene (|center| + scale <= 1 per axis)?"""
        reach = (self.centers.float().abs() + self.scales.float()[:, None]).amax(dim=-1)
        return reach <= 1 + tolerance

    def crop_box_px(self, image_size_px: int | tuple[int, int]) -> torch.Tensor:
        """Pixel box of each crop in an image of `image_size_px` (int = square, or (H, W)): [B, 4] float32
        (y0, x0, y1, x1), edges not clamped, so a crop leaving the scene has coordinates outside [0, H/W]."""
        if isinstance(image_size_px, bool) or not isinstance(image_size_px, (int, tuple, list)):
            raise TypeError(f"image_size_px must be an int or an (H, W) pair, got {image_size_px!r}")
        hw = (image_size_px, image_size_px) if isinstance(image_size_px, int) else tuple(image_size_px)
        if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in hw):
            raise ValueError(f"image_size_px must be a positive int or an (H, W) pair of them, got {image_size_px!r}")
        size = torch.tensor(hw, dtype=torch.float32, device=self.centers.device)  # [2] (H, W)
        c = self.centers.float()
        s = self.scales.float()[:, None]
        lo = (c - s + 1) * size / 2  # [B, 2] (y0, x0)
        hi = (c + s + 1) * size / 2  # [B, 2] (y1, x1)
        return torch.cat([lo, hi], dim=-1)

    @property
    def batch_size(self) -> int:
        return self.centers.shape[0]

    @classmethod
    def full_scene(
        cls, *, batch_size: int, device: torch.device | str | None = None
    ) -> Viewpoint:
        """The zoomed-out viewpoint (0, 0, 1) that sees the whole scene."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        return cls(
            centers=torch.zeros(batch_size, 2, dtype=torch.float32, device=device),
            scales=torch.ones(batch_size, dtype=torch.float32, device=device),
        )

    def to(self, device: torch.device | str) -> Viewpoint:
        """The same viewpoints on `device` (already validated: no second check, no host sync)."""
        device = torch.device(device)
        if self.centers.device == device:
            return self
        return Viewpoint._unchecked(centers=self.centers.to(device), scales=self.scales.to(device))

    @classmethod
    def _unchecked(cls, centers: torch.Tensor, scales: torch.Tensor) -> Viewpoint:
        """A Viewpoint from tensors already checked (or fake ones being traced by torch.export): no checks."""
        vp = object.__new__(cls)
        object.__setattr__(vp, "centers", centers)
        object.__setattr__(vp, "scales", scales)
        return vp

    def positions(self, n: int) -> torch.Tensor:
        """Scene coordinates of the n x n cell centres of this viewpoint's crop: [B, n*n, 2], float32."""
        g = grid_coords(n, device=self.centers.device).reshape(1, n * n, 2)
        c = self.centers.float()[:, None, :]
        s = self.scales.float()[:, None, None]
        return c + s * g


register_dataclass(Viewpoint, build=Viewpoint._unchecked)


def _desc(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor of shape {list(t.shape)} and dtype {t.dtype}"
    return type(t).__name__


def sample_at_viewpoint(
    spatial: torch.Tensor, viewpoint: Viewpoint, glimpse_size_px: int
) -> torch.Tensor:
    """Bilinearly resample the crop seen from `viewpoint` into a square glimpse.

    spatial: [B, C, H, W] scene (image or feature map, any H, W); returns [B, C, g, g], g = glimpse_size_px.
    The grid is the g x g cell centres of the crop; sampling is done in float32 and cast back.
    Where the crop leaves the scene the glimpse reads zeros (grid_sample's zero padding; for a
    normalized image that is the mean colour).
    """
    if spatial is None:
        raise TypeError("spatial must be a [B, C, H, W] tensor, got None")
    if not isinstance(viewpoint, Viewpoint):
        raise TypeError(f"viewpoint must be a canvit_model.Viewpoint, got {type(viewpoint).__name__}")
    if not isinstance(spatial, torch.Tensor) or spatial.ndim != 4:
        raise ValueError(f"spatial must be a [B, C, H, W] tensor, got {_desc(spatial)}")
    if not spatial.is_floating_point():
        raise ValueError(f"spatial must be a floating-point tensor, got dtype {spatial.dtype}")
    if isinstance(glimpse_size_px, bool) or not isinstance(glimpse_size_px, int) or glimpse_size_px < 1:
        raise ValueError(f"glimpse_size_px must be a positive int, got {glimpse_size_px!r}")
    if viewpoint.batch_size != spatial.shape[0]:
        raise ValueError(
            f"viewpoint has batch size {viewpoint.batch_size} but spatial has batch size {spatial.shape[0]}"
        )
    b = spatial.shape[0]
    g = glimpse_size_px
    with torch.autocast(device_type=spatial.device.type, enabled=False):
        yx = viewpoint.to(spatial.device).positions(g).reshape(b, g, g, 2)
        grid = yx.flip(-1)  # grid_sample wants (x, y)
        out = F.grid_sample(
            spatial.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return out.to(spatial.dtype)


def grid_coords_hw(h: int, w: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Cell centres of an h x w grid tiling [-1, 1]^2, each axis normalized on its own: [h, w, 2] (y, x).

    For h == w this equals `grid_coords(h)`. It is DINOv3's "separate" patch-centre normalization:
    ((i + 0.5) / n) * 2 - 1 with n = h for rows and n = w for columns.
    """
    if h < 1 or w < 1:
        raise ValueError(f"grid size h={h}, w={w} must be >= 1")
    cy = ((torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h) * 2 - 1
    cx = ((torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w) * 2 - 1
    ys, xs = torch.meshgrid(cy, cx, indexing="ij")
    return torch.stack([ys, xs], dim=-1)
