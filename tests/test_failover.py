"""Failover end to end: SIGKILL the master of an instrumented example mid-run, the backup replays
the stored log and takes over, and the oracle finds no violation (exactly-once release, the
example's invariants, and for one worker byte-for-byte equality with an uninterrupted run).

A sample of the randomized trials in bench/crash_trials.py (which runs >= 200 of them); the crash
instant is drawn from a printed seed, in seconds after the master took its first input (a loaded
machine's slow start-up moves it along). The input logger serves at the rate from the master's
attach, so its rings (1024 entries a queue) may be full at that first input if the master's start-up
was that slow (lb, 2 workers, at a load of 10: over after 0.31 s of a 3000-packet trace): 6000
packets (1.2 s at 5 kpps) leave at least 0.6 s of paced input after the rings' backlog. Each test
asserts that the master released packets before the kill and its backup after it. No timing is
asserted.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from ftmb_instrument import run as runlib
from kill_util import assert_killed_mid_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

PACKETS = 6000  # 1.2 s at 5 kpps: the kill windows end before the input does, the rings' backlog taken



@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    import crash_trials
    d = tmp_path_factory.mktemp("instrumented")
    crash_trials.build(d)
    return d


@pytest.mark.parametrize("example,workers", [("nat", 1), ("nat", 2), ("lb", 2)])
def test_master_killed_mid_run_backup_takes_over(build_dir, tmp_path, example, workers):
    import crash_trials
    seed = random.SystemRandom().randrange(1 << 20)
    kill_at = random.Random(seed).uniform(0.1, 0.4)
    print(f"seed {seed}: kill at {kill_at:.3f} s after the first input")
    res, verdict = crash_trials.trial(build_dir, example, workers, kill_at, tmp_path, rate=5000, packets=PACKETS)
    assert res.ok, f"seed {seed}: {res.failure}\n{res.nf_stderr[-2000:]}"
    assert verdict.ok, f"seed {seed}: {verdict.replay_failure}\n" + "\n".join(str(v) for v in verdict.violations[:10])
    reference, = tmp_path.glob("reference-*.pcap")  # the uninterrupted run was served as the failover run
    assert runlib.read_manifest(reference)["rate"] == 5000
    assert res.failover is not None, f"seed {seed}: the master finished before the kill"
    assert res.failover.recovered, f"seed {seed}: the backup never went live"
    assert res.held == 0
    assert_killed_mid_run(tmp_path / f"released-{example}-{workers}.pcap", res.failover.killed_wall_ns,
                          f"seed {seed}")


@pytest.mark.parametrize("example,workers", [("nat", 2), ("firewall", 1), ("lb", 2), ("ids", 3)])
def test_newest_checkpoint_takes_over(build_dir, tmp_path, example, workers):
    """With checkpoints every 20 ms the backup is the master's newest snapshot (a forked copy with
    its threads parked at packet boundaries); it replays only the log since then."""
    import crash_trials
    seed = random.SystemRandom().randrange(1 << 20)
    kill_at = random.Random(seed).uniform(0.15, 0.45)  # (checkpoints from the first 20 ms on)
    print(f"seed {seed}: kill at {kill_at:.3f} s after the first input")
    res, verdict = crash_trials.trial(build_dir, example, workers, kill_at, tmp_path, rate=5000, checkpoint_ms=20,
                                      packets=PACKETS)
    assert res.ok, f"seed {seed}: {res.failure}\n{res.nf_stderr[-2000:]}"
    assert verdict.ok, f"seed {seed}: {verdict.replay_failure}\n{res.failover}\n" + "\n".join(str(v) for v in verdict.violations[:10]) + \
        "\n" + "\n".join(f"{p.name} {p.pid} {p.status}: {p.stderr_tail[-800:]}" for p in res.processes)
    assert res.failover is not None, f"seed {seed}: the master finished before the kill"
    assert res.failover.from_snapshot, f"seed {seed}: no checkpoint before the kill: {res.failover}"
    assert res.failover.recovered and res.held == 0
    assert res.replay_check is not None and res.replay_check.mismatches == 0
    assert_killed_mid_run(tmp_path / f"released-{example}-{workers}.pcap", res.failover.killed_wall_ns,
                          f"seed {seed}")


def test_mutation_release_rule_off_is_caught(build_dir, tmp_path):
    """The check that the checks can fail: the same crash with the output logger releasing every
    packet at once and storing records late (losing those in flight at the crash) must be reported,
    while the unmutated control passes. The IDS samples packets with rte_rand (30 %), so a
    re-execution that lost its logged values sends different reports."""
    import crash_trials
    args = ["--sample-rate", "0.3"]
    control, cv = crash_trials.trial(build_dir, "ids", 2, 0.25, tmp_path / "control", rate=5000,
                                     checkpoint_ms=20, args=args, packets=PACKETS)
    assert control.ok and cv.ok, f"{control.failure} {[str(v) for v in cv.violations[:5]]}"
    assert control.failover is not None and control.failover.from_snapshot
    assert_killed_mid_run(tmp_path / "control" / "released-ids-2.pcap", control.failover.killed_wall_ns,
                          "control")
    # A crash just after one of the mutant's late stores loses little or nothing: the mutant is
    # caught by at least one of three crash instants (nearly always by the first; seconds after
    # the first input, within the trace's paced input).
    missed = []
    for kill_at in (0.25, 0.15, 0.35):
        res, v = crash_trials.trial(build_dir, "ids", 2, kill_at, tmp_path / f"mutant-{kill_at}", rate=5000,
                                    checkpoint_ms=20, args=args, mutate=True, packets=PACKETS)
        assert res.failover is not None, "the mutant finished before the kill"
        if not (res.ok and v.ok):
            words = (res.failure or "") + " ".join(str(x) for x in v.violations)
            assert any(w in words for w in ("log", "record", "replay", "drained", "released", "differ")), words
            return
        missed.append(kill_at)
    pytest.fail(f"the oracle missed runs whose output logger ignored the release rule (killed at {missed} s)")
