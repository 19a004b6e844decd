"""Release latency of remote logging (roles on separate hosts, ftmb-relay over veth) against
same-host rings (issue 13).

Both configurations run ftmb-test-fwd (2 worker threads, 2 queues) on the same trace at the same
rate, with the input and output loggers of roles.py. Same host: the master attaches to the loggers'
regions in their own namespace (the shared-memory fast path). Remote: input logger, output logger
and master each on its own host (network namespace, own /dev/shm), joined by veth pairs and a
bridge, the master's regions mirrored by ftmb-relay. Latency is the output logger's: release time
minus the input entry's arrival (both the machine's CLOCK_REALTIME), p50 and p99 over every packet.

    sudo .venv/bin/python bench/bench_hosts.py [--packets 10000] [--rate 5000] [--trials 3]
        [--follower-trials N [--before DIR] [--follower-packets 6000] [--kill-window 0.8 1.5]]
        [--throughput-trials N] [--forget-trials N]

With --follower-trials N (the follower on its own host, issue 13): N trials of examples/nat (2
workers, --follower-packets at 5000/s) with the follower on host b, the master's host failed at a
random instant in --kill-window (seconds after the master's first input; seeded by the trial
number). The follower starts with the master and catches up from its start-up, so a window that
ends before it caught up (the default, 6000 packets: the input ends at 1.2 s) counts that catch-up
in the recovery; 20000 packets and [2.0, 3.0) measure a follower that had time to settle. Per trial the follower's lag (the output
logger's samples, every ms: ms from a record's storage to the follower's replay of it, and records
stored but not replayed) and the recovery: host destroyed -> the follower's takeover line, and
-> its `live (recording)` line (both CLOCK_REALTIME of this machine), and the same from the harness's
first SIGKILL (the system's part: listing the host's processes comes before it); each trial must pass
the verification replay. `--before DIR` interleaves each trial with the loggers and relays of the
runtime in DIR (its sources, e.g. `mkdir DIR && git archive COMMIT runtime | tar -x -C DIR`; built
at the start, as bench/checkpoint_pause.py does; the program is the same). With --throughput-trials N: examples/nat (1 worker) forwarding a 40,000-packet
trace as fast as the input logger serves it, in four configurations interleaved N times:
uninstrumented (gcc, net_pcap vdev, no session), same host (the ftmb-cc build in record mode, the
loggers' rings), remote (3 hosts, ftmb-relay) and remote with a follower on a fourth host; rate =
input packets / span of the output timestamps (bench_run.py's measure). With --forget-trials N: N
trials each of the follower on its own host with and without --follow-forget (forget_trials): the
log the loggers held, and the recovery.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ftmb_instrument import pcap, roles, traffic  # noqa: E402
from ftmb_instrument.netns import Topology  # noqa: E402

FWD = ROOT / "runtime" / "build" / "ftmb-test-fwd"


def released(path: Path) -> int:
    try:
        return len(pcap.read_pcap(path))
    except (OSError, ValueError):
        return 0


def trial(work: Path, trace: Path, packets: int, rate: int, remote: bool) -> tuple[float, float]:
    hosts = ["il", "ol", "m"] if remote else ["h"]
    with Topology(hosts) as topo:
        place = {"il": "il", "ol": "ol", "m": "m"} if remote else {"il": "h", "ol": "h", "m": "h"}
        r = {k: roles.Role(k, "bench", work / k, topo.prefix(h), topo.shm(h)) for k, h in place.items()}
        try:
            in_addr, out_addr = f"{topo.addr(place['il'])}:7201", f"{topo.addr(place['ol'])}:7202"
            out = work / "out.pcap"
            roles.start_input_logger(r["il"], trace, in_addr, queues=2, rate=rate)
            roles.start_output_logger(r["ol"], out, work / "log", out_addr)
            if remote:
                m = roles.start_master(r["m"], [FWD, "2"], in_addr, out_addr)
            else:  # the same host: straight to the loggers' regions
                import os
                m = r["m"].spawn("program", [FWD, "2"], dict(os.environ, FTMB_MODE="record", FTMB_SESSION="bench"))
            assert m.wait(timeout=300) == 0, r["m"].err("program")
            deadline = time.monotonic() + 60
            while released(out) < packets and time.monotonic() < deadline:
                time.sleep(0.1)
            r["il"].stop()
            r["ol"].stop()
            s = re.search(r"latency_us p50 ([\d.]+) p99 ([\d.]+)", r["ol"].err("output-logger"))
            assert s and released(out) == packets, r["ol"].err("output-logger")
            return float(s[1]), float(s[2])
        finally:
            for role in r.values():
                role.stop()


NAT_EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]


def nat_argv(nat: Path, tag: str, workers: int) -> list[str]:
    import os
    return [str(nat), *NAT_EAL, f"--file-prefix=ftbh{os.getpid()}{tag}", "--lcores", f"(0-{workers})@(0,1)",
            "--vdev", "net_null0", "--"]


def mmm(values: list[float], fmt: str = "{:.1f}") -> str:
    if not values:
        return "-"
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def follower_trials(n: int, build: Path, work: Path, before: Path | None = None, packets: int = 6000,
                    window: tuple[float, float] = (0.8, 1.5)) -> None:
    import os
    import random
    trace = work / f"fol-trace-{packets}.pcap"
    traffic.generate(trace, seed=5, flows=150, packets=packets, duration_s=0.5)
    variants = {"after": os.environ.get("FTMB_RUNTIME_BUILD")} | ({"before": str(before)} if before else {})
    rows: dict[str, list] = {v: [] for v in variants}
    failed = []
    load_start = os.getloadavg()[0]
    for i in range(n):
        kill_at = random.Random(i).uniform(*window)
        for variant, rt in variants.items():  # (interleaved: both see the same drift of the load)
            os.environ.pop("FTMB_RUNTIME_BUILD", None)
            if rt:
                os.environ["FTMB_RUNTIME_BUILD"] = rt
            w = work / f"fol{i}{variant}"
            res = roles.run_on_hosts(nat_argv(build / "nat", f"f{i}", 2), trace, w / "out.pcap", w, queues=2,
                                     rate=5000, kill_master_at=kill_at, backup="follower")
            lag = re.search(r"lag_ms min [\d.]+ p50 ([\d.]+) p99 [\d.]+ max ([\d.]+) lag_records min \d+ p50 (\d+) "
                            r"p99 \d+ max (\d+)", res.follower_lag)
            ok = res.ok and res.backup_live and lag is not None
            print(f"follower trial {i} {variant}: kill at {kill_at:.2f} s, {'ok' if ok else 'FAILED ' + res.failure}, "
                  f"first SIGKILL {res.first_kill_ms:.1f} ms, takeover {res.takeover_ms:.1f} ms, live {res.live_ms:.1f} ms, "
                  f"{res.follower_lag}", flush=True)
            if ok:
                rows[variant].append((res.takeover_ms, res.live_ms, *map(float, lag.groups()),
                                      res.takeover_ms - res.first_kill_ms, res.live_ms - res.first_kill_ms))
            else:
                failed.append(f"{i} {variant}: {res.failure or 'no takeover'}")
            if ok and res.takeover_ms < 1000:
                shutil.rmtree(w, ignore_errors=True)
            else:  # (a failed or slow trial's stderr files are kept for a look)
                print(f"  kept {w}", flush=True)
    print(f"\nfollower on its own host ({packets} packets at 5000/s, the master's host failed in [{window[0]:g}, "
          f"{window[1]:g}) s): load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
          f"{', '.join(f'{v}: {len(r)} of {n}' for v, r in rows.items())} trials passed the verification replay"
          f"{'; failed: ' + '; '.join(failed) if failed else ''}; min / median / max")
    print("| measure | " + " | ".join(variants) + " |")
    print("|---" * (1 + len(variants)) + "|")
    cols = {v: (list(zip(*r)) if r else [[]] * 8) for v, r in rows.items()}
    for k, (what, fmt) in enumerate((("host destroyed -> takeover ms", "{:.1f}"), ("host destroyed -> live ms", "{:.1f}"),
                                     ("lag ms, per-trial p50", "{:.2f}"), ("lag ms, per-trial max", "{:.2f}"),
                                     ("lag records, per-trial p50", "{:.0f}"), ("lag records, per-trial max", "{:.0f}"),
                                     ("first SIGKILL -> takeover ms", "{:.1f}"), ("first SIGKILL -> live ms", "{:.1f}"))):
        print(f"| {what} | " + " | ".join(mmm(cols[v][k], fmt) for v in variants) + " |")


def forget_trials(n: int, build: Path, work: Path) -> None:
    """N trials each of the follower on its own host with and without --follow-forget, interleaved:
    examples/nat (1 worker, 20000 packets at 5000/s, about 4 s; tests/test_hosts.py's), the master's host failed
    at a random instant in [2.0, 3.0) s (seeded by the trial number). Per configuration: the log the
    loggers held (the input logger's entries, the output logger's records; at most at once while the
    master ran against what was logged by its death, and at the end against all), and the recovery
    (host destroyed -> takeover line, -> live line). A trial without forgetting must pass the
    verification replay; one with it, the comparison of the outputs its takeover sent again."""
    import os
    import random
    trace = work / "forget-trace.pcap"
    traffic.generate(trace, seed=9, flows=150, packets=20000, duration_s=0.5)
    rows: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
    split: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
    failed: list[str] = []
    load_start = os.getloadavg()
    for i in range(n):
        kill_at = random.Random(1000 + i).uniform(2.0, 3.0)
        for forget in (False, True):
            w = work / f"fg{i}{int(forget)}"
            res = roles.run_on_hosts(nat_argv(build / "nat", f"g{i}{int(forget)}", 1), trace, w / "out.pcap", w,
                                     rate=5000, kill_master_at=kill_at, backup="follower", forget=forget)
            early = res.takeover_ms < 0  # (the master's links were lost before its host failed: a false alarm)
            ok = res.ok and res.backup_live and min(res.entries_held) >= 0 and min(res.records_held) >= 0 and not early
            why = res.failure or ("the follower took over before the master's host failed" if early else "")
            print(f"forget={forget} trial {i}: kill at {kill_at:.2f} s, {'ok' if ok else 'FAILED ' + why}, "
                  f"first SIGKILL {res.first_kill_ms:.1f} ms, takeover {res.takeover_ms:.1f} ms, live {res.live_ms:.1f} ms, "
                  f"entries held {res.entries_held}, records held {res.records_held}", flush=True)
            if ok:
                e, r = res.entries_held, res.records_held
                rows[forget].append((res.takeover_ms, res.live_ms, e[3], e[4], e[0], e[2], r[3], r[4], r[0], r[2]))
                tail = re.search(r"taking over at \d+ ns with (\d+) records to replay", res.logs.get("b/program", ""))
                split[forget].append((res.first_kill_ms, res.takeover_ms - res.first_kill_ms,
                                      res.live_ms - res.takeover_ms, float(tail[1]) if tail else -1))
                shutil.rmtree(w, ignore_errors=True)
            else:  # (its stderr files kept)
                failed.append(f"forget={forget} {i}: {why or 'no takeover'}")
    print(f"\nfollower on its own host, with and without --follow-forget, {n} trials each, interleaved; load average "
          f"{load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
          f"{'; failed: ' + '; '.join(failed) if failed else ''}")
    print("| | without forget | with --follow-forget |")
    print("|---|---|---|")
    cols = {f: (list(zip(*rows[f])) if rows[f] else [[]] * 10) for f in (False, True)}
    pct = {f: [[100 * a / b for a, b in zip(c[x], c[y]) if b] for x, y in ((2, 3), (4, 5), (6, 7), (8, 9))]
           for f, c in cols.items()}
    print(f"| trials passed | {len(rows[False])} of {n} (verification replay) | {len(rows[True])} of {n} "
          f"(outputs sent again compared) |")
    print(f"| host destroyed -> takeover ms | {mmm(cols[False][0])} | {mmm(cols[True][0])} |")
    print(f"| host destroyed -> live ms | {mmm(cols[False][1])} | {mmm(cols[True][1])} |")
    for k, (what, when) in enumerate((("input entries", "most held while the master ran, of those logged by then"),
                                      ("input entries", "held at the end, of all logged"),
                                      ("output records", "most held while the master ran, of those stored by then"),
                                      ("output records", "held at the end, of all stored"))):
        held = {f: cols[f][2 + 2 * k] for f in (False, True)}
        print(f"| {what}: {when} | {mmm(held[False], '{:.0f}')} ({mmm(pct[False][k], '{:.0f}%')}) | "
              f"{mmm(held[True], '{:.0f}')} ({mmm(pct[True][k], '{:.0f}%')}) |")
    # where the recovery goes: the harness listing the dead host's pids, the detection and handover
    # (SIGKILL -> the follower's takeover line), the tail's replay (takeover -> live)
    sc = {f: (list(zip(*split[f])) if split[f] else [[]] * 4) for f in (False, True)}
    for k, what in enumerate(("host destroyed -> first SIGKILL ms (Topology.fail lists the pids)",
                              "first SIGKILL -> takeover ms (detection and handover)",
                              "takeover -> live ms (the tail's replay)", "records to replay at the takeover")):
        fmt = "{:.0f}" if k == 3 else "{:.1f}"
        print(f"| {what} | {mmm(sc[False][k], fmt)} | {mmm(sc[True][k], fmt)} |")


CONFIGS = ("uninstrumented", "same host", "remote", "remote + follower")


def throughput_trial(config: str, plain: Path, nat: Path, trace: Path, work: Path, i: int) -> float:
    import os
    import signal
    from ftmb_instrument.run import input_drained
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_run  # noqa: E402
    work.mkdir(parents=True, exist_ok=True)
    if config == "uninstrumented":
        return bench_run.direct(plain, trace, 1, work, [])
    hosts = {"same host": ["h"], "remote": ["il", "ol", "m"], "remote + follower": ["il", "ol", "m", "b"]}[config]
    follow = config == "remote + follower"
    with Topology(hosts) as topo:
        place = {"il": "h", "ol": "h", "m": "h"} if config == "same host" else {h: h for h in hosts}
        r = {k: roles.Role(k, "bench", work / k, topo.prefix(h), topo.shm(h)) for k, h in place.items()}
        try:
            ia, oa = f"{topo.addr(place['il'])}:7201", f"{topo.addr(place['ol'])}:7202"
            fi, fo = (f"{topo.addr('il')}:7203", f"{topo.addr('ol')}:7204") if follow else (None, None)
            out = work / "out.pcap"
            roles.start_input_logger(r["il"], trace, ia, follow_listen=fi)
            roles.start_output_logger(r["ol"], out, work / "log", oa, follow_listen=fo)
            argv = nat_argv(nat, f"t{i}{config[:2]}", 1)
            if config == "same host":
                m = r["m"].spawn("program", argv, dict(os.environ, FTMB_MODE="record", FTMB_SESSION="bench"))
            else:
                m = roles.start_master(r["m"], argv, ia, oa)
            if follow:
                roles.start_follower(r["b"], argv, ia, oa, fi, fo)
            deadline = time.monotonic() + 120
            while not input_drained("bench", topo.shm(place["m"])) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.killpg(m.pid, signal.SIGINT)
            assert m.wait(timeout=60) == 0, r["m"].err("program")
            deadline = time.monotonic() + 60
            while "the master (pid" not in r["ol"].err("output-logger") and time.monotonic() < deadline:
                time.sleep(0.05)
            return bench_run.span_rate([out], len(pcap.read_pcap(trace)))
        finally:
            for role in r.values():
                role.stop()


def throughput(n: int, build: Path, work: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_run  # noqa: E402
    plain = work / "plain"
    if not (plain / "nat").exists():
        bench_run.build(plain, None)
    trace = work / "tp-trace.pcap"
    traffic.generate(trace, seed=11, flows=400, packets=40000, duration_s=1.0)
    rates: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for i in range(n):  # interleaved: each configuration sees the same drift of the machine's load
        for c in CONFIGS:
            rates[c].append(throughput_trial(c, plain / "nat", build / "nat", trace, work / f"tp{i}{c[:3]}", i))
            print(f"throughput trial {i} {c}: {rates[c][-1]:.0f} packets/s", flush=True)
    import os
    print(f"\nexamples/nat, 1 worker, 40000 packets as fast as served, {n} trials each, interleaved; load average "
          f"{os.getloadavg()[0]:.1f} at the end; packets/s min / median / max")
    med = {c: statistics.median(v) for c, v in rates.items()}
    for c in CONFIGS:
        print(f"| {c} | {mmm(rates[c], '{:.0f}')} | {med[c] / med['uninstrumented']:.2f} | {med[c] / med['same host']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--follower-trials", type=int, default=0)
    ap.add_argument("--throughput-trials", type=int, default=0)
    ap.add_argument("--forget-trials", type=int, default=0)
    ap.add_argument("--build", type=Path, default=Path("/tmp/ftmb-bench-hosts/build"))
    ap.add_argument("--follower-packets", type=int, default=6000)
    ap.add_argument("--kill-window", type=float, nargs=2, default=(0.8, 1.5), metavar=("FROM", "TO"))
    ap.add_argument("--before", type=Path, help="--follower-trials: sources of a runtime whose loggers and relays "
                                                 "to interleave with this checkout's (see above)")
    a = ap.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True)
    if a.follower_trials or a.throughput_trials or a.forget_trials:
        sys.path.insert(0, str(ROOT / "bench"))
        import crash_trials  # noqa: E402
        crash_trials.build(a.build)
        work = a.build.parent / "work"
        work.mkdir(parents=True, exist_ok=True)
        if a.throughput_trials:
            throughput(a.throughput_trials, a.build, work)
        if a.follower_trials:
            before = None
            if a.before:
                from checkpoint_pause import build_runtime  # noqa: E402
                before = build_runtime(a.before.resolve(), work / "runtime-before")
            follower_trials(a.follower_trials, a.build, work, before, a.follower_packets, tuple(a.kill_window))
        if a.forget_trials:
            forget_trials(a.forget_trials, a.build, work)
        return
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "in.pcap"
        traffic.generate(trace, seed=4, flows=100, packets=a.packets, duration_s=1.0)
        print(f"ftmb-test-fwd, 2 threads, {a.packets} packets at {a.rate}/s, {a.trials} trials; "
              "release latency (us), median over trials")
        for remote in (False, True):
            p50s, p99s = [], []
            for i in range(a.trials):
                p50, p99 = trial(Path(tmp) / f"{remote}{i}", trace, a.packets, a.rate, remote)
                p50s.append(p50)
                p99s.append(p99)
            name = "remote (3 hosts, ftmb-relay over veth)" if remote else "same host (shared-memory rings)"
            print(f"{name:40s} p50 {statistics.median(p50s):9.1f}  p99 {statistics.median(p99s):9.1f}  "
                  f"(p50 per trial: {', '.join(f'{x:.0f}' for x in p50s)})")


if __name__ == "__main__":
    main()
