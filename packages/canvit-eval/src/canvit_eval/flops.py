"""Analytical forward FLOPs (paper Appendix G): primitives, ViT blocks, CanViT, DINOv3, AME, AdaGlimpse.

One multiply-add = 2 FLOPs; forward pass only; batch size 1. Every function returns a `Breakdown`
(a dict of named components in raw FLOPs, with `.total` and `.gflops`), so tables can show parts.

Two counting conventions (the `convention` argument everywhere):

``"matmul"``
    Only matrix multiplications and convolutions: what `torch.utils.flop_counter.FlopCounterMode`
    counts, and what the authors' FLOP code and its tests count (linear = 2*N*in*out, attention =
    4*Nq*Nk*D, patch embedding as a linear 3p^2 -> D, VPE = [3] x [3, D/2], probe = 1x1 conv).
    Reproduces: Table 3 (GFLOPs per glimpse), the reference values asserted by the authors' tests
    (CanViT-B glimpse c32 15.48, c64 20.84; DINOv3-B 512 px 215.04; ...).
``"paper"``
    The Appendix G formulas as printed: the above plus LayerNorm (5d per token, 2 per ViT block, 2
    per Canvas Attention op) and RoPE_apply (4d per rotated token: 2n*RoPE(d) per RoPE block; the
    canvas/local terms of eqs. 21-22). Softmax, GELU, biases and residuals are left out, as the
    paper says. Models with sinusoidal positions (AME, AdaGlimpse) get LN but no RoPE term.
    Reproduces: Table 5 (DINOv3-B 512 px 215.21; CanViT rows = glimpse + probe), Table 10,
    Table 13, Table 15, Table 16 and Figure 7.

The per-table choice (and why) is documented in each paper/tables/tableNN.py. `PRIMITIVES` lists the
primitives with their formulas and `NOTATION` the symbols (paper Tables 9 and 8, rendered from them).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from canvit_model import CanViTConfig, ViTConfig
from canvit_model.config import backbone_config

Convention = Literal["matmul", "paper"]
CONVENTIONS: tuple[Convention, ...] = ("matmul", "paper")

ADE20K_CLASSES = 150
DINOV3_REGISTERS = 4  # DINOv3 ViTs: 1 CLS + 4 register tokens before the patches


class Breakdown(dict):
    """Named FLOP components (raw FLOPs). `total` sums them; `gflops` is `total / 1e9`."""

    @property
    def total(self) -> float:
        return float(sum(self.values()))

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    def g(self) -> dict[str, float]:
        """Components in GFLOPs."""
        return {k: v / 1e9 for k, v in self.items()}

    def __add__(self, other: Breakdown) -> Breakdown:
        out = Breakdown(self)
        for k, v in other.items():
            out[k] = out.get(k, 0) + v
        return out

    def scaled(self, factor: float) -> Breakdown:
        return Breakdown({k: v * factor for k, v in self.items()})

    def grouped(self, prefix: str) -> Breakdown:
        """Collapse all components into a single one named `prefix`."""
        return Breakdown({prefix: self.total})


def _check(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; valid: {CONVENTIONS}")


# -- primitives (paper Table 9) ------------------------------------------------------------------


def linear(n: int, d_in: int, d_out: int) -> int:
    """n tokens through Linear(d_in, d_out): 2 n d_in d_out (bias ignored)."""
    return 2 * n * d_in * d_out


def layernorm(n: int, d: int) -> int:
    """LN(d) = 5d per token (mean, variance, normalize, scale, shift)."""
    return 5 * n * d


def gelu(n: int, d: int) -> int:
    """GELU(d) ~ 8d per token (tanh approximation). Listed in Table 9, omitted from every total."""
    return 8 * n * d


def rope_apply(n: int, d: int) -> int:
    """RoPE_apply(d) = 4d per rotated token."""
    return 4 * n * d


def sdpa(n_q: int, n_kv: int, d: int) -> int:
    """Both attention products (QK^T and AV), d summed over heads: 4 n_q n_kv d."""
    return 4 * n_q * n_kv * d


def softmax(n_q: int, n_kv: int) -> int:
    """5 per score. Listed in Table 9, omitted from every total."""
    return 5 * n_q * n_kv


def conv2d(h: int, w: int, c_in: int, c_out: int, k: int) -> int:
    """Conv2d evaluated at h x w output positions: 2 h w c_in c_out k^2."""
    return 2 * h * w * c_in * c_out * k * k


def patch_embed(n_patches: int, p: int, d: int, c_in: int = 3) -> int:
    """Patch embedding (a stride-p Conv2d) = a linear from c_in p^2 to d on each patch."""
    return 2 * n_patches * p * p * c_in * d


# -- the primitives as a table (paper Tables 8 and 9) -------------------------------------------


@dataclass(frozen=True)
class Primitive:
    """One row of Table 9: an operation, its cost as a Python expression over the arguments of the counter's
    function `fn` (per token: `fn` multiplies it by n), and whether totals count it."""

    operation: str  # the paper's name
    fn: Callable[..., int]  # the counter's function (this module)
    expr: str  # the cost as a Python expression over fn's arguments (no n for per-token costs)
    per_token: bool
    in_totals: bool = True  # softmax and GELU are listed by the paper but left out of every total
    approx: bool = False  # GELU: the tanh approximation's polynomial

    @property
    def args(self) -> tuple[str, ...]:
        names = list(inspect.signature(self.fn).parameters)
        return tuple(names[1:] if self.per_token else names)

    def cost(self, **args: int) -> int:
        """The counter's value: fn per token (n = 1) or in total."""
        return self.fn(1, **args) if self.per_token else self.fn(**args)


PRIMITIVES: tuple[Primitive, ...] = (
    Primitive("Linear", linear, "2 * d_in * d_out", per_token=True),
    Primitive("LN", layernorm, "5 * d", per_token=True),
    Primitive("GELU", gelu, "8 * d", per_token=True, in_totals=False, approx=True),
    Primitive("RoPE_apply", rope_apply, "4 * d", per_token=True),
    Primitive("SDPA", sdpa, "4 * n_q * n_kv * d", per_token=False),
    Primitive("Softmax", softmax, "5 * n_q * n_kv", per_token=False, in_totals=False),
    Primitive("Conv2d", conv2d, "2 * h * w * c_in * c_out * k**2", per_token=False),
    Primitive("PatchEmbed", patch_embed, "2 * n_patches * p**2 * c_in * d", per_token=False),
)


@dataclass(frozen=True)
class Symbol:
    """One row of Table 8: a symbol of Appendix G and the names this module's functions give it."""

    symbol: str  # as written in the formulas (subscripts with _)
    meaning: str
    args: tuple[str, ...]  # argument names (and AME / ADAGLIMPSE keys) that hold it


NOTATION: tuple[Symbol, ...] = (
    Symbol("n", "Sequence length (number of tokens)", ("n", "n_local", "n_canvas")),
    Symbol("n_q", "Query sequence length", ("n_q",)),
    Symbol("n_kv", "Key/value sequence length", ("n_kv",)),
    Symbol("N_p", "Number of patches", ("n_patches", "num_patches")),
    Symbol("d", "Embedding dimension", ("d", "d_enc", "d_dec", "d_canvas", "d_local")),
    Symbol("d_in", "Input width of a linear map", ("d_in",)),
    Symbol("d_out", "Output width of a linear map", ("d_out",)),
    Symbol("c_in", "Input channel count", ("c_in",)),
    Symbol("c_out", "Output channel count", ("c_out",)),
    Symbol("L", "Number of Transformer blocks (depth)", ("depth", "depth_enc", "depth_dec")),
    Symbol("T", "Number of glimpses (timesteps)", ("num_glimpses",)),
    Symbol("g", "Patches per glimpse", ("patches_per_glimpse",)),
    Symbol("p", "Patch size (pixels per side)", ("p", "patch_size")),
    Symbol("H", "Convolution spatial size: height (output positions)", ("h",)),
    Symbol("W", "Convolution spatial size: width (output positions)", ("w",)),
    Symbol("k", "Convolution kernel size (pixels per side)", ("k",)),
)
SYMBOLS = {a: s.symbol for s in NOTATION for a in s.args}  # argument name -> symbol


def formula_text(prim: Primitive) -> str:
    """The cost of `prim` in the paper's symbols: "2 * d_in * d_out" -> "2 d_in d_out", k**2 -> k²."""
    tokens = re.findall(r"[A-Za-z_]\w*|\d+|\*\*|\*", prim.expr)
    out, power = [], False
    for tok in tokens:
        if tok == "**":
            power = True
        elif tok == "*":
            continue
        elif power:
            out[-1] += str(tok).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
            power = False
        else:
            out.append(SYMBOLS.get(tok, tok))
    return ("≈ " if prim.approx else "") + " ".join(out)


# -- ViT block (G.2) -----------------------------------------------------------------------------


def vit_block(
    n: int,
    d: int,
    ffn_hidden: int | None = None,
    *,
    swiglu: bool = False,
    rope: bool = True,
    convention: Convention = "matmul",
) -> Breakdown:
    """One pre-norm Transformer block on n tokens of width d (eq. 18).

    The MLP has 2 matrices (d -> h -> d; h = 4d by default) or, for SwiGLU, 3 (two d -> h, one h -> d).
    Under the "paper" convention: + 2 LN(d) per token and, with RoPE, 2n RoPE_apply(d) for Q and K.
    """
    _check(convention)
    h = 4 * d if ffn_hidden is None else ffn_hidden
    out = Breakdown(
        qkv=linear(n, d, 3 * d),
        attn=sdpa(n, n, d),
        proj=linear(n, d, d),
        mlp=(3 if swiglu else 2) * linear(n, d, h),
    )
    if convention == "paper":
        out["norm"] = 2 * layernorm(n, d)
        if rope:
            out["rope"] = 2 * rope_apply(n, d)
    return out


def vit_config_block(cfg: ViTConfig, n: int, convention: Convention = "matmul", rope: bool = True) -> Breakdown:
    """`vit_block` for a canvit_model ViTConfig (GELU MLP or SwiGLU, its ffn_hidden)."""
    return vit_block(n, cfg.dim, cfg.ffn_hidden, swiglu=cfg.mlp == "swiglu", rope=rope, convention=convention)


# -- CanViT (G.3) --------------------------------------------------------------------------------


def canvas_read(
    n_local: int, n_canvas: int, d_local: int, d_canvas: int, *, qkvo: bool = False,
    convention: Convention = "matmul",
) -> Breakdown:
    """Canvas Read (eq. 21): local tokens query the canvas.

    Asymmetric: q_map (d_local -> d_canvas) on local tokens, attention (n_local x n_canvas, d_canvas),
    o_map (d_canvas -> d_local). QKVO adds k_map and v_map (d_canvas -> d_canvas) on canvas tokens.
    """
    _check(convention)
    out = Breakdown(
        q_proj=linear(n_local, d_local, d_canvas),
        attn=sdpa(n_local, n_canvas, d_canvas),
        o_proj=linear(n_local, d_canvas, d_local),
    )
    if qkvo:
        out["canvas_kv_proj"] = 2 * linear(n_canvas, d_canvas, d_canvas)
    if convention == "paper":
        out["norm"] = layernorm(n_local, d_local) + layernorm(n_canvas, d_canvas)
        out["rope"] = rope_apply(n_local, d_canvas) + rope_apply(n_canvas, d_canvas)
    return out


def canvas_write(
    n_local: int, n_canvas: int, d_local: int, d_canvas: int, *, qkvo: bool = False,
    convention: Convention = "matmul",
) -> Breakdown:
    """Canvas Write (eq. 22): canvas tokens query the local tokens.

    Asymmetric: k_map, v_map (d_local -> d_canvas) on local tokens, attention (n_canvas x n_local,
    d_canvas). QKVO adds q_map and o_map (d_canvas -> d_canvas) on canvas tokens.
    The RoPE term follows eq. 22 as printed (n_local RoPE_apply(d_local)), although the rotated keys
    are d_canvas wide; the difference is 4 n_local (d_canvas - d_local) FLOPs (< 1e-4 G for CanViT-B).
    """
    _check(convention)
    out = Breakdown(
        kv_proj=2 * linear(n_local, d_local, d_canvas),
        attn=sdpa(n_canvas, n_local, d_canvas),
    )
    if qkvo:
        out["canvas_qo_proj"] = 2 * linear(n_canvas, d_canvas, d_canvas)
    if convention == "paper":
        out["norm"] = layernorm(n_canvas, d_canvas) + layernorm(n_local, d_local)
        out["rope"] = rope_apply(n_canvas, d_canvas) + rope_apply(n_local, d_local)
    return out


def vpe(d: int, convention: Convention = "matmul") -> Breakdown:
    """Viewpoint encoding: [3] x [3, d/2] random Fourier features (+ its LN(d) under "paper")."""
    _check(convention)
    out = Breakdown(vpe=2 * 3 * (d // 2))
    if convention == "paper":
        out["vpe_norm"] = layernorm(1, d)
    return out


def segmentation_head(canvas_grid: int, d_canvas: int, num_classes: int = ADE20K_CLASSES) -> int:
    """C_seg: a 1x1 conv (d_canvas -> num_classes) on the G^2 spatial canvas tokens."""
    return linear(canvas_grid * canvas_grid, d_canvas, num_classes)


def canvit_token_counts(cfg: CanViTConfig, glimpse_grid: int, canvas_grid: int) -> tuple[int, int]:
    """(N_local, N_can): [VPE?, CLS, registers, g^2 patches] and [canvas registers, G^2 tokens]."""
    return cfg.num_local_prefix + glimpse_grid**2, cfg.num_canvas_registers + canvas_grid**2


def canvit_glimpse(
    cfg: CanViTConfig | None = None,
    *,
    glimpse_px: int = 128,
    canvas_grid: int = 32,
    convention: Convention = "matmul",
    seg_head: bool = False,
    num_classes: int = ADE20K_CLASSES,
) -> Breakdown:
    """One CanViT glimpse (eq. 19): patch embed + VPE + backbone blocks + reads + writes (+ seg head).

    Components: patch_embed, vpe, blocks, reads, writes, [seg_head]. The number of reads/writes comes
    from `cfg.schedule()`; QKVO vs asymmetric from `cfg.canvas_projections`.
    """
    _check(convention)
    cfg = cfg or CanViTConfig()
    bb = cfg.backbone
    p = bb.patch_size
    if glimpse_px % p:
        raise ValueError(f"glimpse_px={glimpse_px} must be a multiple of the patch size {p}")
    g = glimpse_px // p
    n_l, n_c = canvit_token_counts(cfg, g, canvas_grid)
    d, dc = bb.dim, cfg.canvas_dim
    reads, writes = cfg.schedule()
    qkvo = cfg.canvas_projections == "qkvo"
    out = Breakdown(patch_embed=patch_embed(g * g, p, d))
    out["vpe"] = vpe(d, convention).total if cfg.enable_vpe else 0
    out["blocks"] = bb.depth * vit_config_block(bb, n_l, convention).total
    out["reads"] = len(reads) * canvas_read(n_l, n_c, d, dc, qkvo=qkvo, convention=convention).total
    out["writes"] = len(writes) * canvas_write(n_l, n_c, d, dc, qkvo=qkvo, convention=convention).total
    if seg_head:
        out["seg_head"] = segmentation_head(canvas_grid, dc, num_classes)
    return out


# -- DINOv3 (G.4) --------------------------------------------------------------------------------


def dinov3(
    backbone: str | ViTConfig = "vitb16",
    height: int = 512,
    width: int | None = None,
    *,
    convention: Convention = "matmul",
    num_registers: int = DINOV3_REGISTERS,
) -> Breakdown:
    """A DINOv3 ViT on an H x W image (eq. 23): patch embed + L blocks on 1 + 4 + (H/p)(W/p) tokens.

    `backbone` is a key of `canvit_model.config.BACKBONES` (vits16, vits16plus, vitb16, vitl16,
    vith16plus) or a ViTConfig; SwiGLU models count 3 MLP matrices. Non-square inputs are fine.
    """
    _check(convention)
    cfg = backbone_config(backbone) if isinstance(backbone, str) else backbone
    width = height if width is None else width
    p = cfg.patch_size
    if height % p or width % p:
        raise ValueError(f"input {height}x{width} px must be a multiple of the patch size {p}")
    n_p = (height // p) * (width // p)
    n = 1 + num_registers + n_p
    return Breakdown(
        patch_embed=patch_embed(n_p, p, cfg.dim),
        blocks=cfg.depth * vit_config_block(cfg, n, convention).total,
    )


# -- MAE-style active-vision baselines: AME (G.5) and AdaGlimpse (G.6) ---------------------------


def cumulative_encoder(
    *, d: int, depth: int, patch_size: int, patches_per_glimpse: int, num_glimpses: int,
    convention: Convention = "paper",
) -> Breakdown:
    """Sum over t = 0..T-1 of PatchEmbed(g(t+1)) + L ViTBlock(g(t+1) + 1, d): re-encoding all
    accumulated patches at every step (O(T^2)). Sinusoidal positions: no RoPE term."""
    _check(convention)
    pe = blocks = 0
    for t in range(num_glimpses):
        n_vis = patches_per_glimpse * (t + 1)
        pe += patch_embed(n_vis, patch_size, d)
        blocks += depth * vit_block(n_vis + 1, d, rope=False, convention=convention).total
    return Breakdown(patch_embed=pe, blocks=blocks)


def mae_decoder_step(*, d: int, depth: int, num_patches: int, convention: Convention = "paper") -> Breakdown:
    """L_dec ViTBlock(N_patches + 1, d_dec): the decoder sees every patch position + CLS each step."""
    return Breakdown(blocks=depth * vit_block(num_patches + 1, d, rope=False, convention=convention).total)


# AME (Pardy et al.; paper Table 12): ViT-L encoder, 512-d 8-block decoder, 128x256 px images,
# 16 px patches (8 x 16 = 128 positions), 3x3-patch glimpses, per-patch ADE20K head.
AME = dict(d_enc=1024, depth_enc=24, d_dec=512, depth_dec=8, patch_size=16, patches_per_glimpse=9,
           image_hw=(128, 256), num_classes=ADE20K_CLASSES)
# AdaGlimpse (Pardy et al.; paper Table 14): ViT-B encoder, 512-d 8-block decoder, 224x224 px
# images (14 x 14 = 196 positions), 3x3-patch glimpses, a 6-layer CNN head (see adaglimpse_cnn_head).
ADAGLIMPSE = dict(d_enc=768, depth_enc=12, d_dec=512, depth_dec=8, patch_size=16, patches_per_glimpse=9,
                  image_hw=(224, 224), num_classes=ADE20K_CLASSES)


def ame_head(convention: Convention = "paper") -> int:
    """N_patches Linear(d_dec, p^2 num_classes): per-patch pixel-class logits."""
    a = AME
    n = (a["image_hw"][0] // a["patch_size"]) * (a["image_hw"][1] // a["patch_size"])
    return linear(n, a["d_dec"], a["patch_size"] ** 2 * a["num_classes"])


def _reencoding_costs(arch: dict, num_glimpses: int, convention: Convention) -> tuple[Breakdown, int, int]:
    """Shared by AME and AdaGlimpse: (cumulative encoder over T steps, one decoder step, T + 1 decodes)."""
    n_pos = (arch["image_hw"][0] // arch["patch_size"]) * (arch["image_hw"][1] // arch["patch_size"])
    enc = cumulative_encoder(d=arch["d_enc"], depth=arch["depth_enc"], patch_size=arch["patch_size"],
                             patches_per_glimpse=arch["patches_per_glimpse"], num_glimpses=num_glimpses,
                             convention=convention)
    dec = mae_decoder_step(d=arch["d_dec"], depth=arch["depth_dec"], num_patches=n_pos, convention=convention)
    return enc, dec.total, num_glimpses + 1


def ame(num_glimpses: int = 8, convention: Convention = "paper") -> Breakdown:
    """C_AME(T) (Table 13): cumulative encoder over T steps + (T + 1) x (decoder + head).

    Components: encoder_patch_embed, encoder_blocks, decoder_blocks, decoder_head.
    """
    enc, dec_step, k = _reencoding_costs(AME, num_glimpses, convention)
    return Breakdown(
        encoder_patch_embed=enc["patch_embed"],
        encoder_blocks=enc["blocks"],
        decoder_blocks=k * dec_step,
        decoder_head=k * ame_head(convention),
    )


def adaglimpse_cnn_head(num_classes: int = ADE20K_CLASSES) -> Breakdown:
    """AdaGlimpse's CNN upsampling head, 14x14 -> 224x224 (paper Table 14: "6 layers"), one step.

    The paper gives only "6 layers (14x14 -> 224x224)" and the per-step cost, 84.3 G (Table 15);
    we reconstruct a head that matches it (not taken from the AdaGlimpse code):

        conv3x3  512 -> 512  at  14 x  14     0.92 G
        x2 up, conv3x3  512 -> 256  at  28 x  28     1.85 G
        x2 up, conv3x3  256 -> 256  at  56 x  56     3.70 G
        x2 up, conv3x3  256 -> 256  at 112 x 112    14.80 G
        x2 up, conv3x3  256 -> 256  at 224 x 224    59.19 G
        conv1x1  256 -> 150 (ADE20K classes) at 224 x 224   3.85 G
                                                 total 84.31 G

    i.e. the 512-d decoder grid is kept at 512 channels for one 3x3 conv, then four
    (bilinear x2 upsample + 3x3 conv) stages at width 256, then a 1x1 classifier; upsampling is
    parameter-free and not counted. 84.3149 G per step makes Table 15's decoder 853.9 G and total
    911.3 G come out exactly (with the 10.56 G ViT decoder and the 57.44 G encoder), which pins the
    per-step CNN cost to [84.313, 84.324) G; 9 x 84.3 = 758.7 as printed.
    """
    return Breakdown(
        conv0_14=conv2d(14, 14, 512, 512, 3),
        conv1_28=conv2d(28, 28, 512, 256, 3),
        conv2_56=conv2d(56, 56, 256, 256, 3),
        conv3_112=conv2d(112, 112, 256, 256, 3),
        conv4_224=conv2d(224, 224, 256, 256, 3),
        classifier_224=conv2d(224, 224, 256, num_classes, 1),
    )


def adaglimpse(num_glimpses: int = 8, convention: Convention = "paper") -> Breakdown:
    """C_AdaGlimpse(T) (Table 15): cumulative encoder + (T + 1) x (ViT decoder + CNN head).

    Components: encoder_patch_embed, encoder_blocks, decoder_vit, decoder_cnn.
    """
    enc, dec_step, k = _reencoding_costs(ADAGLIMPSE, num_glimpses, convention)
    return Breakdown(
        encoder_patch_embed=enc["patch_embed"],
        encoder_blocks=enc["blocks"],
        decoder_vit=k * dec_step,
        decoder_cnn=k * adaglimpse_cnn_head(ADAGLIMPSE["num_classes"]).total,
    )


def round_half_up(x: float, ndigits: int) -> float:
    """Round like a printed table does (0.05 -> 0.1), robust to binary representation error."""
    q = 10**ndigits
    return math.floor(x * q + 0.5 + 1e-9) / q
