"""`ftmb-instrument analyze`: find the state shared between packet-processing threads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..analysis import Options, analyze
from ..errors import InputError
from ..frontend import from_files, load_database
from ..frontend.compdb import default_project_root
from ..report import FORMATS, write
from ..semantics import load_semantics
from . import app, stderr

HELP = """Find every variable shared between the threads of a C program and how each access is
synchronized.

Input, as clang-tidy takes it: `-p BUILD_DIR` (or the compile_commands.json itself), optionally
restricted to FILES; or FILES followed by `--` and the clang arguments to compile them with.

Exit codes: 0 analysis complete; 1 bad input, or a translation unit failed to parse (unless
--keep-going); 2 usage error.
"""


@app.command("analyze", help=HELP)
def analyze_cmd(
    ctx: typer.Context,
    files: Annotated[list[Path] | None, typer.Argument(help="C files to analyze (all of the database with -p if omitted).")] = None,
    build: Annotated[Path | None, typer.Option("-p", "--build-path", help="Build directory or compile_commands.json.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"Report format: {', '.join(FORMATS)}.")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the report to FILE instead of stdout.")] = None,
    model: Annotated[list[Path] | None, typer.Option("--model", help="Extra library-semantics model file (TOML); repeatable.")] = None,
    entry: Annotated[list[str] | None, typer.Option("--entry", help="Also treat FUNC as a thread root; repeatable.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel parses (default: number of cores).")] = 0,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Exit 0 even when translation units fail to parse.")] = False,
    project_root: Annotated[Path | None, typer.Option("--project-root", help="Only code under this directory is analyzed (default: common directory of the inputs, widened to a database's build directory when they are under it).")] = None,
) -> None:
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    extra = list((ctx.obj or {}).get("clang_args", ()))
    files = list(files or [])
    if build is not None:
        commands = load_database(build)
        if files:
            wanted = {os.path.realpath(f) for f in files}
            missing = [str(f) for f in files if os.path.realpath(f) not in {c.file for c in commands}]
            if missing:
                raise InputError(f"{missing[0]}: not in the compilation database {build}")
            commands = [c for c in commands if c.file in wanted]
        if extra:
            commands = [type(c)(c.file, c.args + tuple(extra)) for c in commands]
    else:
        if not files:
            raise InputError("no input: give FILES (followed by -- CLANG_ARGS) or -p BUILD_DIR")
        commands = from_files(files, extra)
    if not commands:
        raise InputError(f"{build}: the compilation database lists no C files")
    root = project_root or Path(default_project_root(commands))
    if not root.is_dir():
        raise InputError(f"--project-root {root}: no such directory")
    sem = load_semantics(model or [])
    report = analyze(commands, sem, Options(str(root), tuple(entry or ()), jobs), stderr)
    write(report, fmt, output)
    failed = [u for u in report.translation_units if u.status != "ok"]
    for u in failed:
        first = u.first_error()
        where = first.loc if first else u.file
        stderr.print(f"ftmb-instrument: error: {where}: {first.message if first else 'parse failed'} "
                     f"(translation unit {u.file} not analyzed)", markup=False, soft_wrap=True)
    cov = report.coverage
    stderr.print(f"coverage: {cov.tus_ok} translation units ok, {cov.tus_failed} failed, "
                 f"{cov.functions_analyzed} functions analyzed", markup=False)
    if failed and not keep_going:
        raise typer.Exit(1)
