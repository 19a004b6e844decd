"""Whether a failover run's kill really landed mid-run: the input logger first served input packets
both before the SIGKILL and after it (OUT.arrivals, the session's clock, CLOCK_REALTIME as
`Failover.killed_wall_ns`), and packets were released after it. Packets released before it are not
required: under load the release lags the input by hundreds of ms (firewall, checkpoints every 20 ms,
a load of 10: none released 0.157 s after the first input)."""

from __future__ import annotations

from pathlib import Path

from ftmb_instrument import pcap, run as runlib


def around_kill(released: str | Path, killed_wall_ns: int) -> dict[str, int]:
    """Input packets first served before / after the kill, packets released before / after it."""
    manifest = runlib.read_manifest(released)
    assert manifest is not None, f"{released}: no run manifest"
    arrivals = runlib.read_arrivals(released, manifest["session"])
    assert arrivals is not None, f"{released}: no arrival times of session {manifest['session']}"
    out = {"served_before": 0, "served_after": 0, "released_before": 0, "released_after": 0}
    for t in arrivals.times.values():
        out["served_before" if t < killed_wall_ns else "served_after"] += 1
    for p in pcap.iter_pcap(released):
        out["released_before" if p.ts_ns < killed_wall_ns else "released_after"] += 1
    return out


def assert_killed_mid_run(released: str | Path, killed_wall_ns: int, what: str) -> None:
    """Input was served before the kill and after it, and something was released after it."""
    assert killed_wall_ns, f"{what}: no kill time"
    n = around_kill(released, killed_wall_ns)
    assert n["served_before"] > 0 and n["served_after"] > 0 and n["released_after"] > 0, \
        f"{what}: the kill did not land mid-run: {n}"
