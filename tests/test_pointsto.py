"""Points-to sets as bit sets (analysis/pointsto.py): the union keeps the per-thread rule of the
dicts it replaced, the tree of stored paths finds what comparing every path with `overlaps` found,
and a program whose stores form cycles resolves the same way whatever Python's
string hashes are (sets of Refs once decided where a cycle was cut)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ftmb_instrument.analysis.pointsto import _bits, _ids, _Locations, _Union, overlaps

ids = st.integers(min_value=0, max_value=300)
pt_dicts = st.dictionaries(ids, st.booleans(), max_size=12)


def _merge_dicts(out: dict[int, bool], new: dict[int, bool]) -> None:
    """The union the dicts had: an object is per thread only where every source says so."""
    for k, v in new.items():
        out[k] = out[k] and v if k in out else v


def _as_set(d: dict[int, bool]) -> tuple[int, int]:
    return _bits(list(d)), _bits([k for k, v in d.items() if v])


@given(st.lists(ids, max_size=40))
def test_bits_round_trip(members):
    assert _ids(_bits(members)) == sorted(set(members))


@given(st.lists(pt_dicts, max_size=6))
def test_union_is_the_dict_merge(sources):
    expected: dict[int, bool] = {}
    union = _Union()
    for d in sources:
        _merge_dicts(expected, d)
        union.add(_as_set(d))
    assert union.value() == _as_set(expected)


steps = st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["x", "y", "z"]))
paths = st.lists(steps, max_size=3).map(tuple)


@given(st.dictionaries(st.tuples(st.sampled_from(["g", "h"]), paths), st.integers(0, 99), max_size=15),
       st.sampled_from(["g", "h"]), paths)
def test_locations_find_every_overlapping_path(stored, key, path):
    table = {("global", k, p): {value: None} for (k, p), value in stored.items()}
    expected = {v for (kind, k, p), values in table.items() if k == key and overlaps(p, path) for v in values}
    assert set(_Locations(table).overlapping(("global", key, path))) == expected


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
