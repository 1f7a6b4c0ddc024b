"""Table 14: the AdaGlimpse architecture (built by table12.py's code from canvit_eval.flops.ADAGLIMPSE)."""

from __future__ import annotations

from canvit_eval import flops

from paper.tablelib import Table
from paper.tables import table12 as t12


def build() -> list[Table]:
    return [t12.table(14, "AdaGlimpse", flops.ADAGLIMPSE, t12.PAPER_14, True, "ADAGLIMPSE")]
