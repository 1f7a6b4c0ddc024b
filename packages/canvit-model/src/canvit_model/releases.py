"""Every released checkpoint, probe and teacher this project names, and the experiments that produce them.

The one place a Hugging Face hub id is written: the commands' defaults and help texts, the model presets,
the evaluation matrix and `paper/` read it from here (a test fails on a hub id literal anywhere else in
`packages/*/src` or `paper/`). Two owners: `facebook` (the DINOv3 teachers, gated: accept the terms, then
`hf auth login` or HF_TOKEN) and `canvit` (CanViT checkpoints and probes).

Table 3 (the ablation study) is listed row by row with the `canvit-train pretrain --preset` recipe that
trains it and its released checkpoint. Its baseline row is the short-run ablation baseline
(`abl-baseline`: same recipe and budget as the ablations), not the flagship release (`canvit-b`).

Imports nothing (stdlib only), so any package can read it.
"""

from __future__ import annotations

from dataclasses import dataclass

OWNERS = ("canvit", "facebook")  # the hub owners of every id below

# -- DINOv3 (Meta, LVD-1689M pretraining) -----------------------------------------------------------------
DINOV3_TEMPLATE = "facebook/dinov3-{backbone}-pretrain-lvd1689m"
DINOV3_BACKBONES = ("vits16", "vits16plus", "vitb16", "vitl16", "vith16plus")  # the released sizes


def dinov3(backbone: str) -> str:
    """Hub id of a released DINOv3 backbone ("vitb16" -> facebook/dinov3-vitb16-pretrain-lvd1689m)."""
    if backbone not in DINOV3_BACKBONES:
        raise ValueError(f"DINOv3 backbone {backbone!r} is not released; valid: {list(DINOV3_BACKBONES)}")
    return DINOV3_TEMPLATE.format(backbone=backbone)


TEACHER = dinov3("vitb16")  # CanViT's distillation teacher (and the reconstruction target)

# -- CanViT-B -------------------------------------------------------------------------------------------
FLAGSHIP = "canvit/canvitb16-add-vpe-pretrain-g128px-s512px-in21k-dv3b16-2026-02-02"  # pretrained, IN21k
FINETUNED_IN1K = "canvit/canvitb16-add-vpe-finetune-g128px-s512px-in1k-2026-04-06"  # the paper's 84.5% top-1

# -- probes ---------------------------------------------------------------------------------------------
# ImageNet-1k linear probes on DINOv3 features (dinov3-probes; CanViT is evaluated through the ViT-B one).
DINOV3_IN1K_PROBE_TEMPLATE = "canvit/dinov3-{backbone}-lvd1689m-in1k-512x512-linear-clf-probe"


def dinov3_in1k_probe(backbone: str = "vitb16") -> str:
    """Hub id of the released ImageNet-1k linear probe for a DINOv3 backbone."""
    return DINOV3_IN1K_PROBE_TEMPLATE.format(backbone=backbone)


IN1K_PROBE = dinov3_in1k_probe("vitb16")

# ADE20K segmentation probes (40k steps) on CanViT's canvas, per scene size / canvas grid / pretrained model.
ADE20K_PROBE_TEMPLATE = "canvit/probe-ade20k-40k-s{scene}-c{grid}-{model}"
# ... and on DINOv3 at one input resolution (Table 5's baselines); `short` names the backbone.
DINOV3_ADE20K_PROBE_TEMPLATE = "canvit/probe-ade20k-40k-{short}-{px}px"
DINOV3_SHORT = {"vits16": "dv3s", "vitb16": "dv3b"}  # the backbones with released ADE20K probes


def ade20k_probe(scene: int, grid: int, model: str = "in21k") -> str:
    """Hub id of a released ADE20K probe for CanViT (model "in21k": the flagship's pretraining)."""
    return ADE20K_PROBE_TEMPLATE.format(scene=scene, grid=grid, model=model)


def dinov3_ade20k_probe(backbone: str, px: int) -> str:
    """Hub id of a released ADE20K probe for DINOv3 `backbone` at `px` input pixels."""
    if backbone not in DINOV3_SHORT:
        raise ValueError(f"no released ADE20K probe for DINOv3 {backbone!r}; valid: {list(DINOV3_SHORT)}")
    return DINOV3_ADE20K_PROBE_TEMPLATE.format(short=DINOV3_SHORT[backbone], px=px)


# -- Table 3: the ablation study ------------------------------------------------------------------------
ABLATION_TEMPLATE = "canvit/canvitb16-abl-{name}-{date}"


@dataclass(frozen=True)
class Table3Row:
    """One row of Table 3: which architecture, which pretraining recipe, which released checkpoint."""

    row: str  # "baseline" or "a".."k", the paper's row label
    model_preset: str  # a `canvit_model.PRESETS` name: the architecture
    recipe: str  # the `canvit-train pretrain --preset` name that trains this row
    hub_id: str  # the released checkpoint of this row ("" if none)


def _abl(row: str, model_preset: str, date: str, name: str | None = None) -> Table3Row:
    name = name or model_preset
    return Table3Row(row, model_preset, f"abl-{name}", ABLATION_TEMPLATE.format(name=name, date=date))


TABLE3: tuple[Table3Row, ...] = (
    _abl("baseline", "canvitb16", "2026-03-02", name="baseline"),
    _abl("a", "dcan256", "2026-03-02"),
    _abl("b", "qkvo-dcan256", "2026-03-02"),
    _abl("c", "qkvo-dcan384", "2026-03-02"),
    _abl("d", "no-reads", "2026-03-02"),
    _abl("e", "rw-stride6", "2026-03-03"),
    _abl("f", "no-dense", "2026-03-02"),
    _abl("g", "no-fiid-1riid", "2026-03-02"),
    _abl("h", "no-fiid-2riid", "2026-03-06"),
    _abl("i", "no-bptt", "2026-03-06"),
    _abl("j", "vit-s", "2026-03-03"),
    _abl("k", "no-vpe", "2026-03-02"),
)
ABLATION_BASELINE = TABLE3[0].hub_id  # Table 3's baseline checkpoint (not the flagship)
FLAGSHIP_RECIPE = "canvit-b"  # the `pretrain --preset` that trains FLAGSHIP


def table3_row(model_preset: str) -> Table3Row:
    """Table 3's row of a model preset (canvitb16 -> the ablation baseline row)."""
    for r in TABLE3:
        if r.model_preset == model_preset:
            return r
    raise ValueError(f"model preset {model_preset!r} is in no Table 3 row; valid: {[r.model_preset for r in TABLE3]}")
