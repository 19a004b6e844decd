"""The ftmb-report/1 schema matches what model.Report.to_json writes, field by field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from test_report_sample import sample_report

from ftmb_instrument import model
from ftmb_instrument.schema import check, load_schema

SCHEMA = load_schema()
DEFS = SCHEMA["$defs"]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = DEFS[node["$ref"].removeprefix("#/$defs/")]
    return node


def object_schemas(value: Any, schema: dict[str, Any], where: str = ""):
    """Every (place, JSON object, schema of that object) in a document, walking both together."""
    schema = resolve(schema)
    if isinstance(value, dict):
        yield where, value, schema
        for name, sub in value.items():
            if name in schema.get("properties", {}):
                yield from object_schemas(sub, schema["properties"][name], f"{where}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from object_schemas(item, schema["items"], f"{where}[{i}]")


def test_every_object_has_exactly_the_fields_the_schema_declares_in_order() -> None:
    document = sample_report().to_json()
    seen = set()
    for where, value, schema in object_schemas(document, SCHEMA):
        assert list(value) == list(schema["properties"]), where
        assert schema["required"] == list(schema["properties"]), where
        assert schema["additionalProperties"] is False, where
        seen.add(json.dumps(schema["required"]))
    objects = [d for d in DEFS.values() if d.get("type") == "object"]
    assert len(seen) == len(objects) + 1  # the sample reaches every object definition and the root


def test_every_field_is_described() -> None:
    for where, _, schema in object_schemas(sample_report().to_json(), SCHEMA):
        for name, sub in schema["properties"].items():
            assert "description" in sub or "description" in resolve(sub), f"{where}.{name}"


def test_enums_are_the_model_constants() -> None:
    variable, access = DEFS["variable"]["properties"], DEFS["access"]["properties"]
    assert tuple(variable["class"]["enum"]) == model.CLASSES
    assert tuple(variable["protection"]["enum"]) == (*model.PROTECTIONS, None)
    assert tuple(variable["scope"]["enum"]) == model.SCOPES
    assert tuple(access["mode"]["enum"]) == model.MODES
    assert SCHEMA["properties"]["schema"]["const"] == model.SCHEMA


def test_the_stable_id_is_documented() -> None:
    text = DEFS["variable"]["properties"]["id"]["description"]
    for part in ("relative to the project root", "enclosing", "allocation", "`scope`", "Line numbers", "SHA-256"):
        assert part in text


def test_the_sample_report_conforms() -> None:
    assert check(sample_report().to_json()) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d.pop("threads"), "(top level): missing field 'threads'"),
        (lambda d: d.update(extra=1), "(top level): unknown field 'extra'"),
        (lambda d: d["variables"][0].update({"class": "global"}), "variables[0].class: \"global\" is not one of"),
        (lambda d: d["variables"][2]["accesses"][0].update(mode="poke"), "variables[2].accesses[0].mode: \"poke\" is not one of"),
        (lambda d: d["variables"][2]["accesses"][0].update(loc="nat.c:40"), "variables[2].accesses[0].loc: \"nat.c:40\" does not match"),
        (lambda d: d["variables"][2].update(protection=None), "variables[2].protection: null is not one of"),
        (lambda d: d["variables"][1].update(protection="lock"), "variables[1].protection: expected null"),
        (lambda d: d["coverage"].update(functions_analyzed=True), "coverage.functions_analyzed: expected integer, found boolean"),
        (lambda d: d["coverage"].update(functions_analyzed=-1), "coverage.functions_analyzed: -1 is less than 0"),
        (lambda d: d["threads"][0].update(entry=""), "threads[0].entry: must not be empty"),
        (lambda d: d["warnings"][0].update(variable=3), "warnings[0].variable: expected string, found integer"),
        (lambda d: d.update(schema="ftmb-report/2"), "schema: expected \"ftmb-report/1\""),
    ],
)
def test_the_checker_names_each_problem(edit, problem: str) -> None:
    document = copy.deepcopy(sample_report().to_json())
    edit(document)
    problems = check(document)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_the_checker_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="unsupported keyword 'oneOf'"):
        check(1, {"oneOf": [{"type": "integer"}]})


def test_agrees_with_jsonschema_when_installed() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed; the built-in checker covers it")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(sample_report().to_json())


CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpus").glob("pt_*.c"))


@pytest.mark.parametrize("program", CORPUS, ids=[p.name for p in CORPUS])
def test_the_analyzers_reports_conform_and_render(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the real analysis writes follows the schema, and every adapter takes it."""
    from ftmb_instrument.analysis import Options, analyze
    from ftmb_instrument.diff import diff_reports
    from ftmb_instrument.frontend.compdb import from_files
    from ftmb_instrument.report import FORMATS, render
    from ftmb_instrument.semantics import load_semantics

    root = program.parents[1]
    monkeypatch.chdir(root)
    report = analyze(from_files([program.relative_to(root)], []), load_semantics(),
                     Options(project_root=str(root), jobs=1, progress=False))
    assert [tu.status for tu in report.translation_units] == ["ok"]
    assert check(report.to_json()) == []
    for fmt in FORMATS:
        assert render(report, fmt)
    assert model.Report.from_json(json.loads(render(report, "json"))) == report
    assert diff_reports(report, report).empty
