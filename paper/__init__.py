"""The paper's tables and figures, regenerated: `uv run paper/make_tables.py` (see paper/README.md).

`paper.tables.tableNN` and `paper.figures.figureNN` each expose `build`; `paper.tablelib` renders tables and
`paper.sources` reads the results store and names the commands that fill it.
"""
