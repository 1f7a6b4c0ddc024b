"""Parity scenarios shared by the fixture generator (run against canvit-pytorch) and our tests.

Plain torch only, and written against the common inference surface (CanViTForPretraining,
Viewpoint, sample_at_viewpoint), so the very same code drives the reference and our model.
Weights are filled deterministically from a seed and each key's name, so no weights are stored.
"""

from __future__ import annotations

import zlib

import torch

SEED = 1234

# Table 3 variants covered by the fixtures (canvit_config fields; the rest are CanViT-B defaults).
VARIANTS: dict[str, dict] = {
    "canvitb16": {},
    "qkvo-dcan256": {"canvas_num_heads": 2, "canvas_projections": "qkvo"},
    "vit-s": {"backbone_name": "vits16"},
    "no-vpe": {"enable_vpe": False},
    "no-reads": {"enable_reads": False},
    "rw-stride6": {"rw_stride": 6},
}

# Rollouts: scene size, canvas grid, glimpse px, and per-step per-element viewpoints (y, x, s).
ROLLOUTS: dict[str, dict] = {
    "r1": {
        "scene": (512, 512), "grid": 32, "glimpse": 128,
        "steps": [
            [(0.0, 0.0, 1.0), (0.0, 0.0, 1.0)],
            [(-0.5, 0.5, 0.5), (0.3, -0.2, 0.25)],
            [(0.3, -0.2, 0.25), (0.7, 0.7, 0.05)],
            [(0.7, 0.7, 0.05), (-0.75, 0.75, 0.25)],
        ],
    },
    "r2": {  # non-square scene, small canvas, small glimpse
        "scene": (320, 448), "grid": 8, "glimpse": 64,
        "steps": [[(0.1, -0.3, 0.6)], [(-0.75, 0.75, 0.25)]],
    },
    "r3": {  # large canvas
        "scene": (512, 512), "grid": 64, "glimpse": 128,
        "steps": [[(0.0, 0.0, 1.0)], [(0.25, 0.25, 0.5)]],
    },
    "abl": {
        "scene": (256, 256), "grid": 16, "glimpse": 128,
        "steps": [
            [(0.0, 0.0, 1.0), (0.2, -0.1, 0.8)],
            [(-0.5, 0.5, 0.5), (0.6, 0.3, 0.1)],
            [(0.3, -0.2, 0.25), (0.0, 0.0, 1.0)],
        ],
    },
}

ROLLOUTS_OF = {"canvitb16": ["r1", "r2", "r3"]}  # ablations run "abl" only


def rollouts_for(variant: str) -> list[str]:
    return ROLLOUTS_OF.get(variant, ["abl"])


def _gen(name: str, seed: int = SEED) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


@torch.no_grad()
def fill_(model: torch.nn.Module, seed: int = SEED) -> None:
    """Overwrite every parameter/buffer (0.2 key names) with seeded values that make tests discriminative:
    LayerScale ~0.1 N, LayerNorm gains 1 + 0.1 N, all biases (incl. the masked k-bias) 0.02 N,
    standardizers fitted with mean ~N and var ~U(0.5, 1.5). The VPE matrix keeps its seed-42 value."""
    for name, t in model.state_dict().items():
        if name.endswith("vpe.frequencies"):
            continue
        g = _gen(name, seed)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("fitted", "_initialized"):
            t.fill_(True)
            continue
        r = torch.randn(t.shape, generator=g, dtype=torch.float32)
        if leaf == "gamma":
            v = 0.1 * r
        elif leaf == "mean":
            v = r
        elif leaf == "var":
            v = 0.5 + torch.rand(t.shape, generator=g, dtype=torch.float32)
        elif leaf == "bias":
            v = 0.02 * r
        elif leaf == "weight" and t.ndim == 1:  # LayerNorm gains
            v = 1 + 0.1 * r
        elif leaf == "weight":
            fan_in = t[0].numel()
            v = r / fan_in**0.5
        else:  # initial tokens and registers
            v = r
        t.copy_(v.to(t.dtype))


def scene(rollout: str, batch: int) -> torch.Tensor:
    h, w = ROLLOUTS[rollout]["scene"]
    return torch.randn(batch, 3, h, w, generator=_gen("scene/" + rollout))


def sample_indices(numel: int, name: str, k: int = 1024) -> torch.Tensor:
    if numel <= k:
        return torch.arange(numel)
    return torch.randint(0, numel, (k,), generator=_gen("idx/" + name))


def reduce(name: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """A small, discriminative summary of an output: fixed sampled entries and per-row L2 norms."""
    t = t.detach().float().contiguous()
    flat = t.reshape(-1)
    return {
        f"{name}/sample": flat[sample_indices(flat.numel(), name)].clone(),
        f"{name}/rownorm": t.reshape(-1, t.shape[-1]).norm(dim=-1).clone(),
    }


@torch.no_grad()
def run(model, Viewpoint, sample_at_viewpoint, rollout: str, prefix: str) -> dict[str, torch.Tensor]:
    """Roll the model out on one scenario and return the reduced outputs at every step."""
    spec = ROLLOUTS[rollout]
    batch = len(spec["steps"][0])
    img = scene(rollout, batch)
    state = model.init_state(batch_size=batch, canvas_grid_size=spec["grid"])
    out: dict[str, torch.Tensor] = {}
    for t, vps in enumerate(spec["steps"]):
        vp = Viewpoint(
            centers=torch.tensor([[y, x] for y, x, _ in vps], dtype=torch.float32),
            scales=torch.tensor([s for _, _, s in vps], dtype=torch.float32),
        )
        glimpse = sample_at_viewpoint(spatial=img, viewpoint=vp, glimpse_size_px=spec["glimpse"])
        o = model(glimpse=glimpse, state=state, viewpoint=vp)
        state = o.state
        p = f"{prefix}/{rollout}/t{t}"
        patches = model.predict_teacher_patches(state.canvas)
        cls = model.predict_teacher_cls(state.recurrent_cls)
        tensors = {
            "glimpse": glimpse,
            "canvas": state.canvas,
            "recurrent_cls": state.recurrent_cls,
            "glimpse_patches": o.glimpse_patches,
            "pred_patches": patches,
            "pred_cls": cls,
            "pred_cls_raw": model.teacher_cls_standardizer.destandardize(cls),
        }
        if o.vpe is not None:
            tensors["vpe"] = o.vpe
        if spec["grid"] == 32:
            tensors["pred_patches_raw"] = model.teacher_patch_standardizer.destandardize(patches)
        for k, v in tensors.items():
            out.update(reduce(f"{p}/{k}", v))
    return out
