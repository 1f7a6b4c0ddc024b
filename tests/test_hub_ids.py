"""No hub id is typed outside `canvit_model/releases.py`: every string constant of every Python file under
`packages/*/src` and `paper/` (docstrings, help texts and the literal parts of f-strings included) is scanned
with `ast` for an id of the registry's owners (`canvit/...`, `facebook/...`, templates and globs too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from canvit_model import releases

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = Path(releases.__file__).resolve()
# `owner/` at the start of a word, then the first character of a repo name (or a template's `{`, a glob's `*`).
HUB_ID = re.compile(rf"(?<![\w.-])(?:{'|'.join(map(re.escape, releases.OWNERS))})/[\w*{{]")


def hub_id_literals(path: Path) -> list[str]:
    """`file:line: text` for every string constant of a Python file (docstrings, help texts, the literal
    parts of f-strings included) that holds a hub id of the registry's owners."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    hits = sorted((node.lineno, HUB_ID.search(node.value).group(0)) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and HUB_ID.search(node.value))
    return [f"{path}:{line}: {text}..." for line, text in hits]


def sources() -> list[Path]:
    files = [p for d in sorted((ROOT / "packages").glob("*/src")) for p in d.rglob("*.py")]
    files += [p for p in (ROOT / "paper").rglob("*.py") if "out" not in p.relative_to(ROOT / "paper").parts[:1]]
    return files


def test_no_hub_id_literal_outside_the_registry():
    files = sources()
    assert REGISTRY in files and len(files) > 50  # the scan sees the repository, registry included
    assert hub_id_literals(REGISTRY), "the scanner finds the registry's own ids"
    found = [hit for p in files if p != REGISTRY for hit in hub_id_literals(p)]
    assert not found, "hub ids belong in canvit_model/releases.py; read them from there:\n" + "\n".join(found)


def test_the_scanner_sees_docstrings_fstrings_and_templates(tmp_path):
    src = tmp_path / "x.py"
    src.write_text('"""Load facebook/dinov3-vitb16-pretrain-lvd1689m."""\n'
                   'def f(s):\n    return f"canvit/probe-ade20k-s{s}"\n'
                   'G = "the published `canvit/dinov3-*-probe` repos"\n'
                   'OK = ("facebookresearch/dinov3", "packages/canvit-model", "canvit_model/releases.py")\n')
    assert [h.split(": ")[0].rsplit(":", 1)[1] for h in hub_id_literals(src)] == ["1", "3", "4"]
