"""`ftmb-instrument diff` through the CLI boundary: exit codes, output, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path

import pytest
from test_report_sample import FLOWS, sample_report
from typer.testing import CliRunner

import ftmb_instrument.cli as cli
import ftmb_instrument.cli.diff  # noqa: F401  (registers the command on cli.app)
from ftmb_instrument.report import json as json_report

runner = CliRunner()


@pytest.fixture
def reports(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Paths of: a report, the same report, and a changed one (a lock dropped from `flows`)."""
    report = sample_report()
    changed = replace(report, variables=tuple(
        replace(v, protection="unprotected", locks=(), accesses=tuple(replace(a, locks_held=()) for a in v.accesses))
        if v.id == FLOWS.id else v
        for v in report.variables
    ))
    paths = tmp_path / "old.json", tmp_path / "same.json", tmp_path / "new.json"
    for path, r in zip(paths, (report, report, changed)):
        path.write_text(json_report.render(r))
    return paths


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `main()` (the console-script entry point, which turns FtmbError into one stderr line)."""
    # Only this command's module: the analyze command may not be importable in every checkout.
    monkeypatch.setattr(cli, "_register_commands", lambda: None)
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_identical_reports_exit_0(reports, monkeypatch, capsys) -> None:
    old, same, _ = reports
    rc, out, err = run_main(monkeypatch, capsys, "diff", str(old), str(same))
    assert (rc, err) == (0, "")
    assert "No difference in shared state." in out


def test_differences_exit_2_and_are_shown(reports, monkeypatch, capsys) -> None:
    old, _, new = reports
    rc, out, err = run_main(monkeypatch, capsys, "diff", str(old), str(new))
    assert (rc, err) == (2, "")
    assert "Shared state differs" in out
    assert "New unprotected accesses" in out and "Protection changed" in out
    assert "flows" in out and "flow_lock" in out


def test_json_format(reports, monkeypatch, capsys) -> None:
    old, _, new = reports
    rc, out, _ = run_main(monkeypatch, capsys, "diff", "--format", "json", str(old), str(new))
    data = json.loads(out)
    assert rc == 2 and data["differences"] is True
    assert [(a["variable"]["name"], a["function"], a["mode"]) for a in data["new_unprotected_accesses"]] == [
        ("flows", "insert", "write"), ("flows", "lookup", "read"),
    ]


def test_output_file(reports, monkeypatch, capsys, tmp_path) -> None:
    old, _, new = reports
    target = tmp_path / "diff.txt"
    rc, out, err = run_main(monkeypatch, capsys, "diff", str(old), str(new), "-o", str(target))
    assert (rc, out, err) == (2, "", "")
    text = target.read_text()
    assert "Shared state differs" in text and "\x1b[" not in text
    rc, _, _ = run_main(monkeypatch, capsys, "diff", "-f", "json", str(old), str(old), "--output", str(target))
    assert rc == 0 and json.loads(target.read_text())["differences"] is False


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"schema": "ftmb-report/1",\n  "threads": [}\n')
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"schema": "ftmb-plan/1"}')
    malformed = tmp_path / "malformed.json"
    data = sample_report().to_json()
    del data["variables"][0]["accesses"][0]["mode"]
    malformed.write_text(json.dumps(data))
    return {
        "missing": (tmp_path / "nope.json", "nope.json: no such file"),
        "invalid JSON": (invalid, "invalid.json:2:15: invalid JSON"),
        "wrong schema": (wrong, "wrong.json: not an ftmb-report/1 report (schema: 'ftmb-plan/1')"),
        "malformed": (malformed, "malformed.json: malformed ftmb-report/1 report: variables[0].accesses[0]: missing field 'mode'"),
    }


@pytest.mark.parametrize("case", ["missing", "invalid JSON", "wrong schema", "malformed"])
@pytest.mark.parametrize("position", ["old", "new"])
def test_bad_input_exits_1_with_one_line_naming_the_file(reports, monkeypatch, capsys, tmp_path, case, position) -> None:
    good = reports[0]
    bad, expected = bad_inputs(tmp_path)[case]
    target = tmp_path / "out" / "diff.json"
    target.parent.mkdir()
    args = (str(bad), str(good)) if position == "old" else (str(good), str(bad))
    rc, out, err = run_main(monkeypatch, capsys, "diff", *args, "-f", "json", "-o", str(target))
    assert rc == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ftmb-instrument: error: "), err
    assert str(bad.parent) in err and expected in err
    assert "Traceback" not in err
    assert list(target.parent.iterdir()) == []  # neither the output nor a temporary file


def test_bad_input_leaves_an_existing_output_file_untouched(reports, monkeypatch, capsys, tmp_path) -> None:
    target = tmp_path / "diff.txt"
    target.write_text("previous result\n")
    rc, _, _ = run_main(monkeypatch, capsys, "diff", str(tmp_path / "nope.json"), str(reports[0]), "-o", str(target))
    assert rc == 1 and target.read_text() == "previous result\n"


def test_unwritable_output_exits_1(reports, monkeypatch, capsys, tmp_path) -> None:
    target = tmp_path / "no" / "such" / "dir.txt"
    rc, out, err = run_main(monkeypatch, capsys, "diff", str(reports[0]), str(reports[1]), "-o", str(target))
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and f"{target}: cannot write" in err


@pytest.mark.parametrize("args", [["diff", "only-one.json"], ["diff", "a.json", "b.json", "--format", "yaml"]])
def test_usage_errors_exit_1_not_2(args) -> None:
    # 2 means "the reports differ": a usage error must not look like one.
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1, result.output


def test_help_documents_the_exit_codes() -> None:
    result = runner.invoke(cli.app, ["diff", "--help"], terminal_width=100)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit codes: 0 no difference; 2 the reports differ; 1 error" in text
    assert "--format" in text and "--output" in text


@pytest.mark.skipif(find_spec("ftmb_instrument.cli.analyze") is None, reason="ftmb_instrument/cli/analyze.py not written yet")
def test_console_script_end_to_end(reports, tmp_path) -> None:
    old, _, new = reports
    env = {**os.environ, "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ftmb_instrument", *args], capture_output=True, text=True, env=env, check=False)

    assert run("diff", str(old), str(old)).returncode == 0
    assert run("diff", str(old), str(new)).returncode == 2
    missing = run("diff", str(tmp_path / "nope.json"), str(new))
    assert missing.returncode == 1
    assert missing.stderr == f"ftmb-instrument: error: {tmp_path / 'nope.json'}: no such file\n"
