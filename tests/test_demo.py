"""`ftmb-instrument demo` end to end: builds the NAT with ftmb-cc, crashes its master, recovers,
verifies (real processes; one run of about a minute)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ftmb_instrument.cli import main

pytestmark = pytest.mark.skipif(
    shutil.which("pkg-config") is None or subprocess.run(
        ["pkg-config", "--exists", "libdpdk"]).returncode != 0,
    reason="libdpdk-dev is not installed")


def test_demo_recovers_and_verifies(tmp_path, capsys):
    rc = main(["demo", "--workdir", str(tmp_path), "--workers", "1", "--kill-at", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "verification: PASS" in out
    assert "backup live" in out or "no failure happened" in out
