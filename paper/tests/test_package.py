"""`paper` is a package: its modules import each other by name (no sys.path patches, no loading by file path),
`make_tables.py` runs as a script from any directory, and paper code imports no command module."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import paper

PAPER = Path(paper.__file__).resolve().parent
OURS = ("canvit_model", "canvit_results", "canvit_data", "canvit_train", "canvit_eval", "dinov3_probes")


def _sources(tests: bool = False) -> list[Path]:
    return [p for p in sorted(PAPER.rglob("*.py")) if p.relative_to(PAPER).parts[0] != "out"
            and (tests or p.relative_to(PAPER).parts[0] != "tests")]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and not n.level:  # `from a import b`: a, and a.b if a module
            names |= {n.module} | {f"{n.module}.{a.name}" for a in n.names}
    return names


def test_no_path_patches_or_loading_by_file():
    bad = []
    for p in _sources(tests=True):
        if p == Path(__file__).resolve():
            continue
        text = p.read_text(encoding="utf-8")
        for needle in ("sys.path", "spec_from_file_location", "importlib.util"):
            if needle in text:
                bad.append(f"{p.relative_to(PAPER)}: {needle}")
    assert len(_sources(tests=True)) > 25 and not bad, bad


def test_tables_and_figures_import_each_other_by_name():
    from paper.figures import figure04, figure08
    from paper.tables import table06, table12, table14, table17, table18, table19

    assert figure04.t6 is table06 and figure08.t19 is table19
    assert table14.t12 is table12 and table18.t17 is table17


def _is_command(module: str) -> bool:
    """A module with a command-line entry point (`main` or `build_parser`)."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name in ("main", "build_parser") for n in tree.body)


def test_paper_imports_no_command_module():
    ours = {m for p in _sources() for m in _imports(p) if m.split(".")[0] in OURS}
    assert "canvit_eval.flops" in ours  # the scan sees paper's imports
    assert _is_command("canvit_eval.cli")  # ... and would see a command module
    assert not [m for m in sorted(ours) if m.split(".")[0] in OURS and _is_command(m)]
    code = ("import sys, paper.make_tables, paper.sources\n"
            "print(sorted(m for m in sys.modules if m.startswith(('canvit_eval.', 'canvit_train.'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_make_tables_runs_as_a_script_from_another_directory(tmp_path):
    r = subprocess.run([sys.executable, str(PAPER / "make_tables.py"), "--only", "1", "--out", str(tmp_path / "o"),
                        "--quiet"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "table01.md").is_file()
