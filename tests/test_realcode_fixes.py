"""Regressions found by running the analyzer on real code (DPDK examples, large C codebases).

Each test is a tiny C snippet standing for what broke; no third-party code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ftmb_instrument.frontend import parse_translation_unit
from ftmb_instrument.frontend.clang_tu import TuJob, _child_cache, _children, _preorder
from ftmb_instrument.schema import check
from ftmb_instrument.semantics import load_semantics


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "ftmb-instrument"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# DPDK 22.11 examples/pipeline/conn.c calls accept4 without _GNU_SOURCE: GCC 12 warns, clang >= 16
# rejects it by default, and the translation unit failed. The other constructs are the rest of the
# warnings clang turned into errors that GCC 12 still accepts.
GCC12_ACCEPTS = """
#include <stddef.h>
static counter = 0;
int handler(char *s) { (void)s; return 0; }
void register_cb(int (*cb)(int));
int conn_accept(int fd) { counter++; return accept4(fd, NULL, NULL, 0); }
int mismatched(void) { int *ip = (long *)0; char *p = 5; register_cb(handler); (void)ip; (void)p; return; }
"""


def test_what_gcc12_only_warns_about_parses(tmp_path):
    (tmp_path / "conn.c").write_text(GCC12_ACCEPTS)
    proc = run("analyze", "conn.c", "-f", "json", "-o", "r.json", "--", "-std=gnu11", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert check(report) == []
    [unit] = report["translation_units"]
    assert unit["status"] == "ok"
    assert all(d["severity"] == "warning" for d in unit["diagnostics"])
    assert any("accept4" in d["message"] for d in unit["diagnostics"])
    assert report["coverage"]["functions_analyzed"] == 3


# A DPDK header defines thousands of static inline functions; the walk reads each subtree several
# times through a per-translation-unit cache of children. A stale cache across translation units
# would hand one unit's cursors to the next: the second file must see only its own functions.
FIRST = "static int a; void one(void) { a = 1; }\n"
SECOND = "static int b; int two(int x) { b += x; return b ? x : -x; }\n"


def test_children_cache_does_not_leak_between_units(tmp_path):
    sem = load_semantics([])
    root = str(tmp_path)
    results = []
    for name, text in (("first.c", FIRST), ("second.c", SECOND), ("first_again.c", FIRST)):
        (tmp_path / name).write_text(text)
        results.append(parse_translation_unit(TuJob(str(tmp_path / name), (), root, root), sem))
    names = [[f.name for f in r.facts.functions] for r in results]
    assert names == [["one"], ["two"], ["one"]]
    assert [g.name for g in results[1].facts.globals] == ["b"]
    first, again = (r.facts.functions[0].events for r in (results[0], results[2]))
    assert [(e.mode, e.offset, e.loc.split(":", 1)[1]) for e in first] == \
        [(e.mode, e.offset, e.loc.split(":", 1)[1]) for e in again]


def test_preorder_matches_the_bindings_walk(tmp_path):
    from clang import cindex as ci

    (tmp_path / "s.c").write_text(SECOND)
    tu = ci.Index.create().parse(str(tmp_path / "s.c"))
    two = next(c for c in tu.cursor.get_children() if c.spelling == "two")
    try:
        ours = [(c.kind, c.spelling, c.extent.start.offset) for c in _preorder(two)]
        assert _children(two) is _children(two)
    finally:
        _child_cache.clear()
    theirs = [(c.kind, c.spelling, c.extent.start.offset) for c in two.walk_preorder()]
    assert ours == theirs


# DPDK's pipeline/cli.c passes message macros (`#define MSG_ARG_INVALID "..."`, hundreds of lines
# above) to snprintf ~1000 times: libclang tokenizes each such argument from the #define to the use,
# and the walk took minutes for one file, recording that span as the argument's text.
MACRO_ARGS = (
    '#define MSG_ARG_INVALID "Invalid value for argument \\"%s\\".\\n"\n'
    + "".join(f"static const int filler{i} = {i} + {i} * 2;\n" for i in range(400))
    + "int snprintf(char *, unsigned long, const char *, ...);\n"
    + "void cmd(char *out, unsigned long n) {\n"
    + "".join(f'    snprintf(out, n, MSG_ARG_INVALID, "arg{i}");\n' for i in range(200))
    + "}\n"
)


def test_macro_arguments_do_not_span_back_to_the_define(tmp_path):
    (tmp_path / "cli.c").write_text(MACRO_ARGS)
    root = str(tmp_path)
    r = parse_translation_unit(TuJob(str(tmp_path / "cli.c"), (), root, root), load_semantics([]))
    [fn] = r.facts.functions
    calls = [e for e in fn.events if getattr(e, "callee", "") == "snprintf"]
    assert len(calls) == 200
    assert {c.args[2].text for c in calls} <= {"", "MSG_ARG_INVALID"}
    assert calls[0].args[3].text == '"arg0"'
