"""The renderer: pandas DataFrame cells (values, Bold, Pending) -> tabulate Markdown / CSV / LaTeX / HTML."""

import io

import pandas as pd
import pytest

from paper.tablelib import (
    REPO, Bold, Context, Pending, Table, check_format, default_results, extension, render_summary, summary_table,
)

CMD = Pending("uv run --package canvit-eval canvit-eval ade20k --policy c2f --seed S", "a GPU, ADE20K")


def _table() -> Table:
    rows = [
        ["C2F", Bold("44.2 ±0.04"), "44.2", CMD],
        ["F2C", "41.1 ±0.08", "41.1", CMD],  # the same command twice: one footnote
        ["R_IID 5%", "—", "41.7", Pending("other --flag", "a CPU")],
    ]
    return Table.from_rows(6, "Demo", ["Policy", "t = 20", "t = 20 (paper)", "t = 9"], rows, ["a note"],
                           ours=["t = 20", "t = 9"])


def test_markdown_has_bold_pending_refs_and_footnotes():
    md = _table().to_markdown()
    lines = md.splitlines()
    assert lines[0] == "### Table 6: Demo"
    assert lines[2].startswith("| Policy") and set(lines[3]) <= set("|-")
    assert "| **44.2 ±0.04** |" in md.replace("  ", " ").replace("  ", " ")
    assert md.count("pending [P1]") == 2 and md.count("pending [P2]") == 1
    assert "- [P1] `uv run --package canvit-eval canvit-eval ade20k --policy c2f --seed S` — needs a GPU, ADE20K" in md
    assert "- [P2] `other --flag` — needs a CPU" in md
    assert "- a note" in md
    assert "P3" not in md


def test_numbers_are_not_reformatted_by_tabulate():
    t = Table.from_rows(1, "x", ["a", "b"], [["15.50", 215.21], ["0.10", 1e-7]], ours=["a"])
    md = t.to_markdown()
    assert "15.50" in md and "0.10" in md and "215.21" in md and "1e-07" in md


def test_counts_only_ours_columns_and_skip_not_applicable_cells():
    t = _table()
    assert t.counts() == (2, 3)  # produced: 44.2, 41.1 ("—" not counted); pending: 3 cells in "t = 9"
    assert len(t.pending()) == 2
    masked = Table(t.number, t.title, t.df, ours=t.ours, ours_rows=[True, False, False])
    assert masked.counts() == (1, 1)


def test_csv_is_plain_values_with_full_pending_text():
    df = pd.read_csv(io.StringIO(_table().to_csv()), dtype=str, keep_default_na=False)
    assert list(df.columns) == ["Policy", "t = 20", "t = 20 (paper)", "t = 9"]
    assert df.loc[0, "t = 20"] == "44.2 ±0.04"  # no bold markup for machines
    assert df.loc[0, "t = 9"] == f"pending: `{CMD.command}` (needs a GPU, ADE20K)"
    assert df.loc[2, "t = 20"] == "—"


@pytest.mark.parametrize("fmt", ["latex", "latex_booktabs"])
def test_latex_escapes_text_and_renders_bold(fmt):
    tex = _table().render(fmt)
    assert r"\textbf{44.2 ±0.04}" in tex
    assert r"R\_IID 5\%" in tex
    assert r"\textbackslash" not in tex  # our markup is not escaped a second time
    assert tex.startswith("% Table 6: Demo")
    assert ("\\toprule" in tex) == (fmt == "latex_booktabs")


def test_html_and_plain_formats():
    h = _table().render("html")
    assert "<b>44.2 ±0.04</b>" in h and "<h3>Table 6: Demo</h3>" in h and "<table>" in h
    plain = _table().render("plain")
    assert plain.startswith("Table 6: Demo") and "**44.2 ±0.04**" in plain and "|" not in plain.splitlines()[2]


def test_write_uses_the_output_names(tmp_path):
    paths = _table().write(tmp_path, ["latex", "plain"])
    assert [p.name for p in paths] == ["table06.csv", "table06.md", "table06.tex", "table06.plain.txt"]
    assert extension("github") == "md" and extension("html") == "html"


def test_bad_rows_and_formats_are_clear_errors():
    with pytest.raises(ValueError, match="has 1 cells for 2 columns"):
        Table.from_rows(1, "x", ["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match=r"ours=\['c'\] are not columns"):
        Table.from_rows(1, "x", ["a", "b"], [["1", "2"]], ours=["c"])
    with pytest.raises(ValueError, match="not a tabulate format; choose one of"):
        check_format("latexx")


def test_summary_counts_per_table_and_total():
    t1 = Table.from_rows(1, "analytical", ["k", "v"], [["a", "1"], ["b", "2"]], ours=["v"])
    tables = [t1, _table()]
    s = summary_table(tables)
    assert s["Produced"].tolist() == [2, 2, 4] and s["Pending"].tolist() == [0, 3, 3]
    assert s["Status"].tolist() == ["complete", "partial", ""]
    md = render_summary(tables)
    assert md.startswith("## Summary: produced vs pending cells")
    assert "| all     |" in md


def test_results_store_default_and_display(monkeypatch, tmp_path):
    monkeypatch.delenv("CANVIT_RESULTS", raising=False)
    assert default_results() == REPO / "results"
    monkeypatch.setenv("CANVIT_RESULTS", str(tmp_path))
    assert default_results() == tmp_path
    assert Context(results=REPO / "results").where == "results" and Context(results=tmp_path).where == str(tmp_path)
