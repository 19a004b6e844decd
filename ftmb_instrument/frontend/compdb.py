"""Compile commands: where translation units and their flags come from.

Two inputs, as clang-tidy takes them: a compilation database (`-p BUILD_DIR` or the JSON file
itself), or files on the command line with extra clang arguments after `--`. Every command is
sanitized before libclang sees it: argv[0], the input file, `-c`, `-o X`, dependency-file flags
and warnings-as-errors are dropped, relative paths are resolved against the entry's directory,
GCC-only flags that clang rejects are removed, and what GCC 12 only warns about stays a warning.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

# Flags (and for some, their argument) that say nothing about the code's meaning.
DROP_WITH_ARG = {"-o", "-MF", "-MT", "-MQ", "-Xlinker", "-x"}
DROP_EXACT = {"-c", "-S", "-E", "-M", "-MM", "-MD", "-MMD", "-MP", "-MG", "-pipe", "-save-temps", "-Werror", "-pedantic-errors"}
DROP_PREFIX = ("-Werror=", "-Wl,", "-fdiagnostics-", "-fdump-", "-save-temps=")
# GCC-only flags clang rejects or warns about; a warning is harmless, an "unknown argument" is not.
GCC_ONLY_PREFIX = (
    "-fno-tree-", "-ftree-", "-fstack-clash-protection", "-fno-ipa-", "-fipa-", "-fcf-protection=check",
    "-mno-avx256-split-unaligned", "-fconserve-stack", "-fno-var-tracking", "-fvar-tracking",
    "-fno-allow-store-data-races", "-fmerge-constants", "-fno-code-hoisting", "-flto-partition=",
    "-fno-semantic-interposition", "-fmacro-prefix-map=", "-ffile-prefix-map=", "-fno-guess-branch-probability",
    "-Wno-stringop-", "-Wstringop-", "-Wformat-truncation", "-Wno-format-truncation", "-Wlogical-op",
    "-Wmaybe-uninitialized", "-Wno-maybe-uninitialized", "-Wduplicated-", "-Wjump-misses-init",
    "-Wimplicit-fallthrough=", "-Wno-restrict", "-Wrestrict", "-Wno-address-of-packed-member",
)
PATH_FLAGS = ("-I", "-isystem", "-iquote", "-idirafter", "-include", "-imacros")
# Diagnostics recent clang makes errors by default but GCC before 14 (Debian 12's) only warns about: code
# that builds with the project's compiler must parse (DPDK's pipeline example calls accept4 without
# _GNU_SOURCE). They stay warnings in the report.
GCC_WARNS = tuple(f"-Wno-error={w}" for w in (
    "implicit-function-declaration", "implicit-int", "int-conversion", "incompatible-function-pointer-types",
    "incompatible-pointer-types", "return-mismatch",
))
ALWAYS = ("-Wno-unknown-warning-option", "-Wno-ignored-optimization-argument", "-Wno-unused-command-line-argument",
          *GCC_WARNS)


@dataclass(frozen=True)
class CompileCommand:
    file: str  # absolute path of the translation unit
    args: tuple[str, ...]  # sanitized arguments for libclang
    directory: str = ""  # where the build ran the command (a database's entry, ftmb-cc's cwd); "" if unknown


INSTALLED = ("/usr/", "/opt/")  # headers installed there are libraries' unless under the project root


def default_project_root(commands: list[CompileCommand]) -> str:
    """The project a build compiles, when no --project-root says: the common directory of the
    translation units, widened to the directory each command ran in when its file is under it (make
    runs at the top: `src/x.c` with `-Iinclude` makes the top the project, so `include/`'s macros
    are the project's), then to the include directories beside it (`-I../include` of a make run in
    `src/`), never to installed ones (/usr, /opt)."""
    root = os.path.commonpath([os.path.dirname(c.file) for c in commands])
    for c in commands:
        d = os.path.realpath(c.directory) if c.directory else ""
        if d and d != "/" and _under(c.file, d):
            root = os.path.commonpath([root, d])
    parent = os.path.dirname(root)
    for c in commands:
        for inc in include_dirs(c.args):
            if parent != "/" and _under(inc, parent) and not _under(inc, root) and not inc.startswith(INSTALLED):
                root = parent
    return root


def include_dirs(args) -> list[str]:
    """The -I and -iquote directories of sanitized arguments (absolute there)."""
    out = []
    for i, a in enumerate(args):
        if a in ("-I", "-iquote") and i + 1 < len(args):
            out.append(os.path.realpath(args[i + 1]))
        elif a.startswith("-I") and len(a) > 2:
            out.append(os.path.realpath(a[2:]))
        elif a.startswith("-iquote") and len(a) > 7:
            out.append(os.path.realpath(a[7:]))
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def sanitize(argv: list[str], directory: str, input_file: str) -> tuple[str, ...]:
    """Turn a compiler invocation into arguments libclang accepts for `input_file`."""
    out: list[str] = []
    target = os.path.realpath(os.path.join(directory, input_file))
    i = 1  # argv[0] is the compiler
    while i < len(argv):
        a = argv[i]
        i += 1
        if a in DROP_WITH_ARG:
            i += 1
            continue
        if a in DROP_EXACT or a.startswith(DROP_PREFIX) or a.startswith(GCC_ONLY_PREFIX):
            continue
        if a.startswith("-M") and len(a) > 2 and a[2] in "FTQ":
            continue
        if a.startswith("-o") and len(a) > 2:
            continue
        if not a.startswith("-") and os.path.realpath(os.path.join(directory, a)) == target:
            continue
        if not a.startswith("-") and a.endswith((".c", ".o", ".a", ".so", ".cc", ".cpp")):
            continue  # other inputs of a combined compile-and-link command
        if a in PATH_FLAGS and i < len(argv):
            value = argv[i]
            if a not in ("-include", "-imacros") or os.path.exists(os.path.join(directory, value)):
                value = _absolute(value, directory)  # a forced include may also be found on the include path
            out += [a, value]
            i += 1
            continue
        for flag in PATH_FLAGS:
            if a.startswith(flag) and len(a) > len(flag) and flag != "-include":
                a = flag + _absolute(a[len(flag):], directory)
                break
        out.append(a)
    return tuple(out) + ALWAYS


def _absolute(path: str, directory: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(directory, path))


def load_database(path: Path) -> list[CompileCommand]:
    """Read `compile_commands.json` (or the one inside a build directory)."""
    db = path / "compile_commands.json" if path.is_dir() else path
    try:
        text = db.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{db}: no such compilation database (generate one with cmake "
                         f"-DCMAKE_EXPORT_COMPILE_COMMANDS=ON or bear)") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{db}: not UTF-8 text (byte {exc.start}); expected a compilation database") from None
    except OSError as exc:
        raise InputError(f"{db}: cannot read: {exc.strerror}") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{db}:{exc.lineno}:{exc.colno}: malformed compilation database: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{db}: malformed compilation database: JSON nested too deeply") from None
    if not isinstance(entries, list):
        raise InputError(f"{db}: malformed compilation database: expected a JSON array of entries")
    commands = []
    for n, e in enumerate(entries, 1):
        if not isinstance(e, dict) or "file" not in e or "directory" not in e or not ("arguments" in e or "command" in e):
            raise InputError(f"{db}: entry {n}: needs 'directory', 'file' and 'arguments' or 'command'")
        if not isinstance(e["file"], str) or not isinstance(e["directory"], str) or not e["file"]:
            raise InputError(f"{db}: entry {n}: 'directory' and 'file' must be strings")
        # A relative directory is taken relative to the database's own directory, as clang does.
        directory = os.path.join(os.path.dirname(os.path.abspath(db)), e["directory"])
        if not os.path.isdir(directory):
            raise InputError(f"{db}: entry {n}: directory {e['directory']!r} does not exist"
                             + ("" if os.path.isabs(e["directory"]) else f" (relative to {db.parent}: {directory})"))
        if "arguments" in e:
            if not isinstance(e["arguments"], list) or not all(isinstance(x, str) for x in e["arguments"]):
                raise InputError(f"{db}: entry {n}: 'arguments' must be a list of strings")
            argv = list(e["arguments"])
        else:
            try:
                argv = shlex.split(str(e["command"]))
            except ValueError as exc:
                raise InputError(f"{db}: entry {n}: cannot split 'command': {exc}") from None
        file = os.path.realpath(os.path.join(directory, e["file"]))
        if not file.endswith(".c"):
            continue
        commands.append(CompileCommand(file, sanitize(argv, directory, str(e["file"])), directory))
    return commands


def from_files(files: list[Path], extra_args: list[str], build_dir: str = "") -> list[CompileCommand]:
    """Files named on the command line, all compiled with `extra_args` (`build_dir`: the directory a
    build runs the command in, ftmb-cc's; files on the command line of the CLI have none)."""
    out = []
    cwd = os.getcwd()
    for f in files:
        try:
            st = os.stat(f)
        except FileNotFoundError:
            raise InputError(f"{f}: no such file") from None
        except OSError as exc:  # a symlink loop, a path through a non-directory, no permission
            raise InputError(f"{f}: cannot read: {exc.strerror or exc}") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{f}: is a directory; give C files, or -p BUILD_DIR for a compilation database")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{f}: not a regular file; give C files")
        out.append(CompileCommand(os.path.realpath(f), sanitize(["cc", *extra_args], cwd, str(f)), build_dir))
    return out
