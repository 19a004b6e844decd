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
A shared link against the system's DPDK is made against its static archives (static_dpdk;
FTMB_DPDK_LINK=shared keeps it as written): far fewer mappings for each checkpoint's fork to copy.

`-E` preprocesses the instrumented copy (the same rules as `-c`). C read from standard input
(`-x c -`, as build systems probe the compiler) is written to a file in the temporary directory
and instrumented like any source; compiled without linking it must use no project symbol it does
not define, but need not define main (a probe does not). With `-MD`/`-MMD` the
dependency file names the user's sources and headers, not the overlay's copies (it is rewritten
after the compile). Anything else (assembling, `-M`/`-MM` alone, `--version`, C++ files) is passed
to the real compiler unchanged. An instrumentation error, a missing compiler, an unreadable plan
or an unusable runtime build directory is printed as one line and the command fails: ftmb-cc
never silently compiles an uninstrumented source. SIGINT, SIGTERM and SIGHUP stop the compiler it
runs and remove its temporary directory (`/tmp/ftmb-cc.*`) before it dies of the same signal.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
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
NO_COMPILE = {"-M", "-MM", "--version", "-v", "-dumpversion", "-dumpmachine", "-print-search-dirs"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DPDK_LINK = "FTMB_DPDK_LINK"  # shared: a shared DPDK link stays shared; static (the default): see static_dpdk


def _is_compiler(word: str) -> bool:
    base = os.path.basename(word)
    return not base.startswith("-") and ("cc" in base or "clang" in base or "gcc" in base) and not base.endswith(".c")


def split_launcher(argv: list[str]) -> tuple[str, list[str]]:
    """(real compiler, its arguments) for `ftmb-cc [REAL_CC] ARGS...`."""
    if argv and _is_compiler(argv[0]) and shutil.which(argv[0]):
        return argv[0], argv[1:]
    return os.environ.get("FTMB_REAL_CC") or "gcc", argv


def sources_of(args: list[str]) -> list[int]:
    """Indexes of the C source arguments: `.c` files, and any file after `-x c`."""
    out = []
    i = 0
    lang = "none"  # -x none: by the file's suffix
    while i < len(args):
        a = args[i]
        if a == "-x" and i + 1 < len(args):
            lang = args[i + 1]
            i += 2
            continue
        if a.startswith("-x") and len(a) > 2:
            lang = a[2:]
        elif a in VALUE_FLAGS:
            i += 2
            continue
        elif not a.startswith("-") and os.path.isfile(a) and (lang == "c" or (lang == "none" and a.endswith(C_EXT))):
            out.append(i)
        i += 1
    return out


def stdin_source_index(args: list[str]) -> int | None:
    """Where `-` names a C source read from standard input (`-x c -`), or None."""
    lang = "none"
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-x" and i + 1 < len(args):
            lang = args[i + 1]
            i += 2
            continue
        if a.startswith("-x") and len(a) > 2:
            lang = a[2:]
        elif a in VALUE_FLAGS:
            i += 2
            continue
        elif a == "-" and lang == "c":
            return i
        i += 1
    return None


def is_link(args: list[str]) -> bool:
    return not any(a in ("-c", "-S", "-E") for a in args)


def links_pcap(args: list[str]) -> bool:
    return any(a == "-lpcap" or "libpcap." in a for a in args)


def links_dpdk(args: list[str]) -> bool:
    return any(a.startswith("-lrte_") or "librte_" in a or a == "-ldpdk" for a in args)


def _pkg_config_dpdk(*flags: str) -> list[str] | None:
    try:
        proc = subprocess.run(["pkg-config", *flags, "libdpdk"], capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.split() if proc.returncode == 0 else None


def dpdk_static_libs() -> list[str] | None:
    """`pkg-config --static --libs libdpdk`: DPDK's static archives, every driver inside the binary.
    It also names -lsystemd, which no DPDK archive needs (DPDK 22.11 on Debian 12) and which Debian
    installs only with libsystemd-dev: left out where that is not installed. None without pkg-config's
    libdpdk."""
    libs = _pkg_config_dpdk("--static", "--libs")
    libdir = (_pkg_config_dpdk("--variable=libdir") or [""])[0]
    if libs is None:
        return None
    return [f for f in libs if f != "-lsystemd" or Path(libdir, "libsystemd.so").exists()]


def static_dpdk(args: list[str]) -> list[str]:
    """A link against the system's shared DPDK (`pkg-config --libs libdpdk`'s -lrte_* libraries)
    made against its static archives instead, unless $FTMB_DPDK_LINK is `shared`.

    Why: a dynamically linked DPDK application loads every driver of DPDK's plugin directory at
    rte_eal_init (189 shared objects, ~1000 mappings on Debian 12); each checkpoint's fork copies
    every mapping, ~1 µs of kernel CPU for each one with private pages, so the pause is ~3x a static
    build's (runtime/README.md, "Checkpoints"). Statically linked, the drivers are inside the binary
    (whole-archive) and EAL loads none: the same drivers, ~200 mappings. Left as written: `-shared`,
    -lrte_* libraries that are not pkg-config's, a -L directory with another DPDK (librte_eal.so),
    and a system without the archives (one line on stderr says so)."""
    at = [i for i, a in enumerate(args) if a.startswith("-lrte_")]
    if not at or os.environ.get(DPDK_LINK) == "shared" or any(a in ("-shared", "-static") for a in args):
        return args
    shared = _pkg_config_dpdk("--libs")
    libdir = (_pkg_config_dpdk("--variable=libdir") or [""])[0]
    if shared is None or any(args[i] not in shared for i in at):
        return args
    for i, a in enumerate(args):
        d = a[2:] if a.startswith("-L") and len(a) > 2 else (args[i + 1] if a == "-L" and i + 1 < len(args) else None)
        if d and os.path.realpath(d) != os.path.realpath(libdir) and Path(d, "librte_eal.so").exists():
            return args
    static = dpdk_static_libs() or []
    missing = [f[3:] for f in static if f.startswith("-l:") and not Path(libdir, f[3:]).exists()]
    if not static or missing:
        print(f"ftmb-cc: note: DPDK's static archives are not installed ({missing[0] if missing else 'libdpdk'} "
              f"in {libdir}): linking DPDK shared, checkpoints pause ~3x longer ({DPDK_LINK}=shared: silent)",
              file=sys.stderr)
        return args
    return [*args[:at[0]], *static, *(a for i, a in enumerate(args) if i > at[0] and i not in at)]


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


def check_whole_program(commands, root: str, need_main: bool = True) -> None:
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
    if need_main and units and not any(u.defines_main for u in units):
        raise RewriteError(f"{_shown(units[0].file)}: defines no main: it is part of a larger program that ftmb-cc -c "
                           f"cannot see; {todo}")


def _shown(path: str) -> str:
    cwd = os.getcwd() + "/"
    return path[len(cwd):] if path.startswith(cwd) else path


def instrument_sources(paths: list[str], clang_args: list[str], workdir: Path, separate: bool = False,
                       stdin: bool = False) -> Instrumented:
    """Instrument `paths` together into an overlay under workdir. Raises FtmbError.

    `separate`: the command compiles without linking (`-c`); without a plan the units must then be
    the whole program (check_whole_program), unless $FTMB_CC_SINGLE_UNIT=1.
    `stdin`: the source was read from standard input (a compiler probe): not one of a plan's units,
    analyzed alone, and it need not define main.

    The sources and every project header the plan edits are written to overlay/<absolute path>,
    so a source's `#include "x.h"` finds the rewritten x.h next to it first, and the original
    directories stay on the quote include path for everything that was not rewritten."""
    from .frontend import from_files
    from .frontend.compdb import default_project_root
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
    plan_path = None if stdin else os.environ.get("FTMB_PLAN")
    if plan_path:
        plan = load_plan(plan_path)
        known = {os.path.realpath(plan.abspath(u)) for u in plan.units}
        unknown = [p for p in todo if os.path.realpath(p) not in known]
        if unknown:
            raise RewriteError(f"{unknown[0]}: not one of the translation units of the plan {plan_path}; "
                               f"make the plan again (ftmb-instrument instrument -p BUILD --plan {plan_path})")
    else:
        # the project is the build's: make's directory when the sources are under it (compdb.py)
        commands = from_files([Path(p) for p in todo], clang_args, build_dir=os.getcwd())
        root = os.environ.get("FTMB_PROJECT_ROOT") or default_project_root(commands)
        if separate and os.environ.get(SINGLE_UNIT) != "1":
            check_whole_program(commands, root, need_main=not stdin)
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
    # the other units of the program are compiled by their own commands: only headers and these
    only = want | {os.path.realpath(plan.abspath(rel)) for rel, _ in plan.files if not rel.endswith(".c")}
    for r in apply_plan(plan, only):
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
        new = static_dpdk(new)
        tail = ([str(rt["dpdk"])] if links_dpdk(args) else []) + ([str(rt["pcap"])] if links_pcap(args) else []) + \
            [str(rt["core"]), "-pthread"]
        if any(a == "-x" or (a.startswith("-x") and len(a) > 2) for a in args):
            tail = ["-x", "none", *tail]  # after `-x c` the archives would be compiled as C
        # the runtime libraries must come before the DPDK/system libraries they use
        first_lib = next((j for j, a in enumerate(new) if a.startswith("-l") or a.startswith("-Wl,")), len(new))
        new = new[:first_lib] + tail + new[first_lib:]
    return [real_cc, *extra, *new]


def dependency_file(args: list[str], srcs: list[int]) -> str | None:
    """The file `-MD`/`-MMD` make the compiler write: -MF's, else the output's with .d, else the
    source's basename with .d (gcc's rule)."""
    if not any(a in ("-MD", "-MMD") for a in args):
        return None
    for i, a in enumerate(args):
        if a == "-MF" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("-MF") and len(a) > 3:
            return a[3:]
    for i, a in enumerate(args):
        if a == "-o" and i + 1 < len(args):
            return os.path.splitext(args[i + 1])[0] + ".d"
    if len(srcs) == 1:
        return os.path.splitext(os.path.basename(args[srcs[0]]))[0] + ".d"
    return None


def fix_dependency_file(path: str, inst: Instrumented) -> None:
    """Name the originals instead of the overlay's copies (overlay/<absolute path> is <absolute path>)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError:
        return  # the compiler wrote none (it failed): nothing to fix
    fixed = text.replace(str(inst.overlay), "")
    if fixed != text:
        tmp = f"{path}.ftmb-tmp"
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(fixed)
        os.replace(tmp, path)


class _Signalled(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_pending: list[int] = []  # a stop signal raised inside a libclang callback is swallowed there: kept here too


def _raise_signalled(signum, _frame):
    _pending.append(signum)
    raise _Signalled(signum)


def _check_signals() -> None:
    if _pending:
        raise _Signalled(_pending[0])


def _compile(cmd: list[str]) -> int:
    """Run the real compiler; a stop signal that reaches ftmb-cc meanwhile stops it too."""
    child = subprocess.Popen(cmd)
    try:
        rc = child.wait()
        _check_signals()
        return rc
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise


def _stdin_source(args: list[str], tmp: Path) -> tuple[list[str], bool]:
    """`args` with a C source read from standard input (`-x c -`) saved to tmp/stdin/stdin.c and
    named instead of `-`; and whether there was one."""
    at = stdin_source_index(args)
    if at is None:
        return args, False
    path = tmp / "stdin" / "stdin.c"
    path.parent.mkdir()
    path.write_bytes(sys.stdin.buffer.read())
    out = list(args)
    out[at] = str(path)
    # `#include "x.h"` in standard input is found from the current directory, as the compiler does
    return ["-iquote", os.getcwd(), *out], True


def _run(real_cc: str, args: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="ftmb-cc.") as tmp:
        args, from_stdin = _stdin_source(args, Path(tmp))
        srcs = sources_of(args)
        odd = [args[i] for i in srcs if not args[i].endswith(C_EXT)]
        if odd:
            print(f"ftmb-cc: error: {odd[0]}: C by -x c but not named .c, which the analysis would not parse as C; "
                  f"name it .c", file=sys.stderr)
            return 1
        link = is_link(args)
        if os.environ.get(DPDK_LINK, "") not in ("", "static", "shared"):
            print(f"ftmb-cc: error: {DPDK_LINK}={os.environ[DPDK_LINK]}: expected static or shared", file=sys.stderr)
            return 1
        try:
            inst = instrument_sources([args[i] for i in srcs], clang_args_for(args, srcs), Path(tmp),
                                      separate=not link, stdin=from_stdin) if srcs else None
            rt = ensure_runtime(links_dpdk(args), pcap=links_pcap(args)) if link else None
        except FtmbError as exc:
            msg = str(exc)
            if from_stdin:  # the saved copy is named as the compiler names standard input
                msg = re.sub(r"\S*ftmb-cc\.[^/\s]+/stdin/stdin\.c", "<stdin>", msg)
            print(f"ftmb-cc: error: {msg}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"ftmb-cc: error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        _check_signals()
        rc = _compile(build_command(real_cc, args, inst, rt, srcs))
        dep = dependency_file(args, srcs)
        if inst is not None and dep is not None:
            fix_dependency_file(dep, inst)
        return rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    real_cc, args = split_launcher(argv)
    if shutil.which(real_cc) is None:
        how = "FTMB_REAL_CC" if os.environ.get("FTMB_REAL_CC") == real_cc else "the compiler"
        print(f"ftmb-cc: error: {how} {real_cc}: no such compiler", file=sys.stderr)
        return 1
    if not args or any(a in NO_COMPILE for a in args):
        return subprocess.call([real_cc, *args])
    old = {s: signal.signal(s, _raise_signalled) for s in STOP_SIGNALS}
    try:
        return _run(real_cc, args)
    except _Signalled as exc:  # the temporary directory is gone by now: die of the same signal
        for s, h in old.items():
            signal.signal(s, h)
        signal.signal(exc.signum, signal.SIG_DFL)
        os.kill(os.getpid(), exc.signum)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
