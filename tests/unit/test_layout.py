"""The house's layout rules, checked on every run: no import cycle among the project's own
modules (each module reachable from a package must be importable without its importer half
built, and a cycle is the first sign of two rooms that should be one or three), and no module
over 500 lines without a reason written at its top."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# What ships or runs: the fleet's packages, the lab, and Salt's extension modules.
TOPS = ("harvester", "downloader", "ccmirror_common", "lab", "_runners", "_modules", "_utils")


def project_modules() -> dict[str, Path]:
    modules = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that `name` imports anywhere in its body (a function-level
    import is still an edge: it only hides the cycle until the function runs)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in known and module != name}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module: each one is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported(name, path, known) for name, path in modules.items()}


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_projects_modules() -> None:
    graph = import_graph()
    assert len(graph) > 80  # the walk found the tree
    assert strongly_connected(graph) == []


LONG_MODULE_LINES = 500


def test_a_module_over_500_lines_says_why_in_its_docstring() -> None:
    """A long module is either split by job or says, at its top, why it is one ("Over 500
    lines, one module: ..."): the next engineer knows it was chosen, not grown into."""
    unexplained = []
    for name, path in project_modules().items():
        text = path.read_text()
        if text.count("\n") > LONG_MODULE_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "500 lines" not in docstring:
                unexplained.append(f"{name} ({text.count(chr(10))} lines)")
    assert unexplained == []
