"""The CPU inference fast path (canvit_model.layers.fast): same numbers as eager fp32, never stale, and
never engaged where it must not be (gradients, training, autocast, compiled/exported graphs). Not timed:
benchmarks/bench_vs_reference.py measures the speed."""

import math

import pytest
import torch

from canvit_model import CanViTConfig, CanViTForPretraining, Viewpoint, cpu_inference
from canvit_model.geometry import grid_coords
from canvit_model.layers import fast
from canvit_model.layers.fast import FastLinear
from canvit_model.layers.rope import Rope, apply_rope, grid_rope_tables, rope_periods, rope_tables

pytestmark = pytest.mark.skipif(not fast._ONEDNN, reason="this torch build has no oneDNN linear")

FP32_RTOL = 1e-5
# bf16 linears (8-bit mantissa) through a 2-block model and two glimpses; measured ~2e-3 on CanViT-B
BF16_RTOL = 2e-2


def small_model(seed: int = 0) -> CanViTForPretraining:
    torch.manual_seed(seed)
    m = CanViTForPretraining(CanViTConfig(backbone_name="test-tiny", canvas_num_heads=2, canvas_head_dim=32,
                                          num_canvas_registers=2, num_backbone_registers=1, rw_stride=1),
                             teacher_dim=48, teacher_patch_grid=4).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial weights (LayerScale 1e-5 and zero biases would hide errors)
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return m


def rollout(m: CanViTForPretraining, mode: str, grid: int = 6, steps: int = 2) -> dict[str, torch.Tensor]:
    """Two glimpses at different viewpoints; every output the next glimpse or a readout sees."""
    gen = torch.Generator().manual_seed(7)
    out: dict[str, torch.Tensor] = {}
    with cpu_inference(mode), torch.inference_mode():
        state = m.init_state(batch_size=2, canvas_grid_size=grid)
        for t in range(steps):
            glimpse = torch.randn(2, 3, 32, 32, generator=gen)
            vp = Viewpoint(centers=torch.rand(2, 2, generator=gen) - 0.5, scales=torch.full((2,), 0.5 + 0.25 * t))
            o = m(glimpse, state, vp)
            state = o.state
            out[f"canvas{t}"] = state.canvas
            out[f"cls{t}"] = state.recurrent_cls
            out[f"patches{t}"] = o.glimpse_patches
        out["teacher"] = m.predict_teacher_patches(state.canvas)
        out["teacher_cls"] = m.predict_teacher_cls(state.recurrent_cls)
    return out


def max_rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in b)


def packed_count(m: torch.nn.Module) -> int:
    return sum(1 for mod in m.modules() if isinstance(mod, FastLinear) and mod._packed)


def test_fast_fp32_equals_eager():
    m = small_model()
    eager = rollout(m, "eager")
    assert packed_count(m) == 0, "eager mode must not pack weights"
    got = rollout(m, "fp32")
    assert packed_count(m) == sum(1 for mod in m.modules() if isinstance(mod, FastLinear)), "fast path not taken"
    assert max_rel(got, eager) <= FP32_RTOL
    assert got["canvas1"].dtype == torch.float32


def test_packed_weights_follow_load_state_dict_and_training_steps():
    m = small_model(seed=0)
    rollout(m, "fp32")  # pack the seed-0 weights
    other = small_model(seed=3)
    m.load_state_dict(other.state_dict())
    after_load = rollout(m, "fp32")
    assert max_rel(after_load, rollout(other, "eager")) <= FP32_RTOL, "stale packed weights after load_state_dict"
    assert max_rel(after_load, rollout(small_model(seed=0), "eager")) > 1e-3  # the weights really changed

    # a training step in place (optimizer updates the same Parameters), then back to inference
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    state = m.init_state(batch_size=1, canvas_grid_size=4)
    o = m(torch.randn(1, 3, 32, 32), state, Viewpoint.full_scene(batch_size=1))
    m.predict_teacher_patches(o.state.canvas).square().mean().backward()
    opt.step()
    m.eval()
    after_step = rollout(m, "fp32")
    eager = rollout(m, "eager")
    assert max_rel(after_step, eager) <= FP32_RTOL, "stale packed weights after an optimizer step"
    assert max_rel(after_step, after_load) > 1e-4  # the step really moved the outputs


def test_switching_modes_keeps_each_modes_packed_weights():
    """fp32 -> bf16 -> fp32 must not repack (a CanViT-B repack costs more than a glimpse), and a weight
    change still invalidates both copies."""
    m = small_model()
    fp32_first = rollout(m, "fp32")
    lin = m.canvit.backbone.blocks[0].mlp.fc1
    packed_fp32 = lin._packed["fp32"][2]
    bf16_first = rollout(m, "bf16")
    assert set(lin._packed) == {"fp32", "bf16"}
    packed_bf16 = lin._packed["bf16"][2]
    assert packed_bf16.dtype == torch.bfloat16
    fp32_again = rollout(m, "fp32")
    assert lin._packed["fp32"][2] is packed_fp32, "switching modes repacked the fp32 weights"
    assert max_rel(fp32_again, fp32_first) == 0.0
    assert max_rel(rollout(m, "bf16"), bf16_first) == 0.0
    assert lin._packed["bf16"][2] is packed_bf16

    m.load_state_dict(small_model(seed=5).state_dict())
    assert max_rel(rollout(m, "bf16"), rollout(small_model(seed=5), "bf16")) == 0.0, "stale bf16 copy"
    assert max_rel(rollout(m, "fp32"), rollout(small_model(seed=5), "eager")) <= FP32_RTOL, "stale fp32 copy"


def test_fast_path_never_engages_with_grad_training_or_autocast():
    """The inference path (the CPU training path, tested below, is turned off here)."""
    from canvit_model import cpu_training

    m = small_model()
    glimpse, vp = torch.randn(1, 3, 32, 32), Viewpoint.full_scene(batch_size=1)

    def step():
        return m(glimpse, m.init_state(1, 4), vp).state.canvas

    with cpu_inference("eager"), torch.no_grad():
        eager = step()
    with cpu_training("eager"):
        step()  # grad enabled, eval mode
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        step()
    m.train()
    with torch.no_grad():
        train_out = step()
    m.eval()
    assert packed_count(m) == 0
    assert torch.equal(train_out, eager)  # training mode: exactly today's eager numbers
    with torch.no_grad():
        assert torch.equal(step().detach(), step().detach())


def test_graph_capture_sees_only_plain_ops(monkeypatch):
    m = small_model()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        m(x, m.init_state(1, 4), Viewpoint.full_scene(batch_size=1))
    assert packed_count(m) == 0


def test_bf16_keeps_canvas_fp32_within_tolerance():
    m = small_model()
    ref = rollout(m, "fp32")
    got = rollout(m, "bf16")
    assert all(v.dtype == torch.float32 for v in got.values())
    err = max_rel(got, ref)
    assert 1e-5 < err <= BF16_RTOL, err  # really reduced precision, and within the documented bound
    m.precision = "bf16"  # the model attribute: the same mode for the CanViT forward (readouts follow the context)
    by_attr = rollout(m, "fp32")
    assert all(torch.equal(by_attr[k], got[k]) for k in got if not k.startswith("teacher"))
    with pytest.raises(ValueError, match="one of eager, fp32, bf16"):
        m.precision = "fp16"


def test_rope_sign_folded_into_sin_is_bit_identical():
    """x cos + cat(-x2, x1) sin (the textbook rotate-half) == what apply_rope computes, bit for bit."""
    gen = torch.Generator().manual_seed(0)
    pos = torch.rand(2, 10, 2, generator=gen) * 2 - 1
    periods = rope_periods(16)
    tables = rope_tables(pos, periods, num_prefix=3)
    angles = torch.cat([(2 * math.pi * pos[..., None] / periods).flatten(-2)] * 2, dim=-1)
    cos = torch.cat([torch.ones(2, 3, 16), angles.cos()], dim=1)[:, None]
    sin = torch.cat([torch.zeros(2, 3, 16), angles.sin()], dim=1)[:, None]
    x = torch.randn(2, 4, 13, 16, generator=gen)
    rotated = torch.cat([-x[..., 8:], x[..., :8]], dim=-1)
    textbook = (rotated * sin).addcmul(x, cos)
    got = apply_rope(x, Rope(tables.cos[:, None], tables.sin[:, None]))
    assert torch.equal(got, textbook)
    assert torch.equal(tables.cos[:, None], cos)


def test_canvas_rope_tables_cached_and_usable_with_grad():
    with torch.inference_mode():
        a = grid_rope_tables(5, 32, 100.0, 2, torch.device("cpu"))
    b = grid_rope_tables(5, 32, 100.0, 2, torch.device("cpu"))
    assert a is b  # one build per grid size
    direct = rope_tables(grid_coords(5).reshape(25, 2), rope_periods(32), 2)
    assert torch.equal(a.cos, direct.cos) and torch.equal(a.sin, direct.sin)
    assert not a.cos.is_inference()  # built in inference mode, still usable in autograd later
    x = torch.randn(1, 2, 27, 32, requires_grad=True)
    apply_rope(x, b).sum().backward()
    assert x.grad is not None


def test_recurrent_cls_is_standard_strided():
    m = small_model()
    with torch.inference_mode():
        cls = m(torch.randn(1, 3, 32, 32), m.init_state(1, 4), Viewpoint.full_scene(batch_size=1)).state.recurrent_cls
    assert cls.stride() == torch.empty(cls.shape).stride()


def test_canvas_fast_path_is_taken_and_never_aliases_its_buffers(monkeypatch):
    """Every canvas read and write goes through the fast canvas path in fp32/bf16 (and never in eager),
    and no output is a reused workspace buffer: a state kept from glimpse 1 is untouched by glimpse 2."""
    from canvit_model.layers import canvas_attention, rope

    calls = []
    monkeypatch.setattr(canvas_attention, "rope_to_heads",
                        lambda *a, **k: calls.append(1) or rope.rope_to_heads(*a, **k))
    m = small_model()
    per_glimpse = len(m.canvit.canvas_reads) + len(m.canvit.canvas_writes)
    rollout(m, "eager")
    assert not calls
    for mode in ("fp32", "bf16"):
        calls.clear()
        rollout(m, mode, steps=2)
        assert len(calls) == 2 * per_glimpse, mode

    with torch.inference_mode():
        state = m.init_state(batch_size=2, canvas_grid_size=5)
        first = m(torch.randn(2, 3, 32, 32), state, Viewpoint.full_scene(batch_size=2)).state
        kept = first.canvas.clone()
        m(torch.randn(2, 3, 32, 32), first, Viewpoint.full_scene(batch_size=2))
        assert torch.equal(first.canvas, kept)
        fast.clear_workspace()  # freed buffers are simply made again
        m(torch.randn(2, 3, 32, 32), first, Viewpoint.full_scene(batch_size=2))

        # a canvas with other strides (a user's transposed copy) gives the same next canvas as eager
        odd = first.canvas.transpose(1, 2).contiguous().transpose(1, 2)
        assert not odd.is_contiguous()
        glimpse = torch.randn(2, 3, 32, 32)
        state = type(first)(canvas=odd, recurrent_cls=first.recurrent_cls)
        got = m(glimpse, state, Viewpoint.full_scene(batch_size=2)).state.canvas
        with cpu_inference("eager"):
            want = m(glimpse, state, Viewpoint.full_scene(batch_size=2)).state.canvas
        assert float((got - want).abs().max() / want.abs().max()) <= FP32_RTOL


def test_fast_path_is_thread_safe():
    """Two threads running the fast path at once (the demo serves concurrent sessions) get what each
    gets alone: the canvas workspace is per thread."""
    import threading

    m = small_model()
    alone = {mode: rollout(m, mode, grid=7) for mode in ("fp32", "bf16")}
    got: dict[str, dict] = {}

    def run(mode: str) -> None:
        for _ in range(3):
            got[mode] = rollout(m, mode, grid=7)

    threads = [threading.Thread(target=run, args=(mode,)) for mode in ("fp32", "bf16")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mode in ("fp32", "bf16"):
        assert max_rel(got[mode], alone[mode]) == 0.0, mode


def _train_two_steps(mode: str, seed: int = 0) -> tuple[CanViTForPretraining, list[float]]:
    """Two SGD steps of a small model in CPU training `mode`; returns the model and the losses."""
    from canvit_model import cpu_training

    m = small_model(seed).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(11)
    losses = []
    with cpu_training(mode):
        for _ in range(2):
            opt.zero_grad()
            state = m.init_state(batch_size=2, canvas_grid_size=4)
            for _ in range(2):  # two glimpses: the packed weights serve every glimpse of a step
                state = m(torch.randn(2, 3, 32, 32, generator=gen), state, Viewpoint.full_scene(batch_size=2)).state
            loss = m.predict_teacher_patches(state.canvas).square().mean() + state.recurrent_cls.square().mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return m, losses


def test_cpu_training_path_gives_eager_gradients_and_never_goes_stale(monkeypatch):
    """The oneDNN training GEMMs (forward on packed W, input gradients on packed W^T) are taken, give the
    eager losses and weights to float rounding over two optimizer steps (a stale packed copy after the
    first step would change the second loss by far more), and "eager" turns them off."""
    calls = []
    real = fast._TrainLinear.apply
    monkeypatch.setattr(fast._TrainLinear, "apply", lambda *a: calls.append(1) or real(*a))
    eager, eager_losses = _train_two_steps("eager")
    assert not calls
    got, got_losses = _train_two_steps("fp32")
    assert calls, "the CPU training path was not taken"
    assert got_losses == pytest.approx(eager_losses, rel=1e-5)
    assert eager_losses[1] != pytest.approx(eager_losses[0], rel=1e-3)  # the step really changed the weights
    e, g = eager.state_dict(), got.state_dict()
    assert max(float((g[k] - e[k]).abs().max() / e[k].abs().max().clamp_min(1e-12))
               for k in e if e[k].is_floating_point()) <= 1e-4

    from canvit_model import cpu_training

    calls.clear()
    with pytest.raises(ValueError, match="one of eager, fp32"):
        with cpu_training("bf16"):
            pass
    m = small_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the plain ops
        m(torch.randn(1, 3, 32, 32), m.init_state(1, 4), Viewpoint.full_scene(batch_size=1)).state.canvas.sum().backward()
    assert not calls


def test_a_model_with_packed_weights_pickles_and_copies():
    """torch.save of a whole module / multiprocessing pickle it, EMA copies deepcopy it: the packed
    copies (weakref-keyed) are left out and rebuilt on first use, with the same outputs."""
    import copy
    import pickle

    m = small_model()
    before = rollout(m, "fp32")
    assert packed_count(m)
    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert max_rel(rollout(other, "fp32"), before) == 0.0
    assert packed_count(pickle.loads(pickle.dumps(m))) == 0


def test_cpu_training_path_supports_double_backward():
    """create_graph=True (e.g. a gradient penalty) gives the eager second derivatives."""
    from canvit_model import cpu_training

    lin = FastLinear(5, 4)
    x0 = torch.randn(3, 5)
    got = {}
    for mode in ("eager", "fp32"):
        x = x0.clone().requires_grad_(True)
        with cpu_training(mode):
            (g,) = torch.autograd.grad(torch.tanh(lin(x)).square().sum(), x, create_graph=True)
            g.square().sum().backward()
        got[mode] = (g.detach(), lin.weight.grad.clone())
        lin.weight.grad = None
        lin.bias.grad = None
    for a, b in zip(got["eager"], got["fp32"]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
