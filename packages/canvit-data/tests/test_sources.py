import datasets
import numpy as np
import pytest
from PIL import Image

from canvit_data import DatasetSource, FolderSource, ImageDecodeError, open_images


def _img(color, size=(20, 12)):
    return Image.fromarray(np.full((size[1], size[0], 3), color, dtype=np.uint8))


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "imgs"
    for cls, color in (("dog", 10), ("cat", 200)):
        (root / cls / "sub").mkdir(parents=True)
        _img(color).save(root / cls / "a.png")
        _img(color + 5).save(root / cls / "sub" / "b.jpg")
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("ignored")
    return root


def test_folder_source_sorted_keys_and_decode_errors(folder):
    src = open_images(folder)
    assert isinstance(src, FolderSource)
    assert [src.key(i) for i in range(len(src))] == [
        "cat/a.png", "cat/broken.jpg", "cat/sub/b.jpg", "dog/a.png", "dog/sub/b.jpg"]
    assert src.label(0) is None
    im = src.load(0)
    assert im.mode == "RGB" and im.size == (20, 12) and im.getpixel((0, 0)) == (200, 200, 200)
    with pytest.raises(ImageDecodeError, match="cat/broken.jpg") as e:
        src.load(1)
    assert e.value.key == "cat/broken.jpg" and e.value.reason
    with pytest.raises(IndexError, match="out of range"):
        src.key(5)


def test_image_folder_labels_are_sorted_class_indices(folder):
    src = open_images(folder, labels="folder")
    assert src.classes == ["cat", "dog"]
    assert [src.label(i) for i in range(len(src))] == [0, 0, 0, 1, 1]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderSource(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        open_images(tmp_path / "empty")


def test_dataset_saved_to_disk(tmp_path, folder):
    imgs = [_img(c) for c in (0, 100, 250)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict({"image": imgs, "label": [0, 1, 1]}, features=features)
    datasets.DatasetDict({"train": ds, "validation": ds.select([0])}).save_to_disk(tmp_path / "ds")
    src = open_images(tmp_path / "ds", split="train")
    assert isinstance(src, DatasetSource) and len(src) == 3
    assert src.image_column == "image" and src.label_column == "label" and src.classes == ["a", "b"]
    assert src.key(2) == "row:2" and src.label(1) == 1
    assert src.load(1).getpixel((0, 0)) == (100, 100, 100)
    with pytest.raises(ValueError, match="splits"):
        open_images(tmp_path / "ds")
    with pytest.raises(ValueError, match="split='test'"):
        open_images(tmp_path / "ds", split="test")
    with pytest.raises(ValueError, match="image_column='pixels'"):
        open_images(tmp_path / "ds", split="train", image_column="pixels")


def test_broken_dataset_row_is_a_decode_error(tmp_path):
    ds = datasets.Dataset.from_dict({"img": [{"bytes": b"junk", "path": None}]},
                                    features=datasets.Features({"img": datasets.Image()}))
    ds.save_to_disk(tmp_path / "bad")
    src = open_images(tmp_path / "bad")
    with pytest.raises(ImageDecodeError, match="row:0"):
        src.load(0)


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub (offline)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ValueError, match="cannot open 'no-such-org/no-such-dataset'"):
        open_images("no-such-org/no-such-dataset", split="train")
