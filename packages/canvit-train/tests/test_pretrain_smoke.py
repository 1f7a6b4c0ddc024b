"""`pretrain --preset smoke`: generated scenes, tiny random teacher, online targets, real loaders."""

import json

import pandas as pd
import pytest
import torch
from canvit_model import CanViTForPretraining
from canvit_train.pretrain.cli import main
from canvit_train.pretrain.config import PRESETS
from canvit_train.data.smoke import make_smoke_data


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_smoke_pipeline_runs_with_the_real_loaders(tmp_path):
    data = tmp_path / "data"
    side = PRESETS["smoke"].scene_size * 5 // 4  # what `pretrain --preset smoke` generates, with fewer scenes
    make_smoke_data(data, 24, PRESETS["smoke"].seed, val_scenes=4, size=(side, side), ext=".jpg", pipeline_extras=False)
    run = tmp_path / "run"
    rc = main(["--preset", "smoke", "--steps", "6", "--checkpoint-every", "3", "--validate-every", "6",
               "--validation-scenes", "4", "--standardizer-samples", "16", "--log-every", "3",
               "--smoke-data", str(data), "--run-dir", str(run), "--results", str(tmp_path / "res"), "--no-progress"])
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["mode"] == "online" and cfg["data"]["teacher"].endswith("teacher")
    m = pd.read_csv(run / "metrics.csv")
    assert list(m["step"]) == [1, 2, 3, 4, 5, 6] and m["loss"].notna().all()
    assert pd.read_csv(run / "validation.csv")["t"].tolist() == list(range(10))
    model = CanViTForPretraining.from_pretrained(run / "final")
    assert model.teacher_dim == 32 and model.teacher_patch_grid == 8 and bool(model.teacher_cls_standardizer.fitted)
    assert (run / "order.parquet").exists()
    # resuming a finished run is a no-op that re-exports nothing new and keeps the weights
    assert main(["--preset", "smoke", "--smoke-data", str(data), "--run-dir", str(run), "--resume", "--steps", "6",
                 "--no-progress", "--no-results"]) == 0


@pytest.mark.slow
def test_smoke_preset_loss_falls(tmp_path, capsys):
    """The full preset (300 steps): the loss of the last 10 steps is well below that of the first 10."""
    run = tmp_path / "run"
    assert main(["--preset", "smoke", "--run-dir", str(run), "--results", str(tmp_path / "res"), "--no-progress"]) == 0
    m = pd.read_csv(run / "metrics.csv")
    assert len(m) == PRESETS["smoke"].steps
    first, last = m["loss"].head(10).mean(), m["loss"].tail(10).mean()
    assert last < 0.8 * first, (first, last)
    v = pd.read_csv(run / "validation.csv")
    assert v[v.step == v.step.max()]["cos_patch_std"].mean() > v[v.step == v.step.min()]["cos_patch_std"].mean()
    assert "mean loss of the first 10 steps" in capsys.readouterr().err


def test_pretrain_from_an_export_of_teacher_features(tmp_path):
    """The paper's mode: precomputed shards (issue 9's export) + the scenes they were made from."""
    from canvit_train.data.smoke import smoke_export
    from canvit_train.data.standardizers import fit_standardizers, iter_shard_features, save_standardizers

    src = make_smoke_data(tmp_path / "src", num_scenes=16)
    manifest = smoke_export(src, tmp_path / "features")  # 32 px scenes: 2x2 teacher grid, dim 32
    stats = fit_standardizers(iter_shard_features(tmp_path / "features"), 8)
    save_standardizers(stats, tmp_path / "features/standardizers.safetensors")
    run = tmp_path / "run"
    rc = main(["--preset", "smoke", "--features", str(tmp_path / "features"), "--scenes", str(src.scenes),
               "--scene-size", str(manifest.resolution), "--glimpse-size", "16", "--canvas-grid", str(manifest.grid),
               "--batch-size", "4", "--steps", "3", "--validate-every", "0", "--workers", "0",
               "--run-dir", str(run), "--no-progress", "--no-results"])
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["mode"] == "shards" and cfg["data"]["standardizers"].endswith("standardizers.safetensors")
    model = CanViTForPretraining.from_pretrained(run / "final")
    torch.testing.assert_close(model.teacher_patch_standardizer.mean, stats["patch_mean"])
    assert len(pd.read_csv(run / "metrics.csv")) == 3
