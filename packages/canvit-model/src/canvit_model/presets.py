"""Named presets: CanViT-B and every row of the paper's ablation table (Table 3).

Rows f-i change only the pretraining recipe, so their architecture is CanViT-B's; `training_change`
says what differs (canvit-train reads it when it builds its recipes). Table 3's "Params" of a preset:
`canvit_num_params(preset(name).config)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import releases
from .config import CanViTConfig


@dataclass(frozen=True)
class Preset:
    name: str
    table3_row: str  # "baseline" or "a".."k"
    label: str  # the paper's wording
    config: CanViTConfig
    training_change: str = ""
    hub_repo: str = ""  # the released checkpoint trained with this preset (`releases`)

_B = CanViTConfig()


def _abl(name: str) -> str:
    """The released Table 3 checkpoint of an ablation preset."""
    return releases.table3_row(name).hub_id


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("canvitb16", "baseline", "CanViT-B (baseline)", _B,
               hub_repo=releases.FLAGSHIP),
        Preset("dcan256", "a", "D_can = 256, asymmetric (n_h = 2)", CanViTConfig(canvas_num_heads=2),
               hub_repo=_abl("dcan256")),
        Preset("qkvo-dcan256", "b", "D_can = 256, + QKVO (n_h = 2)",
               CanViTConfig(canvas_num_heads=2, canvas_projections="qkvo"),
               hub_repo=_abl("qkvo-dcan256")),
        Preset("qkvo-dcan384", "c", "D_can = 384, + QKVO (n_h = 3)",
               CanViTConfig(canvas_num_heads=3, canvas_projections="qkvo"),
               hub_repo=_abl("qkvo-dcan384")),
        Preset("no-reads", "d", "No canvas reads", CanViTConfig(enable_reads=False),
               hub_repo=_abl("no-reads")),
        Preset("rw-stride6", "e", "RW stride = 6 (1R / 1W)", CanViTConfig(rw_stride=6),
               hub_repo=_abl("rw-stride6")),
        Preset("no-dense", "f", "No dense supervision", _B, training_change="CLS loss only (no patch loss)",
               hub_repo=_abl("no-dense")),
        Preset("no-fiid-1riid", "g", "No F-IID, 1x R-IID", _B, training_change="rollouts: 1 R-IID",
               hub_repo=_abl("no-fiid-1riid")),
        Preset("no-fiid-2riid", "h", "No F-IID, 2x R-IID", _B, training_change="rollouts: 2 R-IID",
               hub_repo=_abl("no-fiid-2riid")),
        Preset("no-bptt", "i", "No BPTT (K = 1)", _B,
               training_change="TBPTT chunk K=1, stop probability 0.25",
               hub_repo=_abl("no-bptt")),
        Preset("vit-s", "j", "D_bb = 384 (= ViT-S backbone)", CanViTConfig(backbone_name="vits16"),
               hub_repo=_abl("vit-s")),
        Preset("no-vpe", "k", "No VPE token", CanViTConfig(enable_vpe=False),
               hub_repo=_abl("no-vpe")),
    ]
}

# Not paper models (so not in PRESETS, which is Table 3): a tiny architecture on the `test-tiny` backbone, for
# tests and for trying a tool without released weights (`canvit-eval demo --random-init test-tiny`).
TEST_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("test-tiny", "", "tiny test model (not in the paper)",
               CanViTConfig(backbone_name="test-tiny", canvas_num_heads=2, canvas_head_dim=32, num_canvas_registers=2,
                            num_backbone_registers=1, rw_stride=1)),
    ]
}


def preset(name: str) -> Preset:
    """A Table 3 preset (PRESETS) or a test preset (TEST_PRESETS) by name."""
    try:
        return PRESETS[name] if name in PRESETS else TEST_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"preset {name!r} is unknown; valid presets: {list(PRESETS) + list(TEST_PRESETS)}") from None
