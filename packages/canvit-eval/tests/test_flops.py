"""Analytical FLOPs (canvit_eval.flops): reference values and a cross-check against FlopCounterMode."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from canvit_eval import flops as F
from canvit_model import BACKBONES, PRESETS, CanViT, CanViTConfig, Viewpoint


def g2(b):
    return F.round_half_up(b.gflops, 2)


def test_authors_reference_values_matmul_convention():
    # The values the authors' FLOP tests assert (matmuls + convs only).
    assert [g2(F.canvit_glimpse(canvas_grid=c)) for c in (8, 16, 32, 64, 128)] == [13.80, 14.14, 15.48, 20.84, 42.28]
    assert F.round_half_up(F.segmentation_head(32, 1024) / 1e9, 2) == 0.31
    assert F.round_half_up(F.segmentation_head(64, 1024) / 1e9, 2) == 1.26
    assert [g2(F.dinov3("vitb16", r)) for r in (128, 160, 256, 512)] == [11.97, 18.36, 47.15, 215.04]
    assert g2(F.dinov3("vits16", 512)) == 63.82


def test_read_write_pair_asymmetric_vs_qkvo_at_c64():
    n_l, n_c = F.canvit_token_counts(CanViTConfig(), 8, 64)
    pair = lambda qkvo: (F.canvas_read(n_l, n_c, 768, 1024, qkvo=qkvo).total
                         + F.canvas_write(n_l, n_c, 768, 1024, qkvo=qkvo).total) / 1e9
    assert round(pair(False), 1) == 2.8
    assert round(pair(True), 1) == 37.3
    assert round(1024 / (2 * n_l), 1) == 7.2  # canvas-side projection / SDPA ratio


def test_paper_convention_adds_norm_and_rope_only():
    m = F.vit_block(71, 768, convention="matmul")
    p = F.vit_block(71, 768, convention="paper")
    assert p.total - m.total == 2 * 5 * 71 * 768 + 2 * 4 * 71 * 768
    assert F.round_half_up(F.dinov3("vitb16", 512, convention="paper").gflops, 2) == 215.21


def test_swiglu_has_three_matrices_and_non_square_inputs():
    cfg = BACKBONES["vits16plus"]
    b = F.vit_config_block(cfg, 10)
    assert b["mlp"] == 3 * 2 * 10 * cfg.dim * cfg.ffn_hidden
    n = 1 + 4 + 16 * 32
    assert F.dinov3("vitb16", 256, 512)["blocks"] == 12 * F.vit_block(n, 768).total
    assert F.dinov3("vitb16", 256, 512)["patch_embed"] == F.patch_embed(16 * 32, 16, 768)


def test_schedule_drives_reads_and_writes():
    base = F.canvit_glimpse()
    no_reads = F.canvit_glimpse(PRESETS["no-reads"].config)
    assert no_reads["reads"] == 0 and no_reads["writes"] == base["writes"]
    stride6 = F.canvit_glimpse(PRESETS["rw-stride6"].config)
    assert stride6["reads"] == base["reads"] / 3


def test_adaglimpse_cnn_head_reproduces_table15():
    assert F.round_half_up(F.adaglimpse_cnn_head().gflops, 1) == 84.3
    a = F.adaglimpse()
    assert F.round_half_up(a.gflops, 1) == 911.3
    assert F.round_half_up((a["decoder_vit"] + a["decoder_cnn"]) / 1e9, 1) == 853.9


def _count(module, *args):
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc, torch.no_grad():
        module(*args)
    return fc.get_total_flops()


def _empty(build):
    # Build on the meta device and allocate uninitialised CPU storage: no slow random init.
    with torch.device("meta"):
        m = build()
    return m.to_empty(device="cpu").eval()


@pytest.mark.parametrize("name", ["canvitb16", "qkvo-dcan256", "no-vpe", "rw-stride6"])
def test_canvit_glimpse_matches_flop_counter(name):
    cfg = PRESETS[name].config
    m = _empty(lambda: CanViT(cfg))
    grid = 8
    state = m.init_state(batch_size=1, canvas_grid_size=grid)
    vp = Viewpoint.full_scene(batch_size=1, device=None)
    counted = _count(m, torch.zeros(1, 3, 128, 128), state, vp)
    assert counted == F.canvit_glimpse(cfg, glimpse_px=128, canvas_grid=grid).total


def test_dinov3_matches_flop_counter():
    cfg = BACKBONES["vitb16"]
    try:
        from canvit_model import DINOv3  # the teacher; counted with its final LayerNorm (not a matmul)

        model = _empty(lambda: DINOv3(cfg))
        counted = _count(model, torch.zeros(1, 3, 128, 160))
    except ImportError:  # pragma: no cover - fallback while canvit_model.DINOv3 is not available
        from canvit_model.layers.vit import ViT

        trunk = _empty(lambda: ViT(cfg))

        def run(x):
            t = trunk.patch_embed(x)
            t = torch.cat([torch.zeros(1, 5, cfg.dim), t], dim=1)  # CLS + 4 registers
            for blk in trunk.blocks:
                t = blk(t, None)
            return t

        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc, torch.no_grad():
            run(torch.zeros(1, 3, 128, 160))
        counted = fc.get_total_flops()
    assert counted == F.dinov3("vitb16", 128, 160).total


def test_primitives_table_is_the_counter():
    """Tables 8 and 9 are rendered from flops.PRIMITIVES / flops.NOTATION: each row's expression is the
    counter function's value, the functions are the ones the blocks are built from, every argument has a symbol."""
    import random

    from canvit_eval import flops

    assert [p.fn for p in flops.PRIMITIVES] == [flops.linear, flops.layernorm, flops.gelu, flops.rope_apply,
                                                flops.sdpa, flops.softmax, flops.conv2d, flops.patch_embed]
    rng = random.Random(0)
    for p in flops.PRIMITIVES:
        for _ in range(20):
            args = {a: rng.randint(1, 5000) for a in p.args}
            assert eval(p.expr, {}, dict(args)) == p.cost(**args), p.operation
            n = rng.randint(1, 100)
            if p.per_token:
                assert p.fn(n, **args) == n * p.cost(**args)
        assert set(p.args) <= set(flops.SYMBOLS), p.operation
    assert flops.formula_text(flops.PRIMITIVES[6]) == "2 H W c_in c_out k²"
    assert flops.formula_text(flops.PRIMITIVES[2]) == "≈ 8 d"
    b = flops.vit_block(10, 64, convention="paper")  # the block is these primitives
    assert b["qkv"] == flops.PRIMITIVES[0].cost(d_in=64, d_out=192) * 10
    assert b["norm"] == 2 * 10 * flops.PRIMITIVES[1].cost(d=64) and b["rope"] == 2 * 10 * flops.PRIMITIVES[3].cost(d=64)
