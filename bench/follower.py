"""The follower (`run --backup follower`): its lag and the recovery time; writes its section of
bench/RESULTS.md.

    .venv/bin/python bench/follower.py [--trials 50] [--standby 50] [--checkpoint 50] [--checkpoint-ms 50] \
        [--build DIR]

Each trial: examples/nat with 2 workers (built with ftmb-cc into --build), a 6000-packet trace
served at 5000 packets/s, the master SIGKILLed at a uniformly random instant in [0.3, 0.9) s after
it took its first input (seeded by the trial number), the follower finishes the log's tail and goes live; the run's
verification replay must regenerate every released packet (a trial that fails it counts as a
failure and is reported). Reported, min / median / max over the trials:
- lag: the output logger's samples (every ms while the master runs) of the time from a record's
  storage to its replay by the follower, and of the records stored but not replayed; per trial
  its p50 and max;
- recovery: SIGKILL -> the follower live (recording); its parts: SIGKILL -> the killed master's
  process gone (the kernel's teardown of it, which no backup can see past: its published records
  are final only then), gone -> the follower's takeover (the output logger stores the rest and
  sets the final counts), takeover -> live (the tail replayed);
- for comparison, --standby trials with the warm standby (replays the whole log) and --checkpoint
  trials with checkpoints every --checkpoint-ms ms (the newest snapshot replays the log since it).
Timings only here (never asserted in tests); the machine is named.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import crash_trials  # noqa: E402
from ftmb_instrument import run as runlib, traffic  # noqa: E402


KINDS = ("follower", "standby", "checkpoint")


def trial(build: Path, work: Path, trace: Path, n: int, kind: str, checkpoint_ms: int) -> runlib.RunResult:
    kill_at = random.Random(n).uniform(0.3, 0.9)  # s after the master's first input (1.2 s of it)
    argv = [str(build / "nat"), *crash_trials.EAL, f"--file-prefix=ftfb{os.getpid()}_{n}_{kind}",
            "--lcores", "(0-2)@(0,1)", "--vdev", "net_null0", "--"]
    out = work / f"released-{n}-{kind}.pcap"
    env = dict(os.environ, FTMB_REPLAY_WARN_MS="10000")
    return runlib.run(argv, trace, out, queues=2, timeout_s=120, kill_master_at=kill_at, kill_from_input=True,
                      rate=5000, env=env, grace_s=10.0, follower=kind == "follower",
                      checkpoint_ms=checkpoint_ms if kind == "checkpoint" else None)


def mmm(values: list[float], fmt: str = "{:.1f}") -> str:
    if not values:
        return "-"
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--standby", type=int, default=50)
    ap.add_argument("--checkpoint", type=int, default=50)
    ap.add_argument("--checkpoint-ms", type=int, default=50)
    ap.add_argument("--build", type=Path, default=Path("/tmp/ftmb-bench-follower/build"))
    a = ap.parse_args()
    crash_trials.build(a.build)
    work = a.build.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    trace = work / "trace.pcap"
    traffic.generate(trace, seed=5, flows=150, packets=6000, duration_s=0.5)
    rows: dict[str, list[runlib.RunResult]] = {kind: [] for kind in KINDS}
    ended: dict[str, list[runlib.RunResult]] = {kind: [] for kind in KINDS}
    counts = dict(zip(KINDS, (a.trials, a.standby, a.checkpoint)))
    failures = []
    # the kinds interleaved, trial by trial: the machine's load (shared with other jobs) drifts over
    # the hour this takes, and each kind then sees the same drift
    for n in range(max(counts.values())):
        for kind in KINDS:
            if n >= counts[kind]:
                continue
            res = trial(a.build, work, trace, n, kind, a.checkpoint_ms)
            fo = res.failover
            ok = res.ok and fo is not None and fo.recovered and res.replay_check is not None and res.replay_check.ok
            early = res.ok and fo is None  # the master finished its input before the kill was due: no failover
            print(f"{kind} {n}: {'ok' if ok else 'ended before the kill' if early else 'FAILED'} {fo} "
                  f"lag {res.follower_lag} check {res.replay_check}{'' if res.ok else ' ' + str(res.failure)}",
                  flush=True)
            (rows[kind] if ok else ended[kind] if early else failures).append(res)
    f = rows["follower"]
    lines = ["<!-- follower-bench:begin -->", "## The follower: lag and recovery (bench/follower.py)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs (load average "
             f"{os.getloadavg()[0]:.1f} at the end), {platform.platform()}. examples/nat, 2 workers, 6000 packets at "
             f"5000 packets/s, master SIGKILLed at a random instant in [0.3, 0.9) s after its first input; "
             f"min / median / max over "
             f"the trials that passed the replay check ({len(f)} of {a.trials} follower trials, "
             f"{len(rows['standby'])} of {a.standby} standby trials, {len(rows['checkpoint'])} of {a.checkpoint} "
             f"checkpoint trials (a checkpoint every {a.checkpoint_ms} ms); "
             f"{sum(map(len, ended.values()))} ended before the kill was due, {len(failures)} failed "
             f"({'; '.join(str(r.failure)[:160] for r in failures) or 'none'}); the kinds interleaved trial by trial).", "",
             "| backup | trials | recovery: SIGKILL -> live ms | SIGKILL -> master gone ms | gone -> takeover ms | "
             "takeover -> live ms | records replayed after the death |",
             "|---|---|---|---|---|---|---|"]
    for kind, rs in rows.items():
        fos = [r.failover for r in rs]
        if kind == "checkpoint":  # (a trial whose master died before its first checkpoint replays from the start)
            kind = f"checkpoint ({sum(x.from_snapshot for x in fos)} from a snapshot)"
        lines.append(
            f"| {kind} | {len(rs)} | {mmm([x.live_ms for x in fos])} | {mmm([x.reaped_ms for x in fos])} | "
            f"{mmm([x.detected_ms - x.reaped_ms for x in fos])} | {mmm([x.live_ms - x.detected_ms for x in fos])} | "
            f"{mmm([float(x.replayed_records) for x in fos], '{:.0f}')} |")
    lags = [r.follower_lag for r in f if r.follower_lag is not None]
    lines += ["", "Follower lag while the master ran (the output logger's samples, every ms), per trial p50 and "
              "max, then min / median / max over the trials:", "",
              "| lag | per-trial p50 | per-trial max |", "|---|---|---|",
              f"| ms from a record's storage to its replay | {mmm([x.ms_p50 for x in lags], '{:.2f}')} | "
              f"{mmm([x.ms_max for x in lags], '{:.2f}')} |",
              f"| records stored but not replayed | {mmm([float(x.records_p50) for x in lags], '{:.0f}')} | "
              f"{mmm([float(x.records_max) for x in lags], '{:.0f}')} |", ""]
    lines += ["The tail the follower replays after the death is its lag at that instant; the standby replays the "
              "whole log, a checkpoint's snapshot the log since that checkpoint. The master's teardown (SIGKILL -> its process gone: a DPDK process unmapping its "
              "memory) comes first for every backup: only then are its published records final. 'gone' is "
              "when the run's wait for the killed master returned, which on a loaded machine can be after "
              "the output logger and the follower saw it (negative values). Nothing bounds the lag but the "
              "follower's share of the CPUs (the master never waits for it): on this shared 2-CPU machine it "
              "competes with the master, both loggers and other jobs, and most of its lag and of its "
              "takeover -> live time is waiting to be scheduled.",
              "<!-- follower-bench:end -->"]
    results = ROOT / "bench" / "RESULTS.md"
    text = results.read_text() if results.exists() else ""
    section = "\n".join(lines)
    if "<!-- follower-bench:begin -->" in text:
        text = re.sub(r"<!-- follower-bench:begin -->.*?<!-- follower-bench:end -->", lambda _: section, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text)
    print(section)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
