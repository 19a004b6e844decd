"""`ftmb-instrument demo` end to end: builds the NAT with ftmb-cc, crashes its master, recovers,
verifies (real processes; one run of about a minute)."""

from __future__ import annotations

from ftmb_instrument.cli import main


def test_demo_recovers_and_verifies(tmp_path, capsys):
    rc = main(["demo", "--workdir", str(tmp_path), "--workers", "1", "--kill-at", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "verification: PASS" in out
    assert "the newest checkpoint live" in out or "no failure happened" in out
