"""Table 2: CanViT-B pretraining hyperparameters, read off the `canvit-b` pretraining preset
(canvit_train.pretrain.config.PRESETS) and its model preset, next to the paper's values."""

from __future__ import annotations

from canvit_model import PRESETS as MODEL_PRESETS
from canvit_train.pretrain.config import PRESETS

from paper.tablelib import Table

PRESET = "canvit-b"
# The paper's Table 2, as printed (plain text).
PAPER = {
    "Optimizer": "AdamW",
    "Initial learning rate": "1.00×10^-7",
    "Peak learning rate": "4.00×10^-4",
    "LR schedule": "Warmup → Const.",
    "LR warmup steps": "100,000",
    "Weight decay": "1×10^-4",
    "Gradient clipping": "1.0 max norm",
    "AdamW β1, β2": "0.9, 0.999",
    "TBPTT chunk size": "K = 2 glimpses",
    "Stop prob.": "p_stop = 0.5",
    "Rollouts per step": "1 F-IID + 1 R-IID",
    "Dataset": "ImageNet-21k",
    "IN21K Version": "winter21_whole",
    "Preprocessing": "Resize(512) + CenterCrop",
    "Data augmentation": "None",
    "Scene resolution": "512^2 px (1024 patches)",
    "Glimpse resolution": "128^2 px (64 patches)",
    "Batch size": "64 scenes",
    "Total training steps": "2.00×10^6",
    "Min scale": "0.05 (0.25% of area)",
    "Forward precision": "AMP bfloat16",
    "ViT LayerScale init.": "1×10^-5",
}
SCHEDULES = {"warmup-constant": "Warmup → Const.", "warmup-cosine": "Warmup → Cosine"}
PRECISIONS = {"bf16": "AMP bfloat16", "fp16": "AMP float16", "fp32": "float32"}


def sci(x: float, digits: int | None = None) -> str:
    """1e-7 -> "1×10^-7" (digits=None) or "1.00×10^-7" (digits=2), as the paper prints."""
    mant, exp = f"{x:e}".split("e")
    m = float(mant)
    m_txt = f"{m:.{digits}f}" if digits is not None else f"{m:g}"
    return f"{m_txt}×10^{int(exp)}"


def ours() -> dict[str, str]:
    cfg = PRESETS[PRESET]
    patch = MODEL_PRESETS[cfg.model_preset].config.backbone.patch_size
    rollouts = " + ".join(f"{cfg.rollouts.count(r)} {r.upper()}" for r in dict.fromkeys(cfg.rollouts))
    return {
        "Optimizer": cfg.optimizer,
        "Initial learning rate": sci(cfg.lr_start, 2),
        "Peak learning rate": sci(cfg.lr_peak, 2),
        "LR schedule": SCHEDULES.get(cfg.lr_schedule, cfg.lr_schedule),
        "LR warmup steps": f"{cfg.warmup_steps:,}",
        "Weight decay": sci(cfg.weight_decay),
        "Gradient clipping": f"{cfg.grad_clip:.1f} max norm",
        "AdamW β1, β2": ", ".join(f"{b:g}" for b in cfg.betas),
        "TBPTT chunk size": f"K = {cfg.tbptt_chunk} glimpses",
        "Stop prob.": f"p_stop = {cfg.stop_probability:g}",
        "Rollouts per step": rollouts,
        "Dataset": cfg.dataset,
        "IN21K Version": cfg.dataset_version,
        "Preprocessing": cfg.preprocessing,
        "Data augmentation": cfg.augmentation,
        "Scene resolution": f"{cfg.scene_size}^2 px ({(cfg.scene_size // patch) ** 2} patches)",
        "Glimpse resolution": f"{cfg.glimpse_size}^2 px ({(cfg.glimpse_size // patch) ** 2} patches)",
        "Batch size": f"{cfg.batch_size} scenes",
        "Total training steps": sci(cfg.steps, 2),
        "Min scale": f"{cfg.min_scale:g} ({100 * cfg.min_scale ** 2:g}% of area)",
        "Forward precision": PRECISIONS.get(cfg.amp, cfg.amp),
        "ViT LayerScale init.": sci(cfg.layerscale_init),
    }


def build() -> list[Table]:
    mine = ours()
    rows = [[k, mine[k], PAPER[k], "yes" if mine[k] == PAPER[k] else "NO"] for k in PAPER]
    cfg = PRESETS[PRESET]
    notes = [
        f"Ours: canvit_train.pretrain.config.PRESETS[{PRESET!r}] (model preset {cfg.model_preset!r}), the "
        f"configuration `uv run --package canvit-train pretrain --preset {PRESET}` trains with; "
        f"teacher {cfg.teacher}.",
        f"Mean rollout length K / p_stop = {cfg.expected_glimpses_per_rollout:g} glimpses; min scale s_min "
        f"covers s_min^2 of the scene.",
    ]
    return [Table.from_rows(2, "CanViT-B pretraining hyperparameters", ["Hyperparameter", "Value", "Paper", "Same"],
                            rows, notes, ours=["Value"])]
