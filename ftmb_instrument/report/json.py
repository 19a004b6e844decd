"""A Report as ftmb-report/1 JSON (ftmb_instrument/schema/ftmb-report-1.schema.json)."""

from __future__ import annotations

import json

from ..model import Report


def render(report: Report) -> str:
    """The report as JSON text: fields in the schema's order, indented by 2, ending in a newline.

    Keys keep the order `Report.to_json` gives them (the order the schema documents) rather than
    being sorted, so the file reads top-down: coverage and threads before the variables."""
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
