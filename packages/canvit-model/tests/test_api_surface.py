"""The canvit-pytorch 0.2 inference surface: model.config, from_preset, push_to_hub (offline), signatures."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest
import torch

from canvit_model import PRESETS, CanViT, CanViTConfig, CanViTForPretraining, DINOv3, ViTConfig, canvit_num_params

SMALL = CanViTConfig(backbone_name="vits16", canvas_num_heads=2, canvas_head_dim=32)


def test_config_on_every_model_class():
    with torch.device("meta"):
        base, pre, dino = CanViT(SMALL), CanViTForPretraining(SMALL, teacher_dim=8, teacher_patch_grid=2), DINOv3("vits16")
    assert base.config is SMALL and base.cfg is SMALL
    assert pre.config is SMALL and pre.cfg is SMALL and pre.canvit_config is SMALL
    assert isinstance(dino.config, ViTConfig) and dino.config is dino.cfg and dino.config.dim == 384


@pytest.mark.parametrize("name", list(PRESETS))
def test_from_preset_builds_every_table3_preset(name):
    with torch.device("meta"):  # shapes only
        m = CanViTForPretraining.from_preset(name)
        b = CanViT.from_preset(name)
    assert m.config == PRESETS[name].config and b.config == PRESETS[name].config
    assert sum(p.numel() for p in b.parameters()) == canvit_num_params(PRESETS[name].config)
    assert (m.teacher_dim, m.teacher_patch_grid) == (768, 32)


def test_from_preset_gives_random_weights_that_run():
    torch.manual_seed(0)
    m = CanViTForPretraining.from_preset("vit-s", teacher_patch_grid=2)
    assert m.config.backbone_name == "vits16"
    assert DINOv3.from_preset("vits16").config.dim == 384


@pytest.mark.parametrize("cls", [CanViTForPretraining, DINOv3])
def test_from_pretrained_has_an_explicit_documented_signature(cls):
    sig = inspect.signature(cls.from_pretrained)
    params = sig.parameters
    assert list(params)[0] == "path_or_id"
    for name in ("map_location", "dtype", "revision", "token", "cache_dir", "local_files_only"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert name in cls.from_pretrained.__doc__, name
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize("which", ["canvit", "classifier", "dinov3"])
def test_push_to_hub_uploads_what_save_pretrained_writes(which, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    from canvit_model import CanViTForImageClassification

    torch.manual_seed(0)
    model = {"canvit": lambda: CanViTForPretraining(SMALL, teacher_dim=8, teacher_patch_grid=2),
             "classifier": lambda: CanViTForImageClassification(SMALL, num_classes=3),
             "dinov3": lambda: DINOv3(ViTConfig(dim=32, num_heads=2, depth=1))}[which]()
    calls: dict = {}

    def create_repo(self, repo_id, **kw):
        calls["create"] = (repo_id, kw)

    def upload_folder(self, *, repo_id, folder_path, **kw):
        calls["upload"] = (repo_id, kw, sorted(p.name for p in Path(folder_path).iterdir()))
        shutil.copytree(folder_path, tmp_path / "uploaded")
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert model.push_to_hub("me/tiny", private=True, commit_message="hello") == "commit-info"
    assert calls["create"] == ("me/tiny", {"private": True, "exist_ok": True, "repo_type": "model"})
    repo, kw, files = calls["upload"]
    assert repo == "me/tiny" and kw["commit_message"] == "hello" and kw["repo_type"] == "model"
    assert {"config.json", "model.safetensors"} <= set(files)
    back = type(model).from_pretrained(tmp_path / "uploaded")
    if which != "dinov3":
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))
    else:  # the HF layout drops the (masked, unused) key bias: compare outputs
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(back(x), model.eval()(x))
    with pytest.raises(ValueError, match="repo_id"):
        model.push_to_hub("not-a-repo-id")


def test_label_preprocessing_names_say_what_they_do():
    """`preprocess.preprocess_labels(size)` is canvit-pytorch's transform (a one-argument callable); the
    ADE20K-specific shift-and-squash is `ade20k_targets`, and the old name is gone from segmentation."""
    import canvit_model
    from canvit_model import preprocess, segmentation

    assert list(inspect.signature(preprocess.preprocess_labels).parameters) == ["size"]
    assert list(inspect.signature(preprocess.preprocess).parameters) == ["size"]
    assert callable(preprocess.preprocess_labels(8))
    assert not hasattr(segmentation, "preprocess_labels") and "preprocess_labels" not in canvit_model.__all__
    assert canvit_model.ade20k_targets is segmentation.ade20k_targets
    assert list(inspect.signature(segmentation.ade20k_targets).parameters) == ["mask", "size"]
