"""Round trip over the corpus: every program, instrumented, compiles with the original flags and no
new warnings, and linked against the runtime in passthrough mode prints what the original prints.

Some programs print interleaving-dependent numbers: the original runs twice; when the two runs
differ, only what they agree on is compared (see the end of test_corpus_round_trip)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest

from corpus_expect import CorpusProgram, build_command, corpus_programs, run_command
from ftmb_instrument.cc import ensure_runtime
from ftmb_instrument.frontend import from_files
from ftmb_instrument.rewrite import apply_plan
from ftmb_instrument.rewrite.pipeline import make_plan
from ftmb_instrument.semantics import load_semantics

PROGRAMS = corpus_programs()
# DPDK reader-writer locks have no ftmb_ wrapper in ABI 1: the planner must report exactly these
# call sites (and nothing else) for these programs. The rest of the program is still rewritten
# and must round trip.
UNWRAPPED_LOCK = re.compile(r"rte_rwlock_\w+\(\) has no ftmb_ lock wrapper")
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


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_corpus_round_trip(program: CorpusProgram, tmp_path: Path) -> None:
    rt = ensure_runtime(program.style == "dpdk")
    inst, errors = _instrument(program, tmp_path)
    assert all(UNWRAPPED_LOCK.search(e) for e in errors), errors
    if "rte_rwlock" not in program.path.read_text():
        assert not errors

    orig_bin, inst_bin = tmp_path / "orig" / program.name, tmp_path / "inst" / program.name
    orig_bin.parent.mkdir()
    inst_bin.parent.mkdir()
    b0 = subprocess.run(build_command(program, orig_bin), capture_output=True, text=True)
    assert b0.returncode == 0, b0.stderr
    cmd = build_command(inst, inst_bin)
    libs = ([str(rt["dpdk"])] if program.style == "dpdk" else []) + [str(rt["core"])]
    cut = cmd.index("-o") + 2
    cmd = [cmd[0], "-I", str(rt["include"]), *cmd[1:cut], *libs, *cmd[cut:], "-pthread"]
    b1 = subprocess.run(cmd, capture_output=True, text=True)
    assert b1.returncode == 0, b1.stderr
    # #line keeps the original line numbers, so the warnings must be the same ones
    assert _warnings(b1.stderr) == _warnings(b0.stderr), b1.stderr

    first = subprocess.run(run_command(program, orig_bin), capture_output=True, text=True)
    second = subprocess.run(run_command(program, orig_bin), capture_output=True, text=True)
    got = subprocess.run(run_command(inst, inst_bin), capture_output=True, text=True,
                         env={**os.environ, "FTMB_MODE": "passthrough"})
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert got.returncode == 0, got.stderr[-2000:]
    a, b, c = first.stdout.splitlines(), second.stdout.splitlines(), got.stdout.splitlines()
    if a == b:
        assert c == a
    else:
        # interleaving-dependent output: every line must have a shape (digits masked) the original
        # printed, the summary line must be there, and where the line counts agree, the lines the
        # two original runs agree on must be the same
        assert {_shape(x) for x in c} <= {_shape(x) for x in a + b}, (a, b, c)
        assert c and _shape(c[-1]) == _shape(a[-1])
        if len(a) == len(b) == len(c):
            stable = [i for i in range(len(a)) if a[i] == b[i]]
            assert [c[i] for i in stable] == [a[i] for i in stable]


def _shape(line: str) -> str:
    return re.sub(r"\d+", "#", line)
