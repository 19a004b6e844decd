"""Randomized crash trials: SIGKILL the master at a random instant, fail over, verify.

    .venv/bin/python bench/crash_trials.py --trials 200 --seed 1 [--examples nat,lb] [--workers 1,2]
        [--checkpoint-ms 50]  # the backup is the master's newest checkpoint (0: the standby, from the start)
        [--mutate]    # release rule off + late, lossy log shipping: must report violations
        [--dpdk l2fwd,skeleton]  # also DPDK's own example apps, unmodified, instrumented whole (see below)

Each trial: one example (built with ftmb-cc into --build, once; flowmon is the pthread + libpcap one,
its trace read as a capture file on one queue), 1..3 workers, a generated trace
served at --rate packets/s, the master killed at a uniformly random instant while it processes,
the backup replays and takes over (`run(..., kill_master_at=...)`), then `verify.verify` checks
exactly-once release and the example's invariants against an uninterrupted run. Prints one line
per trial and a summary; exit 1 if any trial has a violation (0 with --mutate only if some do).

--dpdk NAMES adds DPDK 22.11's example applications (from /usr/share/dpdk/examples, unmodified)
to the draw, each instrumented as a whole program and built as bench/failover_dpdk_examples.py
does (its APPS: net_null vdevs, lcores, queues), with the same checks but no invariants of their
own (exactly-once against an uninterrupted run, and the byte-for-byte re-execution of the log).

Recovery is split with the backup's own line at the handover (runtime.c, `ftmb: failover: split`,
CLOCK_MONOTONIC in the backup) and its takeover line (CLOCK_REALTIME, against the SIGKILL's):
detection (SIGKILL -> the backup saw the death), log (-> the output logger's complete log mapped),
restore (-> the backup's threads run: snapshot adopted, rings re-attached, input rewound), replay
(-> live; records replayed and records/s). The summary gives min / median / p99 / max of each.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
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
SPLIT = re.compile(r"ftmb: failover: split log_us ([\d.]+) restore_us ([\d.]+) replay_us ([\d.]+) records (\d+) "
                   r"records_per_s (\d+) replay_cpu_us ([\d.]+)")
DPDK_KILL_DELAY_S = 0.5  # instrumented DPDK apps initialize ~0.5 s longer (EAL loads 189 drivers): later kills
DPDK_PACKETS = 8000      # at least 1.6 s at 5 kpps: the kill falls while they process


def build_dpdk(names: list[str], build_dir: Path) -> dict[str, tuple[Path, "object"]]:
    """Each named DPDK example instrumented and built afresh (bench/failover_dpdk_examples.py's way)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import instrument_dpdk_examples as ide  # noqa: E402  (libclang: only when asked)
    from dpdk_examples import enumerate_examples  # noqa: E402
    from failover_dpdk_examples import APPS  # noqa: E402
    from ftmb_instrument.semantics import load_semantics  # noqa: E402

    unknown = [n for n in names if n not in APPS]
    if unknown:
        raise SystemExit(f"crash_trials: --dpdk {','.join(unknown)}: expected some of {','.join(sorted(APPS))}")
    work = build_dir / "dpdk"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["FTMB_RUNTIME_BUILD"] = str(work / "runtime")
    rt = ide.ensure_runtime(dpdk=True)
    examples = {e.name: e for e in enumerate_examples()[0]}
    sem = load_semantics()
    built = {}
    for name in names:
        outcome = ide.run_one(examples[name], sem, work, rt)
        if outcome.status != "built":
            raise SystemExit(f"crash_trials: {name}: not built: {outcome.status}: {outcome.detail}")
        built[name] = (work / name.replace("/", "__") / "inst" / "app", APPS[name])
        print(f"built {name} (instrumented whole program)", flush=True)
    return built


def build(build_dir: Path) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True)
    subprocess.run(["make", "-s", "-C", str(ROOT / "examples"), f"BUILD={build_dir}",
                    f"CC={ROOT / '.venv' / 'bin' / 'ftmb-cc'}", "-j1"], check=True, capture_output=True)


def trace_for(example: str, workdir: Path, seed: int, packets: int = 3000) -> Path:
    path = workdir / f"trace-{example}-{seed}-{packets}.pcap"
    if not path.exists():
        servers = [VIP, "198.51.100.99"] if example == "lb" else None
        kw = {"servers": servers} if servers else {}
        traffic.generate(path, seed=seed, flows=100, packets=packets, duration_s=0.3, **kw)
    return path


def trial(build_dir: Path, example: str, workers: int, kill_at: float, workdir: Path, *, rate: int = 10000,
          seed: int = 5, mutate: bool = False,
          checkpoint_ms: int | None = None, args: list[str] | None = None,
          follower: bool = False, dpdk_app=None, packets: int = 3000) -> tuple[runlib.RunResult, verify.Verdict]:
    """dpdk_app: (binary, failover_dpdk_examples.App) of a DPDK example app; then `example` is its name."""
    workdir.mkdir(parents=True, exist_ok=True)
    trace = trace_for(example, workdir, seed, packets if dpdk_app is None else max(packets, DPDK_PACKETS))
    threads = None
    if dpdk_app is not None:
        app_bin, app = dpdk_app
        from failover_dpdk_examples import EAL as DPDK_EAL  # noqa: E402
        argv = [str(app_bin), *DPDK_EAL, f"--file-prefix=ftct{os.getpid()}_{random.getrandbits(32)}", *app.eal,
                "--", *app.args]
        queues, threads = app.queues, app.threads
    elif example in PCAP_EXAMPLES:
        argv = [str(build_dir / example), "-r", str(trace), "--workers", str(workers),
                *(ARGS[example] if args is None else args)]
    else:
        argv = [str(build_dir / example), *EAL, f"--file-prefix=ftct{os.getpid()}_{random.getrandbits(32)}",
                "--lcores", f"(0-{workers})@(0,1)", "--vdev", "net_null0", "--",
                *(ARGS[example] if args is None else args)]
    if dpdk_app is None:
        queues = 1 if example in PCAP_EXAMPLES else workers
    example_args = [] if dpdk_app is not None else ARGS[example] if args is None else args
    out = workdir / f"released-{example}-{workers}.pcap"
    env = dict(os.environ, FTMB_REPLAY_WARN_MS="10000")  # a stalled replay fails after 10 s
    res = runlib.run(argv, trace, out, queues=queues, threads=threads, timeout_s=180, kill_master_at=kill_at, rate=rate,
                     release_rule=not mutate, env=env, grace_s=10.0, checkpoint_ms=checkpoint_ms,
                     follower=follower)
    if not res.ok:
        return res, verify.Verdict(replay_failure=res.failure)
    ref_argv = [a if not a.startswith("--file-prefix") else a + "r" for a in argv]
    served = verify.run_conditions(out)  # the reference run is served as this run was (its manifest)
    variant = "-".join(args).replace("/", "_") if args is not None else "default"
    reference = workdir / f"reference-{example}-{workers}-{seed}-{variant}-{served['rate']}-{served['tick_us']}.pcap"
    if not reference.exists():  # the uninterrupted run, once per example, worker count and trace
        ref = runlib.run(ref_argv, trace, reference, queues=queues, threads=threads, timeout_s=120, **served)
        if not ref.ok:
            return res, verify.Verdict(replay_failure=f"the uninterrupted reference run failed: {ref.failure}")
    v = verify.verify(ref_argv, trace, out, queues=queues, threads=threads,
                      example=None if dpdk_app is not None else example, example_args=example_args,
                      workdir=workdir, reference=reference, **served)
    v.add_replay_check(res.replay_check)
    return res, v


def split_of(res: runlib.RunResult) -> tuple[float, float, float, int, int] | None:
    """The backup's split line: log, restore and replay ms, records replayed, records/s, replay CPU ms
    (the backup's CPU time over the replay, every thread's: load-independent, and spinning counts)."""
    fo = res.failover
    for p in res.processes:
        m = SPLIT.search(p.stderr_tail) if fo and p.pid == fo.backup_pid else None
        if m:
            return (float(m.group(1)) / 1e3, float(m.group(2)) / 1e3, float(m.group(3)) / 1e3, int(m.group(4)),
                    int(m.group(5)), float(m.group(6)) / 1e3)
    return None


def spread(xs: list[float]) -> str:
    """min / median / p99 / max (p99: the sample at 99 % of the sorted list)."""
    xs = sorted(xs)
    if not xs:
        return "-"
    return (f"{xs[0]:.1f} / {statistics.median(xs):.1f} / {xs[min(len(xs) - 1, (len(xs) * 99) // 100)]:.1f} / "
            f"{xs[-1]:.1f}")


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
    ap.add_argument("--kill-window", default="0.3,0.7",
                    help="LO,HI: the SIGKILL's instant, uniform, seconds after the master's start (DPDK apps: "
                         f"+{DPDK_KILL_DELAY_S} s); on a loaded machine initialization takes longer: move it later")
    ap.add_argument("--packets", type=int, default=3000, help="packets of each trace (0.6 s at 5 kpps)")
    ap.add_argument("--dpdk", default="", help="DPDK example apps drawn too (comma-separated; see above)")
    a = ap.parse_args()
    lo, hi = (float(x) for x in a.kill_window.split(","))
    print(f"seed {a.seed}", flush=True)
    rng = random.Random(a.seed)
    build(a.build)  # make: rebuilt when the examples or the runtime changed
    dpdk = build_dpdk([n for n in a.dpdk.split(",") if n], a.build) if a.dpdk else {}
    bad = failed = no_crash = 0
    live = []
    keys = ("live", "reaped", "detect", "log", "restore", "replay", "records", "records/s", "replay CPU")
    groups: dict[str, dict[str, list[float]]] = {}  # all, the examples, the DPDK apps: the split of each
    draw = [x for x in a.examples.split(",") if x] + list(dpdk)
    for i in range(a.trials):
        ex = rng.choice(draw)
        w = rng.choice([int(x) for x in a.workers.split(",")])
        kill_at = rng.uniform(lo, hi)   # EAL init takes ~0.2-0.3 s (idle machine); 3000 packets last 0.6 s
        if ex in dpdk:
            w, kill_at = dpdk[ex][1].queues, kill_at + DPDK_KILL_DELAY_S
        res, v = trial(a.build, ex, w, kill_at, a.build.parent / "work", rate=a.rate, mutate=a.mutate,
                       checkpoint_ms=a.checkpoint_ms or None, dpdk_app=dpdk.get(ex), packets=a.packets)
        fo = res.failover
        split = split_of(res)
        if fo and fo.live_ms is not None and split and fo.from_snapshot:  # (from the start: a cold start)
            for g in ("all", "DPDK apps" if ex in dpdk else "examples"):
                parts = groups.setdefault(g, {k: [] for k in keys})
                for key, x in zip(keys, (fo.live_ms, fo.reaped_ms, fo.detected_ms, *split)):
                    parts[key].append(x)
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
              f"{'dpdk-app ' if ex in dpdk else ''}"
              f"replayed={fo.replayed_records if fo else '-'} live_ms={fo.live_ms if fo else '-'} "
              + (f"split reaped/detect/log/restore/replay ms {fo.reaped_ms or 0:.1f}/{fo.detected_ms:.1f}/"
                 f"{split[0]:.1f}/{split[1]:.1f}/"
                 f"{split[2]:.1f} ({split[4]} rec/s, replay CPU {split[5]:.1f} ms) " if fo and split and fo.detected_ms is not None else "") +
              f"released={v.released} violations={len(v.violations)} "
              f"{'FAILED: ' + v.replay_failure if v.replay_failure else ''}"
              f"{'; '.join(str(x) for x in v.violations[:2])}", flush=True)
    live.sort()
    print(f"summary: {a.trials} trials ({no_crash} ended before the kill), {bad} with violations, {failed} failed runs; recovery (kill -> backup "
          f"live) ms min/median/max: "
          + (f"{live[0]:.1f}/{live[len(live)//2]:.1f}/{live[-1]:.1f}" if live else "-"))
    for g, parts in groups.items():
        print(f"recovery split, {g}, over the {len(parts['replay'])} failovers from a checkpoint (min / median / p99 "
              f"/ max; reaped: the orchestrator reaped the killed master): "
              + "; ".join(f"{k}{'' if k in ('records', 'records/s') else ' ms'} {spread(v)}" for k, v in parts.items()))
    if a.mutate:  # a recovery that fails (replay stalls on a log with lost records) is caught too
        print(f"mutation: {bad + failed} of {a.trials - no_crash} crashed trials caught")
        return 0 if bad + failed else 1
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
