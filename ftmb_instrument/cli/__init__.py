"""The `ftmb-instrument` command line: a thin layer over the library.

Each command lives in its own module and registers itself on `app`. Library functions return
data; commands render it (results on stdout or `-o FILE`, diagnostics on stderr). Every
`FtmbError` becomes one line on stderr and its exit code; nothing else reaches the user as a
traceback unless it is a bug.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from .. import __version__
from ..errors import FtmbError

app = typer.Typer(
    name="ftmb-instrument",
    help="Make multi-threaded C middleboxes fault tolerant (FTMB rollback-recovery).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

stderr = Console(stderr=True, highlight=False)

INTERRUPTED = 130  # the exit code of a command stopped by SIGINT (128 + 2); no command uses it otherwise

# typer bundles its own click; its usage-error base class is reached through typer's own exceptions.
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _print_version(value: bool) -> None:
    if value:
        print(f"ftmb-instrument {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Make multi-threaded C middleboxes fault tolerant (FTMB rollback-recovery)."""


def _register_commands() -> None:
    """Importing a command module registers its command on `app`."""
    from . import analyze, config, demo, diff, hosts, instrument, run, traffic, verify  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    clang_args: list[str] = []
    if "--" in argv:  # clang-tidy style: FILES -- CLANG_ARGS
        cut = argv.index("--")
        argv, clang_args = argv[:cut], argv[cut + 1:]
    try:
        _register_commands()
        rc = app(args=argv, standalone_mode=False, obj={"clang_args": clang_args})
    except FtmbError as exc:
        stderr.print(f"ftmb-instrument: error: {exc}", markup=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        rc = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        rc = INTERRUPTED
    except Exception as exc:  # usage errors carry their own exit code
        if isinstance(exc, _CLICK_EXCEPTION):
            exc.show()
            return exc.exit_code
        raise
    if rc == INTERRUPTED:  # typer returns a KeyboardInterrupt (SIGINT) as this exit code, silently
        stderr.print("ftmb-instrument: interrupted", markup=False)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
