"""export -> verify -> standardizers -> loader on a generated scene set (image folder and `datasets`)."""

import json

import pytest
import torch
from canvit_model import CanViTConfig, CanViTForPretraining
from canvit_model.layers.heads import PositionStandardizer
from canvit_train.data import export, standardizers, verify
from canvit_train.data.loader import FeatureShardLoader
from canvit_train.data.scenes import SceneOrder
from canvit_train.data.smoke import make_smoke_data
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipeline")
    data = make_smoke_data(root, num_scenes=20)
    return root, data


def _export_args(data, scenes, out, results):
    return [
        "--teacher",
        str(data.teacher),
        "--scenes",
        str(scenes),
        "--out",
        str(out),
        "--shard-size",
        "8",
        "--resolution",
        "32",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--loader-workers",
        "0",
        "--results",
        str(results),
        "--seed",
        "3",
        "--no-progress",
    ]


def test_folder_export_verify_standardizers_loader(run, capsys):
    root, data = run
    out = root / "feat"
    assert export.main(_export_args(data, data.scenes, out, root / "results")) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["num_images"] == 21 and m["num_rows"] == 20 and len(m["shards"]) == 3
    assert m["teacher"] == str(data.teacher) and m["resolution"] == 32 and m["dtype"] == "float16"
    assert m["seed"] == 3 and m["shard_size"] == 8 and m["code"]["git_commit"]
    [bad] = m["failed_images"]
    assert bad["key"] == data.corrupt_key and "cannot identify" in bad["reason"]
    order = SceneOrder.load(out)
    assert order.key(bad["position"]) == data.corrupt_key and sorted(order.indices) == list(range(21))
    assert list(order.indices) != list(range(21))  # really permuted
    sh = load_file(str(out / "shards" / "00000.safetensors"))
    assert sh["patches"].dtype == torch.float16 and sh["patches"].shape[1:] == (4, 32)
    assert sh["position"].dtype == torch.int64 and sh["cls"].shape[1:] == (32,)
    run_meta = json.loads((root / "results" / "teacher-export" / "scenes-teacher-32.json").read_text())
    assert run_meta["complete"] and run_meta["extra"]["resolution"] == 32 and run_meta["rows"] == 3

    capsys.readouterr()
    assert verify.main([str(out)]) == 0
    assert "OK - 3 shards, 20 rows, 1 failed" in capsys.readouterr().out
    assert verify.main([str(out), "--recompute", "4", "--teacher", str(data.teacher), "--rtol", "0.005"]) == 0
    assert "recompute: 4 images" in capsys.readouterr().out
    other = root / "other-teacher"
    from canvit_train.data.teacher import write_tiny_teacher

    write_tiny_teacher(other, seed=7)
    assert verify.main([str(out), "--recompute", "2", "--teacher", str(other), "--rtol", "0.005"]) == 1
    assert "recomputed features differ" in capsys.readouterr().err

    std = root / "std.safetensors"
    assert standardizers.main([str(out), "--out", str(std), "--num-scenes", "10"]) == 0
    stats = standardizers.load_standardizers(std)
    first = [load_file(str(out / "shards" / f"{s:05d}.safetensors")) for s in range(2)]
    p10 = torch.cat([f["patches"] for f in first])[:10]
    c10 = torch.cat([f["cls"] for f in first])[:10]
    ref = PositionStandardizer(4, 32)
    ref.fit(p10)
    assert stats["patch_mean"].dtype == torch.float32 and stats["patch_mean"].shape == (4, 32)
    torch.testing.assert_close(stats["patch_mean"], ref.mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(stats["patch_var"], ref.var, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(
        stats["cls_var"], c10.double().var(0, unbiased=False)[None].float(), rtol=1e-6, atol=1e-7
    )
    model = CanViTForPretraining(CanViTConfig(backbone_name="vits16"), teacher_dim=32, teacher_patch_grid=2)
    standardizers.apply_standardizers(model, stats)
    z = model.teacher_patch_standardizer.standardize(p10.float())
    assert bool(model.teacher_patch_standardizer.fitted)
    torch.testing.assert_close(z.mean(0), torch.zeros(4, 32), atol=1e-4, rtol=0)
    sd = model.state_dict()
    assert torch.equal(sd["teacher_cls_standardizer.mean"], stats["cls_mean"])
    assert standardizers.main([str(out), "--out", str(std), "--num-scenes", "100", "--force"]) == 2
    wrong = CanViTForPretraining(CanViTConfig(backbone_name="vits16"), teacher_dim=32, teacher_patch_grid=3)
    with pytest.raises(ValueError, match="teacher_patch_grid"):
        standardizers.apply_standardizers(wrong, stats)

    batch = next(iter(FeatureShardLoader(out, data.scenes, batch_size=4, num_workers=0)))
    assert torch.equal(batch.patches, sh["patches"][:4]) and torch.equal(batch.positions, sh["position"][:4])


def test_dataset_export_and_loader(run, capsys):
    root, data = run
    out = root / "feat-ds"
    assert export.main(_export_args(data, data.dataset, out, root / "results") + ["--split", "train"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["num_rows"] == 20 and m["failed_images"] == [] and m["split"] == "train"
    order = SceneOrder.load(out)
    assert all(k.startswith("row:") for k in order.keys)
    assert verify.main([str(out), "--recompute", "2", "--teacher", str(data.teacher), "--rtol", "0.005"]) == 0
    loader = FeatureShardLoader(out, data.dataset, batch_size=5, num_workers=0, split="train")
    b = next(iter(loader))
    assert b.positions.tolist() == [0, 1, 2, 3, 4] and b.scenes.shape == (5, 3, 32, 32)
    with pytest.raises(ValueError, match="covers 20 images but the scene source"):
        FeatureShardLoader(out, data.scenes, batch_size=5, num_workers=0)

    # --streaming: the stream's own order, same features per key
    streamed = root / "feat-stream"
    assert (
        export.main(_export_args(data, data.dataset, streamed, root / "results") + ["--split", "train", "--streaming"])
        == 0
    )
    s_order = SceneOrder.load(streamed)
    assert s_order.keys == [f"row:{i}" for i in range(20)]
    s0 = load_file(str(streamed / "shards" / "00000.safetensors"))
    where = {k: p for p, k in enumerate(order.keys)}
    mapped = {}
    for s in range(3):
        sh = load_file(str(out / "shards" / f"{s:05d}.safetensors"))
        mapped.update({int(p): sh["patches"][i] for i, p in enumerate(sh["position"])})
    for i in range(8):
        torch.testing.assert_close(s0["patches"][i].float(), mapped[where[f"row:{i}"]].float(), rtol=2**-10, atol=1e-5)


def test_dry_run_and_help(run, capsys):
    root, data = run
    assert (
        export.main(
            [
                "--teacher",
                str(data.teacher),
                "--scenes",
                str(data.scenes),
                "--out",
                str(root / "dry"),
                "--resolution",
                "32",
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "(21 images)" in out and "per image:  328 B" in out and "13.2M images" in out
    assert not (root / "dry").exists()
    # the paper's figure: ViT-B/16 at 512 px, 13.2M images ~ 19 TiB
    assert 18.5 < export.bytes_per_image(32, 768) * export.IN21K_IMAGES / 2**40 < 19.5
    with pytest.raises(SystemExit):
        export.main(["--help"])
    assert "torchrun" in capsys.readouterr().out
    assert (
        export.main(
            [
                "--teacher",
                str(data.teacher),
                "--scenes",
                str(data.scenes),
                "--out",
                str(root / "x"),
                "--resolution",
                "40",
            ]
        )
        == 2
    )
    assert "multiple of the teacher's patch size 16" in capsys.readouterr().err
