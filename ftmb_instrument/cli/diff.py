"""`ftmb-instrument diff OLD.json NEW.json`: what a code change did to shared state."""

from __future__ import annotations

import io
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from ..diff import diff_reports, load_report
from ..report import diff_table
from ..report.output import emit
from . import app

EXIT_SAME, EXIT_ERROR, EXIT_DIFFERENT = 0, 1, 2

# click's usage errors exit 2, which here means "the reports differ"; a script testing for
# differences must not mistake a typo for one, so usage errors exit 1 like every other error.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _DiffCommand(TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _UsageError as exc:
            exc.exit_code = EXIT_ERROR
            raise


class DiffFormat(str, Enum):
    table = "table"
    json = "json"


_HELP = (
    "What a code change did to shared state: compare two analysis reports.\n\n"
    "Variables are matched by their stable id (file, enclosing scope, name, scope kind; no line "
    "numbers), so code that only moved does not count. Reported: new and removed variables, class "
    "changes, protection and lock-set changes, commutativity changes, and new or resolved "
    "unprotected accesses (by variable, function and mode).\n\n"
    "Exit codes: 0 no difference; 2 the reports differ; 1 error (missing, unreadable or malformed "
    "report, unwritable output, bad usage)."
)


@app.command("diff", cls=_DiffCommand, help=_HELP)
def diff_command(
    old: Annotated[
        Path,
        typer.Argument(help="The earlier report: ftmb-report/1 JSON from `analyze --format json`.", show_default=False),
    ],
    new: Annotated[Path, typer.Argument(help="The later report, same format.", show_default=False)],
    fmt: Annotated[
        DiffFormat,
        typer.Option("--format", "-f", help="table: readable summary; json: ftmb-diff/1 for scripts."),
    ] = DiffFormat.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", show_default=False,
            help="Write the result to FILE (replaced atomically) instead of stdout.",
        ),
    ] = None,
) -> None:
    """Compare two analysis reports; see _HELP."""
    diff = diff_reports(load_report(old), load_report(new))
    if fmt is DiffFormat.json:
        emit(json.dumps(diff.to_json(), indent=2, ensure_ascii=False) + "\n", output)
    elif output is None:
        diff_table.render(diff, Console(highlight=False))
    else:
        buffer = io.StringIO()
        diff_table.render(diff, Console(file=buffer, width=100, highlight=False, color_system=None))
        emit(buffer.getvalue(), output)
    raise typer.Exit(EXIT_SAME if diff.empty else EXIT_DIFFERENT)
