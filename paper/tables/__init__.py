"""One module per table of the paper: `build(ctx) -> list[paper.tablelib.Table]`."""
