"""Paper tables as pandas DataFrames, rendered with tabulate (Markdown, CSV, LaTeX, plain text, ...).

A table's cells are display values (strings, numbers, None), `Bold(value)` for the paper's bold marks,
or `Pending(command, needs)` for a cell we have not produced. Columns listed in `Table.ours` hold our
own values; their cells are what the produced / pending counts of `tables.md` add up.
"""

from __future__ import annotations

import functools
import html
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]

# tabulate formats that read as Markdown (tables.md, tableNN.md use "github").
MARKDOWN_FORMATS = ("github", "pipe")
LATEX_FORMATS = ("latex", "latex_raw", "latex_booktabs", "latex_longtable")
HTML_FORMATS = ("html", "unsafehtml")
NOT_APPLICABLE = ("", "—", "-")


@dataclass(frozen=True)
class Pending:
    """A cell we have not produced: the exact command that produces it and what that command needs."""

    command: str
    needs: str

    def text(self) -> str:
        return f"pending: `{self.command}` (needs {self.needs})"

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True)
class Bold:
    """A value the paper would print in bold (e.g. the best policy at a timestep)."""

    value: Any

    def __str__(self) -> str:
        return _plain(self.value)


@dataclass(frozen=True)
class Context:
    """What the table and figure builders read: the results store and the latency CSVs."""

    results: Path = REPO / "results"
    latency_csvs: Sequence[Path] | None = None  # None: benchmarks/results/*.csv of the repository
    model: str | None = None  # make_tables --model: only this model's runs (its label, name or checkpoint)

    @property
    def where(self) -> str:
        """The results store as the notes show it: relative to the repository when inside it."""
        try:
            return str(Path(self.results).resolve().relative_to(REPO))
        except ValueError:
            return str(self.results)


def default_results() -> Path:
    """$CANVIT_RESULTS, else `results/` at the repository root."""
    env = os.environ.get("CANVIT_RESULTS")
    return Path(env) if env else REPO / "results"


@dataclass
class Table:
    """One paper table as produced by our code. `notes` explain the cells; `ours` names the columns
    holding our values (the counted cells); `ours_rows` (optional, one bool per row) restricts the
    count to some rows, e.g. Table 19's measured rows."""

    number: int
    title: str
    df: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    ours: Sequence[str] = ()
    ours_rows: Sequence[bool] | None = None

    def __post_init__(self) -> None:
        missing = [c for c in self.ours if c not in self.df.columns]
        if missing:
            raise ValueError(f"Table {self.number}: ours={missing} are not columns of {list(self.df.columns)}")
        if self.ours_rows is not None and len(self.ours_rows) != len(self.df):
            raise ValueError(f"Table {self.number}: ours_rows has {len(self.ours_rows)} entries for {len(self.df)} rows")

    @classmethod
    def from_rows(cls, number: int, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                  notes: Iterable[str] = (), ours: Sequence[str] = (),
                  ours_rows: Sequence[bool] | None = None) -> Table:
        rows = [list(r) for r in rows]
        for r in rows:
            if len(r) != len(columns):
                raise ValueError(f"Table {number}: row {r!r} has {len(r)} cells for {len(columns)} columns")
        df = pd.DataFrame(rows, columns=list(columns), dtype=object)
        return cls(number, title, df, list(notes), ours, ours_rows)

    @property
    def stem(self) -> str:
        return f"table{self.number:02d}"

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.df.columns]

    @property
    def rows(self) -> list[list[Any]]:
        return self.df.astype(object).values.tolist()

    def pending(self) -> list[Pending]:
        """The distinct pending cells in order of appearance (row by row)."""
        seen: dict[Pending, None] = {}
        for r in self.rows:
            for v in r:
                if isinstance(v, Pending):
                    seen.setdefault(v, None)
        return list(seen)

    def counts(self) -> tuple[int, int]:
        """(produced, pending) cells among the `ours` columns; empty and "—" cells are not counted."""
        produced = pending = 0
        mask = list(self.ours_rows) if self.ours_rows is not None else [True] * len(self.df)
        for keep, (_, row) in zip(mask, self.df.iterrows()):
            if not keep:
                continue
            for c in self.ours:
                v = row[c]
                if isinstance(v, Pending):
                    pending += 1
                elif not _empty(v):
                    produced += 1
        return produced, pending

    # -- rendering ------------------------------------------------------------------------------------

    def render(self, fmt: str = "github") -> str:
        """Title, the table in tabulate format `fmt`, notes, and the commands behind pending cells."""
        refs = {p: f"P{i + 1}" for i, p in enumerate(self.pending())}
        body = [[cell_text(v, fmt, refs) for v in r] for r in self.rows]
        header = [escape(c, fmt) for c in self.columns]
        table = tabulate(body, headers=header, tablefmt=_raw_format(fmt), disable_numparse=True)
        lines = _notes(fmt, [*self.notes, *(f"[{refs[p]}] `{p.command}` — needs {p.needs}" for p in refs)])
        return "\n".join([heading(f"Table {self.number}: {self.title}", fmt), "", table, *lines]) + "\n"

    def to_markdown(self) -> str:
        return self.render("github")

    def to_csv(self) -> str:
        """Plain values for machines: pending cells carry their full command, no bold marks."""
        df = self.df.map(lambda v: v.text() if isinstance(v, Pending) else _plain(v))
        return df.to_csv(index=False, lineterminator="\n")

    def write(self, out_dir: Path, formats: Sequence[str] = ()) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{self.stem}.csv", out_dir / f"{self.stem}.md"]
        paths[0].write_text(self.to_csv(), encoding="utf-8")
        paths[1].write_text(self.to_markdown(), encoding="utf-8")
        for fmt in formats:
            if fmt in MARKDOWN_FORMATS and fmt == "github":
                continue
            p = out_dir / f"{self.stem}.{extension(fmt)}"
            p.write_text(self.render(fmt), encoding="utf-8")
            paths.append(p)
        return paths


def extension(fmt: str) -> str:
    """File extension of a tabulate format's rendering (tableNN.<ext>, tables.<ext>)."""
    if fmt in MARKDOWN_FORMATS:
        return "md" if fmt == "github" else f"{fmt}.md"
    if fmt in LATEX_FORMATS:
        return "tex" if fmt in ("latex", "latex_raw") else f"{fmt}.tex"
    if fmt in HTML_FORMATS:
        return "html"
    if fmt in ("tsv", "rst", "mediawiki", "textile", "jira", "asciidoc"):
        return fmt
    return f"{fmt}.txt"


def _raw_format(fmt: str) -> Any:
    """tabulate's format with its own escaping turned off: cells arrive escaped and marked up by us."""
    if fmt == "latex":
        return "latex_raw"
    if fmt == "html":
        return "unsafehtml"
    if fmt in ("latex_booktabs", "latex_longtable"):
        import tabulate as _t

        base = _t._table_formats[fmt]
        row = functools.partial(_t._latex_row, escrules={})
        return base._replace(headerrow=row, datarow=row)
    return fmt


def check_format(fmt: str) -> str:
    from tabulate import tabulate_formats

    if fmt not in tabulate_formats:
        raise ValueError(f"--format {fmt!r} is not a tabulate format; choose one of: {', '.join(tabulate_formats)}")
    return fmt


def _plain(v: Any) -> str:
    if isinstance(v, Bold):
        return _plain(v.value)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _empty(v: Any) -> bool:
    return _plain(v).strip() in NOT_APPLICABLE


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str, fmt: str) -> str:
    if fmt in LATEX_FORMATS and fmt != "latex_raw":
        return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
    if fmt in HTML_FORMATS and fmt != "unsafehtml":
        return html.escape(text)
    return text


def cell_text(v: Any, fmt: str, refs: dict[Pending, str]) -> str:
    """One cell in format `fmt`: bold as the format writes it, pending as a reference to its command."""
    if isinstance(v, Pending):
        return escape(f"pending [{refs[v]}]", fmt)
    if isinstance(v, Bold):
        inner = escape(_plain(v.value), fmt)
        if not inner:
            return inner
        if fmt in LATEX_FORMATS:
            return rf"\textbf{{{inner}}}"
        if fmt in HTML_FORMATS:
            return f"<b>{inner}</b>"
        if fmt in ("rst",):
            return f"**{inner}**"
        if fmt in ("mediawiki", "moinmoin"):
            return f"'''{inner}'''"
        if fmt in ("jira", "textile", "asciidoc"):
            return f"*{inner}*"
        return f"**{inner}**"  # Markdown, and a readable mark in plain-text formats
    return escape(_plain(v), fmt)


def heading(text: str, fmt: str, level: int = 3) -> str:
    if fmt in LATEX_FORMATS:
        return f"% {text}"
    if fmt in HTML_FORMATS:
        return f"<h{level}>{html.escape(text)}</h{level}>"
    if fmt in MARKDOWN_FORMATS:
        return f"{'#' * level} {text}"
    return text


def _notes(fmt: str, notes: list[str]) -> list[str]:
    if not notes:
        return []
    if fmt in LATEX_FORMATS:
        return ["", *(f"% {n}" for n in notes)]
    if fmt in HTML_FORMATS:
        return ["<ul>", *(f"<li>{html.escape(n)}</li>" for n in notes), "</ul>"]
    return ["", *(f"- {n}" for n in notes)]


def summary_table(tables: Sequence[Table]) -> pd.DataFrame:
    """Produced vs pending cells per table (the head of tables.md)."""
    rows = []
    for t in tables:
        produced, pending = t.counts()
        rows.append({"Table": t.number, "Title": t.title, "Produced": produced, "Pending": pending,
                     "Status": "complete" if pending == 0 else ("pending" if produced == 0 else "partial")})
    df = pd.DataFrame(rows, columns=["Table", "Title", "Produced", "Pending", "Status"])
    total = {"Table": "all", "Title": "", "Produced": int(df["Produced"].sum()) if len(df) else 0,
             "Pending": int(df["Pending"].sum()) if len(df) else 0, "Status": ""}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def render_summary(tables: Sequence[Table], fmt: str = "github") -> str:
    df = summary_table(tables).astype(str)
    body = tabulate(df.values.tolist(), headers=list(df.columns), tablefmt=fmt, disable_numparse=True)
    intro = ("Cells we produced vs cells pending (each pending cell names the command that produces it, "
             "listed under its table as [Pn]). Counted cells are our own values; the paper's columns are "
             "not counted.")
    if fmt in LATEX_FORMATS:
        intro = f"% {intro}"
    return "\n".join([heading("Summary: produced vs pending cells", fmt, 2), "", intro, "", body]) + "\n"
