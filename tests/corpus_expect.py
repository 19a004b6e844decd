"""The ground truth of the corpus (corpus/*.c): inline expectations and how to build and run each program.

corpus/README.md documents both formats. In short:

- line 1 of every program: ``// ftmb-corpus: style=pthread|dpdk [libs="..."] [eal="..."] [args="..."]
  [output=racy]`` (racy: the numbers it prints depend on how its threads interleave, by design);
- on the line of every file-scope variable, file static and static local:
  ``/* EXPECT: <class> [<protection>] [lock=<name>[,<name>...]] [commutative] */``; on the line of an
  allocation whose object becomes shared: ``/* EXPECT-HEAP: ... */``; on the declaration line of a
  local of main whose address is handed to threads: ``/* EXPECT-STACK: ... */``;
- a part of an object the analysis reports on its own (a struct member) is named in the marker,
  which may sit on any line (the member's declaration): ``/* EXPECT(app.pool): <class> ... */``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent.parent / "corpus"

CLASSES = ("shared_rw", "shared_ro", "per_core", "thread_private")
PROTECTIONS = ("lock", "atomic", "unprotected", "mixed")
STYLES = ("pthread", "dpdk")

# Flags every DPDK program gets before the EAL arguments of its header: no hugepages, no PCI
# scan, no shared config (several instances may run at once), no telemetry socket.
DPDK_BASE_EAL = ("--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry")
CFLAGS = ("-std=gnu11", "-Wall", "-Wextra", "-O2")
# Wall-clock limit run_command() puts around every program (they finish in well under a second).
RUN_TIMEOUT_S = 30

_KINDS = {"EXPECT": "var", "EXPECT-HEAP": "heap", "EXPECT-STACK": "stack"}
# Anything that looks like an attempt at a marker; each hit must be a well-formed marker.
_MARKER_ATTEMPT = re.compile(r"/\*\s*EXPECT\b")
_MARKER = re.compile(r"/\*\s*(EXPECT(?:-HEAP|-STACK)?)(?:\(([\w.\[\]>-]+)\))?:\s*(.*?)\s*\*/")
_HEADER = re.compile(r"^//\s*ftmb-corpus:(.*)$")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_PER_LCORE = re.compile(r"RTE_DEFINE_PER_LCORE\s*\(.*,\s*(\w+)\s*\)")
_FUNC_PTR = re.compile(r"\(\s*\*\s*(\w+)\s*\)")


@dataclass(frozen=True)
class Expectation:
    file: str  # path as given to parse_expectations
    line: int  # 1-based line of the declaration (var, stack) or of the allocation call (heap)
    kind: str  # "var" | "heap" | "stack"
    name: str  # declared name for var/stack (RTE_DEFINE_PER_LCORE(t, x): "per_lcore_x"), "" for heap
    cls: str  # one of CLASSES
    protection: str | None  # one of PROTECTIONS for shared_rw, else None
    locks: tuple[str, ...]  # locks held by every concurrent access (only with protection "lock")
    commutative: bool
    named: bool = False  # the marker names the object (a part such as `app.pool`): matched by name, any line


@dataclass
class CorpusProgram:
    path: Path
    style: str  # "pthread" | "dpdk"
    libs: tuple[str, ...]  # extra link arguments, e.g. ("-lpcap",)
    eal_args: tuple[str, ...]  # EAL arguments after DPDK_BASE_EAL (dpdk only), placeholders kept
    args: tuple[str, ...]  # program arguments (after "--" for dpdk), placeholders kept
    racy_output: bool = False  # output=racy: its printed numbers depend on the interleaving

    @property
    def name(self) -> str:
        return self.path.stem


def _declared_name(code: str) -> str:
    """The name declared by a one-line declaration (the code before the marker)."""
    m = _PER_LCORE.search(code)
    if m:
        return "per_lcore_" + m.group(1)
    head = code.split("=", 1)[0]
    m = _FUNC_PTR.search(head)
    if m:
        return m.group(1)
    head = re.split(r"[\[;]", head, maxsplit=1)[0]
    names = [n for n in _IDENT.findall(head) if not n.startswith("__")]
    return names[-1] if names else ""


def _parse_marker(where: str, kind: str, body: str) -> tuple[str, str | None, tuple[str, ...], bool]:
    tokens = body.split()
    if not tokens:
        raise ValueError(f"{where}: empty {kind} marker; expected a class: {', '.join(CLASSES)}")
    cls, rest = tokens[0], tokens[1:]
    if cls not in CLASSES:
        raise ValueError(f"{where}: unknown class {cls!r}; expected one of {', '.join(CLASSES)}")
    protection: str | None = None
    locks: tuple[str, ...] = ()
    commutative = False
    for tok in rest:
        if tok in PROTECTIONS:
            if protection is not None:
                raise ValueError(f"{where}: two protections ({protection}, {tok})")
            protection = tok
        elif tok.startswith("lock="):
            if locks:
                raise ValueError(f"{where}: lock= given twice")
            locks = tuple(tok[len("lock="):].split(","))
            if not all(locks):
                raise ValueError(f"{where}: empty lock name in {tok!r}")
        elif tok == "commutative":
            if commutative:
                raise ValueError(f"{where}: commutative given twice")
            commutative = True
        else:
            raise ValueError(
                f"{where}: unexpected {tok!r}; after the class come [protection] [lock=NAME,...] "
                "[commutative]"
            )
    if cls == "shared_rw":
        if protection is None:
            raise ValueError(f"{where}: shared_rw needs a protection: {', '.join(PROTECTIONS)}")
        if protection == "lock" and not locks:
            raise ValueError(f"{where}: protection 'lock' needs lock=NAME")
        if protection != "lock" and locks:
            raise ValueError(f"{where}: lock= belongs only to protection 'lock' (got {protection})")
    elif protection is not None or locks or commutative:
        raise ValueError(f"{where}: only shared_rw takes a protection, lock= or commutative")
    return cls, protection, locks, commutative


def parse_expectations(path: str | Path) -> list[Expectation]:
    """All markers of one C file, in line order. Raises ValueError("file:line: ...") on a bad one."""
    path_s = str(path)
    out: list[Expectation] = []
    for lineno, text in enumerate(Path(path).read_text().splitlines(), start=1):
        attempts = len(_MARKER_ATTEMPT.findall(text))
        if not attempts:
            continue
        where = f"{path_s}:{lineno}"
        markers = list(_MARKER.finditer(text))
        if len(markers) != attempts:
            raise ValueError(
                f"{where}: malformed marker; write /* EXPECT: <class> ... */, "
                "/* EXPECT-HEAP: ... */ or /* EXPECT-STACK: ... */"
            )
        if len(markers) > 1:
            raise ValueError(f"{where}: more than one marker on a line")
        m = markers[0]
        kind = _KINDS[m.group(1)]
        cls, protection, locks, commutative = _parse_marker(where, m.group(1), m.group(3))
        name = m.group(2) or ""
        if kind != "heap" and not name:
            name = _declared_name(text[: m.start()])
            if not name:
                raise ValueError(f"{where}: no declaration before the {m.group(1)} marker")
        out.append(Expectation(path_s, lineno, kind, name, cls, protection, locks, commutative, bool(m.group(2))))
    return out


def parse_header(path: str | Path) -> CorpusProgram:
    """The build/run header on line 1 of a corpus program. Raises ValueError("file:1: ...")."""
    path = Path(path)
    first = path.read_text().split("\n", 1)[0]
    where = f"{path}:1"
    m = _HEADER.match(first)
    if not m:
        raise ValueError(f'{where}: first line must be // ftmb-corpus: style=pthread|dpdk [libs="..."] '
                         '[eal="..."] [args="..."]')
    try:
        words = shlex.split(m.group(1))
    except ValueError as e:
        raise ValueError(f"{where}: bad quoting in header: {e}") from None
    fields: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in ("style", "libs", "eal", "args", "output"):
            raise ValueError(f"{where}: unexpected {word!r}; keys are style, libs, eal, args, output")
        if key in fields:
            raise ValueError(f"{where}: {key} given twice")
        fields[key] = value
    style = fields.get("style")
    if style not in STYLES:
        raise ValueError(f"{where}: style must be one of {', '.join(STYLES)}")
    if style == "pthread" and "eal" in fields:
        raise ValueError(f"{where}: eal= is for style=dpdk only")
    if fields.get("output", "racy") != "racy":
        raise ValueError(f"{where}: output= must be racy")
    return CorpusProgram(
        path=path,
        style=style,
        libs=tuple(shlex.split(fields.get("libs", ""))),
        eal_args=tuple(shlex.split(fields.get("eal", ""))),
        args=tuple(shlex.split(fields.get("args", ""))),
        racy_output="output" in fields,
    )


def corpus_programs() -> list[CorpusProgram]:
    """Every corpus/*.c, sorted by name."""
    return [parse_header(p) for p in sorted(CORPUS_DIR.glob("*.c"))]


def corpus_expectations() -> list[Expectation]:
    """The expectations of every corpus program."""
    return [e for prog in corpus_programs() for e in parse_expectations(prog.path)]


def _pkg_config_dpdk() -> list[str]:
    res = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libdpdk"], capture_output=True, text=True, check=True
    )
    return res.stdout.split()


def build_command(program: CorpusProgram, output: str | Path) -> list[str]:
    """gcc command line that compiles the program into `output` (no -Werror: callers check stderr)."""
    cmd = ["gcc", *CFLAGS]
    if program.style == "pthread":
        cmd.append("-pthread")
    cmd += [str(program.path), "-o", str(output), *program.libs]
    if program.style == "dpdk":
        cmd += _pkg_config_dpdk()
    return cmd


def _substitute(arg: str, binary: Path) -> str:
    return arg.replace("{corpus}", str(CORPUS_DIR)).replace("{out}", str(binary.resolve().parent))


def run_command(program: CorpusProgram, binary: str | Path) -> list[str]:
    """Command line that runs the built program to completion, wrapped in `timeout`.

    Placeholders in eal/args: {corpus} is the absolute corpus directory, {out} the directory of
    `binary` (where programs write output files).
    """
    binary = Path(binary)
    cmd = ["timeout", "--kill-after=5", str(RUN_TIMEOUT_S), str(binary.resolve())]
    if program.style == "dpdk":
        cmd += [*DPDK_BASE_EAL, *(_substitute(a, binary) for a in program.eal_args), "--"]
    cmd += [_substitute(a, binary) for a in program.args]
    return cmd
