"""torch.export of the glimpse step: CanViT / CanViTForPretraining forward(glimpse, state, viewpoint).

RecurrentState, Viewpoint and CanViTOutput are pytree nodes, so the exported program takes and returns
them as they are. Exports run with strict=True (TorchDynamo): a graph break would fail the export.
"""

from __future__ import annotations

import pytest
import torch

from canvit_model import (
    BACKBONES,
    CanViT,
    CanViTConfig,
    CanViTForPretraining,
    CanViTOutput,
    ClassificationOutput,
    RecurrentState,
    Viewpoint,
    ViTConfig,
)

TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_cfg():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(BACKBONES, "test-tiny", ViTConfig(dim=32, num_heads=2, depth=2))
        yield CanViTConfig(backbone_name="test-tiny", canvas_num_heads=2, canvas_head_dim=16, num_canvas_registers=2)


def _inputs(batch: int, seed: int, glimpse_px: int = 32) -> tuple[torch.Tensor, Viewpoint]:
    g = torch.Generator().manual_seed(seed)
    scales = torch.rand(batch, generator=g) * 0.7 + 0.3
    centers = (torch.rand(batch, 2, generator=g) * 2 - 1) * (1 - scales)[:, None]
    return torch.randn(batch, 3, glimpse_px, glimpse_px, generator=g), Viewpoint(centers=centers, scales=scales)


def _close(a: RecurrentState, b: RecurrentState) -> None:
    for x, y in ((a.canvas, b.canvas), (a.recurrent_cls, b.recurrent_cls)):
        assert x.shape == y.shape and x.dtype == y.dtype == torch.float32
        assert (x - y).abs().max() <= TOL, (x - y).abs().max()


def test_pytree_round_trip_keeps_the_dataclasses():
    from torch.utils import _pytree as pytree

    glimpse, vp = _inputs(2, 0)
    state = RecurrentState(canvas=torch.randn(2, 5, 4), recurrent_cls=torch.randn(2, 1, 3))
    out = CanViTOutput(state=state, glimpse_patches=torch.randn(2, 4, 3), vpe=None)
    clf = ClassificationOutput(state=state, logits=torch.randn(2, 7))
    for obj, n in ((vp, 2), (state, 2), (out, 3), (clf, 3)):
        leaves, spec = pytree.tree_flatten(obj)
        assert sum(isinstance(t, torch.Tensor) for t in leaves) == n
        back = pytree.tree_unflatten(leaves, spec)
        assert type(back) is type(obj) and all(a is b for a, b in zip(pytree.tree_leaves(back), leaves))


@torch.no_grad()
def test_export_canvit_fixed_shapes_equals_eager(tiny_cfg):
    torch.manual_seed(0)
    model = CanViT(tiny_cfg).eval()
    glimpse, vp = _inputs(2, 1)
    state = model.init_state(2, 4)
    ep = torch.export.export(model, (glimpse, state, vp), strict=True)
    exported = ep.module()
    s_eager = s_exp = state
    for step in range(3):  # the exported step fed its own state back, as in a rollout
        glimpse, vp = _inputs(2, 10 + step)
        out_eager, out_exp = model(glimpse, s_eager, vp), exported(glimpse, s_exp, vp)
        assert isinstance(out_exp, CanViTOutput) and isinstance(out_exp.state, RecurrentState)
        _close(out_exp.state, out_eager.state)
        assert (out_exp.glimpse_patches - out_eager.glimpse_patches).abs().max() <= TOL
        assert (out_exp.vpe - out_eager.vpe).abs().max() <= TOL
        s_eager, s_exp = out_eager.state, out_exp.state
    # the canvas grid and glimpse size are fixed in this program: another grid is refused, not misread
    with pytest.raises(Exception):
        exported(glimpse, model.init_state(2, 5), vp)


@torch.no_grad()
def test_export_pretraining_with_a_dynamic_batch_equals_eager(tiny_cfg):
    torch.manual_seed(1)
    model = CanViTForPretraining(tiny_cfg, teacher_dim=8, teacher_patch_grid=4).eval()
    glimpse, vp = _inputs(2, 2)
    state = model.init_state(2, 4)
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = ({0: batch}, [{0: batch}, {0: batch}], [{0: batch}, {0: batch}])
    ep = torch.export.export(model, (glimpse, state, vp), dynamic_shapes=dynamic, strict=True)
    exported = ep.module()
    for b in (1, 3, 5):
        glimpse, vp = _inputs(b, 20 + b)
        s = model.init_state(b, 4)
        out_eager, out_exp = model(glimpse, s, vp), exported(glimpse, s, vp)
        _close(out_exp.state, out_eager.state)
        out_eager, out_exp = model(glimpse, out_eager.state, vp), exported(glimpse, out_exp.state, vp)
        _close(out_exp.state, out_eager.state)
