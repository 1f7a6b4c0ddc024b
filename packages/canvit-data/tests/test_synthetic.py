import numpy as np
import pytest
from PIL import Image

from canvit_data import ImageDecodeError, open_images
from canvit_data.synthetic import (
    draw_scene, write_ade20k, write_corrupt_image, write_dataset, write_image_folder,
)


def test_draw_scene_is_seeded_and_labelled():
    a = draw_scene(np.random.default_rng(3), 40, 60, num_classes=4, label=2)
    b = draw_scene(np.random.default_rng(3), 40, 60, num_classes=4, label=2)
    assert a.image.size == (60, 40) and a.mask.shape == (40, 60)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and np.array_equal(a.mask, b.mask)
    assert a.label == 2 and set(np.unique(a.mask)) <= {0, 1, 2, 3, 4} and (a.mask == 3).any()


def test_layouts_read_back(tmp_path):
    paths = write_image_folder(tmp_path / "plain", 7, seed=1)
    assert len(open_images(tmp_path / "plain")) == 7 and len({Image.open(p).size for p in paths}) > 1
    write_image_folder(tmp_path / "inet", 6, num_classes=3, size=(32, 32))
    src = open_images(tmp_path / "inet", labels="folder")
    assert src.classes == ["class_00", "class_01", "class_02"] and sorted(src.label(i) for i in range(6)) == [0, 0, 1, 1, 2, 2]
    base = write_ade20k(tmp_path / "ade", 3, 2, size=(40, 50))
    assert sorted(p.name for p in (base / "annotations" / "validation").iterdir()) == [
        "ADE_val_00000001.png", "ADE_val_00000002.png"]
    mask = np.asarray(Image.open(base / "annotations" / "training" / "ADE_train_00000001.png"))
    assert mask.shape == (40, 50) and mask.max() <= 4
    write_dataset(tmp_path / "ds", 4, with_labels=True, with_masks=True, splits=("train", "validation"))
    ds = open_images(tmp_path / "ds", split="validation")
    assert len(ds) == 4 and ds.label(1) == 1 and "annotation" in ds.dataset.features
    with pytest.raises(ImageDecodeError):
        open_images(write_corrupt_image(tmp_path / "bad" / "x.jpg").parent).load(0)
