"""The training step: TBPTT chunks, shared rollout lengths, the loss (eq. 3), the LR schedule."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from canvit_model import sample_at_viewpoint
from canvit_train.pretrain.config import PRESETS, preset
from canvit_train.pretrain.optim import learning_rate, make_optimizer
from canvit_train.pretrain.step import StepPlan, forward_backward, plan_step, sample_num_chunks, step_generator
from canvit_train.pretrain.trainer import build_model

TINY = PRESETS["smoke"].replace(scene_size=64, glimpse_size=32, canvas_grid=4, batch_size=2)
INIT_PARAMS = ("canvit.init_recurrent_cls", "canvit.init_canvas_registers", "canvit.init_canvas_patch")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(cfg=TINY, dim=8):
    model = build_model(cfg, dim, cfg.canvas_grid)
    with torch.no_grad():  # fitted, non-trivial standardizers so standardization matters
        g = torch.Generator().manual_seed(1)
        for s in (model.teacher_patch_standardizer, model.teacher_cls_standardizer):
            s.mean.copy_(torch.randn(s.mean.shape, generator=g))
            s.var.copy_(torch.rand(s.var.shape, generator=g) + 0.5)
            s.fitted.fill_(True)
    return model


def data(b=2, grid=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 3, grid * 16, grid * 16, generator=g), torch.randn(b, grid * grid, dim, generator=g),
            torch.randn(b, dim, generator=g))


def with_chunks(plan: StepPlan, n: int, k: int) -> StepPlan:
    """The same viewpoints, cut to n chunks of k glimpses."""
    return StepPlan(num_chunks=n, chunk=k, viewpoints={r: v[: n * k] for r, v in plan.viewpoints.items()})


def grads(model, cfg, plan, batch):
    model.zero_grad(set_to_none=True)
    forward_backward(model, model, *batch, plan, cfg)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def long_plan(cfg, b):
    for s in range(100):  # a step whose sampled length is at least 2 chunks
        p = plan_step(cfg, s, b)
        if p.num_chunks >= 2:
            return p
    raise AssertionError("no step with 2 chunks in 100")


def test_no_gradient_crosses_a_chunk_boundary():
    model, batch = tiny(), data()
    p = long_plan(TINY, 2)
    g1 = grads(model, TINY, with_chunks(p, 1, 2), batch)  # T = 2
    g2 = grads(model, TINY, with_chunks(p, 2, 2), batch)  # T = 4: chunk 2 cannot reach the initial state
    for name in INIT_PARAMS:  # used only at t = 0; loss scale is 1/T
        torch.testing.assert_close(g2[name] * 4, g1[name] * 2, rtol=1e-5, atol=1e-7)
    # other parameters do get chunk 2's gradient
    assert not torch.allclose(g2["teacher_cls_readout.proj.weight"] * 4, g1["teacher_cls_readout.proj.weight"] * 2)


def test_gradient_flows_within_a_chunk():
    model, batch = tiny(), data()
    p = long_plan(TINY, 2)
    cfg1 = TINY.replace(tbptt_chunk=1)
    g_k2 = grads(model, TINY, with_chunks(p, 1, 2), batch)  # glimpses 0,1 in one chunk
    g_k1 = grads(model, cfg1, with_chunks(p, 2, 1), batch)  # the same glimpses, detached in between
    name = "canvit.init_recurrent_cls"
    assert not torch.allclose(g_k2[name], g_k1[name], rtol=1e-3, atol=1e-8)
    # with K = 1, the initial state gets only glimpse 0's gradient: T=2 run == half the T=1 run
    g_t1 = grads(model, cfg1, with_chunks(p, 1, 1), batch)
    torch.testing.assert_close(g_k1[name] * 2, g_t1[name], rtol=1e-5, atol=1e-7)


def test_rollouts_share_the_sampled_length_and_f_iid_starts_full():
    cfg = preset("canvit-b")
    lengths = []
    for s in range(2000):
        p = plan_step(cfg.replace(rollouts=("f-iid", "r-iid")), s, 3) if s < 50 else None
        g = step_generator(cfg.seed, s)
        n = sample_num_chunks(cfg.stop_probability, g)
        lengths.append(n * cfg.tbptt_chunk)
        if p is not None:
            assert {len(v) for v in p.viewpoints.values()} == {p.num_glimpses}
            assert p.num_glimpses % cfg.tbptt_chunk == 0
            f0, r0 = p.viewpoints[0][0], p.viewpoints[1][0]
            assert torch.equal(f0.scales, torch.ones(3)) and torch.equal(f0.centers, torch.zeros(3, 2))
            assert bool((r0.scales < 1).all())
            assert (r0.scales >= cfg.min_scale - 1e-6).all()
    mean = sum(lengths) / len(lengths)
    assert abs(mean - cfg.expected_glimpses_per_rollout) < 0.3, mean  # E[T] = K / p_stop = 4
    assert min(lengths) == 2 and max(lengths) >= 12
    # K = 1, p_stop = 0.25 (ablation i) keeps E[T] = 4
    nb = preset("abl-no-bptt")
    ls = [sample_num_chunks(nb.stop_probability, step_generator(0, s)) for s in range(2000)]
    assert abs(sum(ls) / len(ls) - 4) < 0.35


def test_plan_is_a_function_of_seed_and_step():
    a, b = plan_step(TINY, 7, 4), plan_step(TINY, 7, 4)
    assert a.num_chunks == b.num_chunks
    for r in a.viewpoints:
        for va, vb in zip(a.viewpoints[r], b.viewpoints[r], strict=True):
            assert torch.equal(va.centers, vb.centers) and torch.equal(va.scales, vb.scales)
    c = plan_step(TINY.replace(seed=1), 7, 4)
    assert not torch.equal(c.viewpoints[1][0].centers, a.viewpoints[1][0].centers)


def test_loss_is_eq3_on_standardized_targets():
    """Gradient and metrics equal a direct implementation of eq. 3 (MSE form) with full BPTT over T=K."""
    model, (scenes, patches, cls) = tiny(), data()
    p = with_chunks(long_plan(TINY, 2), 1, 2)
    model.zero_grad(set_to_none=True)
    metrics = forward_backward(model, model, scenes, patches, cls, p, TINY)
    ours = {n: q.grad.clone() for n, q in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    ps, pstd = model.teacher_patch_standardizer, model.teacher_cls_standardizer
    zp = (patches - ps.mean) / torch.sqrt(ps.var + 1e-6)
    zc = (cls - pstd.mean[0]) / torch.sqrt(pstd.var[0] + 1e-6)
    total, per_rollout = 0.0, []
    for r in range(len(TINY.rollouts)):
        state = model.init_state(2, 4)
        lp_sum = lc_sum = 0.0
        for vp in p.viewpoints[r]:
            state = model(sample_at_viewpoint(scenes, vp, 32), state, vp).state
            lp = ((model.predict_teacher_patches(state.canvas) - zp) ** 2).mean()
            lc = ((model.predict_teacher_cls(state.recurrent_cls) - zc) ** 2).mean()
            lp_sum, lc_sum = lp_sum + lp, lc_sum + lc
        per_rollout.append((lp_sum.item() / 2, lc_sum.item() / 2))
        total = total + (lp_sum + lc_sum) / 2
    (total / len(TINY.rollouts)).backward()
    for n, q in model.named_parameters():
        torch.testing.assert_close(ours[n], q.grad, rtol=1e-4, atol=1e-7, msg=n)
    for r, (lp, lc) in enumerate(per_rollout):
        assert math.isclose(metrics[r, 0].item(), lp, rel_tol=1e-5)
        assert math.isclose(metrics[r, 1].item(), lc, rel_tol=1e-5)


def test_no_dense_loss_drops_the_patch_gradient():
    model, batch = tiny(), data()
    p = with_chunks(long_plan(TINY, 2), 1, 2)
    g = grads(model, TINY.replace(dense_loss=False), p, batch)
    assert torch.count_nonzero(g["teacher_patch_readout.proj.weight"]) == 0
    assert torch.count_nonzero(g["teacher_cls_readout.proj.weight"]) > 0


def test_warmup_constant_schedule_and_adamw():
    c = preset("canvit-b")
    assert learning_rate(c, 0) == 1e-7
    assert math.isclose(learning_rate(c, 50_000), (1e-7 + 4e-4) / 2)
    assert learning_rate(c, 100_000) == 4e-4 and learning_rate(c, 1_999_999) == 4e-4
    lrs = [learning_rate(c, s) for s in range(0, 100_001, 1000)]
    assert all(b > a for a, b in itertools.pairwise(lrs))
    opt = make_optimizer(tiny(), c, torch.device("cpu"))
    g = opt.param_groups[0]
    assert isinstance(opt, torch.optim.AdamW)
    assert (g["betas"], g["weight_decay"], g["lr"]) == ((0.9, 0.999), 1e-4, 1e-7)


def test_mse_is_mean_over_tokens_and_dims():
    a, b = torch.randn(2, 16, 8), torch.randn(2, 16, 8)
    from canvit_train.pretrain.step import mse

    assert torch.allclose(mse(a, b), F.mse_loss(a, b)) and torch.allclose(mse(a, b), ((a - b) ** 2).mean())


def test_one_copy_viewpoints_equal_the_per_glimpse_slices():
    from canvit_train.pretrain.step import local_viewpoints

    p = long_plan(TINY, 6)
    per = local_viewpoints(p, (2, 4), torch.device("cpu"), one_copy=False)
    one = local_viewpoints(p, (2, 4), torch.device("cpu"), one_copy=True)
    for r in p.viewpoints:
        assert len(one[r]) == len(per[r]) == p.num_glimpses
        for a, b, g in zip(one[r], per[r], p.viewpoints[r], strict=True):
            assert torch.equal(a.centers, b.centers) and torch.equal(a.scales, b.scales)
            assert torch.equal(a.centers, g.centers[2:4]) and torch.equal(a.scales, g.scales[2:4])
