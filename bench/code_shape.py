"""The longest functions and the largest parameter lists in a source tree (an AST walk).

``python -m bench.code_shape [src] [--most N]``: a function's length is its lines from ``def``
(decorators not counted) to its last line, docstring included; its parameters are every
positional, keyword-only and ``*``/``**`` parameter, ``self`` and ``cls`` not counted.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FunctionShape:
    where: str
    name: str
    lines: int
    parameters: int


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len([a for a in named if a.arg not in ("self", "cls")])
    return count + (args.vararg is not None) + (args.kwarg is not None)


def function_shapes(root: Path) -> list[FunctionShape]:
    shapes = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                where = f"{path.relative_to(root)}:{node.lineno}"
                shapes.append(FunctionShape(where, node.name, lines, _parameters(node)))
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="src", type=Path)
    parser.add_argument("--most", type=int, default=5)
    args = parser.parse_args()
    shapes = function_shapes(args.root)
    lines = []
    for title, key in (("longest functions (lines)", "lines"), ("most parameters", "parameters")):
        lines.append(title)
        for shape in sorted(shapes, key=lambda s: getattr(s, key), reverse=True)[: args.most]:
            lines.append(f"  {getattr(shape, key):4d}  {shape.name}  {shape.where}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
