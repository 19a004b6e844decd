from __future__ import annotations

import json

from test_report_sample import sample_report

from ftmb_instrument.model import Report
from ftmb_instrument.report import FORMATS, render
from ftmb_instrument.report import json as json_report


def test_round_trips_to_an_equal_report() -> None:
    report = sample_report()
    assert Report.from_json(json.loads(json_report.render(report))) == report


def test_is_indented_by_two_keeps_the_model_key_order_and_ends_in_a_newline() -> None:
    text = json_report.render(sample_report())
    assert text.endswith("}\n")
    assert text.splitlines()[1] == '  "schema": "ftmb-report/1",'
    assert list(json.loads(text)) == list(sample_report().to_json())


def test_is_stable() -> None:
    assert json_report.render(sample_report()) == json_report.render(sample_report())


def test_dispatcher_knows_every_format() -> None:
    assert set(FORMATS) == {"table", "json", "sarif", "dot"}
    assert render(sample_report(), "json") == json_report.render(sample_report())


def test_dispatcher_rejects_an_unknown_format_naming_the_choices() -> None:
    import pytest

    from ftmb_instrument.errors import FtmbError

    with pytest.raises(FtmbError, match="'yaml'.*table, json, sarif, dot"):
        render(sample_report(), "yaml")
