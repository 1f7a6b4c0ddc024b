"""Table 18: the selected hyperparameters of each DINOv3 IN1k probe (built with Table 17, from the same runs)."""

from __future__ import annotations

from paper.tablelib import Context, Table, default_results
from paper.tables import table17 as t17


def build(ctx: Context | None = None) -> list[Table]:
    ctx = ctx or Context(results=default_results())
    return [t17.table18(ctx, t17.best_epochs(ctx))]
