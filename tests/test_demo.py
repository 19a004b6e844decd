"""`ftmb-instrument demo` end to end: builds the NAT with ftmb-cc, crashes its master, recovers,
verifies (real processes; one run of about a minute)."""

from __future__ import annotations

import re

from ftmb_instrument.cli import main


def test_demo_recovers_and_verifies(tmp_path, capsys):
    rc = main(["demo", "--workdir", str(tmp_path), "--workers", "1", "--kill-at", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    text = " ".join(out.split())  # the console wraps long lines at its width
    assert "verification: PASS" in text
    assert re.search(r"(the newest checkpoint|the standby \(from the start\)) live [\d.]+ ms after the failure",
                     text) or "no failure happened" in text, text
