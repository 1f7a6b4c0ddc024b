"""Table 14: the AdaGlimpse architecture (built by table12.py's code from canvit_eval.flops.ADAGLIMPSE)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from canvit_eval import flops
from tablelib import Table

_spec = importlib.util.spec_from_file_location("paper_tables_table12_for14", Path(__file__).with_name("table12.py"))
t12 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t12)


def build() -> list[Table]:
    return [t12.table(14, "AdaGlimpse", flops.ADAGLIMPSE, t12.PAPER_14, True, "ADAGLIMPSE")]
