"""Round trip over the corpus: every program, instrumented, compiles with the original flags and no
new warnings, and linked against the runtime in passthrough mode prints what the original prints.

Some programs print interleaving-dependent numbers. Original and instrumented run side by side
(up to RUNS rounds) until an instrumented output equals an original one, or until the original
shows that its own output varies, or the corpus header declares it (output=racy); then only the
shape of the output (numbers masked) is compared: the same lines (a racy one-time message may repeat)
and the same last line as one of the original's runs. Only a program's numbers may depend on the
scheduling, never which lines it prints (corpus/README.md). Any other program must be matched exactly.

The runtime is built once for this module from runtime/ into a private directory, so that a
concurrent rebuild of runtime/build cannot race with the links here."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest

from corpus_expect import CorpusProgram, build_command, corpus_programs, run_command
from ftmb_instrument.bundle import ensure_runtime
from ftmb_instrument.frontend import from_files
from ftmb_instrument.rewrite import apply_plan
from ftmb_instrument.rewrite.pipeline import make_plan
from ftmb_instrument.semantics import load_semantics

PROGRAMS = corpus_programs()
# DPDK reader-writer locks have no ftmb_ wrapper in ABI 1: the planner must report exactly these
# call sites (and nothing else) for these programs. The rest of the program is still rewritten
# and must round trip.
RUNS = 5
UNWRAPPED_LOCK = re.compile(r"rte_rwlock_\w+\(\) has no ftmb_ lock wrapper")
# rte_timer_manage() fires timers by the library's own clock read: refused for failover (a replay
# would diverge), while the rest of the program still round trips in passthrough.
UNREPLAYABLE = re.compile(r"rte_timer_manage\(\) fires the timers that are due by the library's own reading")
WARNING = re.compile(r"^[^:\s]+:(\d+):\d+: warning: (.*)$", re.M)


def _dpdk(flag: str) -> list[str]:
    return subprocess.run(["pkg-config", flag, "libdpdk"], capture_output=True, text=True, check=True).stdout.split()


def _instrument(program: CorpusProgram, out: Path) -> tuple[CorpusProgram, list[str]]:
    args = ["-std=gnu11"] + (_dpdk("--cflags") if program.style == "dpdk" else [])
    commands = from_files([program.path], args)
    _, plan = make_plan(commands, load_semantics(), str(program.path.parent), jobs=1)
    rewritten = apply_plan(plan)
    assert [os.path.realpath(r.path) for r in rewritten] == [os.path.realpath(program.path)]
    copy = out / program.path.name
    copy.write_bytes(rewritten[0].text)
    return dataclasses.replace(program, path=copy), [p.message for p in plan.errors]


def _warnings(stderr: str) -> list[tuple[str, str]]:
    return sorted((m.group(1), m.group(2)) for m in WARNING.finditer(stderr))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    old = os.environ.get("FTMB_RUNTIME_BUILD")
    os.environ["FTMB_RUNTIME_BUILD"] = str(tmp_path_factory.mktemp("runtime-build"))
    try:
        yield ensure_runtime(dpdk=True, pcap=True)
    finally:
        if old is None:
            del os.environ["FTMB_RUNTIME_BUILD"]
        else:
            os.environ["FTMB_RUNTIME_BUILD"] = old


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_corpus_round_trip(program: CorpusProgram, tmp_path: Path, runtime) -> None:
    rt = runtime
    inst, errors = _instrument(program, tmp_path)
    assert all(UNWRAPPED_LOCK.search(e) or UNREPLAYABLE.search(e) for e in errors), errors
    source = program.path.read_text()
    assert any(UNREPLAYABLE.search(e) for e in errors) == ("rte_timer_manage(" in source), errors
    if "rte_rwlock" not in source and "rte_timer_manage(" not in source:
        assert not errors

    orig_bin, inst_bin = tmp_path / "orig" / program.name, tmp_path / "inst" / program.name
    orig_bin.parent.mkdir()
    inst_bin.parent.mkdir()
    b0 = subprocess.run(build_command(program, orig_bin), capture_output=True, text=True)
    assert b0.returncode == 0, b0.stderr
    cmd = build_command(inst, inst_bin)
    libs = ([str(rt["dpdk"])] if program.style == "dpdk" else []) + \
        ([str(rt["pcap"])] if "-lpcap" in cmd else []) + [str(rt["core"])]
    cut = cmd.index("-o") + 2
    cmd = [cmd[0], "-I", str(rt["include"]), *cmd[1:cut], *libs, *cmd[cut:], "-pthread"]
    b1 = subprocess.run(cmd, capture_output=True, text=True)
    assert b1.returncode == 0, b1.stderr
    # #line keeps the original line numbers, so the warnings must be the same ones
    assert _warnings(b1.stderr) == _warnings(b0.stderr), b1.stderr

    seen: set[tuple[str, ...]] = set()
    got: set[tuple[str, ...]] = set()
    for _ in range(RUNS):
        run = subprocess.run(run_command(program, orig_bin), capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        seen.add(tuple(run.stdout.splitlines()))
        inst_run = subprocess.run(run_command(inst, inst_bin), capture_output=True, text=True,
                                  env={**os.environ, "FTMB_MODE": "passthrough"})
        assert inst_run.returncode == 0, inst_run.stderr[-2000:]
        got.add(tuple(inst_run.stdout.splitlines()))
        if got & seen or len(seen) > 1:
            break
    if got & seen:
        return
    # the original's own output varies (seen here, or declared: output=racy, for a program that may
    # happen to print the same numbers every time on an idle machine): compare the shape only
    assert len(seen) > 1 or program.racy_output, \
        f"the original always printed {sorted(seen)}, instrumented: {sorted(got)}"
    # The lines an output has, numbers masked, and its last (the summary): what the original printed
    # in one of its runs. A line may repeat (a racy one-time message printed twice), but none may be
    # missing or new: a program whose lines themselves depend on the scheduling breaks the corpus's
    # rule (corpus/README.md, `output`) and is fixed there, not learned here.
    shapes = {(frozenset(_shape(x) for x in run), _shape(run[-1]) if run else "") for run in seen}
    for c in got:
        shape = (frozenset(_shape(x) for x in c), _shape(c[-1]) if c else "")
        assert shape in shapes, f"the instrumented output {list(c)} has lines no original run had; " \
            f"the original's runs: {[list(run) for run in seen]}"


def _shape(line: str) -> str:
    # numbers, decimal or hex (an address, a hash), whatever their value
    return re.sub(r"\b(?:0x)?[0-9a-fA-F]*\d[0-9a-fA-F]*\b", "#", line)
