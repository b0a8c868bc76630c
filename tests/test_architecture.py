"""Imports flow one way: service -> miners, trainers -> core. Checked on the source, statically."""

from __future__ import annotations

import ast
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
