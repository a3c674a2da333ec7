"""Shared output helpers: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    print(json.dumps(data, indent=2, default=str))


def fmt(value: float | int | None, digits: int = 0, unknown: str = "?") -> str:
    """A number for a table; `?` marks a figure the catalog does not know."""
    if value is None:
        return unknown
    return f"{value:,.{digits}f}"


def table(title: str, columns: list[str], rows: list[list[str]], caption: str | None = None) -> Table:
    result = Table(title=title, caption=caption, header_style="bold")
    for column in columns:
        result.add_column(column, justify="left" if column[:1].isalpha() and column.islower() else "right")
    for row in rows:
        result.add_row(*row)
    return result
