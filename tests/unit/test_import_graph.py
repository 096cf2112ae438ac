"""No import cycle among the project's modules (curator/ and stages/).

The graph is built with `ast` from every `import` / `from ... import` statement, at module
level and inside functions alike (a function-local import that closes a cycle is still a
cycle, only a deferred one). Imports under `if TYPE_CHECKING:` are left out: they never
run. An edge goes to the module named; `from pkg import name` goes to `pkg.name` when that
is a module, else to `pkg` (its __init__).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("curator", "stages")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_pkg: bool) -> list[tuple[str, list[str]]]:
    """(module imported from, names) for every import statement outside TYPE_CHECKING."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            found.append((base, [a.name for a in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        for base, names in _imports(tree, mod, path.name == "__init__.py"):
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in mods]
            if len(targets) < len(names) or not names:
                targets.append(base)
            for t in targets:
                # `import a.b.c` of a module we do not have: the nearest one we do
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    color = {m: WHITE for m in graph}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        color[m] = GREY
        stack.append(m)
        for n in sorted(graph[m]):
            if color[n] == GREY:
                return stack[stack.index(n):] + [n]
            if color[n] == WHITE:
                got = dfs(n)
                if got:
                    return got
        stack.pop()
        color[m] = BLACK
        return None

    for m in sorted(graph):
        if color[m] == WHITE:
            got = dfs(m)
            if got:
                return got
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_engine_imports_stages_only_through_the_stage_table():
    """`stages` modules are loaded by name from curator.pipeline.STAGES; the engine's
    modules do not import them (curator.jobs ships the `stages` package to a cluster; the
    train-type-head command is the video_type stage's own tool)."""
    graph = import_graph()
    allowed = {"curator.jobs", "curator.cli"}
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.startswith("curator") and m not in allowed
                 for t in ts if t == "stages" or t.startswith("stages."))
    assert not bad, bad


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


if __name__ == "__main__":  # print the graph's cycle, if any
    print(find_cycle(import_graph()) or "no cycle", os.linesep)
