"""Tables that stay readable in a narrow terminal.

:func:`fit_table` lays a header and string rows out as an ordinary table when that fits the
console's width, and otherwise vertically: one block per row, its first cell as the block's
title and every other cell on its own ``header  value`` line. Nothing is ever cut to "…".
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def _wide(title: str | None, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _vertical(title: str | None, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, show_header=False, show_lines=False)
    table.add_column(header[0] if header else "", style="bold", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for n, row in enumerate(rows):
        if n:
            table.add_section()
        table.add_row(f"{header[0]}: {row[0]}" if header else row[0], "")
        for name, cell in zip(header[1:], row[1:], strict=False):
            table.add_row(f"  {name}", cell)
    return table


def fit_table(
    title: str | None,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    console: Console,
) -> Table:
    """``header`` and ``rows`` as a table that fits ``console.width``: side by side when it
    fits, else vertical (one block per row)."""
    wide = _wide(title, header, rows)
    natural = console.measure(wide, options=console.options.update_width(1 << 20)).maximum
    if natural <= console.width:
        return wide
    return _vertical(title, header, rows)


def key_value_table(title: str | None) -> Table:
    """An empty two-column ``name  value`` table (no header) whose long values, paths above
    all, wrap onto more lines instead of being cut; fill it with ``add_row(name, value)``."""
    table = Table(title=title, show_header=False)
    table.add_column("name", overflow="fold")
    table.add_column("value", overflow="fold")
    return table
