"""Table 18: the selected hyperparameters of each DINOv3 IN1k probe (built with Table 17, from the same runs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tablelib import Context, Table, default_results

_spec = importlib.util.spec_from_file_location("paper_tables_table17_for18", Path(__file__).with_name("table17.py"))
t17 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t17)


def build(ctx: Context | None = None) -> list[Table]:
    ctx = ctx or Context(results=default_results())
    return [t17.table18(ctx, t17.best_epochs(ctx))]
