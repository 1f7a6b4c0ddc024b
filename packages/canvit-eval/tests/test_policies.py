"""Viewing policies and the shared rollout loop (CPU, tiny model)."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from canvit_eval.policies import (
    POLICY_NAMES,
    level_sizes,
    make_policy,
    tile_entropy,
    tile_membership,
)
from canvit_model.rollout import rollout
from canvit_model import quadtree_tiles


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def seq(name: str, T: int, B: int = 4, seed: int = 0, logits=None):
    p = make_policy(name, batch_size=B, num_glimpses=T, generator=gen(seed))
    vps = [p.next(t, logits) for t in range(T)]
    return torch.stack([v.centers for v in vps]), torch.stack([v.scales for v in vps])  # [T, B, 2], [T, B]


def tile_ids(centers: torch.Tensor, scale: float) -> list[int]:
    """Row-major tile index of each centre at the level of `scale`."""
    level = round(-math.log2(scale))
    tc, _ = quadtree_tiles(level)
    d = (centers[:, None, :] - tc[None]).abs().sum(-1)
    assert bool((d.min(dim=1).values < 1e-6).all()), "centre is not a quadtree tile centre"
    return d.argmin(dim=1).tolist()


def assert_valid(c: torch.Tensor, s: torch.Tensor) -> None:
    assert bool(((s > 0) & (s <= 1)).all())
    assert float((c.abs() + s[..., None]).max()) <= 1 + 1e-5


def test_level_sizes():
    assert level_sizes(1) == [1]
    assert level_sizes(21) == [1, 4, 16]
    assert level_sizes(10) == [1, 4, 5]
    assert level_sizes(30) == [1, 4, 16, 9]


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize("T", [1, 5, 21, 30])
def test_every_viewpoint_is_valid(name, T):
    logits = torch.randn(4, 3, 8, 8)
    c, s = seq(name, T, logits=logits)
    assert c.shape == (T, 4, 2) and s.shape == (T, 4)
    assert_valid(c, s)


def test_c2f_tile_sets_and_coverage():
    c, s = seq("c2f", 21, B=3)
    # level l at steps [sum 4^k for k<l, ...): every tile exactly once, scale 2^-l
    start = 0
    for level, n in enumerate([1, 4, 16]):
        assert torch.allclose(s[start : start + n], torch.full((n, 3), 2.0**-level))
        for b in range(3):
            ids = tile_ids(c[start : start + n, b], 2.0**-level)
            assert sorted(ids) == list(range(4**level))
        start += n
    # the per-sample orders differ across the batch (random permutation per sample)
    assert not torch.equal(c[5:21, 0], c[5:21, 1])
    # truncation: T = 10 -> 1 + 4 + 5 distinct level-2 tiles
    c10, s10 = seq("c2f", 10, B=2)
    assert torch.allclose(s10[5:], torch.full((5, 2), 0.25))
    assert len(set(tile_ids(c10[5:, 0], 0.25))) == 5


def test_c2f_continues_past_three_levels():
    c, s = seq("c2f", 30, B=2)
    assert torch.allclose(s[21:], torch.full((9, 2), 0.125))
    assert len(set(tile_ids(c[21:, 1], 0.125))) == 9


def test_f2c_tile_sets_finest_first():
    c, s = seq("f2c", 21, B=3)
    start = 0
    for level, n in [(2, 16), (1, 4), (0, 1)]:
        assert torch.allclose(s[start : start + n], torch.full((n, 3), 2.0**-level))
        for b in range(3):
            assert sorted(tile_ids(c[start : start + n, b], 2.0**-level)) == list(range(4**level))
        start += n
    # same coverage as C2F at T = 21: the same set of (scale, centre) per sample
    c2, s2 = seq("c2f", 21, B=3, seed=7)
    key = lambda cc, ss, b: sorted((round(float(ss[t, b]), 4), *[round(float(v), 4) for v in cc[t, b]]) for t in range(21))
    assert key(c, s, 0) == key(c2, s2, 0)
    # fewest levels whose counts reach T: T = 6 -> six distinct scale-0.25 tiles
    c6, s6 = seq("f2c", 6, B=2)
    assert torch.allclose(s6, torch.full((6, 2), 0.25)) and len(set(tile_ids(c6[:, 0], 0.25))) == 6


@pytest.mark.parametrize("name", ["r-iid", "f-iid", "c2f", "f2c"])
def test_seeded_determinism_and_seed_sensitivity(name):
    a, sa = seq(name, 21, seed=0)
    b, sb = seq(name, 21, seed=0)
    c, _ = seq(name, 21, seed=1)
    assert torch.equal(a, b) and torch.equal(sa, sb)
    assert not torch.equal(a, c)


def test_deterministic_policies():
    c, s = seq("rfs", 7)
    assert torch.equal(c, torch.zeros_like(c)) and torch.equal(s, torch.ones_like(s))
    c, s = seq("f-iid", 3)
    assert torch.equal(s[0], torch.ones(4)) and bool((s[1:] < 1).all())
    logits = torch.randn(4, 5, 8, 8, generator=gen(9))
    assert torch.equal(seq("eg-c2f", 21, seed=0, logits=logits)[0], seq("eg-c2f", 21, seed=5, logits=logits)[0])


def test_r_iid_scale_law():
    # p(s) ∝ 1 - s on [0.05, 1]  =>  CDF F(s) = 1 - ((1 - s) / 0.95)^2
    p = make_policy("r-iid", batch_size=20000, num_glimpses=1, generator=gen(0))
    vp = p.next(0)
    s = vp.scales
    assert float(s.min()) >= 0.05 - 1e-6 and float(s.max()) <= 1
    for q in (0.1, 0.3, 0.5, 0.8):
        expected = 1 - ((1 - q) / 0.95) ** 2
        assert abs(float((s <= q).float().mean()) - expected) < 0.015
    assert_valid(vp.centers, s)
    # centres uniform in the box [-(1 - s), 1 - s]: normalized centre ~ U[-1, 1]
    u = vp.centers / (1 - s)[:, None]
    assert abs(float(u.mean())) < 0.02 and abs(float((u**2).mean()) - 1 / 3) < 0.02


def test_eg_c2f_picks_highest_entropy_tiles_on_a_hand_made_map():
    # 2 classes on an 8x8 grid; confident (entropy ~0) everywhere except chosen tiles.
    G = 8
    logits = torch.zeros(1, 2, G, G)
    logits[:, 0] = 20.0  # confident
    # level-1 tiles (4x4 cells each, row-major): make tile 3 fully uncertain, tile 1 half uncertain
    logits[:, 0, 4:8, 4:8] = 0.0          # tile 3: entropy ln 2 on all cells
    logits[:, 0, 0:4, 4:6] = 0.0          # tile 1: half the cells
    p = make_policy("eg-c2f", batch_size=1, num_glimpses=5)
    assert float(p.next(0).scales[0]) == 1.0
    order = [tile_ids(p.next(t, logits).centers, 0.5)[0] for t in range(1, 5)]
    assert order[:2] == [3, 1]
    assert sorted(order) == [0, 1, 2, 3]  # every tile once; remaining ties in row-major order
    assert order[2:] == [0, 2]


def test_eg_c2f_needs_logits_and_in_order_steps():
    p = make_policy("eg-c2f", batch_size=2, num_glimpses=3)
    p.next(0)
    with pytest.raises(ValueError, match="seg_logits"):
        p.next(1)
    p2 = make_policy("eg-c2f", batch_size=2, num_glimpses=3)
    with pytest.raises(ValueError, match="in order"):
        p2.next(1, torch.zeros(2, 3, 4, 4))


def test_tile_membership_any_grid():
    m = tile_membership(32, 2)  # 16 tiles of 8x8 cells
    assert m.shape == (16, 1024) and torch.allclose(m.sum(1), torch.ones(16))
    assert int((m[0] > 0).sum()) == 64
    m = tile_membership(2, 2)  # fewer cells than tiles: each tile takes the cell under its centre
    assert torch.allclose(m.sum(1), torch.ones(16)) and int((m > 0).sum()) == 16
    m = tile_membership(9, 1)  # odd grid: every cell counted once
    assert torch.equal((m > 0).sum(0), torch.ones(81, dtype=torch.long))
    ent = tile_entropy(torch.zeros(3, 4, 6, 6), 1)
    assert torch.allclose(ent, torch.full((3, 4), math.log(4)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="valid names"):
        make_policy("random", batch_size=1, num_glimpses=1)
    with pytest.raises(ValueError, match="num_glimpses"):
        make_policy("c2f", batch_size=1, num_glimpses=0)
    with pytest.raises(ValueError, match=r"t must be"):
        make_policy("rfs", batch_size=1, num_glimpses=2).next(2)


# -- rollout ------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_model(monkeypatch, make_tiny_canvit):
    return make_tiny_canvit(monkeypatch, backbone="tiny", patch_size=8, num_backbone_registers=1, rw_stride=1).eval()


def test_rollout_yields_each_step_and_feeds_probe_logits(tiny_model):
    B, T, G = 2, 6, 4
    scenes = torch.randn(B, 3, 32, 32, generator=gen(0))
    seen = []

    def probe(canvas):
        seen.append(torch.is_inference_mode_enabled())
        grid = tiny_model.canvit.canvas_patch_grid(canvas)  # [B, G, G, D]
        return grid[..., :3].permute(0, 3, 1, 2)  # [B, 3, G, G]

    pol = make_policy("eg-c2f", batch_size=B, num_glimpses=T)
    steps = list(rollout(tiny_model, scenes, pol, num_glimpses=T, canvas_grid=G, glimpse_px=16, probe=probe))
    assert [s.t for s in steps] == list(range(T)) and all(seen) and len(seen) == T
    assert not torch.is_inference_mode_enabled()  # nothing leaks into the caller's grad mode
    assert steps[0].seg_logits.shape == (B, 3, G, G) and steps[0].seg_logits.dtype == torch.float32
    assert steps[-1].state.canvas.dtype == torch.float32
    # the canvas changes between steps, and the same rollout is reproducible
    assert not torch.equal(steps[0].state.canvas, steps[1].state.canvas)
    pol2 = make_policy("c2f", batch_size=B, num_glimpses=T, generator=gen(1))
    pol3 = make_policy("c2f", batch_size=B, num_glimpses=T, generator=gen(1))
    a = [s.state.canvas for s in rollout(tiny_model, scenes, pol2, num_glimpses=T, canvas_grid=G, glimpse_px=16)]
    b = [s.state.canvas for s in rollout(tiny_model, scenes, pol3, num_glimpses=T, canvas_grid=G, glimpse_px=16)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_rollout_matches_a_manual_loop(tiny_model):
    from canvit_model import sample_at_viewpoint

    B, T, G = 2, 3, 4
    scenes = torch.randn(B, 3, 32, 32, generator=gen(1))
    steps = list(rollout(tiny_model, scenes, make_policy("f-iid", batch_size=B, num_glimpses=T, generator=gen(2)),
                         num_glimpses=T, canvas_grid=G, glimpse_px=16))
    pol = make_policy("f-iid", batch_size=B, num_glimpses=T, generator=gen(2))
    with torch.no_grad():
        state = tiny_model.init_state(B, G)
        for t in range(T):
            vp = pol.next(t)
            state = tiny_model(sample_at_viewpoint(scenes, vp, 16), state, vp).state
            assert torch.equal(state.canvas, steps[t].state.canvas)


def test_rollout_rejects_missing_probe_for_eg_c2f(tiny_model):
    pol = make_policy("eg-c2f", batch_size=1, num_glimpses=2)
    with pytest.raises(ValueError, match="probe"):
        next(rollout(tiny_model, torch.zeros(1, 3, 32, 32), pol, num_glimpses=2, canvas_grid=4, glimpse_px=16))


def test_rollout_under_bf16_autocast_keeps_canvas_and_probe_fp32(tiny_model, monkeypatch):
    # CUDA is not available here: run the same code path with CPU bf16 autocast.
    import canvit_model.rollout as ro

    monkeypatch.setattr(ro, "autocast", lambda device, amp: torch.autocast("cpu", dtype=torch.bfloat16))
    probe = torch.nn.Linear(16 * 2, 3)

    def fn(canvas):
        return probe(tiny_model.canvit.canvas_patch_grid(canvas)).permute(0, 3, 1, 2)

    scenes = torch.randn(2, 3, 32, 32, generator=gen(3))

    def run():
        pol = make_policy("eg-c2f", batch_size=2, num_glimpses=3)
        return list(rollout(tiny_model, scenes, pol, num_glimpses=3, canvas_grid=4, glimpse_px=16, probe=fn))

    steps = run()
    assert steps[-1].state.canvas.dtype == torch.float32
    assert steps[-1].seg_logits.dtype == torch.float32
    monkeypatch.setattr(ro, "autocast", lambda device, amp: contextlib.nullcontext())
    fp32 = run()
    # the model did run in bf16 (different numbers), close to the fp32 rollout
    assert not torch.equal(steps[0].output.glimpse_patches, fp32[0].output.glimpse_patches)
    assert torch.allclose(steps[0].state.canvas, fp32[0].state.canvas, atol=0.1)


def test_tile_entropy_matches_the_reference_tile_masks():
    """EG-C2F scores vs the authors' canvit-pytorch (fixture from canvit-model's segmentation_parity)."""
    from pathlib import Path

    from safetensors.torch import load_file

    fx = Path(__file__).resolve().parents[2] / "canvit-model" / "tests" / "segmentation_parity" / "fixtures"
    io = load_file(fx / "io.safetensors")
    for level in (1, 2, 3):
        ours = tile_entropy(io["seg_logits"], level)
        assert torch.allclose(ours, io[f"tile_entropy.{level}"], atol=1e-5), level
        assert torch.equal(ours.argmax(1), io[f"tile_entropy.{level}"].argmax(1))
