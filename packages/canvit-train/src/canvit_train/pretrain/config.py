"""Pretraining recipes as small code: `PretrainConfig` and the named presets.

`canvit-b` is the paper's Table 2 exactly; the Table 3 ablations change the architecture (through
`canvit_model.PRESETS`) or the recipe (rollouts, dense loss, TBPTT chunk); `smoke` is a tiny model with
a tiny random teacher on a generated scene set that runs anywhere in minutes.
Table 2 of `paper/make_tables.py` is rendered from `PRESETS["canvit-b"]`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from canvit_model import MIN_SCALE
from canvit_model import PRESETS as MODEL_PRESETS
from canvit_model import releases

ROLLOUTS = ("f-iid", "r-iid")  # F-IID: full scene first, then random; R-IID: random from t0


@dataclass(frozen=True)
class PretrainConfig:
    # model
    model_preset: str = "canvitb16"  # a canvit_model.PRESETS name (architecture)
    teacher: str = releases.TEACHER  # hub id or local dir (transformers layout)
    # data
    dataset: str = "ImageNet-21k"
    dataset_version: str = "winter21_whole"
    preprocessing: str = "Resize(512) + CenterCrop"
    augmentation: str = "None"
    scene_size: int = 512  # px
    glimpse_size: int = 128  # px
    canvas_grid: int = 32
    min_scale: float = MIN_SCALE  # s_min: a crop covers at least 0.25% of the scene
    # rollouts
    rollouts: tuple[str, ...] = ("f-iid", "r-iid")  # one rollout of each per step, from fresh canvases
    tbptt_chunk: int = 2  # K glimpses per backward
    stop_probability: float = 0.5  # after each chunk, stop with this probability (mean length K / p)
    dense_loss: bool = True  # patch MSE (False: CLS loss only, ablation f)
    cls_loss: bool = True
    # optimization
    optimizer: str = "AdamW"
    batch_size: int = 64  # scenes per step (global, across ranks)
    steps: int = 2_000_000
    lr_start: float = 1e-7
    lr_peak: float = 4e-4
    lr_schedule: str = "warmup-constant"
    warmup_steps: int = 100_000
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    amp: str = "bf16"  # forward precision on CUDA ("bf16" or "fp32"); CPU always fp32
    layerscale_init: float = 1e-5
    seed: int = 0
    # overrides of the architecture for tiny models (smoke); None = the model preset's own.
    # Keys are `canvit_model.CanViTConfig` fields (e.g. backbone_name, canvas_num_heads).
    backbone_override: dict[str, Any] | None = field(default=None, compare=False)
    # bookkeeping (not part of the recipe; flags override them)
    log_every: int = 20  # steps between metric flushes (and the only host syncs of the loop)
    checkpoint_every: int = 4992  # steps between checkpoints (the authors' 45-min SLURM task)
    validate_every: int = 1000  # steps between validations (0: never)
    validation_glimpses: int = 10  # T of the validation rollout (reconstruction cosine per timestep)
    validation_scenes: int = 64  # held-out scenes per validation
    standardizer_samples: int = 4096  # scenes for the per-position statistics (the paper's first shard)

    @property
    def expected_glimpses_per_rollout(self) -> float:
        """Mean rollout length: chunks are geometric with stop probability p, so E[T] = K / p."""
        return self.tbptt_chunk / self.stop_probability

    def canvit_config(self):
        """The `canvit_model.CanViTConfig` this recipe trains (the model preset plus overrides)."""
        cfg = MODEL_PRESETS[self.model_preset].config
        if self.backbone_override:
            cfg = dataclasses.replace(cfg, **self.backbone_override)
        return cfg

    def validate(self) -> None:
        """Raise ValueError naming the field and its valid range for a recipe that cannot run."""
        checks = [
            ("scene_size", self.scene_size >= 16, ">= 16"),
            ("glimpse_size", 16 <= self.glimpse_size <= self.scene_size, f"in [16, scene_size={self.scene_size}]"),
            ("canvas_grid", self.canvas_grid >= 1, ">= 1"),
            ("min_scale", 0 < self.min_scale <= 1, "in (0, 1]"),
            ("tbptt_chunk", self.tbptt_chunk >= 1, ">= 1"),
            ("stop_probability", 0 < self.stop_probability <= 1, "in (0, 1]"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("steps", self.steps >= 1, ">= 1"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("lr_peak", self.lr_peak > 0, "> 0"),
            ("lr_start", 0 <= self.lr_start, ">= 0"),
            ("grad_clip", self.grad_clip > 0, "> 0"),
            ("amp", self.amp in ("bf16", "fp32"), "'bf16' or 'fp32'"),
            ("log_every", self.log_every >= 1, ">= 1"),
            ("checkpoint_every", self.checkpoint_every >= 1, ">= 1"),
            ("validate_every", self.validate_every >= 0, ">= 0"),
            ("validation_glimpses", self.validation_glimpses >= 1, ">= 1"),
            ("rollouts", len(self.rollouts) >= 1 and all(r in ROLLOUTS for r in self.rollouts),
             f"one or more of {ROLLOUTS}"),
            ("dense_loss/cls_loss", self.dense_loss or self.cls_loss, "at least one loss on"),
        ]
        bad = [f"{name} must be {rule} (got {getattr(self, name.split('/')[0])!r})" for name, ok, rule in checks if not ok]
        if self.model_preset not in MODEL_PRESETS:
            bad.append(f"model_preset must be one of {list(MODEL_PRESETS)} (got {self.model_preset!r})")
        if bad:
            raise ValueError("invalid pretraining config: " + "; ".join(bad))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        """Inverse of `to_dict` (JSON turns tuples into lists)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"pretraining config has unknown fields {unknown}")
        d = dict(d)
        for k in ("rollouts", "betas"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def replace(self, **changes: Any) -> PretrainConfig:
        return dataclasses.replace(self, **changes)


CANVIT_B = PretrainConfig()
_ABLATION = CANVIT_B.replace(steps=215_000, warmup_steps=20_000)

PRESETS: dict[str, PretrainConfig] = {
    "canvit-b": CANVIT_B,
    # Table 3 architecture ablations (a-e, j, k): CanViT-B recipe at the ablation length
    "abl-dcan256": _ABLATION.replace(model_preset="dcan256"),
    "abl-qkvo-dcan256": _ABLATION.replace(model_preset="qkvo-dcan256"),
    "abl-qkvo-dcan384": _ABLATION.replace(model_preset="qkvo-dcan384"),
    "abl-no-reads": _ABLATION.replace(model_preset="no-reads"),
    "abl-rw-stride6": _ABLATION.replace(model_preset="rw-stride6"),
    "abl-vit-s": _ABLATION.replace(model_preset="vit-s"),
    "abl-no-vpe": _ABLATION.replace(model_preset="no-vpe"),
    # Table 3 recipe ablations (f-i)
    "abl-no-dense": _ABLATION.replace(model_preset="no-dense", dense_loss=False),
    "abl-no-fiid-1riid": _ABLATION.replace(model_preset="no-fiid-1riid", rollouts=("r-iid",)),
    "abl-no-fiid-2riid": _ABLATION.replace(model_preset="no-fiid-2riid", rollouts=("r-iid", "r-iid")),
    "abl-no-bptt": _ABLATION.replace(model_preset="no-bptt", tbptt_chunk=1, stop_probability=0.25),
    # the baseline at the ablation length (Table 3's reference row is trained like the ablations)
    "abl-baseline": _ABLATION,
    # a tiny model and a tiny random teacher on generated scenes with online targets: minutes on a CPU
    "smoke": CANVIT_B.replace(
        teacher="tiny-random",
        dataset="synthetic",
        dataset_version="canvit_data.synthetic seed 0",
        preprocessing="Resize(128) + CenterCrop",
        scene_size=128,
        glimpse_size=32,
        canvas_grid=8,
        batch_size=8,
        steps=300,
        warmup_steps=10,
        lr_peak=2e-3,
        amp="fp32",
        log_every=10,
        checkpoint_every=100,
        validate_every=100,
        validation_scenes=8,
        standardizer_samples=64,
        backbone_override=dict(
            backbone_name="test-tiny", canvas_num_heads=2, canvas_head_dim=32, num_canvas_registers=2,
            num_backbone_registers=1, rw_stride=1,
        ),
    ),
}


def preset(name: str) -> PretrainConfig:
    try:
        cfg = PRESETS[name]
    except KeyError:
        raise ValueError(f"preset {name!r} is unknown; valid presets: {', '.join(PRESETS)}") from None
    if cfg.model_preset not in MODEL_PRESETS:  # pragma: no cover - guarded by a test
        raise ValueError(f"preset {name!r} names model preset {cfg.model_preset!r}, which canvit_model lacks")
    return cfg
