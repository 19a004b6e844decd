"""Report adapters: each turns a Report into text of one format, and nothing else.

`FORMATS` is the one place that knows the formats; commands offer `--format` from its keys and
call `write` (or `render`) rather than importing an adapter themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.console import Console

from ..errors import InputError
from ..model import Report
from . import dot, json, sarif, table
from .output import emit, write_atomic

FORMATS: dict[str, Callable[[Report], str]] = {
    "table": table.to_text,
    "json": json.render,
    "sarif": sarif.render,
    "dot": dot.render,
}

__all__ = ["FORMATS", "render", "write", "write_atomic"]


def render(report: Report, fmt: str) -> str:
    """The report as text in format `fmt` (a key of FORMATS)."""
    try:
        adapter = FORMATS[fmt]
    except KeyError:
        raise InputError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return adapter(report)


def write(report: Report, fmt: str, output: str | os.PathLike[str] | None = None,
          console: Console | None = None) -> None:
    """Render `report` to `output` (written atomically) or, when None, to stdout; a table on
    stdout goes through `console` (a stdout Console by default) so that it keeps its colors."""
    if fmt == "table" and output is None:
        table.render(report, console or Console(highlight=False))
    else:
        emit(render(report, fmt), output)
