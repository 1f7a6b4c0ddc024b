"""Small procedural datasets in the real on-disk layouts, for tests, smoke runs and demos (no network).

Scenes are drawn from a seed: a smooth background plus a few shapes, each shape of a class with its own
colour and texture, so a linear probe on good features can learn them. Writers produce exactly the
layouts the real loaders read:

- `write_image_folder(root, n)`                 plain folder of images of varied sizes (IN21k-style)
- `write_image_folder(root, n, num_classes=K)`  ImageFolder layout ROOT/<class>/<image> (ImageNet-style)
- `write_ade20k(root, n_train, n_val)`          ADEChallengeData2016 layout with annotation PNGs
- `write_dataset(root, n, ...)`                 a Hugging Face dataset written with `save_to_disk`
- `write_corrupt_image(path)`                   a file with an image suffix that does not decode
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SyntheticScene:
    image: Any  # PIL RGB image
    mask: np.ndarray  # [H, W] uint8: 0 = background ("other"), 1..num_classes = shape classes
    label: int  # the scene's class (the largest shape's class - 1), for classification sets


def _class_colour(c: int, num_classes: int) -> np.ndarray:
    hue = (c * 0.61803398875) % 1.0
    # hue -> RGB (saturated), deterministic per class
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    rgb = 1 - np.clip(np.minimum(k, 4 - k), 0, 1)
    return (40 + 200 * rgb).astype(np.float32)


def draw_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    num_classes: int = 4,
    num_shapes: int = 3,
    label: int | None = None,
) -> SyntheticScene:
    """One scene: a background gradient with `num_shapes` rectangles / ellipses of random classes.

    With `label` given, the largest shape (drawn first, under the others) has class `label + 1`.
    """
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b, c = rng.uniform(0, 60, size=3)
    bg = np.stack([a + 40 * yy / height, b + 40 * xx / width, c + 20 * (yy + xx) / (height + width)], -1)
    img = bg + rng.normal(0, 4, size=(height, width, 3))
    mask = np.zeros((height, width), dtype=np.uint8)
    for i in range(num_shapes):
        cls = (label if (label is not None and i == 0) else int(rng.integers(0, num_classes))) + 1
        frac = rng.uniform(0.45, 0.7) if i == 0 else rng.uniform(0.15, 0.4)
        h, w = max(2, int(height * frac)), max(2, int(width * frac))
        y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        if rng.random() < 0.5:
            region = np.zeros((height, width), dtype=bool)
            region[y0 : y0 + h, x0 : x0 + w] = True
        else:
            cy, cx = y0 + h / 2, x0 + w / 2
            region = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1
        colour = _class_colour(cls, num_classes)
        stripes = 25 * np.sin((xx if cls % 2 else yy) * (0.3 + 0.15 * (cls % 3)))[..., None]
        img[region] = (colour + stripes + rng.normal(0, 6, size=(height, width, 3)))[region]
        mask[region] = cls
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    scene_label = label if label is not None else int(np.bincount(mask.ravel(), minlength=num_classes + 1)[1:].argmax())
    return SyntheticScene(Image.fromarray(pixels, "RGB"), mask, scene_label)


def _size(rng: np.random.Generator, sizes: tuple[int, int] | None) -> tuple[int, int]:
    if sizes is not None:
        return sizes
    return int(rng.integers(48, 97)), int(rng.integers(48, 97))  # varied sizes and aspect ratios


def write_image_folder(
    root: str | Path,
    n: int,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    size: tuple[int, int] | None = None,
    ext: str = ".png",
) -> list[Path]:
    """`n` scenes under `root` (nested sub-folders); with `num_classes`, the ImageFolder layout with
    class-conditional scenes (`class_XX/img_XXXXX`). Returns the written paths in index order."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = _size(rng, size)
        if num_classes:
            label = i % num_classes
            scene = draw_scene(rng, h, w, num_classes=num_classes, label=label)
            path = root / f"class_{label:02d}" / f"img_{i:05d}{ext}"
        else:
            scene = draw_scene(rng, h, w)
            path = root / f"part_{i % 3}" / f"img_{i:05d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        scene.image.save(path)
        paths.append(path)
    return paths


def write_ade20k(
    root: str | Path, n_train: int, n_val: int, *, seed: int = 0, num_classes: int = 4,
    size: tuple[int, int] | None = None,
) -> Path:
    """The ADEChallengeData2016 layout: images/{training,validation}/ADE_*.jpg and
    annotations/{training,validation}/ADE_*.png (0 = other, 1..num_classes = classes). Returns the
    dataset root (`root/ADEChallengeData2016`)."""
    base = Path(root) / "ADEChallengeData2016"
    rng = np.random.default_rng(seed)
    from PIL import Image

    for split, n, tag in (("training", n_train, "train"), ("validation", n_val, "val")):
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = _size(rng, size)
            scene = draw_scene(rng, h, w, num_classes=num_classes)
            stem = f"ADE_{tag}_{i + 1:08d}"
            scene.image.save(base / "images" / split / f"{stem}.jpg", quality=95)
            Image.fromarray(scene.mask, "L").save(base / "annotations" / split / f"{stem}.png")
    return base


def write_dataset(
    root: str | Path,
    n: int,
    *,
    seed: int = 0,
    num_classes: int = 4,
    splits: tuple[str, ...] = ("train",),
    with_labels: bool = False,
    with_masks: bool = False,
    size: tuple[int, int] | None = None,
) -> Path:
    """A Hugging Face DatasetDict saved with `save_to_disk`: column `image` (+ `label` ClassLabel,
    + `annotation` mask image), `n` rows per split."""
    import datasets

    rng = np.random.default_rng(seed)
    from PIL import Image

    features = {"image": datasets.Image()}
    if with_labels:
        features["label"] = datasets.ClassLabel(names=[f"class_{c:02d}" for c in range(num_classes)])
    if with_masks:
        features["annotation"] = datasets.Image()
    parts = {}
    for split in splits:
        cols: dict[str, list[Any]] = {k: [] for k in features}
        for i in range(n):
            h, w = _size(rng, size)
            scene = draw_scene(rng, h, w, num_classes=num_classes, label=(i % num_classes) if with_labels else None)
            cols["image"].append(scene.image)
            if with_labels:
                cols["label"].append(scene.label)
            if with_masks:
                cols["annotation"].append(Image.fromarray(scene.mask, "L"))
        parts[split] = datasets.Dataset.from_dict(cols, features=datasets.Features(features))
    path = Path(root)
    datasets.DatasetDict(parts).save_to_disk(str(path))
    return path


def write_corrupt_image(path: str | Path) -> Path:
    """A truncated JPEG: the header is there, the data is not (decoders fail on it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 16)
    return path
