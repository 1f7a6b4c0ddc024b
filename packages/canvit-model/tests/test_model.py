import pytest
import torch

from canvit_model import (
    PRESETS,
    CanViT,
    CanViTConfig,
    CanViTForPretraining,
    RecurrentState,
    Viewpoint,
    canvit_num_params,
    preset,
    sample_at_viewpoint,
)

# Paper Table 3 "Params" column, row by row.
TABLE3_PARAMS = {
    "baseline": "95.2M", "a": "88.1M", "b": "88.8M", "c": "91.0M", "d": "90.4M", "e": "88.8M",
    "f": "95.2M", "g": "95.2M", "h": "95.2M", "i": "95.2M", "j": "26.4M", "k": "95.2M",
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_match_table3(name):
    p = PRESETS[name]
    assert f"{canvit_num_params(p.config) / 1e6:.1f}M" == TABLE3_PARAMS[p.table3_row]


def test_table3_covers_all_twelve_rows_and_canvitb_exact_count():
    assert sorted(p.table3_row for p in PRESETS.values()) == sorted(TABLE3_PARAMS)
    assert canvit_num_params(preset("canvitb16").config) == 95_157_248  # base CanViT-B, readouts excluded
    m = CanViTForPretraining()
    assert sum(p.numel() for p in m.parameters()) == 96_538_624  # + readout heads
    assert len(m.state_dict()) == 239


def test_read_write_schedules():
    assert CanViTConfig().schedule() == ((1, 5, 9), (3, 7, 11))
    assert CanViTConfig(rw_stride=6).schedule() == ((5,), (11,))
    assert CanViTConfig(enable_reads=False).schedule() == ((), (3, 7, 11))
    assert CanViTConfig(rw_stride=4).schedule() == ((3, 11), (7, 11))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="backbone_name"):
        CanViTConfig(backbone_name="vitz")
    with pytest.raises(ValueError, match="canvas_projections"):
        CanViTConfig(canvas_projections="full")
    with pytest.raises(ValueError, match="rw_stride"):
        CanViTConfig(rw_stride=13)


def small_model(**kw) -> CanViT:
    torch.manual_seed(0)
    cfg = CanViTConfig(backbone_name="vits16", canvas_num_heads=2, canvas_head_dim=32, **kw)
    return CanViT(cfg).eval()


@pytest.mark.parametrize("kw", [{}, {"enable_vpe": False}, {"canvas_projections": "qkvo"}, {"enable_reads": False}])
@pytest.mark.parametrize("grid,glimpse_px", [(4, 32), (7, 64)])
def test_rollout_shapes_any_canvas_and_glimpse_size(kw, grid, glimpse_px):
    m = small_model(**kw)
    img = torch.randn(2, 3, 96, 80)
    state = m.init_state(batch_size=2, canvas_grid_size=grid)
    assert state.canvas.shape == (2, 16 + grid * grid, 64)
    for c, s in [((0.0, 0.0), 1.0), ((0.3, -0.2), 0.25)]:
        vp = Viewpoint(centers=torch.tensor([c, c]), scales=torch.tensor([s, s]))
        with torch.no_grad():
            out = m(sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=glimpse_px), state, vp)
        assert out.state.canvas.shape == state.canvas.shape
        assert out.state.recurrent_cls.shape == (2, 1, 384)
        assert out.glimpse_patches.shape == (2, (glimpse_px // 16) ** 2, 384)
        assert (out.vpe is None) == (kw.get("enable_vpe") is False)
        assert not torch.equal(out.state.canvas, state.canvas)
        state = out.state


def test_canvas_is_broadcast_from_one_init_token():
    m = small_model()
    st = m.init_state(batch_size=3, canvas_grid_size=5)
    spatial = m.canvas_patch_grid(st.canvas)
    assert spatial.shape == (3, 5, 5, 64)
    assert torch.equal(spatial, m.init_canvas_patch.expand(3, 5, 5, 64))
    assert torch.equal(st.canvas[:, :16], m.init_canvas_registers.expand(3, -1, -1))


def test_batch_elements_are_independent():
    m = small_model()
    img = torch.randn(2, 3, 64, 64)
    vp = Viewpoint(centers=torch.tensor([[0.1, 0.2], [-0.4, 0.3]]), scales=torch.tensor([0.5, 0.6]))
    g = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=32)
    with torch.no_grad():
        both = m(g, m.init_state(batch_size=2, canvas_grid_size=4), vp)
        one = m(g[1:], m.init_state(batch_size=1, canvas_grid_size=4),
                Viewpoint(vp.centers[1:], vp.scales[1:]))
    assert torch.allclose(both.state.canvas[1:], one.state.canvas, atol=1e-5)


def test_bad_inputs_raise_value_errors_naming_the_argument():
    m = small_model()
    st = m.init_state(batch_size=1, canvas_grid_size=4)
    vp = Viewpoint.full_scene(batch_size=1)
    with pytest.raises(ValueError, match="glimpse must be square"):
        m(torch.zeros(1, 3, 32, 48), st, vp)
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        m(torch.zeros(1, 3, 40, 40), st, vp)
    with pytest.raises(ValueError, match=r"glimpse must be a \[B, 3, H, W\]"):
        m(torch.zeros(1, 1, 32, 32), st, vp)
    with pytest.raises(ValueError, match="floating-point"):
        m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), st, vp)
    with pytest.raises(ValueError, match="canvas_grid_size=8 does not match the state's canvas grid 4"):
        m(torch.zeros(1, 3, 32, 32), st, vp, canvas_grid_size=8)
    with pytest.raises(ValueError, match="viewpoint has batch size 2"):
        m(torch.zeros(1, 3, 32, 32), st, Viewpoint.full_scene(batch_size=2))
    bad = RecurrentState(canvas=st.canvas[:, :-3], recurrent_cls=st.recurrent_cls)
    with pytest.raises(ValueError, match="registers \\+ G\\*G"):
        m(torch.zeros(1, 3, 32, 32), bad, vp)
    with pytest.raises(ValueError, match="state.recurrent_cls"):
        m(torch.zeros(1, 3, 32, 32), RecurrentState(st.canvas, st.recurrent_cls[..., :10]), vp)
    with pytest.raises(ValueError, match="canvas_grid_size must be an int >= 1"):
        m.init_state(batch_size=1, canvas_grid_size=0)


def test_readouts_and_standardizers():
    torch.manual_seed(0)
    cfg = CanViTConfig(backbone_name="vits16", canvas_num_heads=2, canvas_head_dim=32)
    m = CanViTForPretraining(cfg, teacher_dim=48, teacher_patch_grid=4).eval()
    st = m.init_state(batch_size=2, canvas_grid_size=4)
    patches = m.predict_teacher_patches(st.canvas)
    cls = m.predict_teacher_cls(st.recurrent_cls)
    assert patches.shape == (2, 16, 48) and cls.shape == (2, 48)
    feats = torch.randn(64, 16, 48) * 3 + 1
    m.teacher_patch_standardizer.fit(feats)
    assert bool(m.teacher_patch_standardizer.fitted)
    z = m.teacher_patch_standardizer.standardize(feats)
    assert torch.allclose(z.mean(0), torch.zeros(16, 48), atol=1e-4)
    assert torch.allclose(z.var(0, unbiased=False), torch.ones(16, 48), atol=1e-3)
    back = m.teacher_patch_standardizer.destandardize(z)
    assert torch.allclose(back, feats, atol=1e-4)
    other = m.predict_teacher_patches(m.init_state(batch_size=1, canvas_grid_size=8).canvas)
    with pytest.raises(ValueError, match="statistics for 16 positions .* got features with 64 positions"):
        m.teacher_patch_standardizer.destandardize(other)


def test_bf16_autocast_keeps_canvas_and_coordinate_math_float32(monkeypatch):
    """Paper D.3: canvas, grid coordinates, RoPE and VPE stay float32 under bf16 autocast."""
    import canvit_model.canvit as canvit_mod
    import canvit_model.layers.rope as rope_mod

    seen: dict[str, list[torch.dtype]] = {"rope": [], "apply": [], "vpe": [], "positions": []}
    real_tables, real_apply = rope_mod.rope_tables, rope_mod.apply_rope

    def spy_tables(positions, periods, num_prefix):
        seen["positions"].append(positions.dtype)
        out = real_tables(positions, periods, num_prefix)
        seen["rope"] += [out.cos.dtype, out.sin.dtype, periods.dtype]
        return out

    def spy_apply(x, rope):
        seen["apply"].append(rope.cos.dtype)
        return real_apply(x, rope)

    monkeypatch.setattr(canvit_mod, "rope_tables", spy_tables)
    import canvit_model.layers.vit as vit_mod
    import canvit_model.layers.block as block_mod
    import canvit_model.layers.canvas_attention as ca_mod

    monkeypatch.setattr(vit_mod, "rope_tables", spy_tables)
    monkeypatch.setattr(block_mod, "apply_rope", spy_apply)
    monkeypatch.setattr(ca_mod, "apply_rope", spy_apply)

    m = small_model()
    m.vpe.register_forward_hook(lambda mod, inp, out: seen["vpe"].append(out.dtype))
    img = torch.randn(1, 3, 64, 64)
    state = m.init_state(batch_size=1, canvas_grid_size=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for c, s in [((0.0, 0.0), 1.0), ((0.5, -0.25), 0.5), ((-0.7, 0.7), 0.05)]:
            vp = Viewpoint(centers=torch.tensor([c]), scales=torch.tensor([s]))
            out = m(sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=32), state, vp)
            assert out.state.canvas.dtype == torch.float32
            state = out.state
        # a sanity check that autocast is really on: the backbone's matmuls ran in bf16
        assert m.backbone.blocks[0].mlp.fc1(torch.randn(1, 384)).dtype == torch.bfloat16
    assert state.canvas.dtype == torch.float32
    for k, dtypes in seen.items():
        assert dtypes and set(dtypes) == {torch.float32}, (k, dtypes)


def test_backward_outside_autocast_gives_float32_grads():
    m = small_model()
    img = torch.randn(1, 3, 64, 64)
    vp = Viewpoint.full_scene(batch_size=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=32),
                m.init_state(batch_size=1, canvas_grid_size=4), vp)
        loss = out.state.canvas.float().pow(2).mean() + out.state.recurrent_cls.float().pow(2).mean()
    loss.backward()
    g = m.init_canvas_patch.grad
    assert g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() and g.abs().sum() > 0
