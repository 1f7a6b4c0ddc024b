"""CanViT: a recurrent ViT that reads glimpses and accumulates a scene-wide latent canvas (paper §4).

One step (one glimpse):
    tokens = [VPE?, recurrent CLS, backbone registers, glimpse patches]
    for each backbone block i:
        tokens = block_i(tokens)                       # RoPE at the glimpse's scene positions
        if i reads:  tokens += CanvasRead(tokens, canvas)
        if i writes: canvas += CanvasWrite(canvas, tokens)
    new state = (canvas, tokens[CLS])
The canvas is [canvas registers, G x G spatial tokens]; G is free at run time. The canvas stays float32.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._pytree import register_dataclass
from .config import CanViTConfig
from .geometry import Viewpoint
from .convert import parse_pretraining_config, rename_v01_key
from .hub import MODEL_CARD, PushToHubMixin
from .io import CONFIG_NAME, WEIGHTS_NAME, check_load_options, load_checked, read_json, read_safetensors
from .io import resolve_files, save_atomic
from .layers.canvas_attention import CanvasRead, CanvasWrite
from .layers.fast import CpuMode, check_cpu_mode, cpu_inference, current_cpu_mode
from .layers.heads import PositionStandardizer, Readout
from .layers.rope import grid_rope_tables, rope_periods, rope_tables, unsqueeze_heads
from .layers.vit import ViT
from .layers.vpe import ViewpointEncoding
from .presets import preset


@register_dataclass
@dataclass(frozen=True)
class RecurrentState:
    """What carries over between glimpses: canvas [B, R + G*G, D_can] and recurrent CLS [B, 1, D]."""

    canvas: torch.Tensor
    recurrent_cls: torch.Tensor

    def detach(self) -> RecurrentState:
        """Cut the gradient history (truncated BPTT chunk boundaries)."""
        return RecurrentState(canvas=self.canvas.detach(), recurrent_cls=self.recurrent_cls.detach())


@register_dataclass
@dataclass(frozen=True)
class CanViTOutput:
    state: RecurrentState
    glimpse_patches: torch.Tensor  # [B, g*g, D] backbone patch tokens after the last block
    vpe: torch.Tensor | None  # [B, D] the VPE token after the last block (None without VPE)


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    """A Python int >= minimum (bools are refused: `True` is not a grid size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_config(cfg: Any) -> CanViTConfig:
    if cfg is None:
        return CanViTConfig()
    if not isinstance(cfg, CanViTConfig):
        raise TypeError(f"config must be a canvit_model.CanViTConfig, got {type(cfg).__name__}")
    return cfg


class CanViT(nn.Module):
    """The base CanViT (no readout heads). `model.config` (alias `model.cfg`) is its CanViTConfig."""

    def __init__(self, cfg: CanViTConfig | None = None) -> None:
        super().__init__()
        cfg = _check_config(cfg)
        self.cfg = cfg
        bb = cfg.backbone
        d, dc = bb.dim, cfg.canvas_dim
        self.backbone = ViT(bb)
        self.backbone_registers = nn.Parameter(torch.randn(1, cfg.num_backbone_registers, d) * 0.02)
        self.init_recurrent_cls = nn.Parameter(torch.randn(1, 1, d) / math.sqrt(d))
        self.init_canvas_registers = nn.Parameter(torch.randn(1, cfg.num_canvas_registers, dc) / math.sqrt(dc))
        self.init_canvas_patch = nn.Parameter(torch.randn(1, 1, dc) / math.sqrt(dc))
        self.vpe = ViewpointEncoding(d, seed=cfg.vpe_seed, eps=bb.norm_eps) if cfg.enable_vpe else None
        reads, writes = cfg.schedule()
        qkvo = cfg.canvas_projections == "qkvo"
        self.canvas_reads = nn.ModuleList(
            CanvasRead(d, dc, cfg.canvas_num_heads, qkvo, bb.norm_eps) for _ in reads
        )
        self.canvas_writes = nn.ModuleList(
            CanvasWrite(d, dc, cfg.canvas_num_heads, qkvo, bb.norm_eps) for _ in writes
        )
        # block index -> index into canvas_reads / canvas_writes
        self._read_at = {blk: i for i, blk in enumerate(reads)}
        self._write_at = {blk: i for i, blk in enumerate(writes)}

    @property
    def config(self) -> CanViTConfig:
        """The architecture (canvit-pytorch's name; `cfg` is the same object)."""
        return self.cfg

    @property
    def precision(self) -> CpuMode | None:
        """CPU inference mode of this model's forward: "fp32" (oneDNN fast path, same numbers to ~1e-6),
        "bf16" (opt-in: bf16 linears, canvas / RoPE / VPE / LayerNorm / residuals fp32), "eager", or None
        (default: follow `canvit_model.cpu_inference`, itself "fp32"). Only CPU float32 inference without
        autograd in eval() is affected; see canvit_model.layers.fast for the rule."""
        return self.__dict__.get("_precision")

    @precision.setter
    def precision(self, mode: CpuMode | None) -> None:
        self.__dict__["_precision"] = None if mode is None else check_cpu_mode(mode)

    @classmethod
    def from_preset(cls, name: str) -> CanViT:
        """A randomly initialised CanViT of a named preset (`canvit_model.PRESETS`: CanViT-B, Table 3 rows)."""
        return cls(preset(name).config)

    # -- state -----------------------------------------------------------------------------------

    @property
    def num_canvas_registers(self) -> int:
        return self.cfg.num_canvas_registers

    @property
    def backbone_dim(self) -> int:
        return self.cfg.backbone.dim

    @property
    def canvas_dim(self) -> int:
        return self.cfg.canvas_dim

    @property
    def patch_size(self) -> int:
        return self.cfg.backbone.patch_size

    def init_state(self, batch_size: int, canvas_grid_size: int) -> RecurrentState:
        """A fresh canvas (registers + one learned patch broadcast to G x G) and the initial CLS."""
        batch_size = _check_int(batch_size, "batch_size")
        canvas_grid_size = _check_int(canvas_grid_size, "canvas_grid_size")
        n = canvas_grid_size**2
        regs = self.init_canvas_registers.expand(batch_size, -1, -1)
        patches = self.init_canvas_patch.expand(batch_size, n, -1)
        canvas = torch.cat([regs, patches], dim=1)  # [B, R + G*G, D_can]
        cls = self.init_recurrent_cls.expand(batch_size, -1, -1).clone()  # [B, 1, D]
        return RecurrentState(canvas=canvas, recurrent_cls=cls)

    def canvas_grid_size(self, canvas: torch.Tensor) -> int:
        """G for a canvas [B, R + G*G, D_can]; raises if the token count is not R + a square."""
        n = canvas.shape[1] - self.num_canvas_registers
        g = math.isqrt(max(n, 0))
        if n < 1 or g * g != n:
            raise ValueError(
                f"canvas has {canvas.shape[1]} tokens; expected {self.num_canvas_registers} registers + G*G "
                f"spatial tokens for some grid size G >= 1"
            )
        return g

    def canvas_patches(self, canvas: torch.Tensor) -> torch.Tensor:
        """The spatial canvas tokens, registers dropped: [B, G*G, D_can] (row-major)."""
        self.canvas_grid_size(canvas)
        return canvas[:, self.num_canvas_registers :]

    def canvas_patch_grid(self, canvas: torch.Tensor) -> torch.Tensor:
        """The spatial canvas tokens as a grid: [B, G, G, D_can]."""
        g = self.canvas_grid_size(canvas)
        return canvas[:, self.num_canvas_registers :].unflatten(1, (g, g))

    # -- one glimpse -----------------------------------------------------------------------------

    def forward(
        self,
        glimpse: torch.Tensor,
        state: RecurrentState,
        viewpoint: Viewpoint,
        canvas_grid_size: int | None = None,
    ) -> CanViTOutput:
        """Process one glimpse [B, 3, g*p, g*p] seen from `viewpoint`; returns the updated state."""
        if self.precision is not None and current_cpu_mode() != self.precision:
            with cpu_inference(self.precision):  # the model's own CPU inference mode (see `precision`)
                return self.forward(glimpse, state, viewpoint, canvas_grid_size)
        cfg = self.cfg
        b, grid = self._check_inputs(glimpse, state, viewpoint, canvas_grid_size)
        glimpse, state = self._cast_inputs(glimpse, state)
        viewpoint = viewpoint.to(glimpse.device)
        n_prefix = cfg.num_local_prefix
        g = glimpse.shape[-1] // cfg.backbone.patch_size

        # Scene-relative positions (float32): glimpse patches move with the viewpoint, the canvas is fixed.
        local_pos = viewpoint.positions(g)  # [B, g*g, 2]
        canvas_periods = rope_periods(cfg.canvas_head_dim, cfg.backbone.rope_base, device=glimpse.device)
        backbone_rope = self.backbone.rope(local_pos, n_prefix)
        local_rope = unsqueeze_heads(rope_tables(local_pos, canvas_periods, n_prefix))
        canvas_rope = grid_rope_tables(
            grid, cfg.canvas_head_dim, cfg.backbone.rope_base, cfg.num_canvas_registers, glimpse.device
        )  # [R + G*G, hd], cached per grid size

        patches = self.backbone.patch_embed(glimpse)  # [B, g*g, D]
        tokens = [state.recurrent_cls, self.backbone_registers.expand(b, -1, -1), patches]
        if self.vpe is not None:
            tokens.insert(0, self.vpe(viewpoint)[:, None].to(patches.dtype))
        x = torch.cat(tokens, dim=1)  # [B, n_prefix + g*g, D]

        canvas = state.canvas
        for i, block in enumerate(self.backbone.blocks):
            x = block(x, backbone_rope)
            if i in self._read_at:
                x = x + self.canvas_reads[self._read_at[i]](x, canvas, local_rope, canvas_rope)
            if i in self._write_at:
                canvas = self.canvas_writes[self._write_at[i]].update(canvas, x, canvas_rope, local_rope)

        cls_index = int(cfg.enable_vpe)
        return CanViTOutput(
            # a standard-strided copy: a [B, 1, D] view of x would change strides between glimpses
            state=RecurrentState(canvas=canvas, recurrent_cls=x[:, cls_index : cls_index + 1].clone(
                memory_format=torch.contiguous_format)),
            glimpse_patches=x[:, n_prefix:],
            vpe=x[:, 0] if cfg.enable_vpe else None,
        )

    def _cast_inputs(self, glimpse: torch.Tensor, state: RecurrentState) -> tuple[torch.Tensor, RecurrentState]:
        """Bring a glimpse / state of another float dtype (float64 input, a bf16 model fed float32, ...)
        to the weights' dtype, so no layer sees mixed dtypes. Under autocast a float32 state stays
        float32 (paper D.3: the canvas is kept in float32); for float32 weights and inputs this is a no-op."""
        w = self.backbone.patch_embed.proj.weight.dtype
        if glimpse.dtype != w:
            glimpse = glimpse.to(w)
        try:
            autocast = torch.is_autocast_enabled(glimpse.device.type)
        except (TypeError, RuntimeError):  # a device type without autocast
            autocast = False

        def cast(t: torch.Tensor) -> torch.Tensor:
            if t.dtype == w or (autocast and t.dtype == torch.float32):
                return t
            return t.to(w)

        canvas, cls = cast(state.canvas), cast(state.recurrent_cls)
        if canvas is not state.canvas or cls is not state.recurrent_cls:
            state = RecurrentState(canvas=canvas, recurrent_cls=cls)
        return glimpse, state

    def _check_inputs(
        self, glimpse: torch.Tensor, state: RecurrentState, viewpoint: Viewpoint, canvas_grid_size: int | None
    ) -> tuple[int, int]:
        p = self.cfg.backbone.patch_size
        for name, value, kind in (("glimpse", glimpse, "a [B, 3, H, W] image tensor"),
                                  ("state", state, "a RecurrentState (from init_state or a previous output)"),
                                  ("viewpoint", viewpoint, "a canvit_model.Viewpoint")):
            if value is None:
                raise TypeError(f"{name} must be {kind}, got None")
        if not isinstance(state, RecurrentState):
            raise TypeError(
                f"state must be a RecurrentState (from init_state or a previous output), got {type(state).__name__}"
            )
        if not isinstance(viewpoint, Viewpoint):
            raise TypeError(f"viewpoint must be a canvit_model.Viewpoint, got {type(viewpoint).__name__}")
        if canvas_grid_size is not None:
            _check_int(canvas_grid_size, "canvas_grid_size")
        if not isinstance(glimpse, torch.Tensor) or glimpse.ndim != 4 or glimpse.shape[1] != 3:
            shape = list(glimpse.shape) if isinstance(glimpse, torch.Tensor) else type(glimpse).__name__
            raise ValueError(f"glimpse must be a [B, 3, H, W] image tensor, got {shape}")
        if not glimpse.is_floating_point():
            raise ValueError(f"glimpse must be a floating-point (normalized) image, got dtype {glimpse.dtype}")
        h, w = glimpse.shape[-2:]
        if h != w:
            raise ValueError(f"glimpse must be square, got {h}x{w} px")
        if h % p or h < p:
            raise ValueError(f"glimpse side must be a positive multiple of the patch size {p} px, got {h} px")
        w_dev = self.backbone.patch_embed.proj.weight.device
        if glimpse.device != w_dev and w_dev.type != "meta":
            raise ValueError(f"glimpse is on {glimpse.device} but the model is on {w_dev}: move one of them")
        b = glimpse.shape[0]
        if viewpoint.batch_size != b:
            raise ValueError(f"viewpoint has batch size {viewpoint.batch_size}, glimpse has {b}")
        canvas, cls = state.canvas, state.recurrent_cls
        for name, t in (("state.canvas", canvas), ("state.recurrent_cls", cls)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
            if t.device != glimpse.device:
                raise ValueError(f"{name} is on {t.device} but glimpse is on {glimpse.device}: move both to one device")
        d, dc = self.cfg.backbone.dim, self.cfg.canvas_dim
        if canvas.ndim != 3 or canvas.shape[0] != b or canvas.shape[2] != dc:
            raise ValueError(f"state.canvas must be [B={b}, R + G*G, {dc}], got {list(canvas.shape)}")
        if cls.shape != (b, 1, d):
            raise ValueError(f"state.recurrent_cls must be [B={b}, 1, {d}], got {list(cls.shape)}")
        for name, t in (("state.canvas", canvas), ("state.recurrent_cls", cls)):
            if not t.is_floating_point():
                raise ValueError(f"{name} must be floating point, got dtype {t.dtype}")
        grid = self.canvas_grid_size(canvas)
        if canvas_grid_size is not None and canvas_grid_size != grid:
            raise ValueError(
                f"canvas_grid_size={canvas_grid_size} does not match the state's canvas grid {grid} "
                f"({canvas.shape[1]} tokens = {self.num_canvas_registers} registers + {grid}x{grid})"
            )
        return b, grid


def canvit_num_params(config: CanViTConfig) -> int:
    """Parameters of the base CanViT (no readout heads, no buffers) of `config`: Table 3's "Params"."""
    with torch.device("meta"):  # shapes only: no memory allocated
        model = CanViT(_check_config(config))
    return sum(p.numel() for p in model.parameters())


class CanViTForPretraining(PushToHubMixin, nn.Module):
    """CanViT plus the teacher-space readouts and standardizers used for dense latent distillation.

    Drop-in for canvit-pytorch's class of the same name (inference surface and checkpoint layout).
    """

    def __init__(
        self,
        canvit_config: CanViTConfig | None = None,
        teacher_dim: int = 768,
        teacher_patch_grid: int = 32,
    ) -> None:
        super().__init__()
        cfg = _check_config(canvit_config)
        teacher_dim = _check_int(teacher_dim, "teacher_dim")
        teacher_patch_grid = _check_int(teacher_patch_grid, "teacher_patch_grid")
        self.canvit_config = cfg
        self.teacher_dim = teacher_dim
        self.teacher_patch_grid = teacher_patch_grid
        self.canvit = CanViT(cfg)
        self.teacher_patch_readout = Readout(cfg.canvas_dim, teacher_dim)
        self.teacher_cls_readout = Readout(cfg.backbone.dim, teacher_dim)
        self.teacher_patch_standardizer = PositionStandardizer(teacher_patch_grid**2, teacher_dim)
        self.teacher_cls_standardizer = PositionStandardizer(1, teacher_dim)
        self.hub_extra: dict[str, Any] = {}  # config.json "metadata" / "training" carried through save/load

    @property
    def config(self) -> CanViTConfig:
        """The CanViT architecture (canvit-pytorch's name); also `cfg` and `canvit_config`."""
        return self.canvit_config

    @property
    def cfg(self) -> CanViTConfig:
        return self.canvit_config

    @property
    def precision(self) -> CpuMode | None:
        """The CPU inference mode of the CanViT forward (`CanViT.precision`)."""
        return self.canvit.precision

    @precision.setter
    def precision(self, mode: CpuMode | None) -> None:
        self.canvit.precision = mode

    @classmethod
    def from_preset(cls, name: str, *, teacher_dim: int = 768, teacher_patch_grid: int = 32) -> CanViTForPretraining:
        """Randomly initialised weights for a named preset (`canvit_model.PRESETS`: "canvitb16" and every
        Table 3 row, e.g. "no-vpe", "vit-s"), with readouts for a `teacher_dim` teacher on a
        `teacher_patch_grid`² grid (DINOv3 ViT-B/16 on 512 px scenes: 768, 32)."""
        return cls(preset(name).config, teacher_dim=teacher_dim, teacher_patch_grid=teacher_patch_grid)

    def init_state(self, batch_size: int, canvas_grid_size: int) -> RecurrentState:
        return self.canvit.init_state(batch_size=batch_size, canvas_grid_size=canvas_grid_size)

    def forward(
        self,
        glimpse: torch.Tensor,
        state: RecurrentState,
        viewpoint: Viewpoint,
        canvas_grid_size: int | None = None,
    ) -> CanViTOutput:
        return self.canvit(glimpse, state, viewpoint, canvas_grid_size)

    def predict_teacher_patches(self, canvas: torch.Tensor) -> torch.Tensor:
        """Standardized teacher patch predictions from the canvas spatial tokens: [B, G*G, teacher_dim]."""
        return self.teacher_patch_readout(self.canvit.canvas_patches(canvas))

    def predict_teacher_cls(self, recurrent_cls: torch.Tensor) -> torch.Tensor:
        """Standardized teacher CLS prediction from the recurrent CLS [B, 1, D]: [B, teacher_dim]."""
        if recurrent_cls.ndim != 3 or recurrent_cls.shape[1] != 1:
            raise ValueError(f"recurrent_cls must be [B, 1, D], got {list(recurrent_cls.shape)}")
        return self.teacher_cls_readout(recurrent_cls[:, 0])

    # -- checkpoints (files: io.py; layouts: convert.py) -------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str],
        *,
        map_location: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> CanViTForPretraining:
        """Load a checkpoint (config.json + model.safetensors, canvit-pytorch 0.2 or 0.1 layout), in eval mode.

        path_or_id: a local directory, or a hub repo id "owner/name" (downloaded and cached by huggingface_hub).
        map_location: device for the weights ("cpu", "cuda", torch.device). dtype: cast every floating
        weight (e.g. torch.bfloat16); None keeps the stored float32 (prefer autocast, paper D.3).
        revision: hub branch / tag / commit ("canvit-pytorch-0.1" for the old layout). token: hub token
        (default: `hf auth login` / HF_TOKEN). cache_dir: hub cache. local_files_only: never download.
        """
        device, dtype = check_load_options(map_location, dtype)
        files = resolve_files(
            path_or_id, [CONFIG_NAME, WEIGHTS_NAME], revision=revision, token=token, cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        raw = read_json(files[CONFIG_NAME])
        cfg, teacher_dim, grid, layout = parse_pretraining_config(raw, source=os.fspath(files[CONFIG_NAME]))
        state_dict = read_safetensors(files[WEIGHTS_NAME])
        if layout == "0.1":
            state_dict = {rename_v01_key(k): v for k, v in state_dict.items()}
        model = cls(cfg, teacher_dim=teacher_dim, teacher_patch_grid=grid)
        load_checked(model, state_dict, source=f"{os.fspath(path_or_id)} ({layout} layout)")
        model.hub_extra = {k: raw[k] for k in ("metadata", "training") if k in raw}
        return model.to(device=device, dtype=dtype).eval()

    def config_dict(self) -> dict[str, Any]:
        """config.json of the canvit-pytorch 0.2 layout (plus the "metadata" / "training" it was loaded with)."""
        cfg = {
            "canvit_config": self.canvit_config.to_dict(),
            "teacher_dim": self.teacher_dim,
            "teacher_patch_grid": self.teacher_patch_grid,
        }
        cfg.update(self.hub_extra)
        return cfg

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write config.json + model.safetensors (+ README.md) in the canvit-pytorch 0.2 layout, atomically."""
        return save_atomic(save_directory, self.config_dict(), self.state_dict(), readme=MODEL_CARD)
