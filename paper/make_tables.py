"""Regenerate the paper's tables and figures from what the packages compute and the results store holds.

    uv run paper/make_tables.py                          # all tables + figures -> paper/out/
    uv run paper/make_tables.py --only 4 6 7             # some tables
    uv run paper/make_tables.py --results DIR            # another results store ($CANVIT_RESULTS also works)
    uv run paper/make_tables.py --format latex plain     # also tableNN.tex, tableNN.plain.txt, tables.tex, ...
    uv run paper/make_tables.py --out DIR --no-figures   # elsewhere, tables only

Each table lives in paper/tables/tableNN.py and exposes build(ctx) -> list[Table] (a pandas DataFrame
rendered with tabulate); each figure lives in paper/figures/figureNN.py and exposes build(out_dir, ctx)
-> list[Path] (PNGs, matplotlib Agg). Writes tableNN.csv (machines), tableNN.md and tables.md
(Markdown, with a produced-vs-pending summary at the top). A cell we have not produced says
"pending [Pn]" and the table's notes give command Pn and what it needs (GPU, dataset, checkpoint).
The results layout and which command fills which table: paper/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from pathlib import Path

from paper.tablelib import Context, Table, check_format, default_results, extension, render_summary

HERE = Path(__file__).resolve().parent


def table_modules() -> dict[int, str]:
    """{table number: module name} of paper/tables/tableNN.py."""
    return {int(p.stem[5:]): f"paper.tables.{p.stem}" for p in sorted((HERE / "tables").glob("table[0-9][0-9].py"))}


def figure_modules() -> dict[int, str]:
    """{figure number: module name} of paper/figures/figureNN.py."""
    return {int(p.stem[6:]): f"paper.figures.{p.stem}" for p in sorted((HERE / "figures").glob("figure[0-9][0-9].py"))}


def load(name: str):
    """A table or figure module by name (`paper.tables.table03`)."""
    return importlib.import_module(name)


def _call(fn, *args, ctx: Context):
    """Builders take ctx as their last parameter; analytical ones may take none."""
    n = len(inspect.signature(fn).parameters)
    return fn(*args, ctx) if n > len(args) else fn(*args)


def build_tables(only: list[int] | None = None, ctx: Context | None = None) -> list[Table]:
    ctx = ctx or Context(results=default_results())
    mods = table_modules()
    if only:
        unknown = sorted(set(only) - set(mods))
        if unknown:
            raise SystemExit(f"no script for table(s) {unknown}; available: {sorted(mods)}")
    tables: list[Table] = []
    for number, name in mods.items():
        if only and number not in only:
            continue
        tables.extend(_call(load(name).build, ctx=ctx))
    return tables


def build_figures(out_dir: Path, ctx: Context | None = None) -> list[Path]:
    ctx = ctx or Context(results=default_results())
    paths: list[Path] = []
    for name in figure_modules().values():
        paths.extend(_call(load(name).build, out_dir, ctx=ctx))
    return paths


def write_all(tables: list[Table], out: Path, formats: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for t in tables:
        t.write(out, formats)
    for fmt in ["github", *formats]:
        text = render_summary(tables, fmt) + "\n" + "\n".join(t.render(fmt) for t in tables)
        (out / f"tables.{extension(fmt)}").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", type=int, nargs="+", metavar="N", help="table numbers to build (default: all)")
    from canvit_results.cli import output_dir

    ap.add_argument("--out", type=lambda v: Path(output_dir(v)), default=HERE / "out",
                    help="output directory (default: paper/out)")
    ap.add_argument("--results", type=Path, default=None,
                    help="results store to read, an existing directory (default: $CANVIT_RESULTS, else results/ at the "
                         "repository root; one not created yet reads as empty)")
    ap.add_argument("--format", nargs="+", default=[], metavar="FMT", dest="formats",
                    help="extra tabulate formats to write beside Markdown and CSV (latex, latex_booktabs, plain, "
                         "simple, grid, html, rst, ...); the first one is also what is printed")
    ap.add_argument("--model", default=None, metavar="LABEL",
                    help="show only this model's runs: its label as the tables print it (e.g. final@1a2b3c4d), "
                         "the digest or name part of it, or the checkpoint path / hub id (default: the released "
                         "CanViT-B if present, else every model, rows labelled)")
    ap.add_argument("--quiet", action="store_true", help="do not print the tables")
    ap.add_argument("--no-figures", action="store_true", help="do not build paper/figures/figureNN.py")
    args = ap.parse_args(argv)
    try:
        formats = list(dict.fromkeys(check_format(f) for f in args.formats))
    except ValueError as e:
        ap.error(str(e))
    results = args.results if args.results is not None else default_results()
    if args.results is not None and not results.is_dir():  # a mistyped path; the default may not exist yet
        ap.error(f"--results {results}: " + ("not a directory" if results.exists() else "no such directory"))
    if args.results is None and os.environ.get("CANVIT_RESULTS") and not results.is_dir():
        print(f"make_tables: note: $CANVIT_RESULTS={results} does not exist (yet): every measured cell is pending",
              file=sys.stderr)
    available = set(table_modules())
    if args.only and set(args.only) - available:
        ap.error(f"--only {' '.join(map(str, sorted(set(args.only) - available)))}: no such table; "
                 f"available: {' '.join(map(str, sorted(available)))}")
    ctx = Context(results=results, model=args.model)
    tables = build_tables(args.only, ctx)
    write_all(tables, args.out, [f for f in formats if f != "github"])
    if not args.quiet:
        fmt = formats[0] if formats else "github"
        print(render_summary(tables, fmt))
        for t in tables:
            print(t.render(fmt))
    produced = sum(t.counts()[0] for t in tables)
    pending = sum(t.counts()[1] for t in tables)
    print(f"wrote {len(tables)} table(s) to {args.out}/ (tableNN.csv, tableNN.md, tables.md): "
          f"{produced} cells produced, {pending} pending; results store: {results}")
    if not args.no_figures and not args.only:
        figs = build_figures(args.out, ctx)
        print(f"wrote {len(figs)} figure(s): {', '.join(p.name for p in figs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
