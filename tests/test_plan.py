"""The plan as data (ftmb-plan/2 JSON round trip, malformed input) and the edit splicer."""

from __future__ import annotations

import json

import pytest

from ftmb_instrument.errors import RewriteError
from ftmb_instrument.plan import (CLOSE, OPEN, Edit, Plan, PlanObject, PlanRoot, PlanSite, Problem, Skipped,
                                  load_plan)
from ftmb_instrument.rewrite import apply_edits

SRC = b"int main(void) { x = 1; y = 2; }\n"


def test_insertions_at_one_offset_close_before_they_open():
    at = SRC.index(b"y")
    out = apply_edits(SRC, [Edit(at, at, "{ B; ", OPEN), Edit(at, at, "E; } ", CLOSE)])
    assert out == SRC.replace(b"y = 2;", b"E; } { B; y = 2;")


def test_identical_edits_apply_once():
    at = SRC.index(b"x")
    e = Edit(at, at + 1, "xx")
    assert apply_edits(SRC, [e, e, Edit(at, at + 1, "xx")]) == SRC.replace(b"x = 1", b"xx = 1")


def test_insertion_before_a_replacement_at_the_same_offset():
    at = SRC.index(b"x")
    out = apply_edits(SRC, [Edit(at, at + 1, "z"), Edit(at, at, "{ ", OPEN)])
    assert out == SRC.replace(b"x = 1", b"{ z = 1")


@pytest.mark.parametrize("a, b", [((4, 8), (6, 10)), ((4, 8), (4, 6)), ((4, 8), (5, 5))])
def test_overlapping_edits_are_refused(a, b):
    with pytest.raises(RewriteError, match=r"prog.c:1: conflicting edits"):
        apply_edits(SRC, [Edit(*a, "A"), Edit(*b, "B")], "prog.c")


def test_edit_outside_the_file_is_refused():
    with pytest.raises(RewriteError, match="outside the file"):
        apply_edits(SRC, [Edit(len(SRC) + 3, len(SRC) + 3, "x")])


def _plan() -> Plan:
    return Plan(
        tool_version="0.1.0", root="/src", files=(("a.c", "00" * 32),),
        objects=(PlanObject(0, "abc", "hits", "a.c:3", "ordered"),),
        sites=(PlanSite(1, "ordered", "a.c", 9, 100, 120, "ftmb_ordered_begin", (0,), "why",
                        (Edit(100, 100, "{ ", OPEN), Edit(120, 120, " }", CLOSE)), "statement"),),
        skipped=(Skipped("cfg", "a.c:4", "shared_ro"),),
        problems=(Problem("a.c:12", "cannot", "user reason"), Problem("a.c:13", "cannot")),
        reductions=("unordered_commutative: x",), failed_units=("b.c",),
        roots=(PlanRoot("main", "main", "", ("a.c:7",)), PlanRoot("worker", "pthread_create", "a.c:20", ("a.c:5",))),
    )


def test_plan_json_round_trip(tmp_path):
    plan = _plan()
    p = tmp_path / "ftmb_plan.json"
    p.write_text(plan.dumps())
    assert json.loads(p.read_text())["schema"] == "ftmb-plan/2"
    assert load_plan(str(p)) == plan
    assert [e.where for e in plan.errors] == ["a.c:13"]  # the suppressed problem is not an error


def test_wrong_schema_and_missing_fields_are_one_clear_error(tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps({"schema": "ftmb-report/1"}))
    with pytest.raises(RewriteError, match="not an ftmb-plan/2 plan"):
        load_plan(str(p))
    p.write_text(json.dumps({**_plan().to_json(), "schema": "ftmb-plan/1"}))  # made before roots were listed
    with pytest.raises(RewriteError, match=r"plan.json: an ftmb-plan/1 plan, made before plans listed the thread "
                                           r"roots; make it again \(ftmb-instrument instrument -p BUILD"):
        load_plan(str(p))
    d = _plan().to_json()
    del d["sites"][0]["edits"]
    p.write_text(json.dumps(d))
    with pytest.raises(RewriteError, match="malformed ftmb-plan/2 plan"):
        load_plan(str(p))
    p.write_text("{")
    with pytest.raises(RewriteError, match="not JSON"):
        load_plan(str(p))
