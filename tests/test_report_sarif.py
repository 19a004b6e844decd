from __future__ import annotations

import json
from collections import Counter

from test_report_sample import sample_report

from ftmb_instrument.report import sarif
from ftmb_instrument.report.location import Location, parse_location


def sarif_log(**kw: object) -> dict:
    return json.loads(sarif.render(sample_report(), **kw))


def results_by_rule(log: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in log["runs"][0]["results"]:
        out.setdefault(r["ruleId"], []).append(r)
    return out


def test_has_the_required_top_level_fields() -> None:
    log = sarif_log()
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-schema-2.1.0.json")
    assert len(log["runs"]) == 1
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "ftmb-instrument"
    assert driver["version"] == "0.1.0"


def test_every_result_has_rule_level_message_and_a_rule_that_exists() -> None:
    log = sarif_log()
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["help"]["text"] and rule["shortDescription"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    for result in log["runs"][0]["results"]:
        assert result["message"]["text"]
        assert result["level"] in ("error", "warning", "note")
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["partialFingerprints"]


def test_result_counts_and_levels_per_rule() -> None:
    by_rule = results_by_rule(sarif_log())
    counts = Counter({rule: len(rs) for rule, rs in by_rule.items()})
    assert counts == Counter({
        # counter: from its race finding; quiet_drops: synthesized (no finding), suppressed.
        "ftmb/shared-rw-unprotected": 2,
        "ftmb/shared-rw-mixed": 1,  # stats
        "ftmb/shared-state": 5,  # one note per shared_rw variable
        "ftmb/invisible-state": 1,
        "ftmb/unresolved-call": 1,
        "ftmb/novel-kind": 1,
        "ftmb/nondeterminism": 1,
        "ftmb/packet-io": 2,
    })
    assert {r["level"] for r in by_rule["ftmb/shared-rw-unprotected"]} == {"error"}
    assert {r["level"] for r in by_rule["ftmb/shared-rw-mixed"]} == {"warning"}
    assert {r["level"] for r in by_rule["ftmb/shared-state"]} == {"note"}
    assert {r["level"] for r in by_rule["ftmb/packet-io"]} == {"note"}


def test_variable_results_carry_the_stable_variable_id_as_fingerprint() -> None:
    by_rule = results_by_rule(sarif_log())
    shared = {r["partialFingerprints"]["ftmbVariableId/v1"] for r in by_rule["ftmb/shared-state"]}
    assert shared == {"id-counter", "id-flows", "id-stats", "id-hits", "id-quiet"}
    races = {r["partialFingerprints"]["ftmbVariableId/v1"] for r in by_rule["ftmb/shared-rw-unprotected"]}
    assert races == {"id-counter", "id-quiet"}


def test_site_fingerprints_do_not_depend_on_the_line() -> None:
    from dataclasses import replace

    report = sample_report()
    moved = replace(report, packet_io=tuple(replace(s, loc="nat.c:999:1") for s in report.packet_io))
    prints = [
        [r["partialFingerprints"] for r in json.loads(sarif.render(rep))["runs"][0]["results"]
         if r["ruleId"] == "ftmb/packet-io"]
        for rep in (report, moved)
    ]
    assert prints[0] == prints[1]
    assert len({json.dumps(p) for p in prints[0]}) == 2


def test_locations_are_relative_uris_with_line_and_column() -> None:
    by_rule = results_by_rule(sarif_log())
    (race,) = [r for r in by_rule["ftmb/shared-rw-unprotected"] if r["partialFingerprints"]["ftmbVariableId/v1"] == "id-counter"]
    physical = race["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "nat.c", "uriBaseId": "SRCROOT"}
    assert physical["region"] == {"startLine": 40, "startColumn": 5}
    (flows,) = [r for r in by_rule["ftmb/shared-state"] if "'flows'" in r["message"]["text"]]
    assert flows["locations"][0]["physicalLocation"]["region"] == {"startLine": 15}
    assert "flow_lock" in flows["message"]["text"]
    (novel,) = by_rule["ftmb/novel-kind"]
    assert novel["locations"] == []


def test_the_race_result_lists_the_concurrent_accesses_as_related_locations() -> None:
    by_rule = results_by_rule(sarif_log())
    (mixed,) = by_rule["ftmb/shared-rw-mixed"]
    texts = [loc["message"]["text"] for loc in mixed["relatedLocations"]]
    assert texts == ["write of nat_init:malloc:stats in worker holding lock_a",
                     "write of nat_init:malloc:stats in on_signal holding lock_b"]


def test_suppressed_variables_give_suppressed_results() -> None:
    by_rule = results_by_rule(sarif_log())
    (quiet,) = [r for r in by_rule["ftmb/shared-rw-unprotected"] if r["partialFingerprints"]["ftmbVariableId/v1"] == "id-quiet"]
    assert quiet["suppressions"] == [{"kind": "inSource", "justification": "statistics only, off by one is fine"}]
    assert all("suppressions" not in r for r in by_rule["ftmb/shared-rw-mixed"])


def test_failed_translation_units_become_tool_notifications() -> None:
    invocation = sarif_log()["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is True
    texts = [(n["level"], n["message"]["text"]) for n in invocation["toolExecutionNotifications"]]
    assert ("error", "broken.c: failed to parse; its code was not analyzed.") in texts
    assert ("error", "expected ';'") in texts
    assert ("warning", "unused variable 'x'") in texts


def test_source_root_becomes_the_srcroot_base_uri(tmp_path) -> None:
    run = sarif_log(source_root=str(tmp_path))["runs"][0]
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == tmp_path.as_uri() + "/"
    assert "originalUriBaseIds" not in sarif_log()["runs"][0]


def test_absolute_paths_become_file_uris_and_odd_characters_are_escaped() -> None:
    assert sarif._location("/src/a b.c:3:4")["physicalLocation"]["artifactLocation"] == {"uri": "file:///src/a%20b.c"}
    assert sarif._location("dir/a b.c:3")["physicalLocation"]["artifactLocation"] == {"uri": "dir/a%20b.c", "uriBaseId": "SRCROOT"}


def test_location_strings_parse_even_with_colons_in_the_path() -> None:
    assert parse_location("nat.c:12") == Location("nat.c", 12, None)
    assert parse_location("nat.c:12:7") == Location("nat.c", 12, 7)
    assert parse_location("C:/src/nat.c:12:7") == Location("C:/src/nat.c", 12, 7)
    assert parse_location("weird") == Location("weird")
    assert parse_location("") is None


def test_a_position_of_line_0_gives_no_region() -> None:
    assert "region" not in sarif._location("<built-in>:0:0")["physicalLocation"]
    assert sarif._location("a.c:3:0")["physicalLocation"]["region"] == {"startLine": 3}
