"""DINOv3: parity with transformers' DINOv3ViTModel (the oracle), checkpoint layouts, errors.

transformers is a dev-only dependency; every test that needs it imports it through `hf()`.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from pathlib import Path

import pytest
import torch

from canvit_model import BACKBONES, DINOv3
from canvit_model.convert import (
    config_from_hf,
    hf_state_dict,
    state_dict_from_hf,
    state_dict_from_official,
)
from canvit_model.layers.block import Block
from canvit_model.layers.rope import rope_periods
from canvit_model.layers.vit import ViT

SIZES = [(224, 224), (512, 512), (160, 288)]
TINY = dict(hidden_size=64, num_attention_heads=2, num_hidden_layers=2, num_register_tokens=4)
TINY_GELU = dict(TINY, intermediate_size=128)
TINY_SWIGLU = dict(TINY, intermediate_size=96, use_gated_mlp=True, hidden_act="silu")


def hf():
    return pytest.importorskip("transformers")


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Discriminative random weights: LayerScale 0.1 N, LN weights 1 + 0.1 N, biases 0.02 N (q/v too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if name.endswith("lambda1") or name.endswith("gamma"):
                p.copy_(0.1 * n)
            elif re.search(r"norm\d?\.weight$", name):
                p.copy_(1 + 0.1 * n)
            elif name.endswith("bias"):
                p.copy_(0.02 * n)
            elif p.ndim >= 2 and "token" not in name:
                p.copy_(n / math.sqrt(p[0].numel()))
            else:  # cls / register / mask tokens
                p.copy_(n)
    return model


def hf_model(seed: int = 0, **cfg):
    t = hf()
    return randomize_(t.DINOv3ViTModel(t.DINOv3ViTConfig(**cfg)), seed).eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def images(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def check_parity(ours: DINOv3, theirs, sizes, batch: int = 2) -> None:
    for h, w in sizes:
        x = images(batch, h, w)
        with torch.no_grad():
            ref = theirs(pixel_values=x)
            out = ours(x)
            feats = ours.forward_features(x)
        n = (h // 16) * (w // 16)
        assert out.shape == (batch, 1 + 4 + n, ours.cfg.dim)
        assert rel_err(out, ref.last_hidden_state) < 1e-5, (h, w)
        assert rel_err(ours.cls_of(out), ref.pooler_output) < 1e-5, (h, w)
        assert torch.equal(feats.cls, out[:, 0])
        assert torch.equal(feats.registers, out[:, 1:5])
        assert torch.equal(feats.patches, ours.patches_of(out))
        assert feats.patches.shape == (batch, n, ours.cfg.dim)
        assert feats.patch_map().shape == (batch, ours.cfg.dim, h // 16, w // 16)
        assert torch.equal(feats.patch_map()[:, :, 1, 2], feats.patches[:, 1 * (w // 16) + 2])


@pytest.fixture(scope="module", params=["gelu", "swiglu"])
def tiny(request, tmp_path_factory):
    cfg = TINY_GELU if request.param == "gelu" else TINY_SWIGLU
    theirs = hf_model(**cfg)
    d = tmp_path_factory.mktemp(f"hf-{request.param}")
    theirs.save_pretrained(d)
    return theirs, d


def test_tiny_parity_via_transformers_save_pretrained(tiny):
    theirs, d = tiny
    ours = DINOv3.from_pretrained(d)  # the round trip: transformers' save_pretrained -> our loader
    assert not ours.training
    check_parity(ours, theirs, SIZES)


def test_both_transformers_key_spellings(tiny):
    theirs, d = tiny
    from safetensors.torch import load_file

    on_disk = load_file(d / "model.safetensors")
    in_memory = theirs.state_dict()
    assert any(k.startswith("layer.0.") for k in on_disk)  # 4.x / hub spelling
    assert any(k.startswith("model.layer.0.") for k in in_memory)  # 5.x spelling
    cfg, r = config_from_hf(theirs.config.to_dict())
    a, b = state_dict_from_hf(on_disk, cfg, r), state_dict_from_hf(in_memory, cfg, r)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_our_save_pretrained_loads_in_transformers_and_back(tiny, tmp_path):
    theirs, d = tiny
    ours = DINOv3.from_pretrained(d)
    ours.save_pretrained(tmp_path)
    again = DINOv3.from_pretrained(tmp_path)
    reloaded = hf().DINOv3ViTModel.from_pretrained(tmp_path).eval()
    x = images(1, 64, 96)
    with torch.no_grad():
        assert torch.equal(again(x), ours(x))
        assert rel_err(ours(x), reloaded(pixel_values=x).last_hidden_state) < 1e-5


def official_state_dict(theirs) -> dict[str, torch.Tensor]:
    """The official torch-hub layout (spec 1.3) built from transformers weights."""
    cfg = theirs.config
    d = cfg.hidden_size
    sd = {re.sub(r"^model\.layer\.", "layer.", k): v.clone() for k, v in theirs.state_dict().items()}
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "storage_tokens": sd["embeddings.register_tokens"],
        "mask_token": sd["embeddings.mask_token"].reshape(1, d),
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.bias"],
        # bf16-rounded, as in the released checkpoints (trained with pos_embed_rope_dtype=bf16)
        "rope_embed.periods": rope_periods(d // cfg.num_attention_heads, cfg.rope_theta).bfloat16().float(),
        "norm.weight": sd["norm.weight"],
        "norm.bias": sd["norm.bias"],
    }
    mlp = ({"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"} if cfg.use_gated_mlp
           else {"fc1": "up_proj", "fc2": "down_proj"})
    for i in range(cfg.num_hidden_layers):
        p, o = f"layer.{i}.", f"blocks.{i}."
        out[o + "norm1.weight"], out[o + "norm1.bias"] = sd[p + "norm1.weight"], sd[p + "norm1.bias"]
        out[o + "attn.qkv.weight"] = torch.cat([sd[p + f"attention.{x}_proj.weight"] for x in "qkv"])
        k_bias = torch.randn(d)  # garbage: the mask must remove it
        out[o + "attn.qkv.bias"] = torch.cat([sd[p + "attention.q_proj.bias"], k_bias, sd[p + "attention.v_proj.bias"]])
        out[o + "attn.qkv.bias_mask"] = torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)])
        out[o + "attn.proj.weight"] = sd[p + "attention.o_proj.weight"]
        out[o + "attn.proj.bias"] = sd[p + "attention.o_proj.bias"]
        out[o + "ls1.gamma"] = sd[p + "layer_scale1.lambda1"]
        out[o + "norm2.weight"], out[o + "norm2.bias"] = sd[p + "norm2.weight"], sd[p + "norm2.bias"]
        for ours_name, hf_name in mlp.items():
            out[o + f"mlp.{ours_name}.weight"] = sd[p + f"mlp.{hf_name}.weight"]
            out[o + f"mlp.{ours_name}.bias"] = sd[p + f"mlp.{hf_name}.bias"]
        out[o + "ls2.gamma"] = sd[p + "layer_scale2.lambda1"]
    return out


def test_official_pth_loads_and_matches(tiny, tmp_path):
    theirs, d = tiny
    pth = tmp_path / "dinov3_tiny_pretrain.pth"
    torch.save(official_state_dict(theirs), pth)
    from_hf = DINOv3.from_pretrained(d)
    for src in (pth, tmp_path):  # the file, or a directory holding one .pth
        ours = DINOv3.from_pretrained(src)
        x = images(2, 64, 80)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), from_hf(x), rtol=0, atol=0)
            assert rel_err(ours(x), theirs(pixel_values=x).last_hidden_state) < 1e-5
        assert torch.equal(ours.mask_token, from_hf.mask_token)


def test_pth_is_read_without_unpickling_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    pth = tmp_path / "evil.pth"
    torch.save({"cls_token": Evil()}, pth)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        DINOv3.from_pretrained(pth)


def test_unknown_and_missing_keys_are_listed(tiny, tmp_path):
    theirs, _ = tiny
    sd = official_state_dict(theirs)
    sd["blocks.0.attn.extra"] = torch.zeros(3)
    del sd["blocks.1.ls2.gamma"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        DINOv3.from_pretrained(tmp_path / "bad.pth")
    assert "blocks.0.attn.extra" in str(e.value) and "blocks.1.ls2.gamma" in str(e.value)

    cfg, r = config_from_hf(theirs.config.to_dict())
    hsd = dict(theirs.state_dict())
    hsd["layer.9.bogus"] = torch.zeros(1)
    del hsd["model.layer.1.norm2.bias"]
    with pytest.raises(ValueError) as e:
        state_dict_from_hf(hsd, cfg, r)
    assert "layer.9.bogus" in str(e.value) and "layer.1.norm2.bias" in str(e.value)


def test_wrong_periods_are_rejected(tiny):
    theirs, _ = tiny
    sd = official_state_dict(theirs)
    sd["rope_embed.periods"] = sd["rope_embed.periods"] * 1.5
    model_cfg, _ = config_from_hf(theirs.config.to_dict())
    with pytest.raises(ValueError, match="rope_embed.periods"):
        state_dict_from_official(sd, model_cfg)


def test_offline_without_cache_names_repo_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError) as e:
        DINOv3.from_pretrained("facebook/dinov3-vitb16-pretrain-lvd1689m", cache_dir=tmp_path, local_files_only=True)
    assert "facebook/dinov3-vitb16-pretrain-lvd1689m" in str(e.value) and "HF_HUB_OFFLINE" in str(e.value)


def test_one_block_implementation_and_official_param_counts():
    # Parameter counts of the official torch-hub models (spec 1.1): same parameters, one Block class.
    official = {"vits16": 21_601_152, "vits16plus": 28_697_472, "vitb16": 85_669_632,
                "vitl16": 303_154_176, "vith16plus": 840_633_600}
    keys = {"vits16": 188, "vits16plus": 212, "vitb16": 188, "vitl16": 368, "vith16plus": 552}
    for name, count in official.items():
        with torch.device("meta"):
            m = DINOv3(name)
        assert isinstance(m, ViT) and all(type(b) is Block for b in m.blocks)
        assert m.cfg is BACKBONES[name]
        assert sum(p.numel() for p in m.parameters()) == count
        # official keys = ours + rope_embed.periods + one qkv.bias_mask per block
        assert len(m.state_dict()) + 1 + m.cfg.depth == keys[name]


def test_config_from_hf_sizes_map_to_registry():
    t = hf()
    for name, (d, i, layers, heads, gated) in {
        "vits16": (384, 1536, 12, 6, False), "vits16plus": (384, 1536, 12, 6, True),
        "vitb16": (768, 3072, 12, 12, False), "vitl16": (1024, 4096, 24, 16, False),
        "vith16plus": (1280, 5120, 32, 20, True),
    }.items():
        c = t.DINOv3ViTConfig(hidden_size=d, intermediate_size=i, num_hidden_layers=layers, num_attention_heads=heads,
                              use_gated_mlp=gated, hidden_act="silu" if gated else "gelu", num_register_tokens=4)
        cfg, r = config_from_hf(c.to_dict())
        assert cfg is BACKBONES[name] and r == 4
    # a later transformers may nest rope_theta in rope_parameters
    raw = dict(TINY_GELU, rope_parameters={"rope_theta": 50.0})
    assert config_from_hf(raw)[0].rope_base == 50.0
    with pytest.raises(ValueError, match="hidden_act"):
        config_from_hf(dict(TINY_GELU, hidden_act="relu"))


def test_input_size_must_be_multiple_of_16():
    m = DINOv3(BACKBONES["vits16"].__class__(dim=64, num_heads=2, depth=1)).eval()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        m(torch.zeros(1, 3, 50, 64))


def test_bf16_autocast_keeps_rope_float32_and_stays_close(tiny):
    _, d = tiny
    m = DINOv3.from_pretrained(d)
    x = images(1, 96, 64)
    rope = m.patch_rope(6, 4, x.device)
    assert rope.cos.dtype == torch.float32
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
            assert m.patch_rope(6, 4, x.device).cos.dtype == torch.float32
    assert rel_err(out.float(), ref) < 0.1


def test_k_bias_is_rejected_when_nonzero(tiny):
    theirs, _ = tiny
    cfg, r = config_from_hf(theirs.config.to_dict())
    sd = dict(theirs.state_dict())
    sd["model.layer.0.attention.k_proj.bias"] = torch.ones(cfg.dim)
    with pytest.raises(ValueError, match="k_proj.bias"):
        state_dict_from_hf(sd, cfg, r)
    sd["model.layer.0.attention.k_proj.bias"] = torch.zeros(cfg.dim)
    state_dict_from_hf(sd, cfg, r)


def test_hf_state_dict_has_transformers_keys(tiny):
    theirs, d = tiny
    ours = DINOv3.from_pretrained(d)
    expected = {re.sub(r"^model\.layer\.", "layer.", k) for k in theirs.state_dict()}
    assert set(hf_state_dict(ours)) == expected


def test_canvit_model_does_not_depend_on_transformers():
    reqs = importlib.metadata.requires("canvit-model") or []
    assert not any(r.lower().startswith("transformers") for r in reqs)
    src = Path(__file__).parents[1] / "src" / "canvit_model"
    for f in src.rglob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+(transformers|torchvision)\b", text, re.M), f
        assert not re.search(r"^(import|from)\s+PIL\b", text, re.M), f  # PIL: lazy, optional import only


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vitb16", "vits16plus"])
def test_full_size_parity(name, tmp_path):
    cfg = BACKBONES[name]
    theirs = hf_model(
        seed=3, hidden_size=cfg.dim, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads, num_register_tokens=4, use_gated_mlp=cfg.mlp == "swiglu",
        hidden_act="silu" if cfg.mlp == "swiglu" else "gelu",
    )
    theirs.save_pretrained(tmp_path / "hf")
    ours = DINOv3.from_pretrained(tmp_path / "hf")
    assert ours.cfg is cfg
    check_parity(ours, theirs, [(224, 224), (512, 512), (256, 384)], batch=1)
    torch.save(official_state_dict(theirs), tmp_path / "official.pth")
    official = DINOv3.from_pretrained(tmp_path / "official.pth")
    x = images(1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(official(x), ours(x), rtol=0, atol=0)


def test_grid_coords_hw_is_per_axis_patch_centres():
    from canvit_model.geometry import grid_coords, grid_coords_hw

    assert torch.equal(grid_coords_hw(5, 5), grid_coords(5))
    g = grid_coords_hw(2, 4)
    assert g.shape == (2, 4, 2)
    torch.testing.assert_close(g[:, 0, 0], torch.tensor([-0.5, 0.5]))  # rows: ((i + 0.5) / 2) * 2 - 1
    torch.testing.assert_close(g[0, :, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # columns: n = 4


def test_inference_mode_then_autograd(tiny):
    _, d = tiny
    m = DINOv3.from_pretrained(d)
    x = images(1, 32, 48)
    with torch.inference_mode():
        m(x)
    m(x).sum().backward()  # nothing from the inference-mode call may be reused
    assert m.cls_token.grad is not None
