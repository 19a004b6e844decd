"""`ftmb-cc`: a drop-in C compiler that instruments every C source on the fly.

Usable as `make CC=ftmb-cc`, `cmake -DCMAKE_C_COMPILER=ftmb-cc`, or as a launcher
(`ftmb-cc gcc ...`; with CMake set both `-DCMAKE_C_COMPILER_LAUNCHER=ftmb-cc` and
`-DCMAKE_C_LINKER_LAUNCHER=ftmb-cc`, since CMake uses the compiler launcher for compiles only and
the link must add the runtime). The real compiler is the launcher's first argument, else
$FTMB_REAL_CC, else gcc.

For each C source on the command line: analyze and instrument it (the whole-program view is the C
sources of this one command line: a `cc a.c b.c -o prog` sees both; a separate `cc -c a.c` sees
only a.c, so without a plan it is refused unless a.c is the whole program: check_whole_program),
write the instrumented copy (and every project header the plan edits) to a temporary overlay that
mirrors the absolute paths, and compile that instead, with the user's flags plus the runtime's
include directory; a rewritten header is found before the original (it sits next to the copy, or
in the overlay's copy of the `-I` directory), everything else through `-iquote` of the original
directories. With `FTMB_PLAN=ftmb_plan.json` (made by
`ftmb-instrument instrument -p BUILD --plan ftmb_plan.json` for the whole program) the plan is
applied instead of analyzing, which is what multi-file programs compiled one file at a time need.
When linking, the runtime libraries are added (libftmb_dpdk when DPDK libraries are linked,
libftmb_pcap when -lpcap is, then libftmb); they are built from the runtime's sources on first use (bundle.py says where).

Anything else (assembling, preprocessing only, `-E`, `-M`, `--version`, C++ files) is passed to
the real compiler unchanged. An instrumentation error is printed as one line and the compile
fails: ftmb-cc never silently compiles an uninstrumented source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .bundle import ensure_runtime, runtime_paths
from .errors import FtmbError, RewriteError

C_EXT = (".c",)
VALUE_FLAGS = {"-o", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter", "-MF", "-MT",
               "-MQ", "-x", "-L", "-l", "-Xlinker", "-u", "-T", "-std", "--param", "-arch", "-target"}
SINGLE_UNIT = "FTMB_CC_SINGLE_UNIT"  # =1: the units of a -c command are the whole program (no check)
NO_COMPILE = {"-E", "-M", "-MM", "--version", "-v", "-dumpversion", "-dumpmachine", "-print-search-dirs"}


def _is_compiler(word: str) -> bool:
    base = os.path.basename(word)
    return not base.startswith("-") and ("cc" in base or "clang" in base or "gcc" in base) and not base.endswith(".c")


def split_launcher(argv: list[str]) -> tuple[str, list[str]]:
    """(real compiler, its arguments) for `ftmb-cc [REAL_CC] ARGS...`."""
    if argv and _is_compiler(argv[0]) and shutil.which(argv[0]):
        return argv[0], argv[1:]
    return os.environ.get("FTMB_REAL_CC") or "gcc", argv


def sources_of(args: list[str]) -> list[int]:
    """Indexes of the C source arguments."""
    out = []
    i = 0
    lang_c = True
    while i < len(args):
        a = args[i]
        if a == "-x" and i + 1 < len(args):
            lang_c = args[i + 1] == "c"
            i += 2
            continue
        if a in VALUE_FLAGS:
            i += 2
            continue
        if not a.startswith("-") and a.endswith(C_EXT) and lang_c and os.path.isfile(a):
            out.append(i)
        i += 1
    return out


def is_link(args: list[str]) -> bool:
    return not any(a in ("-c", "-S", "-E") for a in args)


def links_pcap(args: list[str]) -> bool:
    return any(a == "-lpcap" or "libpcap." in a for a in args)


def links_dpdk(args: list[str]) -> bool:
    return any(a.startswith("-lrte_") or "librte_" in a or a == "-ldpdk" for a in args)


def clang_args_for(args: list[str], src_indexes: list[int]) -> list[str]:
    """The flags of the command that matter to libclang (defines, includes, standard)."""
    out = []
    i = 0
    skip = set(src_indexes)
    while i < len(args):
        a = args[i]
        if i in skip:
            i += 1
            continue
        if a in ("-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter") and i + 1 < len(args):
            out += [a, args[i + 1]]
            i += 2
            continue
        if a in VALUE_FLAGS:
            i += 2
            continue
        if a.startswith(("-I", "-D", "-U", "-std=", "-isystem", "-f", "-m", "-pthread", "-include")) \
                and not a.startswith(("-fdiagnostics", "-fdump")):
            out.append(a)
        i += 1
    return out


@dataclass
class Instrumented:
    copies: dict[str, Path]  # original source argument -> the file to compile
    overlay: Path  # rewritten files sit at overlay/<their absolute path>
    quote_dirs: list[str]  # original directories of the rewritten files (for #include "...")


def _overlay_path(overlay: Path, path: str) -> Path:
    return overlay / os.path.realpath(path).lstrip("/")


def _named(text: bytes, path: str) -> bytes:
    """Let diagnostics and __FILE__ name the original, as an uninstrumented build would."""
    quoted = path.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace(b"\n#line 1\n", f'\n#line 1 "{quoted}"\n'.encode(), 1)


def check_whole_program(commands, root: str) -> None:
    """Units compiled without being linked (`-c`) and without a plan must be the whole program: they
    define `main` and every project function and variable they use (frontend/linkage.py tells project
    symbols from libraries'). Otherwise another unit shares their state, which the analysis of these
    alone cannot see. Raises RewriteError naming the first use of a symbol they lack."""
    from .frontend.linkage import unit_linkage

    units = [u for u in (unit_linkage(c.file, c.args, root) for c in commands) if u is not None]
    defined = set().union(*(u.defines for u in units))
    todo = (f"make the whole program's plan (ftmb-instrument instrument -p BUILD --plan ftmb_plan.json) and set "
            f"FTMB_PLAN=ftmb_plan.json, or set {SINGLE_UNIT}=1 if this is the whole program")
    for u in units:
        for usr, name, where in u.uses:
            if usr not in defined:
                raise RewriteError(f"{_shown(where)}: uses {name}, which this unit does not define: it is part of a "
                                   f"larger program that ftmb-cc -c cannot see; {todo}")
    if units and not any(u.defines_main for u in units):
        raise RewriteError(f"{_shown(units[0].file)}: defines no main: it is part of a larger program that ftmb-cc -c "
                           f"cannot see; {todo}")


def _shown(path: str) -> str:
    cwd = os.getcwd() + "/"
    return path[len(cwd):] if path.startswith(cwd) else path


def instrument_sources(paths: list[str], clang_args: list[str], workdir: Path, separate: bool = False) -> Instrumented:
    """Instrument `paths` together into an overlay under workdir. Raises FtmbError.

    `separate`: the command compiles without linking (`-c`); without a plan the units must then be
    the whole program (check_whole_program), unless $FTMB_CC_SINGLE_UNIT=1.

    The sources and every project header the plan edits are written to overlay/<absolute path>,
    so a source's `#include "x.h"` finds the rewritten x.h next to it first, and the original
    directories stay on the quote include path for everything that was not rewritten."""
    from .frontend import from_files
    from .plan import is_instrumented, load_plan
    from .rewrite import apply_plan
    from .rewrite.pipeline import make_plan
    from .semantics import load_semantics

    overlay = workdir / "overlay"
    out = Instrumented({}, overlay, [])
    todo = []
    for p in paths:
        with open(p, "rb") as fh:
            if is_instrumented(fh.read(256)):
                out.copies[p] = Path(p)  # already instrumented: compiled as it is
            else:
                todo.append(p)
    if not todo:
        return out
    plan_path = os.environ.get("FTMB_PLAN")
    if plan_path:
        plan = load_plan(plan_path)
        known = {os.path.realpath(plan.abspath(u)) for u in plan.units}
        unknown = [p for p in todo if os.path.realpath(p) not in known]
        if unknown:
            raise RewriteError(f"{unknown[0]}: not one of the translation units of the plan {plan_path}; "
                               f"make the plan again (ftmb-instrument instrument -p BUILD --plan {plan_path})")
    else:
        commands = from_files([Path(p) for p in todo], clang_args)
        root = os.environ.get("FTMB_PROJECT_ROOT") or os.path.commonpath(
            [os.path.dirname(os.path.realpath(p)) for p in todo])
        if separate and os.environ.get(SINGLE_UNIT) != "1":
            check_whole_program(commands, root)
        _, plan = make_plan(commands, load_semantics(), root, jobs=1)
    errors = plan.errors
    if errors:
        for e in errors:
            print(f"{e.where}: error: {e.message}", file=sys.stderr)
        if plan.failed_units:
            raise RewriteError(f"{len(plan.failed_units)} translation unit(s) failed to parse; nothing was compiled")
        raise RewriteError(f"{len(errors)} site(s) cannot be instrumented safely (suppress one with "
                           f"/* ftmb: ignore(access) <reason> */ on its line)")
    want = {os.path.realpath(p) for p in todo}
    for r in apply_plan(plan):
        if r.path.endswith(".c") and os.path.realpath(r.path) not in want:
            continue  # another unit of the program: compiled by its own command
        dst = _overlay_path(overlay, r.path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(_named(r.text, r.path))
        out.quote_dirs.append(os.path.dirname(os.path.realpath(r.path)))
    for p in todo:
        dst = _overlay_path(overlay, p)
        if not dst.exists():  # nothing to change in it: compiled from the overlay all the same
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(p).read_bytes())
        out.copies[p] = dst
        out.quote_dirs.append(os.path.dirname(os.path.realpath(p)))
    return out


def build_command(real_cc: str, args: list[str], inst: Instrumented | None, rt: dict[str, Path] | None,
                  srcs: list[int]) -> list[str]:
    new = []
    shadows = []
    i = 0
    while i < len(args):
        a = args[i]
        d = a[2:] if a.startswith("-I") and len(a) > 2 else (args[i + 1] if a == "-I" and i + 1 < len(args) else None)
        if inst is not None and d is not None:
            shadow = _overlay_path(inst.overlay, d)
            if shadow.is_dir():  # rewritten headers of this include directory come first
                new += ["-I", str(shadow)]
                shadows.append(str(shadow))
        copy = inst.copies.get(a) if inst is not None and i in srcs else None
        new.append(str(copy) if copy is not None else a)
        i += 1
    extra = ["-I", str(runtime_paths()["include"])]
    if inst is not None:
        # quote includes: the rewritten headers first (quote dirs are searched before -I dirs)
        for q in dict.fromkeys(inst.quote_dirs):
            shadow = _overlay_path(inst.overlay, q)
            if shadow.is_dir():
                shadows.append(str(shadow))
        for q in dict.fromkeys(shadows):
            extra += ["-iquote", q]
        for q in dict.fromkeys(inst.quote_dirs):
            extra += ["-iquote", q]
    if rt is not None:
        tail = ([str(rt["dpdk"])] if links_dpdk(args) else []) + ([str(rt["pcap"])] if links_pcap(args) else []) + \
            [str(rt["core"]), "-pthread"]
        # the runtime libraries must come before the DPDK/system libraries they use
        first_lib = next((j for j, a in enumerate(new) if a.startswith("-l") or a.startswith("-Wl,")), len(new))
        new = new[:first_lib] + tail + new[first_lib:]
    return [real_cc, *extra, *new]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    real_cc, args = split_launcher(argv)
    if not args or any(a in NO_COMPILE for a in args):
        return subprocess.call([real_cc, *args])
    srcs = sources_of(args)
    link = is_link(args)
    with tempfile.TemporaryDirectory(prefix="ftmb-cc.") as tmp:
        try:
            inst = instrument_sources([args[i] for i in srcs], clang_args_for(args, srcs), Path(tmp),
                                      separate=not link) if srcs else None
            rt = ensure_runtime(links_dpdk(args), pcap=links_pcap(args)) if link else None
        except FtmbError as exc:
            print(f"ftmb-cc: error: {exc}", file=sys.stderr)
            return 1
        return subprocess.call(build_command(real_cc, args, inst, rt, srcs))


if __name__ == "__main__":
    sys.exit(main())
