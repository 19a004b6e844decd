"""Helpers for analyzer tests: analyze C snippets written to a temporary directory."""

from __future__ import annotations

import subprocess
import textwrap
from functools import cache
from pathlib import Path

from ftmb_instrument.analysis import Options, analyze
from ftmb_instrument.frontend import from_files
from ftmb_instrument.model import Report, Variable
from ftmb_instrument.semantics import load_semantics


@cache
def dpdk_cflags() -> tuple[str, ...]:
    out = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True, check=True)
    return tuple(out.stdout.split())


def analyze_source(tmp_path: Path, source: str, name: str = "prog.c", args: tuple[str, ...] = (),
                   entries: tuple[str, ...] = ()) -> Report:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return analyze(from_files([path], ["-std=gnu11", *args]), load_semantics(),
                   Options(str(tmp_path), entries, jobs=1))


def var(report: Report, name: str, scope: str | None = None) -> Variable:
    found = [v for v in report.variables if v.name == name and (scope is None or v.scope == scope)]
    assert found, f"no variable {name!r} in report: {[v.name for v in report.variables]}"
    assert len(found) == 1, found
    return found[0]
