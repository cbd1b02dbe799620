"""Rendering helpers shared by the commands: tables, JSON, errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclasses.dataclass
class CliSettings:
    """Options that apply to every command (set by the top-level callback)."""

    debug: bool = False


settings = CliSettings()

# Rich assumes 80 columns when output is piped; tables are wider than that,
# and a truncated number in a log is worse than a long line.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def print_error(text: str) -> None:
    """One paragraph on stderr, prefixed so it is easy to spot in logs."""
    err_console.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """Plain JSON on stdout (no colour, no wrapping) for scripts."""
    sys.stdout.write(json.dumps(_plain(value), indent=2) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table; numbers right-aligned."""
    table = Table(title=title, title_justify="left", header_style="bold")
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(columns))]
    for column, is_number in zip(columns, numeric):
        table.add_column(column, justify="right" if is_number else "left")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "—" if value is None else str(value)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
