"""Randomized crash trials: SIGKILL the master at a random instant, fail over, verify.

    .venv/bin/python bench/crash_trials.py --trials 200 --seed 1 [--examples nat,lb] [--workers 1,2]
        [--checkpoint-ms 50]  # the backup is the master's newest checkpoint (0: the standby, from the start)
        [--mutate]    # release rule off + late, lossy log shipping: must report violations
        [--only N [--repeat K]]  # exactly trial N of the seed's sequence (same example, workers, kill
                                 # instant), K times: to reproduce one failed trial

Each trial: one example (built with ftmb-cc into --build, once; flowmon is the pthread + libpcap one,
its trace read as a capture file on one queue), 1..3 workers, a generated trace
served at --rate packets/s, the master killed at a uniformly random instant while it processes,
the backup replays and takes over (`run(..., kill_master_at=...)`), then `verify.verify` checks
exactly-once release and the example's invariants against an uninterrupted run. Prints one line
per trial and a summary; exit 1 if any trial has a violation (0 with --mutate only if some do).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ftmb_instrument import run as runlib, traffic, verify  # noqa: E402

EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]
VIP = "198.51.100.10"
ARGS = {"nat": [], "firewall": ["--max-conns", "1000"], "lb": [], "ids": ["--sample-rate", "0"],
        "flowmon": ["--export-ms", "20", "--idle-ms", "50"]}
PCAP_EXAMPLES = {"flowmon"}  # pthreads + libpcap: one capture handle (one queue), the trace as its file


def build(build_dir: Path) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True)
    subprocess.run(["make", "-s", "-C", str(ROOT / "examples"), f"BUILD={build_dir}",
                    f"CC={ROOT / '.venv' / 'bin' / 'ftmb-cc'}", "-j1"], check=True, capture_output=True)


def trace_for(example: str, workdir: Path, seed: int) -> Path:
    path = workdir / f"trace-{example}-{seed}.pcap"
    if not path.exists():
        servers = [VIP, "198.51.100.99"] if example == "lb" else None
        kw = {"servers": servers} if servers else {}
        traffic.generate(path, seed=seed, flows=100, packets=3000, duration_s=0.3, **kw)
    return path


def trial(build_dir: Path, example: str, workers: int, kill_at: float, workdir: Path, *, rate: int = 10000,
          seed: int = 5, mutate: bool = False,
          checkpoint_ms: int | None = None, args: list[str] | None = None,
          follower: bool = False) -> tuple[runlib.RunResult, verify.Verdict]:
    workdir.mkdir(parents=True, exist_ok=True)
    trace = trace_for(example, workdir, seed)
    if example in PCAP_EXAMPLES:
        argv = [str(build_dir / example), "-r", str(trace), "--workers", str(workers),
                *(ARGS[example] if args is None else args)]
    else:
        argv = [str(build_dir / example), *EAL, f"--file-prefix=ftct{os.getpid()}_{random.getrandbits(32)}",
                "--lcores", f"(0-{workers})@(0,1)", "--vdev", "net_null0", "--",
                *(ARGS[example] if args is None else args)]
    queues = 1 if example in PCAP_EXAMPLES else workers
    out = workdir / f"released-{example}-{workers}.pcap"
    env = dict(os.environ, FTMB_REPLAY_WARN_MS="10000")  # a stalled replay fails after 10 s
    res = runlib.run(argv, trace, out, queues=queues, timeout_s=180, kill_master_at=kill_at, rate=rate,
                     release_rule=not mutate, env=env, grace_s=10.0, checkpoint_ms=checkpoint_ms,
                     follower=follower)
    if not res.ok:
        return res, verify.Verdict(replay_failure=res.failure)
    ref_argv = [a if not a.startswith("--file-prefix") else a + "r" for a in argv]
    served = verify.run_conditions(out)  # the reference run is served as this run was (its manifest)
    variant = "-".join(args).replace("/", "_") if args is not None else "default"
    reference = workdir / f"reference-{example}-{workers}-{seed}-{variant}-{served['rate']}-{served['tick_us']}.pcap"
    if not reference.exists():  # the uninterrupted run, once per example, worker count and trace
        ref = runlib.run(ref_argv, trace, reference, queues=queues, timeout_s=120, **served)
        if not ref.ok:
            return res, verify.Verdict(replay_failure=f"the uninterrupted reference run failed: {ref.failure}")
    v = verify.verify(ref_argv, trace, out, queues=queues, example=example,
                      example_args=ARGS[example] if args is None else args, workdir=workdir, reference=reference,
                      **served)
    v.add_replay_check(res.replay_check)
    return res, v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--examples", default="nat,firewall,lb,ids,flowmon")
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--build", type=Path, default=Path("/tmp/ftmb-crash-trials/build"))
    ap.add_argument("--checkpoint-ms", type=int, default=50)
    ap.add_argument("--mutate", action="store_true")
    ap.add_argument("--only", type=int, default=None, metavar="N",
                    help="run only trial N of the seed's sequence (its example, workers and kill instant)")
    ap.add_argument("--repeat", type=int, default=1, metavar="K", help="with --only: run that trial K times")
    a = ap.parse_args()
    if a.only is not None and not 0 <= a.only < a.trials:
        ap.error(f"--only {a.only}: expected a trial number from 0 to {a.trials - 1} (--trials {a.trials})")
    if a.repeat < 1 or (a.repeat > 1 and a.only is None):
        ap.error(f"--repeat {a.repeat}: expected 1 or more, and more than 1 only with --only")
    print(f"seed {a.seed}", flush=True)
    rng = random.Random(a.seed)
    build(a.build)  # make: rebuilt when the examples or the runtime changed
    plan = []  # the seed's sequence: (trial number, example, workers, kill instant)
    for i in range(a.trials):
        ex = rng.choice(a.examples.split(","))
        w = rng.choice([int(x) for x in a.workers.split(",")])
        kill_at = rng.uniform(0.3, 0.7)   # EAL init takes ~0.2-0.3 s; the trace lasts 0.6 s at 5 kpps
        plan.append((i, ex, w, kill_at))
    if a.only is not None:
        plan = [plan[a.only]] * a.repeat
    bad = failed = no_crash = 0
    live = []
    for i, ex, w, kill_at in plan:
        res, v = trial(a.build, ex, w, kill_at, a.build.parent / "work", rate=a.rate, mutate=a.mutate,
                       checkpoint_ms=a.checkpoint_ms or None)
        fo = res.failover
        if v.replay_failure:
            failed += 1
        elif v.violations:
            bad += 1
        if fo is None:
            no_crash += 1
        if fo and fo.live_ms is not None:
            live.append(fo.live_ms)
        if v.replay_failure or v.violations:  # the runtime's own words on what went wrong
            for p in res.processes:
                for ln in p.stderr_tail.splitlines():
                    if ln.startswith("ftmb") and "standby: the master" not in ln:
                        print(f"  {p.name} {p.pid} {p.status}: {ln}")
        print(f"trial {i} {ex} workers={w} kill_at={kill_at:.3f}s "
              f"from={('checkpoint' if fo.from_snapshot else 'start') if fo else '-'} "
              f"replayed={fo.replayed_records if fo else '-'} live_ms={fo.live_ms if fo else '-'} "
              f"released={v.released} violations={len(v.violations)} "
              f"{'FAILED: ' + v.replay_failure if v.replay_failure else ''}"
              f"{'; '.join(str(x) for x in v.violations[:2])}", flush=True)
    live.sort()
    print(f"summary: {len(plan)} trials ({no_crash} ended before the kill), {bad} with violations, {failed} failed runs; recovery (kill -> backup "
          f"live) ms min/median/max: "
          + (f"{live[0]:.1f}/{live[len(live)//2]:.1f}/{live[-1]:.1f}" if live else "-"))
    if a.mutate:  # a recovery that fails (replay stalls on a log with lost records) is caught too
        print(f"mutation: {bad + failed} of {len(plan) - no_crash} crashed trials caught")
        return 0 if bad + failed else 1
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
