"""`ftmb-instrument instrument`: rewrite a program's sources so they call the ftmb runtime."""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError, RewriteError
from ..frontend import from_files, load_database
from ..frontend.compdb import default_project_root
from ..plan import PlanOptions
from ..report.output import write_atomic
from ..rewrite import Rewritten, apply_plan
from ..rewrite.pipeline import make_plan
from ..semantics import load_semantics
from . import app, stderr

HELP = """Instrument a C program for FTMB: shared accesses, locks, atomics, nondeterministic calls,
packet I/O, thread spawn and state allocations are rewritten to call the ftmb runtime ABI
(<ftmb/ftmb.h>; `ftmb-instrument config --cflags --libs` says how to build against it).

Input as for `analyze`: `-p BUILD_DIR` (optionally restricted to FILES), or FILES followed by `--`
and the clang arguments. Output: a unified diff on stdout (the default, --diff), an instrumented
copy of the project tree (-o OUTDIR, written to a temporary directory and renamed only when
everything succeeded), or the files rewritten in place (--in-place, each written atomically, the
original kept as FILE.ftmb-orig; every file is checked to be writable before any is rewritten, so
an unwritable one leaves all as they were). --plan FILE also writes the plan (ftmb-plan/2).

A site that cannot be instrumented safely is reported as `file:line: error: ...` and nothing is
written; silence one with an inline `/* ftmb: ignore(access) <reason> */` on its line.

Exit codes: 0 instrumented (or nothing to do); 1 bad input, a translation unit failed to parse, or
a site cannot be instrumented; 2 usage error.
"""


def commands_from(files: list[Path], build: Path | None, extra: list[str]):
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
    return commands


def unified_diff(rewritten: list[Rewritten], root: str) -> str:
    out = []
    for r in rewritten:
        rel = os.path.relpath(r.path, root)
        out.extend(difflib.unified_diff(
            r.original.decode("utf-8", "replace").splitlines(keepends=True),
            r.text.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"a/{rel}", tofile=f"b/{rel}"))
    return "".join(out)


def write_tree(rewritten: list[Rewritten], root: str, outdir: Path) -> None:
    """A copy of the project tree under root with the rewritten files; all or nothing."""
    outdir = outdir.resolve()
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise InputError(f"-o {outdir}: exists and is not an empty directory")
    rootp = Path(root).resolve()
    if outdir == rootp or rootp in outdir.parents:
        skip_inside = outdir
    else:
        skip_inside = None
    parent = outdir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=parent))
    except OSError as exc:
        raise InputError(f"-o {outdir}: cannot create it in {parent}: {exc.strerror or exc}") from None
    try:
        def ignore(d: str, names: list[str]) -> list[str]:
            return [n for n in names if n.startswith(".") or (skip_inside is not None and Path(d, n).resolve() == skip_inside)]

        shutil.copytree(rootp, tmp / "tree", ignore=ignore, symlinks=True)
        for r in rewritten:
            rel = os.path.relpath(os.path.realpath(r.path), rootp)
            if rel.startswith(".."):
                raise RewriteError(f"{r.path}: outside the project root {rootp}; use --in-place or --project-root")
            (tmp / "tree" / rel).write_bytes(r.text)
        if outdir.exists():
            outdir.rmdir()
        os.replace(tmp / "tree", outdir)
    except shutil.Error as exc:
        first = exc.args[0][0] if exc.args and exc.args[0] else ("", "", str(exc))
        raise InputError(f"-o {outdir}: cannot copy {first[0]}: {first[2]}; nothing was written") from None
    except OSError as exc:
        raise InputError(f"-o {outdir}: cannot write {exc.filename or outdir}: {exc.strerror or exc}; "
                         f"nothing was written") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rewrite_in_place(rewritten: list[Rewritten]) -> None:
    """Rewrite each file where it is, the original kept as FILE.ftmb-orig: all files or none.

    Every target (the file, its directory for the temporary file and the backup) is checked before
    any is touched; should a write still fail, the files already rewritten get their originals back.
    """
    for r in rewritten:
        _check_writable(r.path)
    backups: list[str] = []
    done: list[Rewritten] = []
    try:
        for r in rewritten:
            backup = r.path + ".ftmb-orig"
            if not os.path.exists(backup):
                write_atomic(backup, r.original)
                backups.append(backup)
        for r in rewritten:
            write_atomic(r.path, r.text)
            done.append(r)
    except InputError as exc:
        for r in done:
            write_atomic(r.path, r.original)
        for backup in backups:
            os.unlink(backup)
        raise InputError(f"{exc}; no file was rewritten") from None


def _check_writable(path: str) -> None:
    """Raise InputError unless `path` can be replaced and a FILE.ftmb-orig written beside it.

    Probes by opening and creating, not os.access: root ignores permission bits but not an
    immutable file or directory or a read-only file system."""
    try:
        os.close(os.open(path, os.O_WRONLY))
        fd, probe = tempfile.mkstemp(prefix=".ftmb-probe.", dir=os.path.dirname(os.path.abspath(path)))
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = path if exc.filename == path else os.path.dirname(os.path.abspath(path))
        raise InputError(f"{where}: cannot write: {exc.strerror or exc}; --in-place rewrote no file") from None


@app.command("instrument", help=HELP)
def instrument_cmd(
    ctx: typer.Context,
    files: Annotated[list[Path] | None, typer.Argument(help="C files (all of the database with -p if omitted).")] = None,
    build: Annotated[Path | None, typer.Option("-p", "--build-path", help="Build directory or compile_commands.json.")] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff (the default).")] = False,
    outdir: Annotated[Path | None, typer.Option("-o", "--output-dir", help="Write an instrumented copy of the project tree to OUTDIR.")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite the files in place (originals kept as FILE.ftmb-orig).")] = False,
    plan_file: Annotated[Path | None, typer.Option("--plan", help="Also write the plan (ftmb-plan/2 JSON) to FILE.")] = None,
    model: Annotated[list[Path] | None, typer.Option("--model", help="Extra library-semantics model file (TOML); repeatable.")] = None,
    entry: Annotated[list[str] | None, typer.Option("--entry", help="Also treat FUNC as a thread root; repeatable.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Parallel parses (default: number of cores).")] = 0,
    project_root: Annotated[Path | None, typer.Option("--project-root", help="Only code under this directory is rewritten (default: common directory of the inputs, widened to a database's build directory when they are under it).")] = None,
    unordered_commutative: Annotated[bool, typer.Option("--unordered-commutative", help="Reduction, not provably safe: do not order objects only updated by +=, -=, ++, -- (listed in the plan).")] = False,
) -> None:
    if sum(bool(x) for x in (outdir is not None, in_place, diff)) > 1:
        raise InputError("choose one of --diff, -o OUTDIR, --in-place")
    extra = list((ctx.obj or {}).get("clang_args", ()))
    commands = commands_from(list(files or []), build, extra)
    root = project_root or Path(default_project_root(commands))
    if not root.is_dir():
        raise InputError(f"--project-root {root}: no such directory")
    sem = load_semantics(model or [])
    report, plan = make_plan(commands, sem, str(root), PlanOptions(unordered_commutative), jobs, stderr,
                             tuple(entry or ()))
    if plan_file is not None:
        write_atomic(plan_file, plan.dumps())
    for p in plan.problems:
        if p.suppressed:
            stderr.print(f"{p.where}: note: not instrumented (suppressed: {p.suppressed}): {p.message}",
                         markup=False, soft_wrap=True)
    for r in plan.reductions:
        stderr.print(f"ftmb-instrument: warning: {r}", markup=False, soft_wrap=True)
    errors = plan.errors
    if errors:
        for p in errors:
            stderr.print(f"{p.where}: error: {p.message}", markup=False, soft_wrap=True)
        raise RewriteError(f"{len(errors)} site(s) cannot be instrumented safely; nothing was written "
                           f"(suppress one with /* ftmb: ignore(access) <reason> */ on its line)")
    rewritten = apply_plan(plan)
    kinds: dict[str, int] = {}
    for s in plan.sites:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing to do"
    if outdir is not None:
        write_tree(rewritten, str(root), outdir)
        stderr.print(f"instrumented {len(rewritten)} file(s) into {outdir}: {summary}", markup=False)
    elif in_place:
        rewrite_in_place(rewritten)
        stderr.print(f"instrumented {len(rewritten)} file(s) in place: {summary}", markup=False)
    else:
        typer.echo(unified_diff(rewritten, str(root)), nl=False)
        stderr.print(f"{len(rewritten)} file(s) would change: {summary}", markup=False)
