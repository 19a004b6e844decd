"""`analyze --keep-going` on a bounded part of a large C codebase: HAProxy's src/ from Debian 12.

The sources are fetched from Debian's mirror at test time (bench/large_codebase.py); a machine that
cannot reach it fails this test with the reason rather than skipping it. 30 files spread evenly over
src/ keep it within a few minutes on two cores; `bench/large_codebase.py` without --limit runs all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ftmb_instrument.schema import check

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import large_codebase  # noqa: E402

pytestmark = pytest.mark.slow

LIMIT = 30


def test_haproxy_subset_completes_without_a_crash(tmp_path):
    try:
        src = large_codebase.fetch_source(tmp_path)
        entries = large_codebase.subset(large_codebase.compile_commands(src), LIMIT)
    except large_codebase.FetchError as exc:
        pytest.fail(f"cannot obtain HAProxy's sources from Debian (needs Debian's package mirror, apt-get, dpkg-dev "
                    f"and make): {exc}")
    assert len(entries) == LIMIT
    out = tmp_path / "out"
    out.mkdir()
    outcome = large_codebase.analyze(src, entries, 2, out)
    summary = large_codebase.describe(outcome, len(entries))
    print(summary)
    assert not outcome.crashed, outcome.stderr[-4000:]
    assert outcome.returncode == 0, outcome.stderr[-4000:]
    assert outcome.report is not None and check(outcome.report) == []
    # Every unit gcc compiles must parse; none failed when this test was written.
    compiles = [(f, why) for f, why, gcc in outcome.failed if gcc is None]
    assert compiles == [], summary
    assert outcome.ok == LIMIT - len(outcome.failed)
    assert outcome.functions > 1000, summary
