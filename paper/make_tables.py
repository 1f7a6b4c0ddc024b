"""Regenerate the paper's tables from what the packages compute.

    uv run paper/make_tables.py                 # all tables -> paper/out/tableNN.{csv,md}
    uv run paper/make_tables.py --only 1 3      # some of them
    uv run paper/make_tables.py --out DIR       # elsewhere
    uv run paper/make_tables.py --no-figures    # tables only

Each table lives in paper/tables/tableNN.py and exposes build() -> list[Table]; each figure lives in
paper/figures/figureNN.py and exposes build(out_dir) -> list[Path] (PNGs, matplotlib Agg). `--only`
selects tables; figures are built on full runs (no --only) unless --no-figures. Cells that need
data or hardware we do not have say so, and name the command that produces them.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tablelib import Table  # noqa: E402


def table_modules() -> dict[int, Path]:
    mods = {}
    for path in sorted((HERE / "tables").glob("table[0-9][0-9].py")):
        mods[int(path.stem[5:])] = path
    return mods


def figure_modules() -> dict[int, Path]:
    return {int(p.stem[6:]): p for p in sorted((HERE / "figures").glob("figure[0-9][0-9].py"))}


def build_figures(out_dir: Path) -> list[Path]:
    paths: list[Path] = []
    for path in figure_modules().values():
        paths.extend(load(path).build(out_dir))
    return paths


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"paper_tables_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_tables(only: list[int] | None = None) -> list[Table]:
    mods = table_modules()
    if only:
        unknown = sorted(set(only) - set(mods))
        if unknown:
            raise SystemExit(f"no script for table(s) {unknown}; available: {sorted(mods)}")
    tables: list[Table] = []
    for number, path in mods.items():
        if only and number not in only:
            continue
        tables.extend(load(path).build())
    return tables


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", type=int, nargs="+", metavar="N", help="table numbers to build (default: all)")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="output directory (default: paper/out)")
    ap.add_argument("--quiet", action="store_true", help="do not print the tables")
    ap.add_argument("--no-figures", action="store_true", help="do not build paper/figures/figureNN.py")
    args = ap.parse_args(argv)
    tables = build_tables(args.only)
    md = []
    for t in tables:
        t.write(args.out)
        md.append(t.to_markdown())
        if not args.quiet:
            print(t.to_markdown())
    (args.out / "tables.md").write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {len(tables)} table(s) to {args.out}/ (tableNN.csv, tableNN.md, tables.md)")
    if not args.no_figures and not args.only:
        figs = build_figures(args.out)
        print(f"wrote {len(figs)} figure(s): {', '.join(p.name for p in figs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
