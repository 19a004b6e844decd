"""The corpus is sound ground truth: every variable carries an expectation that names it, every
program builds without warnings and runs to completion, and malformed markers are rejected."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from corpus_expect import (
    CorpusProgram,
    Expectation,
    build_command,
    corpus_programs,
    parse_expectations,
    parse_header,
    run_command,
)

PROGRAMS = corpus_programs()
ALLOCATORS = {"malloc", "calloc", "rte_malloc", "rte_zmalloc", "rte_calloc", "rte_malloc_socket",
              "rte_zmalloc_socket"}


def _ids(programs: list[CorpusProgram]) -> list[str]:
    return [p.name for p in programs]


def _dpdk_cflags() -> list[str]:
    res = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True,
                         check=True)
    return res.stdout.split()


def _declarations(program: CorpusProgram) -> tuple[set[tuple[int, str]], set[tuple[int, str]],
                                                     set[int]]:
    """(file-scope and static-local variables, other locals, lines with an allocation call) of one
    program, as libclang sees them."""
    ci = pytest.importorskip("clang.cindex")
    args = ["-std=gnu11"] + (_dpdk_cflags() if program.style == "dpdk" else [])
    tu = ci.Index.create().parse(str(program.path), args=args)
    errors = [str(d) for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
    assert not errors, f"{program.path}: libclang cannot parse it: {errors}"
    path = str(program.path)
    tracked: set[tuple[int, str]] = set()
    locals_: set[tuple[int, str]] = set()
    alloc_lines: set[int] = set()
    for cur in tu.cursor.walk_preorder():
        loc = cur.location
        if loc.file is None or loc.file.name != path:
            continue
        if cur.kind == ci.CursorKind.VAR_DECL:
            file_scope = cur.semantic_parent.kind == ci.CursorKind.TRANSLATION_UNIT
            static_local = cur.storage_class == ci.StorageClass.STATIC
            (tracked if file_scope or static_local else locals_).add((loc.line, cur.spelling))
        elif cur.kind == ci.CursorKind.CALL_EXPR and cur.spelling in ALLOCATORS:
            alloc_lines.add(loc.line)
    return tracked, locals_, alloc_lines


def test_corpus_is_big_enough_and_mixed() -> None:
    styles = Counter(p.style for p in PROGRAMS)
    assert len(PROGRAMS) >= 14
    assert styles["pthread"] >= 5 and styles["dpdk"] >= 5, styles
    for prog in PROGRAMS:
        lines = len(prog.path.read_text().splitlines())
        assert 60 <= lines <= 250, f"{prog.path}: {lines} lines, keep programs to 60-250"


def test_every_class_and_protection_occurs() -> None:
    exps = [e for p in PROGRAMS for e in parse_expectations(p.path)]
    assert {e.cls for e in exps} == {"shared_rw", "shared_ro", "per_core", "thread_private"}
    assert {e.protection for e in exps if e.protection} == {"lock", "atomic", "unprotected", "mixed"}
    assert {e.kind for e in exps} == {"var", "heap", "stack"}
    assert any(e.commutative for e in exps)


@pytest.mark.parametrize("program", PROGRAMS, ids=_ids(PROGRAMS))
def test_every_variable_has_an_expectation(program: CorpusProgram) -> None:
    exps = parse_expectations(program.path)
    tracked, locals_, alloc_lines = _declarations(program)
    var_exps = {(e.line, e.name) for e in exps if e.kind == "var" and not e.named}
    missing = sorted(tracked - var_exps)
    assert not missing, f"{program.path}: variables without an EXPECT marker (line, name): {missing}"
    stray = sorted(var_exps - tracked)
    assert not stray, f"{program.path}: EXPECT markers not on a variable's declaration: {stray}"
    for e in exps:
        if e.named:
            base = re.split(r"[.\[]|->", e.name)[0]
            assert e.kind == "heap" or base in {n for _, n in tracked | locals_}, \
                f"{e.file}:{e.line}: EXPECT({e.name}) names no variable of the program"
        elif e.kind == "stack":
            assert (e.line, e.name) in locals_, f"{e.file}:{e.line}: EXPECT-STACK not on a local"
        elif e.kind == "heap":
            assert e.line in alloc_lines, f"{e.file}:{e.line}: EXPECT-HEAP not on an allocation"
    assert len({(e.line, e.kind) for e in exps}) == len(exps)


@pytest.mark.parametrize("program", PROGRAMS, ids=_ids(PROGRAMS))
def test_program_builds_cleanly_and_runs(program: CorpusProgram, tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    binary = tmp_path / program.name
    build = subprocess.run(build_command(program, binary), capture_output=True, text=True)
    assert build.returncode == 0, f"{program.path} does not compile:\n{build.stderr}"
    assert build.stderr == "", f"{program.path} compiles with warnings:\n{build.stderr}"
    run = subprocess.run(run_command(program, binary), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (
        f"{program.path} exited with {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    )
    assert f"{program.name}:" in run.stdout, f"{program.path}: no summary line in\n{run.stdout}"


GOOD = "static int x; /* EXPECT: shared_rw lock lock=tbl.lock,other commutative */\n"


def test_parse_accepts_all_marker_kinds(tmp_path: Path) -> None:
    src = tmp_path / "ok.c"
    src.write_text(
        "// ftmb-corpus: style=pthread\n"
        + GOOD
        + "static void *(*entry)(void *) = 0; /* EXPECT: thread_private */\n"
        + "static RTE_DEFINE_PER_LCORE(int, cnt); /* EXPECT: per_core */\n"
        + "int main(void) {\n"
        + "  struct ctx c; /* EXPECT-STACK: shared_rw atomic */\n"
        + "  p = malloc(8); /* EXPECT-HEAP: shared_ro */\n"
        + "}\n"
        + "  long rx_pkts; /* EXPECT(stats.rx.rx_pkts): shared_rw unprotected commutative */\n"
    )
    assert parse_expectations(src) == [
        Expectation(str(src), 2, "var", "x", "shared_rw", "lock", ("tbl.lock", "other"), True),
        Expectation(str(src), 3, "var", "entry", "thread_private", None, (), False),
        Expectation(str(src), 4, "var", "per_lcore_cnt", "per_core", None, (), False),
        Expectation(str(src), 6, "stack", "c", "shared_rw", "atomic", (), False),
        Expectation(str(src), 7, "heap", "", "shared_ro", None, (), False),
        Expectation(str(src), 9, "var", "stats.rx.rx_pkts", "shared_rw", "unprotected", (), True, True),
    ]


@pytest.mark.parametrize(
    "marker",
    [
        "/* EXPECT: */",
        "/* EXPECT: shared */",
        "/* EXPECT: shared_rw */",
        "/* EXPECT: shared_rw lock */",
        "/* EXPECT: shared_rw atomic lock=m */",
        "/* EXPECT: shared_rw atomic unprotected */",
        "/* EXPECT: shared_ro atomic */",
        "/* EXPECT: per_core commutative */",
        "/* EXPECT: shared_rw lock lock= */",
        "/* EXPECT: shared_rw atomic fast */",
        "/* EXPECT shared_ro */",
        "/* EXPECT-GLOBAL: shared_ro */",
        "/* EXPECT: shared_ro */ /* EXPECT: shared_ro */",
        "/* EXPECT(): shared_ro */",
        "/* EXPECT(a b): shared_ro */",
    ],
)
def test_parse_rejects_malformed_marker(tmp_path: Path, marker: str) -> None:
    src = tmp_path / "bad.c"
    src.write_text(GOOD + f"static int y; {marker}\n")
    with pytest.raises(ValueError, match=rf"bad\.c:2: "):
        parse_expectations(src)


@pytest.mark.parametrize(
    "header",
    [
        "/* not a header */",
        "// ftmb-corpus: style=rust",
        "// ftmb-corpus: style=pthread eal=--vdev=net_null0",
        "// ftmb-corpus: style=dpdk colour=blue",
        '// ftmb-corpus: style=dpdk args="unterminated',
    ],
)
def test_parse_header_rejects_bad_header(tmp_path: Path, header: str) -> None:
    src = tmp_path / "bad.c"
    src.write_text(header + "\nint main(void) { return 0; }\n")
    with pytest.raises(ValueError, match=r"bad\.c:1: "):
        parse_header(src)


def test_commands_substitute_placeholders(tmp_path: Path) -> None:
    src = tmp_path / "p.c"
    src.write_text(
        '// ftmb-corpus: style=dpdk eal="--vdev=net_pcap0,rx_pcap={corpus}/in.pcap,tx_pcap={out}/o.pcap'
        ' --lcores=(0-2)@(0,1)" args="-n 3"\n'
    )
    prog = parse_header(src)
    cmd = run_command(prog, tmp_path / "p")
    assert cmd[0] == "timeout"
    assert cmd[cmd.index("--") + 1:] == ["-n", "3"]
    vdev = next(a for a in cmd if a.startswith("--vdev="))
    assert "{" not in vdev and f"tx_pcap={tmp_path}/o.pcap" in vdev
    assert "--no-huge" in cmd and "--lcores=(0-2)@(0,1)" in cmd
