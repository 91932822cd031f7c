"""No import cycles between sigmax_cli's packages, and a neutral ``model`` module (issue 20).

The graph is built from the source (AST), not from what a run happens to import: one node per
subpackage of ``sigmax_cli`` (``brokers``, ``risk``, ``rl``, ...) and one per top-level module
(``engine``, ``paper``, ``model``, ...); an edge ``a -> b`` for every import in a module of ``a``
that names something in ``b``. Every import counts: module-level ones, function-local (lazy)
ones, and those under ``if TYPE_CHECKING:``. A lazy import still makes the package depend on the
other at run time, and a type-only import is still a dependency a reader and the type checker
follow, so hiding an import in a function or behind TYPE_CHECKING does not break a cycle here;
moving the type or function to where it belongs does.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sigmax_cli"

Graph = dict[str, dict[str, list[str]]]


def _node(module: str, package: str) -> str:
    """``sigmax_cli.brokers.live`` -> ``brokers``; ``sigmax_cli.engine`` -> ``engine``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph(root: Path, package: str = PACKAGE) -> Graph:
    """``{source node: {target node: ["path:line", ...]}}`` over every module of ``package``
    under ``root`` (imports of the node itself left out)."""
    edges: Graph = defaultdict(lambda: defaultdict(list))
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        is_init = parts[-1] == "__init__"
        if is_init:
            parts = parts[:-1]
        source = _node(".".join(parts), package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_init else parts[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # ``from sigmax_cli import engine`` names the submodule, not the package
                targets = ([f"{module}.{alias.name}" for alias in node.names] if module == package else [module])
            else:
                continue
            for target in targets:
                if target.startswith(package + "."):
                    dest = _node(target, package)
                    if dest != source:
                        edges[source][dest].append(f"{rel}.py:{node.lineno}")
    return edges


def find_cycle(edges: Graph) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or ``None`` when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def describe(cycle: list[str], edges: Graph) -> str:
    """The cycle with the import sites of each of its edges."""
    hops = [f"  {a} -> {b}: {', '.join(edges[a][b][:4])}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "import cycle " + " -> ".join(cycle) + "\n" + "\n".join(hops)


def test_no_package_import_cycle():
    edges = import_graph(ROOT)
    assert {"brokers", "risk", "strategies", "rl", "engine", "model"} <= set(edges) | {
        d for targets in edges.values() for d in targets}
    cycle = find_cycle(edges)
    assert cycle is None, describe(cycle, edges)


def test_model_imports_nothing_else_of_sigmax():
    edges = import_graph(ROOT)
    assert dict(edges.get("model", {})) == {}


def test_the_checker_finds_a_cycle_hidden_in_a_function_or_type_checking(tmp_path):
    """The graph sees lazy and TYPE_CHECKING imports, so it reports a cycle made only of them."""
    pkg = tmp_path / "demo"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "b" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from demo.b.y import g\n    return g\n")
    (pkg / "b" / "y.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\ndef g():\n    return 1\n")
    (pkg / "top.py").write_text("from demo import a\n")
    edges = import_graph(tmp_path, "demo")
    assert edges["a"]["b"] == ["demo/a/x.py:2"]
    assert edges["b"]["a"] == ["demo/b/y.py:3"]
    assert edges["top"]["a"] == ["demo/top.py:1"]
    cycle = find_cycle(edges)
    assert cycle in (["a", "b", "a"], ["b", "a", "b"])
    assert "a -> b: demo/a/x.py:2" in describe(cycle, edges)
    del edges["b"]["a"]
    assert find_cycle(edges) is None
