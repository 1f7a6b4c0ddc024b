"""Table 9: the primitive FLOP formulas, rendered from the ones the FLOP counter computes
(`canvit_eval.flops.PRIMITIVES`: each row's expression is what `canvit_eval.flops.formula_text` prints and
what the counter's function returns, tested), next to the paper's."""

from __future__ import annotations

from canvit_eval import flops
from canvit_model import CanViTConfig

from paper.tablelib import Table

# The paper's Table 9 as printed: operation -> (operation with its arguments, cost per, formula).
PAPER = {
    "Linear": ("Linear(d_in, d_out)", "token", "2 d_in d_out"),
    "LN": ("LN(d)", "token", "5d"),
    "GELU": ("GELU(d)", "token", "≈ 8d"),
    "RoPE_apply": ("RoPE_apply(d)", "token", "4d"),
    "SDPA": ("SDPA(n_q, n_kv, d)", "total", "4 n_q n_kv d"),
    "Softmax": ("Softmax(n_q, n_kv)", "total", "5 n_q n_kv"),
    "Conv2d": ("Conv2d(H, W, c_in, c_out, k)", "total", "2 H W c_in c_out k²"),
    "PatchEmbed": ("PatchEmbed(N_p, p, d)", "total", "2 N_p p² · 3 · d"),
}


def examples() -> dict[str, tuple[dict[str, int], str]]:
    """Per operation: arguments where CanViT-B uses it (128 px glimpse, 32x32 canvas) and what that is."""
    cfg = CanViTConfig()
    vit = cfg.backbone
    n_local, n_canvas = flops.canvit_token_counts(cfg, 128 // vit.patch_size, 32)
    d_can = cfg.canvas_num_heads * cfg.canvas_head_dim
    return {
        "Linear": (dict(d_in=vit.dim, d_out=3 * vit.dim), "QKV projection of a backbone block"),
        "LN": (dict(d=vit.dim), "a backbone LayerNorm"),
        "GELU": (dict(d=vit.ffn_hidden), "the backbone MLP's hidden layer"),
        "RoPE_apply": (dict(d=vit.dim), "rotating one backbone query (or key)"),
        "SDPA": (dict(n_q=n_local, n_kv=n_canvas, d=d_can), "a Canvas Read (local tokens query the canvas)"),
        "Softmax": (dict(n_q=n_local, n_kv=n_canvas), "its attention scores"),
        "Conv2d": (dict(h=32, w=32, c_in=d_can, c_out=flops.ADE20K_CLASSES, k=1), "the ADE20K probe (1x1) on the canvas"),
        "PatchEmbed": (dict(n_patches=(128 // vit.patch_size) ** 2, p=vit.patch_size, d=vit.dim, c_in=3),
                       "a 128 px glimpse"),
    }


def operation(p: flops.Primitive) -> str:
    return f"{p.operation}({', '.join(flops.SYMBOLS[a] for a in p.args)})"


def build() -> list[Table]:
    ex = examples()
    rows = []
    for p in flops.PRIMITIVES:
        args, where = ex[p.operation]
        per = "token" if p.per_token else "total"
        value = f"{p.cost(**args):,}" + (" per token" if p.per_token else "")
        example = f"{p.operation}({', '.join(str(args[a]) for a in p.args)}) = {value}: {where}"
        paper_op, paper_per, paper_formula = PAPER[p.operation]
        rows.append([operation(p), paper_op, per, paper_per, flops.formula_text(p), paper_formula,
                     "yes" if p.in_totals else "no", example, f"flops.{p.fn.__name__}"])
    notes = [
        "Ours: canvit_eval.flops.PRIMITIVES, the functions the counter composes into every block, model and "
        "table (Tables 3, 5, 10, 12-16, Figure 7); FLOPs is each row's expression in Table 8's symbols, and a "
        "test checks it evaluates to the counter function's value. Per token: the counter multiplies by n.",
        "In totals = no: listed as in the paper, left out of every total (with biases and residuals).",
        "Conv2d: ours counts the H x W output positions, equal to the input size for the stride-1 'same' "
        "convolutions counted (AdaGlimpse's CNN head; the 1x1 probe costs the same as a Conv2d or as the "
        "Linear the counter uses). PatchEmbed: c_in general (3 = RGB gives the paper's · 3 ·).",
        "Example: the counter's value at CanViT-B's sizes (canvit_model.CanViTConfig(), 128 px glimpse, 32x32 "
        "canvas).",
    ]
    cols = ["Operation", "Operation (paper)", "Per", "Per (paper)", "FLOPs", "FLOPs (paper)", "In totals",
            "Example", "Counter"]
    return [Table.from_rows(9, "Primitive operation FLOP formulas", cols, rows, notes,
                            ours=["Operation", "FLOPs", "Example"])]
