"""Every allocation family the rewriter moves to the state arena keeps every argument of the call
(rte_*_socket keep the socket), and the program behaves as the original: the C library's malloc,
calloc, aligned_alloc, memalign, valloc, pvalloc, strdup, strndup, and DPDK's rte_malloc,
rte_zmalloc, rte_calloc, their _socket variants, rte_realloc(_socket) and rte_free.

Each program (tests/alloc_programs/) keeps one shared buffer per family, filled by three threads
under a lock, prints what the family promises (alignment, zeroing, usable size, contents) and
frees the buffers through a project macro: free() and realloc() are not rewritten at all (the
runtime interposes them, so an arena pointer freed inside a macro expansion still goes to the
arena), rte_free and rte_realloc become their entries. The original and the instrumented program
(passthrough mode) must print the same; the instrumented one must also say each buffer lies in the
arena (stderr)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ftmb_instrument.bundle import ensure_runtime
from ftmb_instrument.frontend import from_files
from ftmb_instrument.rewrite import apply_plan
from ftmb_instrument.rewrite.pipeline import make_plan
from ftmb_instrument.semantics import load_semantics

PROGRAMS = Path(__file__).resolve().parent / "alloc_programs"
FLAGS = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread"]
EAL = ["--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", "-l", "0"]

# family -> (the original call's text, the call the rewriter must leave in its place)
LIBC = {
    "malloc": ("malloc(N)", "ftmb_state_alloc(N)"),
    "calloc": ("calloc(N, 1)", "ftmb_state_calloc(N, 1)"),
    "aligned_alloc": ("aligned_alloc(256, 4 * N)", "ftmb_state_aligned_alloc(256, 4 * N)"),
    "memalign": ("memalign(512, N)", "ftmb_state_aligned_alloc(512, N)"),
    "valloc": ("valloc(N)", "ftmb_state_valloc(N)"),
    "pvalloc": ("pvalloc(N)", "ftmb_state_pvalloc(N)"),
    "strdup": ('strdup("strdup")', 'ftmb_state_strdup("strdup")'),
    "strndup": ('strndup("strndup-and-more", 7)', 'ftmb_state_strndup("strndup-and-more", 7)'),
}
RTE = {
    "malloc": ('rte_malloc("m", N, 0)', 'ftmb_rte_malloc("m", N, 0)'),
    "zmalloc": ('rte_zmalloc("z", N, 128)', 'ftmb_rte_zmalloc("z", N, 128)'),
    "calloc": ('rte_calloc("c", N, 1, 0)', 'ftmb_rte_calloc("c", N, 1, 0)'),
    "malloc_socket": ('rte_malloc_socket("ms", N, 1024, socket)', 'ftmb_rte_malloc_socket("ms", N, 1024, socket)'),
    "zmalloc_socket": ('rte_zmalloc_socket("zs", N, 256, socket)', 'ftmb_rte_zmalloc_socket("zs", N, 256, socket)'),
    "calloc_socket": ('rte_calloc_socket("cs", N, 1, 64, SOCKET_ID_ANY)',
                      'ftmb_rte_calloc_socket("cs", N, 1, 64, SOCKET_ID_ANY)'),
    "realloc": ("rte_realloc(b_malloc, 8192, 2048)", "ftmb_rte_realloc(b_malloc, 8192, 2048)"),
    "realloc_socket": ("rte_realloc_socket(b_zmalloc, 8192, 4096, socket)",
                       "ftmb_rte_realloc_socket(b_zmalloc, 8192, 4096, socket)"),
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    old = os.environ.get("FTMB_RUNTIME_BUILD")
    os.environ["FTMB_RUNTIME_BUILD"] = str(tmp_path_factory.mktemp("runtime-build"))
    try:
        yield ensure_runtime(dpdk=True)
    finally:
        if old is None:
            del os.environ["FTMB_RUNTIME_BUILD"]
        else:
            os.environ["FTMB_RUNTIME_BUILD"] = old


def pkg_config(*what: str) -> list[str]:
    res = subprocess.run(["pkg-config", *what, "libdpdk"], capture_output=True, text=True)
    assert res.returncode == 0, f"pkg-config libdpdk: {res.stderr.strip()} (DPDK's development files are needed)"
    return res.stdout.split()


class Built:
    def __init__(self, original: str, instrumented: str, plan, orig_out, inst_out, inst_err):
        self.original, self.instrumented, self.plan = original, instrumented, plan
        self.orig_out, self.inst_out, self.inst_err = orig_out, inst_out, inst_err


def build(tmp: Path, rt, name: str, cflags: list[str], libs: list[str], argv: list[str]) -> Built:
    src = tmp / name
    src.write_text((PROGRAMS / name).read_text())
    _, plan = make_plan(from_files([src], ["-std=gnu11", *cflags]), load_semantics(), str(tmp), jobs=1)
    assert plan.errors == [], plan.errors
    [rw] = apply_plan(plan)
    inst = tmp / f"inst-{name}"
    inst.write_bytes(rw.text)
    outs = []
    for i, (source, extra) in enumerate(((src, []), (inst, ["-I", str(rt["include"]), *rt_libs(rt, libs)]))):
        exe = tmp / f"prog{i}"
        res = subprocess.run(["gcc", *FLAGS, *cflags, str(source), *extra, *libs, "-o", str(exe)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        env = {**os.environ, "FTMB_MODE": "passthrough"}
        run = subprocess.run(["timeout", "-s", "KILL", "60", str(exe), *argv, f"--file-prefix=ftmb-alloc-{os.getpid()}-{i}"]
                             if libs else ["timeout", "-s", "KILL", "60", str(exe)],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        outs.append(run)
    return Built(src.read_text(), rw.text.decode(), plan, outs[0].stdout, outs[1].stdout, outs[1].stderr)


def rt_libs(rt, libs: list[str]) -> list[str]:
    return ([str(rt["dpdk"])] if libs else []) + [str(rt["core"])]


@pytest.fixture(scope="module")
def libc_prog(tmp_path_factory, runtime):
    return build(tmp_path_factory.mktemp("libc-alloc"), runtime, "libc_families.c", [], [], [])


@pytest.fixture(scope="module")
def rte_prog(tmp_path_factory, runtime):
    return build(tmp_path_factory.mktemp("rte-alloc"), runtime, "rte_families.c", pkg_config("--cflags"),
                 pkg_config("--libs"), EAL)


def output_line(out: str, family: str) -> str:
    m = re.search(rf"^{re.escape(family)}: .*$", out, re.M)
    assert m, f"no line for {family} in:\n{out}"
    return m.group(0)


def check_family(prog: Built, family: str, call: str, replacement: str) -> None:
    assert call in prog.original
    # the call is replaced by its entry with the same arguments, in the same order
    assert replacement in prog.instrumented, f"{call} was not rewritten to {replacement}"
    assert not re.search(rf"(?<!\w){re.escape(call)}", prog.instrumented.replace(replacement, ""))
    # and it behaves as the original, from the arena
    assert output_line(prog.inst_out, family) == output_line(prog.orig_out, family)
    assert f"{family} arena=1" in prog.inst_err.splitlines()


@pytest.mark.parametrize("family", sorted(LIBC))
def test_libc_allocation_keeps_its_arguments_and_behaviour(libc_prog, family):
    check_family(libc_prog, family, *LIBC[family])


def test_allocation_in_a_project_macro_is_renamed_in_its_definition(libc_prog):
    # HAProxy's EXTRA_COUNTERS_REGISTER: calloc() inside a macro that also jumps out on failure
    assert "#define NEW_BUFFER(dst, size, fail) do { char *_b = ftmb_state_calloc(1, (size));" in libc_prog.instrumented
    assert "NEW_BUFFER(b_macro, N, failed);" in libc_prog.instrumented
    [site] = [s for s in libc_prog.plan.sites if s.kind == "alloc" and s.how == "definition"]
    assert "macro NEW_BUFFER" in site.reason
    assert output_line(libc_prog.inst_out, "macro") == output_line(libc_prog.orig_out, "macro")
    assert "macro arena=1" in libc_prog.inst_err.splitlines()


def test_free_and_realloc_are_not_rewritten_but_route_arena_pointers(libc_prog):
    # free() inside a project macro, realloc() and reallocarray() of arena blocks: no edit, no error
    assert "do { free(p); (p) = NULL; } while (0)" in libc_prog.instrumented
    assert "= realloc(b_malloc, 8192)" in libc_prog.instrumented
    assert "= reallocarray(b_calloc, 2, 4096)" in libc_prog.instrumented
    for family in ("realloc", "reallocarray"):
        assert output_line(libc_prog.inst_out, family) == output_line(libc_prog.orig_out, family)
        assert f"{family} arena=1" in libc_prog.inst_err.splitlines()
    assert not any(s.kind == "free" for s in libc_prog.plan.sites)


@pytest.mark.parametrize("family", sorted(RTE))
def test_rte_allocation_keeps_its_arguments_and_behaviour(rte_prog, family):
    check_family(rte_prog, family, *RTE[family])


def test_rte_free_is_routed_in_calls_and_in_project_macros(rte_prog):
    assert "#define RELEASE(p) do { ftmb_rte_free(p); (p) = NULL; } while (0)" in rte_prog.instrumented
    assert "rte_free(" not in rte_prog.instrumented.replace("ftmb_rte_free(", "")
    # DPDK's own memory (not program state) still goes to DPDK through the same entries
    assert output_line(rte_prog.inst_out, "own") == output_line(rte_prog.orig_out, "own") == "own: null=0"
    # a socket DPDK serves from any memory without hugepages: both succeed alike
    assert output_line(rte_prog.inst_out, "zmalloc_socket_bad") == output_line(rte_prog.orig_out, "zmalloc_socket_bad")
