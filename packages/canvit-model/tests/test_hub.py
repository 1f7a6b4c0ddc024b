import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from canvit_model import CanViTConfig, CanViTForPretraining, Viewpoint, sample_at_viewpoint

SMALL = CanViTConfig(backbone_name="vits16", canvas_num_heads=2, canvas_head_dim=32)


def small(**kw):
    torch.manual_seed(1)
    m = CanViTForPretraining(SMALL, teacher_dim=48, teacher_patch_grid=4, **kw).eval()
    with torch.no_grad():
        for k, v in m.state_dict().items():
            if v.is_floating_point():
                v.add_(torch.randn_like(v) * 0.05)
    return m


def rollout(m):
    img = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    state = m.init_state(batch_size=1, canvas_grid_size=4)
    for c, s in [((0.0, 0.0), 1.0), ((0.25, -0.5), 0.5)]:
        vp = Viewpoint(centers=torch.tensor([c]), scales=torch.tensor([s]))
        with torch.no_grad():
            state = m(sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=32), state, vp).state
    return state


def test_save_then_load_round_trips_bit_exactly(tmp_path):
    m = small()
    m.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["teacher_dim"] == 48 and cfg["teacher_patch_grid"] == 4
    assert cfg["canvit_config"]["backbone_name"] == "vits16"
    m2 = CanViTForPretraining.from_pretrained(tmp_path)
    assert not m2.training
    a, b = rollout(m), rollout(m2)
    assert torch.equal(a.canvas, b.canvas) and torch.equal(a.recurrent_cls, b.recurrent_cls)


def test_mismatched_keys_are_listed(tmp_path):
    m = small()
    m.save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    sd["canvit.surprise"] = torch.zeros(1)
    del sd["canvit.init_canvas_patch"]
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing keys \(1\): \['canvit.init_canvas_patch'\][\s\S]*unexpected keys \(1\): \['canvit.surprise'\]"):
        CanViTForPretraining.from_pretrained(tmp_path)


def test_unknown_config_layout_and_missing_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="neither the canvit-pytorch 0.2 layout"):
        CanViTForPretraining.from_pretrained(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="missing"):
        CanViTForPretraining.from_pretrained(empty)
    with pytest.raises(FileNotFoundError, match="neither an existing local directory"):
        CanViTForPretraining.from_pretrained(str(tmp_path / "nope"))


def test_convex_v01_checkpoints_are_refused_clearly(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "backbone_name": "vitb16", "canvas_patch_grid_sizes": [32],
        "model_config": {"canvas_update_mode": "convex", "gate_bias_init": -2.0},
    }))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="convex"):
        CanViTForPretraining.from_pretrained(tmp_path)


def test_offline_without_cache_names_repo_and_hf_hub_offline(tmp_path):
    code = (
        "from canvit_model import CanViTForPretraining\n"
        "try:\n"
        "    CanViTForPretraining.from_pretrained('canvit/some-repo-that-is-not-cached')\n"
        "except OSError as e:\n"
        "    print('ERR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "ERR" in r.stdout, r.stderr
    assert "canvit/some-repo-that-is-not-cached" in r.stdout and "HF_HUB_OFFLINE" in r.stdout


def test_hub_cache_layout_is_read_offline(tmp_path, monkeypatch):
    """A repo already in the Hugging Face cache loads with the hub id alone, offline."""
    pytest.importorskip("huggingface_hub")
    m = small()
    src = tmp_path / "src"
    m.save_pretrained(src)
    cache = tmp_path / "cache"
    snap = cache / "models--canvit--tiny" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in src.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (cache / "models--canvit--tiny" / "refs").mkdir()
    (cache / "models--canvit--tiny" / "refs" / "main").write_text("0" * 40)
    m2 = CanViTForPretraining.from_pretrained("canvit/tiny", cache_dir=cache, local_files_only=True)
    assert torch.equal(rollout(m2).canvas, rollout(m).canvas)


def test_pickles_are_never_read(tmp_path):
    from canvit_model.io import read_safetensors

    p = tmp_path / "model.bin"
    torch.save({"x": torch.zeros(1)}, p)
    with pytest.raises(ValueError, match="no pickle"):
        read_safetensors(p)


def test_safetensors_writer_takes_views_strides_and_every_dtype(tmp_path):
    from safetensors import safe_open

    from canvit_model.io import write_safetensors

    qkv = torch.randn(6, 4)
    q, k, v = qkv.split(2, dim=0)  # views of one storage, as DINOv3's HF export produces
    t = {
        "f32": torch.randn(3, 5), "bf16": torch.randn(7).to(torch.bfloat16), "i64": torch.arange(4),
        "flag": torch.tensor(True), "empty": torch.zeros(0, 3), "strided": torch.randn(4, 6)[:, ::2],
        "q": q, "k": k, "v": v,
    }
    write_safetensors(t, tmp_path / "x.safetensors", metadata={"format": "pt"})
    with safe_open(tmp_path / "x.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        back = {k: f.get_tensor(k) for k in f.keys()}
    assert set(back) == set(t)
    for k in t:
        assert back[k].dtype == t[k].dtype and torch.equal(back[k], t[k]), k
