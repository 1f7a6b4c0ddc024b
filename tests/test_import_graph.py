"""The workspace's import graph, read from the source with `ast` (nothing is imported or executed).

Rules (README, "One implementation of each idea"): no import circle anywhere in `packages/*/src` or
`paper/`; `canvit_model` imports no other workspace package; `canvit_train`, `canvit_eval` and
`dinov3_probes` never import each other (what they share lives in canvit-model, canvit-results or
canvit-data). Every import statement counts, also those inside functions and `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = {"canvit_model", "canvit_train", "canvit_eval", "dinov3_probes", "canvit_results", "canvit_data", "paper"}
INDEPENDENT = ("canvit_train", "canvit_eval", "dinov3_probes")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every package under packages/*/src and for paper/."""
    out: dict[str, Path] = {}
    bases = [(src, src) for src in sorted(root.glob("packages/*/src"))]
    if (root / "paper").is_dir():
        bases.append((root, root / "paper"))
    for base, top in bases:
        for path in sorted(top.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if any(p.startswith(".") or p in ("tests", "__pycache__") for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, importer: str, modules: dict[str, Path]) -> str | None:
    """The graph node an imported dotted name refers to: the longest known module prefix. Scripts under
    paper/ that import a sibling by bare name (`import sources`) resolve to that sibling."""
    candidates = [name]
    if importer.split(".")[0] == "paper":
        pkg = importer.rsplit(".", 1)[0] if importer.count(".") else importer
        candidates += [f"{pkg}.{name}", f"paper.{name}"]
    for cand in candidates:
        parts = cand.split(".")
        for n in range(len(parts), 0, -1):
            head = ".".join(parts[:n])
            if head in modules:
                if n == 1 and cand != name and head != cand:
                    break
                return head
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the workspace modules it imports (edges to third-party modules are dropped)."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import name`: name may be a submodule
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                target = _resolve(name, mod, modules)
                if target is not None and target != mod:
                    graph[mod].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _top(m: str) -> str:
    return m.split(".")[0]


def forbidden_edges(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            a, b = _top(src), _top(dst)
            if a == b:
                continue
            if a == "canvit_model" and b in WORKSPACE:
                bad.append(f"{src} -> {dst} (canvit_model imports no other workspace package)")
            if a in INDEPENDENT and b in INDEPENDENT:
                bad.append(f"{src} -> {dst} (train, eval and probes never import each other)")
    return bad


def test_no_import_circle_in_the_workspace():
    graph = import_graph(ROOT)
    assert {"canvit_model.canvit", "canvit_model.hub", "canvit_train.pretrain.trainer"} <= set(graph)
    assert "canvit_model.io" in graph["canvit_model.canvit"]  # the graph sees relative imports
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_layering_model_imports_nothing_of_ours_and_train_eval_probes_are_independent():
    bad = forbidden_edges(import_graph(ROOT))
    assert not bad, "\n".join(bad)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_the_checker_finds_a_circle_through_a_function_level_import(tmp_path):
    root = _tree(tmp_path, {
        "packages/canvit-model/src/canvit_model/__init__.py": "from .a import A\n",
        "packages/canvit-model/src/canvit_model/a.py": "from .b import B\nA = 1\n",
        "packages/canvit-model/src/canvit_model/b.py": "def f():\n    from canvit_model import a\nB = 2\n",
        "packages/canvit-model/src/canvit_model/c.py": "from . import a\n",
    })
    graph = import_graph(root)
    assert graph["canvit_model.c"] == {"canvit_model.a"}
    assert circles(graph) == [["canvit_model.a", "canvit_model.b"]]


def test_the_checker_finds_forbidden_cross_package_imports(tmp_path):
    root = _tree(tmp_path, {
        "packages/canvit-model/src/canvit_model/__init__.py": "",
        "packages/canvit-model/src/canvit_model/x.py": "import canvit_results.store\n",
        "packages/canvit-results/src/canvit_results/__init__.py": "",
        "packages/canvit-results/src/canvit_results/store.py": "",
        "packages/canvit-train/src/canvit_train/__init__.py": "",
        "packages/canvit-train/src/canvit_train/t.py": "from canvit_eval.rollout import run\nimport torch\n",
        "packages/canvit-eval/src/canvit_eval/__init__.py": "",
        "packages/canvit-eval/src/canvit_eval/rollout.py": "import canvit_model\n",
        "paper/tables/t1.py": "import sources\n",
        "paper/sources.py": "",
    })
    graph = import_graph(root)
    assert graph["paper.tables.t1"] == {"paper.sources"}
    bad = forbidden_edges(graph)
    assert len(bad) == 2 and "canvit_model.x -> canvit_results.store" in bad[0] and "canvit_train.t" in bad[1]
