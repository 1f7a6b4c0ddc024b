"""Export robustness: kill + resume gives identical bytes, 2 workers = 1 worker, corrupt shards are named."""

import json
import shutil
import struct

import pytest
import torch
from canvit_train.data import export as export_mod
from canvit_train.data import verify
from canvit_train.data.loader import FeatureShardLoader
from canvit_train.data.shards import Manifest, ShardError
from canvit_train.data.smoke import make_smoke_data, smoke_export


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    data = make_smoke_data(root, num_scenes=20)
    manifest = smoke_export(data, root / "ref")
    assert manifest.complete and manifest.num_shards == 3
    return root, data


def shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.safetensors"))}


def records(out):
    keep = ("shard", "start", "end", "rows", "bytes", "sha256", "failed")
    return {s: {k: r[k] for k in keep} for s, r in Manifest.scan(out).records.items()}


def test_killed_export_resumes_to_identical_bytes(ref, monkeypatch):
    root, data = ref
    out = root / "killed"
    calls = {"n": 0}
    real = export_mod.teacher_targets

    def dies_mid_shard_1(teacher, scenes):  # shards of 8 in batches of 4: call 3 is inside shard 1
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(teacher, scenes)

    monkeypatch.setattr(export_mod, "teacher_targets", dies_mid_shard_1)
    with pytest.raises(KeyboardInterrupt):
        smoke_export(data, out)
    monkeypatch.setattr(export_mod, "teacher_targets", real)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.json", "00000.safetensors"]
    # what a kill during the write / between the rename and the record leaves behind
    (out / "shards" / ".00001.safetensors.4242.tmp").write_bytes(b"partial")
    (out / "shards" / "00002.safetensors").write_bytes(shard_bytes(root / "ref")["00002.safetensors"][:100])
    done_before = (out / "shards" / "00000.json").stat().st_mtime_ns
    assert verify.main([str(out)]) == 1
    m = smoke_export(data, out)
    assert m.complete
    assert shard_bytes(out) == shard_bytes(root / "ref")
    assert records(out) == records(root / "ref")
    assert (out / "shards" / "00000.json").stat().st_mtime_ns == done_before  # complete shard skipped
    assert not list((out / "shards").glob(".*.tmp"))
    assert verify.main([str(out)]) == 0


def test_two_workers_write_the_same_shards_as_one(ref):
    root, data = ref
    out = root / "two"
    m0 = smoke_export(data, out, num_workers=2, worker_index=0, results=str(root / "results"))
    assert not m0.complete and m0.missing_shards == [1]
    assert not (root / "results" / "teacher-export").exists()  # provenance only once complete
    assert verify.main([str(out)]) == 1
    m1 = smoke_export(data, out, num_workers=2, worker_index=1, results=str(root / "results"))
    assert m1.complete
    assert shard_bytes(out) == shard_bytes(root / "ref") and records(out) == records(root / "ref")
    merged = json.loads((out / "manifest.json").read_text())
    assert [r["worker"] for r in merged["shards"]] == ["0/2", "1/2", "0/2"]
    assert len(list((root / "results" / "teacher-export").glob("*.json"))) == 1
    with pytest.raises(ValueError, match="shard_size: stored 8, requested 4"):
        smoke_export(data, out, shard_size=4)


def _patches_offset(path, row):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    shape = header["patches"]["shape"]
    return 8 + n + header["patches"]["data_offsets"][0] + row * shape[1] * shape[2] * 2


def test_corrupt_shards_are_named_by_verify_and_loader(ref, capsys):
    root, data = ref
    out = root / "corrupt"
    shutil.copytree(root / "ref", out)
    bad = out / "shards" / "00001.safetensors"
    raw = bytearray(bad.read_bytes())
    off = _patches_offset(bad, 2)
    raw[off : off + 2] = struct.pack("<H", 0x7E00)  # a float16 NaN in row 2, same size
    bad.write_bytes(bytes(raw))
    capsys.readouterr()
    assert verify.main([str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: checksum mismatch" in err and "NaN" in err
    with pytest.raises(ShardError, match=f"{bad}: checksum mismatch"):
        FeatureShardLoader(out, data.scenes, batch_size=4, num_workers=0, checksum=True)
    it = iter(FeatureShardLoader(out, data.scenes, batch_size=4, num_workers=0))  # sha256 when shard 1 opens
    with pytest.raises(ShardError, match=f"{bad}: checksum mismatch"):
        for _ in range(4):
            next(it)
    it = iter(FeatureShardLoader(out, data.scenes, batch_size=4, num_workers=0, verify_on_open=False))
    with pytest.raises(ShardError, match=f"{bad}: patches has NaN/inf values \\(row 2"):
        for _ in range(4):
            next(it)
    bad.write_bytes(bytes(raw[: len(raw) // 2]))  # truncated
    with pytest.raises(ShardError, match=f"{bad}: truncated"):
        FeatureShardLoader(out, data.scenes, batch_size=4, num_workers=0)
    assert verify.main([str(out)]) == 1
    assert f"{bad}: truncated" in capsys.readouterr().err
    bad.unlink()
    assert verify.main([str(out)]) == 1
    assert f"{bad}: missing" in capsys.readouterr().err


def test_worker_split_defaults_to_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    cfg = export_mod.ExportConfig(teacher="t", scenes="s", out="o", device="cpu")
    assert (cfg.num_workers, cfg.worker_index) == (4, 3)
    with pytest.raises(ValueError, match="--worker-index=4 must be in \\[0, --num-workers=4\\)"):
        export_mod.ExportConfig(teacher="t", scenes="s", out="o", device="cpu", worker_index=4)
    with pytest.raises(ValueError, match="--shard-size=0 must be an int >= 1"):
        export_mod.ExportConfig(teacher="t", scenes="s", out="o", device="cpu", shard_size=0)


@pytest.mark.slow
def test_sigkilled_export_process_resumes_to_identical_bytes(ref):
    """A real `kill -9` of the export process mid-shard (slow: two fresh Python processes)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root, data = ref
    out = root / "sigkill"
    cmd = [
        sys.executable,
        "-m",
        "canvit_train.data.export",
        "--teacher",
        str(data.teacher),
        "--scenes",
        str(data.scenes),
        "--out",
        str(out),
        "--shard-size",
        "8",
        "--resolution",
        "32",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--loader-workers",
        "0",
        "--results",
        "",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as in this process: thread count changes fp32 rounding
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not (out / "shards" / "00000.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "shards" / "00002.json").exists()  # killed before the end
    assert subprocess.run(cmd, capture_output=True, env=env).returncode == 0
    clean = root / "clean-batch1"  # same batch size: fp32 matmuls may round differently per batch shape
    smoke_export(data, clean, batch_size=1)
    assert shard_bytes(out) == shard_bytes(clean) and records(out) == records(clean)
