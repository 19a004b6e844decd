from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_report_sample import COUNTER, FLOWS, HITS, PER_CORE, STATS, access, sample_report

from ftmb_instrument.diff import diff_reports, load_report
from ftmb_instrument.errors import ReportError
from ftmb_instrument.model import Report, Variable
from ftmb_instrument.report import json as json_report


def with_variables(report: Report, *changed: Variable, drop: tuple[str, ...] = ()) -> Report:
    by_id = {v.id: v for v in report.variables if v.id not in drop}
    by_id.update({v.id: v for v in changed})
    return replace(report, variables=tuple(by_id.values()))


def test_identical_reports_have_no_difference() -> None:
    diff = diff_reports(sample_report(), sample_report())
    assert diff.empty
    assert diff.to_json()["differences"] is False


def test_moved_code_is_no_difference() -> None:
    old = sample_report()
    moved = [replace(v, decl=v.decl + "0", accesses=tuple(replace(a, loc="nat.c:999:1") for a in v.accesses))
             for v in old.variables]
    assert diff_reports(old, replace(old, variables=tuple(reversed(moved)))).empty


def test_new_and_removed_variables() -> None:
    old = sample_report()
    added = replace(COUNTER, id="id-new", name="drops")
    diff = diff_reports(old, with_variables(old, added, drop=("id-hits",)))
    assert [v.name for v in diff.new_variables] == ["drops"]
    assert [v.id for v in diff.removed_variables] == ["id-hits"]
    # The new variable's unprotected rmw in worker is new too; the removed one had none.
    assert [(a.variable.name, a.function, a.mode) for a in diff.new_unprotected_accesses] == [("drops", "worker", "rmw")]
    assert not diff.empty


def test_reclassified_variable() -> None:
    old = sample_report()
    shared = replace(PER_CORE, cls="shared_rw", protection="unprotected")
    diff = diff_reports(old, with_variables(old, shared))
    assert [(c.variable.name, c.old, c.new) for c in diff.reclassified] == [("core_stats", "per_core", "shared_rw")]
    assert [(c.old, c.new) for c in diff.protection_changed] == [
        ({"protection": None, "locks": []}, {"protection": "unprotected", "locks": []}),
    ]
    assert [(a.variable.id, a.function, a.mode, a.locs) for a in diff.new_unprotected_accesses] == [
        ("id-per-core", "worker", "rmw", ("nat.c:46:5",)),
    ]


def test_protection_and_lock_set_changes() -> None:
    old = sample_report()
    relocked = replace(FLOWS, locks=("table_lock",),
                       accesses=tuple(replace(a, locks_held=("table_lock",)) for a in FLOWS.accesses))
    now_atomic = replace(STATS, protection="atomic", accesses=tuple(replace(a, atomic=True, locks_held=()) for a in STATS.accesses))
    diff = diff_reports(old, with_variables(old, relocked, now_atomic))
    changes = {c.variable.name: (c.old, c.new) for c in diff.protection_changed}
    assert changes == {
        "flows": ({"protection": "lock", "locks": ["flow_lock"]}, {"protection": "lock", "locks": ["table_lock"]}),
        "nat_init:malloc:stats": ({"protection": "mixed", "locks": []}, {"protection": "atomic", "locks": []}),
    }
    assert not diff.new_unprotected_accesses


def test_lock_order_alone_is_no_change() -> None:
    old = with_variables(sample_report(), replace(FLOWS, locks=("a", "b")))
    assert diff_reports(old, with_variables(old, replace(FLOWS, locks=("b", "a")))).empty


def test_commutative_change() -> None:
    old = sample_report()
    diff = diff_reports(old, with_variables(old, replace(HITS, commutative=False)))
    assert [(c.variable.name, c.old, c.new) for c in diff.commutative_changed] == [("hits", True, False)]


def test_new_unprotected_access_in_another_function_or_mode() -> None:
    old = sample_report()
    lock_dropped = replace(FLOWS, protection="unprotected", locks=(),
                           accesses=(*FLOWS.accesses, access("nat.c:57:9", "evict", "write")))
    more_racy = replace(COUNTER, accesses=(*COUNTER.accesses, access("nat.c:41:5", "worker", "rmw"),
                                           access("nat.c:66:5", "stats_dump", "read")))
    diff = diff_reports(old, with_variables(old, lock_dropped, more_racy))
    assert [(a.variable.name, a.function, a.mode) for a in diff.new_unprotected_accesses] == [
        ("counter", "stats_dump", "read"),  # worker/rmw was already unprotected: not new
        ("flows", "evict", "write"),
    ]
    assert not diff.resolved_unprotected_accesses


def test_not_new_unprotected_accesses_when_locked_atomic_suppressed_or_before_spawn() -> None:
    old = sample_report()
    extra = (
        access("nat.c:70:1", "a", "write", locks=("m",)),
        access("nat.c:71:1", "b", "write", atomic=True),
        access("nat.c:72:1", "c", "write", suppressed="reviewed"),
        access("nat.c:73:1", "main", "read", threads=("main",), concurrent=False),
    )
    diff = diff_reports(old, with_variables(old, replace(HITS, accesses=(*HITS.accesses, *extra))))
    assert diff.empty


def test_resolved_unprotected_access() -> None:
    old = sample_report()
    fixed = replace(COUNTER, protection="lock", locks=("m",),
                    accesses=tuple(replace(a, locks_held=("m",)) for a in COUNTER.accesses))
    diff = diff_reports(old, with_variables(old, fixed))
    assert [(a.variable.name, a.function, a.mode) for a in diff.resolved_unprotected_accesses] == [("counter", "worker", "rmw")]
    assert not diff.new_unprotected_accesses


def test_to_json_is_json() -> None:
    old = sample_report()
    diff = diff_reports(old, with_variables(old, replace(HITS, commutative=False), drop=("id-flows",)))
    data = json.loads(json.dumps(diff.to_json()))
    assert data["schema"] == "ftmb-diff/1" and data["differences"] is True
    assert data["removed_variables"][0]["class"] == "shared_rw"
    assert data["commutative_changed"] == [{"variable": data["commutative_changed"][0]["variable"], "old": True, "new": False}]


# load_report ---------------------------------------------------------------------------------


def test_load_report_reads_what_the_json_adapter_writes(tmp_path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json_report.render(sample_report()))
    assert load_report(path) == sample_report()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"^{path}: no such file$"),
        ("{\n  \"schema\": ,\n}", r"^{path}:2:13: invalid JSON: Expecting value; expected an ftmb-report/1 report"),
        ("[1, 2]", r"^{path}: not an ftmb-report/1 report \(schema: 'list'\)"),
        ('{"schema": "sarif"}', r"^{path}: not an ftmb-report/1 report \(schema: 'sarif'\)"),
        ('{"schema": "ftmb-report/1"}', r"^{path}: malformed ftmb-report/1 report: \(top level\): missing field 'tool_version' \(and 7 more problems\)$"),
        (b"\xff\xfe", r"^{path}: not UTF-8 text"),
    ],
)
def test_load_report_errors_are_one_line_naming_the_file(tmp_path, content, message) -> None:
    import re

    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ReportError) as info:
        load_report(path)
    text = str(info.value)
    assert "\n" not in text
    assert re.search(message.replace("{path}", re.escape(str(path))), text), text


def test_load_report_names_a_malformed_field(tmp_path) -> None:
    data = sample_report().to_json()
    data["variables"][3]["accesses"][0]["locks_held"] = "m"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match=r"r\.json: malformed ftmb-report/1 report: variables\[3\]\.accesses\[0\]\.locks_held: expected array, found string$"):
        load_report(path)


def test_load_report_of_a_directory(tmp_path) -> None:
    with pytest.raises(ReportError, match="is a directory"):
        load_report(tmp_path)


# the table rendering -------------------------------------------------------------------------


def test_table_lists_each_kind_of_difference_with_counts() -> None:
    import io

    from rich.console import Console

    from ftmb_instrument.report import diff_table

    old = sample_report()
    racy = replace(FLOWS, protection="unprotected", locks=(), accesses=tuple(replace(a, locks_held=()) for a in FLOWS.accesses))
    diff = diff_reports(old, with_variables(old, racy, replace(HITS, commutative=False), drop=("id-per-core",)))
    buffer = io.StringIO()
    diff_table.render(diff, Console(file=buffer, width=100, color_system=None))
    text = buffer.getvalue()
    assert " ".join(text.split()).startswith(
        "Shared state differs: 2 new unprotected accesses, 1 protection change, 1 commutativity change, "
        "1 removed variable."
    )
    for expected in ("New unprotected accesses", "lookup", "nat.c:50:9", "lock (flow_lock)", "unprotected",
                     "Commutativity changed", "Removed variables", "core_stats"):
        assert expected in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100


def test_table_lists_at_most_three_locations_per_access_key() -> None:
    import io

    from rich.console import Console

    from ftmb_instrument.report import diff_table

    old = sample_report()
    many = tuple(access(f"nat.c:{100 + i}:1", "evict", "write") for i in range(5))
    diff = diff_reports(old, with_variables(old, replace(COUNTER, accesses=(*COUNTER.accesses, *many))))
    assert len(diff.new_unprotected_accesses[0].locs) == 5
    buffer = io.StringIO()
    diff_table.render(diff, Console(file=buffer, width=100, color_system=None))
    text = buffer.getvalue()
    assert "nat.c:102:1" in text and "nat.c:103:1" not in text and "(+2 more)" in text
