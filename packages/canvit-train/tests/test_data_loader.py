"""Training loader: alignment with the shards, exact resume, DDP slicing, workers, online teacher."""

import numpy as np
import pytest
import torch
from canvit_data import open_images
from canvit_train.data.loader import FeatureShardLoader, OnlineTeacherLoader, TrainingBatch
from canvit_train.data.scenes import SceneOrder, load_scene
from canvit_train.data.smoke import make_smoke_data, smoke_export


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("loader")
    data = make_smoke_data(root, num_scenes=20)
    manifest = smoke_export(data, root / "features")
    return data, root / "features", manifest


def take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_batches_align_scenes_targets_and_positions(smoke):
    data, feats, manifest = smoke
    src = open_images(data.scenes)
    order = SceneOrder.load(feats)
    failed = set(manifest.failed_positions().tolist())
    assert len(failed) == 1 and order.key(failed.pop()) == data.corrupt_key
    batches = take(FeatureShardLoader(feats, data.scenes, batch_size=6, num_workers=0), 5)  # 30 > 20 valid: wraps
    positions = torch.cat([b.positions for b in batches]).tolist()
    valid = [p for p in range(len(order)) if p not in manifest.failed_positions()]
    assert positions == (valid + valid)[:30]
    from safetensors.torch import load_file

    rows = {}
    for s in range(manifest.num_shards):
        sh = load_file(str(feats / "shards" / f"{s:05d}.safetensors"))
        rows.update({int(p): (sh["patches"][i], sh["cls"][i]) for i, p in enumerate(sh["position"])})
    b = batches[1]
    assert b.scenes.shape == (6, 3, 32, 32) and b.scenes.dtype == torch.float32
    assert b.patches.shape == (6, 4, 32) and b.patches.dtype == torch.float16 and b.cls.shape == (6, 32)
    for i, p in enumerate(b.positions.tolist()):
        assert torch.equal(b.patches[i], rows[p][0]) and torch.equal(b.cls[i], rows[p][1])
        assert torch.equal(b.scenes[i], load_scene(src, order.index(p), 32))


def test_resume_mid_shard_equals_uninterrupted_stream(smoke):
    data, feats, _ = smoke
    full = take(FeatureShardLoader(feats, data.scenes, batch_size=4, num_workers=0), 8)
    resumed = take(FeatureShardLoader(feats, data.scenes, batch_size=4, start_position=3 * 4 + 0, num_workers=0), 5)
    for a, b in zip(full[3:], resumed, strict=True):
        assert torch.equal(a.positions, b.positions) and torch.equal(a.patches, b.patches)
        assert torch.equal(a.scenes, b.scenes)
    odd = take(FeatureShardLoader(feats, data.scenes, batch_size=4, start_position=5, num_workers=0), 2)
    stream = torch.cat([b.positions for b in full])
    assert torch.cat([b.positions for b in odd]).tolist() == stream[5:13].tolist()


def test_ranks_split_each_global_batch_and_workers_keep_the_order(smoke):
    data, feats, _ = smoke
    single = take(FeatureShardLoader(feats, data.scenes, batch_size=6, start_position=2, num_workers=0), 4)
    ranks = [
        take(
            FeatureShardLoader(feats, data.scenes, batch_size=6, start_position=2, num_workers=0, rank=r, world_size=3),
            4,
        )
        for r in range(3)
    ]
    for j in range(4):
        assert all(len(rk[j]) == 2 for rk in ranks)
        union = torch.cat([rk[j].patches for rk in ranks])
        assert torch.equal(union, single[j].patches)
        assert torch.equal(torch.cat([rk[j].positions for rk in ranks]), single[j].positions)
    workers = take(FeatureShardLoader(feats, data.scenes, batch_size=6, start_position=2, num_workers=2), 4)
    for a, b in zip(single, workers, strict=True):
        assert torch.equal(a.positions, b.positions) and torch.equal(a.scenes, b.scenes)
    with pytest.raises(ValueError, match="divisible by world_size"):
        FeatureShardLoader(feats, data.scenes, batch_size=5, world_size=2, num_workers=0)


def test_online_teacher_targets_equal_the_shards(smoke):
    data, feats, _ = smoke
    shard = take(FeatureShardLoader(feats, data.scenes, batch_size=5, start_position=7, num_workers=0), 3)
    online = take(
        OnlineTeacherLoader(
            str(data.teacher), data.scenes, feats, batch_size=5, start_position=7, num_workers=0, resolution=32
        ),
        3,
    )
    for a, b in zip(shard, online, strict=True):
        assert torch.equal(a.positions, b.positions) and torch.equal(a.scenes, b.scenes)
        assert b.patches.dtype == torch.float32
        # equal up to the float16 rounding of storage (half an ulp, plus batch-composition noise)
        torch.testing.assert_close(b.patches, a.patches.float(), rtol=2**-10, atol=1e-5)
        torch.testing.assert_close(b.cls, a.cls.float(), rtol=2**-10, atol=1e-5)
        assert (b.patches - a.patches.float()).abs().max() > 0  # really computed, not read back


def test_training_batch_to_casts_after_transfer():
    b = TrainingBatch(
        torch.zeros(2, 3, 32, 32),
        torch.ones(2, 4, 8, dtype=torch.float16),
        torch.ones(2, 8, dtype=torch.float16),
        torch.arange(2),
    )
    m = b.to("cpu")
    assert m.patches.dtype == torch.float32 and m.cls.dtype == torch.float32 and m.positions.dtype == torch.int64
    assert len(m) == 2


def test_valid_position_skips_failed_positions():
    from canvit_train.data.scenes import valid_position

    failed = np.array([0, 3, 4, 9], dtype=np.int64)
    valid = [p for p in range(12) if p not in failed]
    assert [int(valid_position(v, failed)) for v in range(len(valid))] == valid
    assert valid_position(5, np.zeros(0, np.int64)) == 5


def test_scene_that_stops_decoding_is_replaced_by_the_next_sample(smoke, tmp_path):
    import shutil

    data, feats, _ = smoke
    scenes = tmp_path / "scenes"
    shutil.copytree(data.scenes, scenes)
    order = SceneOrder.load(feats)
    ref = take(FeatureShardLoader(feats, scenes, batch_size=4, num_workers=0), 1)[0]
    victim = int(ref.positions[1])
    (scenes / order.key(victim)).write_bytes(b"garbage")  # same key, no longer decodes
    with pytest.warns(UserWarning, match=f"position {victim}"):
        b = take(FeatureShardLoader(feats, scenes, batch_size=4, num_workers=0), 1)[0]
    assert b.positions.tolist() == [ref.positions[0].item(), ref.positions[2].item(), *ref.positions[2:].tolist()]
    assert torch.equal(b.patches[1], ref.patches[2]) and torch.equal(b.scenes[1], ref.scenes[2])
