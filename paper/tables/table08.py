"""Table 8: the notation of Appendix G, from the FLOP counter's own definitions (`canvit_eval.flops.NOTATION`:
each symbol, its meaning, the counter's argument names for it and the functions that take them), next to the
paper's. Table 9's formulas are written in these symbols."""

from __future__ import annotations

import inspect

from canvit_eval import flops

from paper.tablelib import Table

# The paper's Table 8 as printed (symbol, meaning); some rows name two symbols.
PAPER_ROWS = [
    ("n", "Sequence length (number of tokens)"),
    ("n_q, n_kv", "Query and key/value sequence lengths"),
    ("N_p", "Number of patches"),
    ("d", "Embedding dimension"),
    ("c_in, c_out", "Input and output channel counts"),
    ("L", "Number of Transformer blocks (depth)"),
    ("T", "Number of glimpses (timesteps)"),
    ("g", "Patches per glimpse"),
    ("p", "Patch size (pixels per side)"),
    ("H, W", "Convolution spatial input size"),
    ("k", "Convolution kernel size (pixels per side)"),
]
PAPER = {s.strip(): row for row in PAPER_ROWS for s in row[0].split(",")}  # symbol -> its paper row


def users(args: tuple[str, ...]) -> list[str]:
    """The counter's public functions with a parameter named in `args`, and the architecture tables
    (flops.AME, flops.ADAGLIMPSE) with such a key."""
    fns = [name for name, f in inspect.getmembers(flops, inspect.isfunction)
           if f.__module__ == flops.__name__ and not name.startswith("_")
           and set(inspect.signature(f).parameters) & set(args)]
    archs = [name for name in ("AME", "ADAGLIMPSE") if set(getattr(flops, name)) & set(args)]
    return fns + archs


def build() -> list[Table]:
    rows = []
    for s in flops.NOTATION:
        paper_symbol, paper_meaning = PAPER.get(s.symbol, ("—", "—"))
        rows.append([s.symbol, s.meaning, ", ".join(s.args), ", ".join(users(s.args)) or "—", paper_symbol,
                     paper_meaning])
    notes = [
        "Ours: canvit_eval.flops.NOTATION; Arguments = the counter's names for the symbol (function parameters "
        "and keys of flops.AME / flops.ADAGLIMPSE); Used by = the public functions and architecture tables of "
        "canvit_eval.flops that take one (read from their signatures).",
        "d_in, d_out are the widths in Table 9's Linear, not rows of the paper's Table 8; the paper's H, W are the "
        "convolution input size, ours the output positions (the same for the stride-1 'same' convolutions counted).",
    ]
    cols = ["Symbol", "Meaning", "Arguments", "Used by", "Symbol (paper)", "Meaning (paper)"]
    return [Table.from_rows(8, "Notation (Appendix G)", cols, rows, notes, ours=["Arguments", "Used by"])]
