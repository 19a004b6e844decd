"""Points-to resolution (analysis/pointsto.py): the worklist solver finds what evaluating every Ref
again and again until nothing changes finds (the same rules, written plainly), the tree of stored
paths finds what comparing every path with `overlaps` found, an object with too many locations
becomes its whole, and a program whose stores form cycles resolves the same way whatever Python's
string hashes are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ftmb_instrument.analysis import pointsto
from ftmb_instrument.analysis.pointsto import MAX_PATH, STORE_ROUNDS, PointsTo, _bits, _ids, _Locations, overlaps
from ftmb_instrument.analysis.program import Program
from ftmb_instrument.facts import Ref
from ftmb_instrument.semantics import load_semantics

ids = st.integers(min_value=0, max_value=300)


@given(st.lists(ids, max_size=40))
def test_bits_round_trip(members):
    assert _ids(_bits(members)) == sorted(set(members))


steps = st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["x", "y", "z"]))
paths = st.lists(steps, max_size=3).map(tuple)


@given(st.dictionaries(st.tuples(st.sampled_from(["g", "h"]), paths), st.integers(0, 99), max_size=15),
       st.sampled_from(["g", "h"]), paths)
def test_locations_find_every_overlapping_path(stored, key, path):
    table = {("global", k, p): {value: None} for (k, p), value in stored.items()}
    expected = {v for (kind, k, p), values in table.items() if k == key and overlaps(p, path) for v in values}
    assert set(_Locations(table).overlapping(("global", key, path))) == expected


SEM = load_semantics([])
base_refs = st.sampled_from([Ref("global", "g0"), Ref("global", "g1"), Ref("global", "g2"), Ref("alloc", "a0")])
refs = st.recursive(base_refs, lambda inner: st.one_of(
    st.builds(lambda r, rec, mem: Ref("field", rec, inner=r, member=mem), inner, st.sampled_from(["R", "S"]),
              st.sampled_from(["x", "y"])),
    st.builds(lambda r: Ref("whole", inner=r), inner),
    st.builds(lambda r: Ref("load", inner=r), inner)), max_leaves=4)


def _reference(flows: list[tuple[Ref, Ref]]) -> dict[Ref, set]:
    """The resolution's rules evaluated plainly: every Ref again until nothing changes, for the
    stores the previous round's destinations give, in rounds until those stop changing."""
    every: list[Ref] = []
    for dest, value in flows:
        for r in (dest, value):
            while r is not None:
                every.append(r)
                r = r.inner

    def solve(stored: dict[frozenset, set]) -> dict[Ref, set]:
        """A location whose stores carry nothing, once everything else is solved, denotes itself
        as one with no store does, and keeps it."""
        val: dict[Ref, set] = {r: set() for r in every}
        itself: set[tuple[Ref, tuple]] = set()
        changed = True
        while changed:
            changed = False
            for r in every:
                got = set(val.get(r, ()))
                if r.kind in ("global", "alloc"):
                    got.add((r.kind, r.key, ()))
                elif r.kind == "field":
                    step = (r.key, r.member)
                    got |= {(k, key, p + (step,) if len(p) < MAX_PATH else p) for k, key, p in val.get(r.inner, ())}
                elif r.kind == "whole":
                    got |= {(k, key, ()) for k, key, _ in val.get(r.inner, ())}
                elif r.kind == "load":
                    for o in val.get(r.inner, ()):
                        values = [v for dests, vs in stored.items() for v in vs
                                  if any(d[:2] == o[:2] and overlaps(d[2], o[2]) for d in dests)]
                        got |= set().union(*(val[v] for v in values)) if values else {o}
                        if (r, o) in itself:
                            got.add(o)
                if got != val[r]:
                    val[r] = got
                    changed = True
            if not changed:
                for r in every:
                    for o in val[r.inner] if r.kind == "load" else ():
                        values = [v for dests, vs in stored.items() for v in vs
                                  if any(d[:2] == o[:2] and overlaps(d[2], o[2]) for d in dests)]
                        if values and not set().union(*(val[v] for v in values)) and (r, o) not in itself:
                            itself.add((r, o))
                            changed = True
        return val

    stored: dict[frozenset, set] = {}
    val = solve(stored)
    for _ in range(STORE_ROUNDS):
        new: dict[frozenset, set] = {}
        for dest, value in flows:
            new.setdefault(frozenset(val[dest]), set()).add(value)
        if new == stored:
            break
        stored = new
        val = solve(stored)
    return val


@given(st.lists(st.tuples(refs, refs), min_size=1, max_size=8))
def test_the_solver_finds_what_plain_evaluation_finds(flows):
    program = Program(SEM, flows=list(flows))
    pts = PointsTo(program)
    expected = _reference(flows)
    for dest, value in flows:
        for r in (dest, value):
            assert set(pts.resolve(r)) == expected[r], r


def test_an_object_with_too_many_locations_becomes_its_whole():
    def member(obj: str, i: int) -> Ref:
        return Ref("field", "R", inner=Ref("global", obj), member=f"m{i}")

    many = [member("big", i) for i in range(pointsto.LOCATIONS_PER_OBJECT + 10)]
    few = [member("small", i) for i in range(3)]
    program = Program(SEM, flows=[(m, Ref("alloc", "a0")) for m in many + few])
    pts = PointsTo(program)
    assert [set(pts.resolve(m)) for m in few] == [{("global", "small", (("R", f"m{i}"),))} for i in range(3)]
    # the whole overlaps every member: what any member's load finds, nothing was lost
    assert all(set(pts.resolve(m)) == {("global", "big", ())} for m in many)
    assert set(pts.resolve(Ref("load", inner=many[0]))) == {("alloc", "a0", ())}


CYCLES = """
#include <pthread.h>
#include <stdlib.h>
struct node { struct node *next; struct node *prev; long hits; };
struct table { struct node *head; struct node *free; };
static struct table tbl;
static struct node *cursor;
static void push(struct node **at, struct node *n) { n->next = *at; if (*at) (*at)->prev = n; *at = n; }
static struct node *pop(struct node **at) { struct node *n = *at; if (n) *at = n->next; return n; }
static void *worker(void *arg) {
    struct node *n = arg;
    for (int i = 0; i < 100; i++) {
        struct node *m = pop(&tbl.free);
        if (!m) m = n;
        m->hits++;
        push(&tbl.head, m);
        for (cursor = tbl.head; cursor; cursor = cursor->next) cursor->prev->hits += cursor->hits;
    }
    return NULL;
}
int main(void) {
    pthread_t t[2];
    for (int i = 0; i < 8; i++) push(&tbl.free, calloc(1, sizeof(struct node)));
    for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, worker, calloc(1, sizeof(struct node)));
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    return 0;
}
"""


def test_report_does_not_depend_on_string_hashes(tmp_path):
    (tmp_path / "prog.c").write_text(textwrap.dedent(CYCLES))
    exe = Path(sys.executable).parent / "ftmb-instrument"
    reports = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"report{seed}.json"
        subprocess.run([str(exe), "analyze", str(tmp_path / "prog.c"), "--project-root", str(tmp_path),
                        "-f", "json", "-o", str(out), "--jobs", "1"],
                       check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed})
        reports.append(json.loads(out.read_text()))
    assert reports[0]["variables"], "the program's objects are reported"
    assert reports[1] == reports[0] and reports[2] == reports[0]
