"""ADE20K data: the ADEChallengeData2016 folder or a `datasets` dataset, evaluation squish, training aug.

Sources (`open_ade20k(spec, split)`):
- a folder in the ADEChallengeData2016 layout (the folder itself or its parent):
  images/{training,validation}/*.jpg paired by file stem with annotations/{training,validation}/*.png;
- anything `canvit_data.open_images` opens as a `datasets` dataset (a `save_to_disk` directory, parquet
  files, or a hub id with data files) with an image column and a mask column (`annotation` by default,
  the column name of scene_parse_150; `datasets` >= 4 no longer runs loading scripts, so use a hub copy
  stored as parquet, or the folder).
Split names `train`/`training` and `val`/`validation` are interchangeable.
Annotations hold 0 = "other" (ignored: 255) and 1..150 (labels 0..149), see `canvit_model.ade20k_targets`.

Evaluation (`EvalSet`): image and mask resized ("squished") to S x S without keeping the aspect ratio:
image bilinear (`canvit_model.square_resize_transform`), mask nearest with PIL's rule (torchvision's
`Resize((S, S), NEAREST)` on PIL images).

Training (`TrainSet`, App. F.2.1 / DINOv3's segmentation train transform as the authors call it):
the short side resized (aspect kept; image bilinear, mask nearest) to S x r with r ~ U(0.5, 2.0), pad to
at least S (image 0, mask ignore), random S x S crop, horizontal flip with p = 0.5, then a photometric
distortion with mmseg's `PhotoMetricDistortion` defaults (each with p = 0.5: brightness +-32/255,
contrast x U(0.5, 1.5) before or after the HSV steps, saturation x U(0.5, 1.5), hue +-36 degrees; the
parameters of DINOv3's copy were not verified here; `photometric=False` turns it off), normalize. Not
reproduced: mmseg's crop retry when one class covers > 75% of the crop. Every random draw comes from
(seed, position in the sample stream), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from canvit_model import ade20k_targets, square_resize_transform
from canvit_model.preprocess import normalize, to_float_image

_SPLITS = {"train": ("training", "train"), "training": ("training", "train"),
           "val": ("validation", "val"), "validation": ("validation", "val")}
MASK_COLUMNS = ("annotation", "segmentation", "mask", "label", "seg")


def _split_candidates(split: str) -> tuple[str, ...]:
    return _SPLITS.get(split, (split,))


class SegmentationSet:
    """Indexable (image, mask) pairs with stable keys."""

    name: str = ""

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def key(self, index: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> tuple[Any, Any]:  # pragma: no cover - abstract
        """(PIL RGB image, PIL single-channel mask)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} pairs)"


def _open_pil(data: Any, key: str, rgb: bool) -> Any:
    from PIL import Image

    from canvit_data.sources import ImageDecodeError

    try:
        if isinstance(data, dict):
            data = data.get("bytes") or data.get("path")
        if hasattr(data, "convert"):
            im = data
        else:
            import io

            with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as f:
                f.load()
                im = f.copy()
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(key, f"{type(e).__name__}: {e}") from None
    if rgb:
        return im.convert("RGB")
    if im.mode not in ("L", "P", "I", "I;16"):
        if im.mode in ("RGB", "RGBA"):
            im = im.getchannel(0)  # a label map stored as grey RGB
        else:
            im = im.convert("L")
    return im


class ADEFolder(SegmentationSet):
    """ADEChallengeData2016/images/<split>/*.jpg + annotations/<split>/*.png, paired by stem."""

    def __init__(self, root: str | os.PathLike[str], split: str) -> None:
        root = Path(root)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        for cand in _split_candidates(split):
            if (root / "images" / cand).is_dir():
                split = cand
                break
        else:
            have = sorted(p.name for p in (root / "images").iterdir()) if (root / "images").is_dir() else []
            raise ValueError(f"split={split!r}: {root / 'images'} has no such folder (splits there: {have})")
        img_dir, ann_dir = root / "images" / split, root / "annotations" / split
        images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not images:
            raise ValueError(f"{img_dir} holds no images")
        missing = [p.name for p in images if not (ann_dir / f"{p.stem}.png").is_file()]
        if missing:
            raise ValueError(f"{len(missing)} images of {img_dir} have no annotation in {ann_dir} (e.g. {missing[:3]})")
        self.images = images
        self.masks = [ann_dir / f"{p.stem}.png" for p in images]
        self.name = f"{root}[{split}]"

    def __len__(self) -> int:
        return len(self.images)

    def key(self, index: int) -> str:
        return self.images[index].stem

    def load(self, index: int) -> tuple[Any, Any]:
        return _open_pil(self.images[index], self.key(index), True), _open_pil(self.masks[index], self.key(index), False)


class ADEDataset(SegmentationSet):
    """A `datasets.Dataset` with an image column and a mask column (images read undecoded, then decoded)."""

    def __init__(self, dataset: Any, *, name: str, image_column: str, mask_column: str | None = None) -> None:
        import datasets

        features = dataset.features
        if mask_column is None:
            mask_column = next((c for c in MASK_COLUMNS if c in features and c != image_column), None)
            if mask_column is None:
                raise ValueError(f"cannot find the mask column of {name}; columns: {list(features)}; pass --mask-column")
        if mask_column not in features:
            raise ValueError(f"mask column {mask_column!r} is not a column of {name}; columns: {list(features)}")
        for col in (image_column, mask_column):
            if isinstance(dataset.features[col], datasets.Image) and dataset.features[col].decode:
                dataset = dataset.cast_column(col, datasets.Image(decode=False))
        self.dataset, self.image_column, self.mask_column, self.name = dataset, image_column, mask_column, name

    def __len__(self) -> int:
        return len(self.dataset)

    def key(self, index: int) -> str:
        return f"row:{index}"

    def load(self, index: int) -> tuple[Any, Any]:
        row = self.dataset[index]
        k = self.key(index)
        return _open_pil(row[self.image_column], k, True), _open_pil(row[self.mask_column], k, False)


def open_ade20k(spec: str | os.PathLike[str], split: str, *, image_column: str | None = None,
                mask_column: str | None = None, revision: str | None = None) -> SegmentationSet:
    """The (image, mask) pairs of `split` in `spec` (see the module docstring)."""
    path = Path(spec)
    if path.is_dir() and ((path / "images").is_dir() or (path / "ADEChallengeData2016").is_dir()):
        return ADEFolder(path, split)
    from canvit_data import open_images

    errors = []
    for cand in _split_candidates(split):
        try:
            src = open_images(spec, split=cand, image_column=image_column, revision=revision)
        except ValueError as e:
            errors.append(str(e))
            continue
        return ADEDataset(src.dataset, name=src.name, image_column=src.image_column, mask_column=mask_column)
    raise ValueError(f"cannot open split {split!r} of {str(spec)!r}: " + " | ".join(errors))


class EvalSet(Dataset):
    """(image [3, S, S] normalized float32, labels [S, S] int64) squished to S x S."""

    def __init__(self, pairs: SegmentationSet, scene_size: int, limit: int | None = None) -> None:
        self.pairs, self.scene_size = pairs, scene_size
        self.n = len(pairs) if limit is None else min(limit, len(pairs))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pairs.load(index)
        return square_resize_transform(image, self.scene_size), ade20k_targets(mask, self.scene_size)


def random_resize_crop_flip(image: Any, mask: Any, size: int, rng: np.random.Generator,
                            ratio_range: tuple[float, float] = (0.5, 2.0), photometric: bool = True
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The training augmentation (module docstring) on a PIL pair -> (image [3, S, S], labels [S, S])."""
    from PIL import Image

    w, h = image.size
    r = rng.uniform(*ratio_range)
    f = size * r / min(w, h)
    nw, nh = max(1, int(w * f + 0.5)), max(1, int(h * f + 0.5))
    image = image.resize((nw, nh), Image.BILINEAR)
    mask = mask.resize((nw, nh), Image.NEAREST)
    x = to_float_image(image)  # [3, nh, nw] in [0, 1]
    y = ade20k_targets(mask)  # [nh, nw], 255 = ignore
    ph, pw = max(0, size - nh), max(0, size - nw)
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), value=0.0)
        y = torch.nn.functional.pad(y, (0, pw, 0, ph), value=255)
    top = int(rng.integers(0, x.shape[1] - size + 1))
    left = int(rng.integers(0, x.shape[2] - size + 1))
    x, y = x[:, top : top + size, left : left + size], y[top : top + size, left : left + size]
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if photometric:
        x = photometric_distortion(x, rng)
    return normalize(x.contiguous()), y.contiguous()


def photometric_distortion(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """mmseg-style PhotoMetricDistortion on an RGB image [3, H, W] in [0, 1] (clipped after each step)."""
    if rng.random() < 0.5:
        x = (x + rng.uniform(-32, 32) / 255).clamp(0, 1)
    contrast_first = rng.random() < 0.5

    def contrast(x: torch.Tensor) -> torch.Tensor:
        return (x * rng.uniform(0.5, 1.5)).clamp(0, 1) if rng.random() < 0.5 else x

    if contrast_first:
        x = contrast(x)
    sat = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = rng.uniform(-18, 18) / 180 if rng.random() < 0.5 else None  # cv2 hue units (0..180) -> turns
    if sat is not None or hue is not None:
        hh, ss, vv = _rgb_to_hsv(x)
        if sat is not None:
            ss = (ss * sat).clamp(0, 1)
        if hue is not None:
            hh = (hh + hue) % 1.0
        x = _hsv_to_rgb(hh, ss, vv)
    if not contrast_first:
        x = contrast(x)
    return x


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x[0], x[1], x[2]
    v, _ = x.max(0)
    c = v - x.min(0).values
    s = torch.where(v > 0, c / v.clamp_min(1e-12), torch.zeros_like(v))
    cz = c.clamp_min(1e-12)
    h = torch.where(v == r, ((g - b) / cz) % 6, torch.where(v == g, (b - r) / cz + 2, (r - g) / cz + 4)) / 6
    h = torch.where(c > 0, h, torch.zeros_like(h))
    return h, s, v


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6])  # [3, H, W]
    return (v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)).clamp(0, 1)


class TrainSet(Dataset):
    """Item p = the p-th sample of an endless seeded stream: epoch e = p // n uses permutation(seed, e)
    of the images, and sample p's augmentation draws from (seed, p). Index it with `batch_positions`."""

    def __init__(self, pairs: SegmentationSet, scene_size: int, seed: int, photometric: bool = True) -> None:
        self.pairs, self.scene_size, self.seed, self.photometric = pairs, scene_size, seed, photometric
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def image_index(self, position: int) -> int:
        n = len(self.pairs)
        epoch = position // n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 1]).permutation(n))
        return int(self._perm[1][position % n])

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pairs.load(self.image_index(position))
        rng = np.random.default_rng([self.seed, position, 2])
        return random_resize_crop_flip(image, mask, self.scene_size, rng, photometric=self.photometric)


def batch_positions(start_step: int, end_step: int, batch_size: int) -> list[list[int]]:
    """Sample-stream positions of the batches of steps [start_step, end_step) (a DataLoader batch_sampler)."""
    return [list(range(s * batch_size, (s + 1) * batch_size)) for s in range(start_step, end_step)]


def labels_to_grid(labels: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """Nearest-downsample labels [B, S, S] to the canvas / feature grid (pixel-centre rule): [B, g, g]."""
    size = (grid, grid) if isinstance(grid, int) else tuple(grid)
    out = torch.nn.functional.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")
    return out[:, 0].long()
