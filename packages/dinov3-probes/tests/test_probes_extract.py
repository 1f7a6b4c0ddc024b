"""`dinov3-probes extract` on a generated ImageFolder with a tiny random DINOv3 in the transformers layout."""

import json
from pathlib import Path

import pytest
import torch

from canvit_data.synthetic import write_corrupt_image, write_image_folder
from canvit_model import DINOv3
from canvit_model.config import ViTConfig
from canvit_model.preprocess import center_crop_transform
from dinov3_probes import extract
from dinov3_probes.augment import crop_rng, inception_crop
from dinov3_probes.features import load_split

S = 32  # 2x2 patches


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("extract")
    torch.manual_seed(0)
    model = DINOv3(ViTConfig(dim=32, num_heads=2, depth=1)).eval()
    model.save_pretrained(root / "tiny")
    write_image_folder(root / "imagenet" / "train", 12, num_classes=3, seed=1)
    write_image_folder(root / "imagenet" / "val", 9, num_classes=3, seed=2)
    write_corrupt_image(root / "imagenet" / "val" / "class_01" / "img_99999.png")
    # real.json: one entry per val image in sorted filename order (img_00000 ... img_00008, img_99999).
    real = [[i % 3] for i in range(9)] + [[1]]
    real[4] = []
    real[5] = [2, 0]
    (root / "real.json").write_text(json.dumps(real))
    base = ["--model", str(root / "tiny"), "--data", str(root / "imagenet"), "--out", str(root / "feats"),
            "--resolution", str(S), "--batch-size", "4", "--workers", "0", "--part-size", "5", "--device", "cpu"]
    assert extract.main([*base, "--split", "train", "--epochs", "2"]) == 0
    assert extract.main([*base, "--split", "val", "--real-labels", str(root / "real.json")]) == 0
    return root, base, DINOv3.from_pretrained(root / "tiny")


def test_train_features_layout_and_values(setup):
    root, _, model = setup
    tr = load_split(root / "feats", "train")
    assert tr.manifest["num_images"] == 12 and tr.manifest["dim"] == 32 and tr.manifest["resolution"] == S
    assert len(tr.sets) == 2 and len(list((root / "feats/train/aug000").glob("part-*.safetensors"))) == 3
    fs = tr.sets[0]
    assert fs.x.shape == (12, 32) and fs.x.dtype == torch.float32 and fs.y.dtype == torch.int64
    assert fs.y.tolist() == [int(k.split("/")[0][-2:]) for k in fs.keys]  # ImageFolder: sorted class folders
    assert not torch.allclose(tr.sets[0].x, tr.sets[1].x)  # another augmentation epoch, other crops
    # A row is the final-LayerNorm CLS of that image's seeded Inception crop.
    from PIL import Image

    i = 7
    img = Image.open(root / "imagenet" / "train" / fs.keys[i])
    for e in (0, 1):
        x = inception_crop(img, S, crop_rng(0, e, int(tr.sets[e].index[i])))[None]
        with torch.no_grad():
            ref = model.forward_features(x).cls[0]
        assert torch.allclose(tr.sets[e].x[i], ref, atol=1e-5)


def test_val_features_center_crop_real_labels_and_skipped_image(setup):
    root, _, model = setup
    va = load_split(root / "feats", "val")
    fs = va.sets[0]
    assert fs.x.shape == (9, 32)  # the corrupt image is skipped, not stored
    skipped = [s for p in sorted((root / "feats/val").glob("part-*.json"))
               for s in json.loads(p.read_text())["skipped"]]
    assert [s["key"] for s in skipped] == ["class_01/img_99999.png"]
    from PIL import Image

    x = torch.stack([center_crop_transform(Image.open(root / "imagenet" / "val" / k), S) for k in fs.keys])
    with torch.no_grad():
        ref = model.forward_features(x).cls
    assert torch.allclose(fs.x, ref, atol=1e-5)
    by_name = {Path(k).name: r for k, r in zip(fs.keys, va.real)}
    assert by_name["img_00004.png"] == [] and by_name["img_00005.png"] == [2, 0] and by_name["img_00007.png"] == [1]


def test_resume_rewrites_only_missing_parts(setup):
    root, base, _ = setup
    d = root / "feats/train/aug000"
    before = load_split(root / "feats", "train").sets[0]
    stamps = {p.name: p.stat().st_mtime_ns for p in d.glob("part-*.safetensors")}
    (d / "part-00001.json").unlink()  # as if killed before the part was marked complete
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_split(root / "feats", "train")
    assert extract.main([*base, "--split", "train", "--epochs", "2"]) == 0
    after = load_split(root / "feats", "train").sets[0]
    assert torch.equal(before.x, after.x) and before.keys == after.keys
    now = {p.name: p.stat().st_mtime_ns for p in d.glob("part-*.safetensors")}
    assert now["part-00000.safetensors"] == stamps["part-00000.safetensors"]
    assert now["part-00001.safetensors"] != stamps["part-00001.safetensors"]


def test_bad_input_is_refused_clearly(setup, tmp_path):
    root, base, _ = setup
    with pytest.raises(SystemExit, match="different settings"):
        extract.main([*[a if a != str(S) else "48" for a in base], "--split", "val"])
    with pytest.raises(SystemExit, match="multiple of 16"):
        extract.main([*base[:-8], "--resolution", "30", "--split", "val"])
    with pytest.raises(FileNotFoundError, match="real-labels"):
        extract.main([*base, "--split", "val", "--real-labels", str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("[[1], 2]")
    with pytest.raises(ValueError, match="entry 1"):
        extract.main([*base, "--split", "val", "--real-labels", str(bad)])
    short = tmp_path / "short.json"
    short.write_text("[[1], [2]]")
    with pytest.raises(ValueError, match="2 entries but the validation set has 10"):
        extract.main([*base, "--split", "val", "--real-labels", str(short)])


def test_hugging_face_dataset_source(setup, tmp_path):
    from canvit_data.synthetic import write_dataset

    root, _, _ = setup
    write_dataset(tmp_path / "ds", 6, splits=("train", "validation"), with_labels=True, num_classes=3)
    (tmp_path / "real.json").write_text(json.dumps([[i % 3] for i in range(6)]))
    b = ["--model", str(root / "tiny"), "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "f"),
         "--resolution", str(S), "--workers", "0", "--device", "cpu", "--split", "val"]
    with pytest.raises(ValueError, match="split='val' is not in"):
        extract.main(b)
    assert extract.main([*b, "--data-split", "validation", "--real-labels", str(tmp_path / "real.json")]) == 0
    va = load_split(tmp_path / "f", "val")
    assert va.sets[0].keys == [f"row:{i}" for i in range(6)] and va.sets[0].y.tolist() == [0, 1, 2, 0, 1, 2]
    assert va.real == [[i % 3] for i in range(6)] and va.manifest["classes"] == ["class_00", "class_01", "class_02"]
