"""Imports flow one way: service -> miners, trainers -> core, and no two modules import each other
(directly or around a loop), inside a package too. Checked on the source, statically."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hardneg"
LAYERS = ("core", "miners", "trainers", "service")
ALLOWED = {
    "core": {"core"},
    "miners": {"core", "miners"},
    "trainers": {"core", "trainers"},
    "service": {"core", "miners", "trainers", "service"},
}


def _imported_layers(path: Path) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports would hide the layer; we do not use them
                names = [f"<relative level {node.level}>"]
            elif node.module:
                names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "hardneg" and len(parts) > 1:
                found.add((parts[1], node.lineno))
            elif name.startswith("<relative"):
                found.add((name, node.lineno))
    return found


def test_layers_exist() -> None:
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_imports_flow_one_way() -> None:
    violations = []
    for layer in LAYERS:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for imported, line in _imported_layers(path):
                if imported not in ALLOWED[layer]:
                    violations.append(
                        f"{path.relative_to(PACKAGE)}:{line} imports hardneg.{imported}"
                    )
    assert not violations, "\n".join(violations)


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from hardneg.service.cli import app\nimport hardneg.miners.bm25\nfrom . import x\n"
    )
    assert {name for name, _ in _imported_layers(bad)} == {
        "service",
        "miners",
        "<relative level 1>",
    }


def test_no_print_or_syspath_hacks() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                offenders.append(f"{path}:{node.lineno} print()")
        if "sys.path" in text:
            offenders.append(f"{path}: sys.path")
    assert not offenders, offenders


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imported_modules(path: Path, known: Mapping[str, Path]) -> set[str]:
    """The hardneg modules ``path`` imports, anywhere in it (a function's lazy imports too):
    ``from package import module`` names the module, ``from module import name`` the module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                inner = f"{node.module}.{alias.name}"
                found.add(inner if inner in known else node.module)
    return found & set(known)


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other around a loop (strongly connected parts
    of the import graph with more than one module, or a module importing itself)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(group) > 1 or module in graph.get(module, ()):
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return cycles


def test_no_import_cycles_anywhere() -> None:
    known = _module_names()
    graph = {name: _imported_modules(path, known) for name, path in known.items()}
    assert import_cycles(graph) == []


def test_cycle_checker_finds_loops_inside_a_package() -> None:
    graph = {"p.run": {"p.report", "p.data"}, "p.report": {"p.run"}, "p.data": set()}
    assert import_cycles(graph) == [["p.report", "p.run"]]
    three = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(three) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
