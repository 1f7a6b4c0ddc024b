"""One module per figure of the paper: `build(out_dir, ctx) -> list[Path]` (PNGs)."""
