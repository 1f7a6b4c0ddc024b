import pytest

from canvit_model import PRESETS as MODEL_PRESETS
from canvit_train.pretrain.config import PRESETS, preset


def test_canvit_b_is_table_2():
    c = preset("canvit-b")
    assert (c.lr_start, c.lr_peak, c.warmup_steps, c.weight_decay, c.grad_clip) == (1e-7, 4e-4, 100_000, 1e-4, 1.0)
    assert (c.batch_size, c.steps, c.tbptt_chunk, c.stop_probability, c.min_scale) == (64, 2_000_000, 2, 0.5, 0.05)
    assert (c.scene_size, c.glimpse_size, c.canvas_grid, c.betas, c.rollouts) == (512, 128, 32, (0.9, 0.999), ("f-iid", "r-iid"))
    assert c.expected_glimpses_per_rollout == 4


def test_ablations_keep_expected_length_and_name_real_models():
    for name, c in PRESETS.items():
        assert c.model_preset in MODEL_PRESETS, name
        if name.startswith("abl-"):
            assert (c.steps, c.warmup_steps) == (215_000, 20_000)
            assert c.expected_glimpses_per_rollout == 4
    assert preset("abl-no-bptt").tbptt_chunk == 1 and preset("abl-no-dense").dense_loss is False
    with pytest.raises(ValueError, match="valid presets"):
        preset("nope")


def test_every_table3_row_names_the_recipe_that_trains_it():
    from canvit_model import releases
    from canvit_train.pretrain.config import PRESETS as TRAIN

    for r in releases.TABLE3:
        assert TRAIN[r.recipe].model_preset == r.model_preset, r
    assert {r.recipe for r in releases.TABLE3} == {n for n in TRAIN if n.startswith("abl-")}
    assert TRAIN[releases.table3_row("canvitb16").recipe] == TRAIN["abl-baseline"] != TRAIN["canvit-b"]
    assert TRAIN[releases.FLAGSHIP_RECIPE] == TRAIN["canvit-b"] and TRAIN["canvit-b"].teacher == releases.TEACHER
