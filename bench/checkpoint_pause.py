"""Checkpoint pause of the DPDK example applications: where the time goes.

Each application is instrumented as a whole program and built (bench/instrument_dpdk_examples.py),
then run under `ftmb-instrument run` in record mode with a checkpoint every 50 ms and no failure.
The runtime's line at exit (runtime/src/checkpoint.c) gives, over the run's checkpoints, p50 and
max of the pause (request -> resume), of the park (request -> every thread parked), of the fork
(parked -> resumed: the clone system call, the kernel's copy of the address space), the
coordinator's CPU time inside that clone (what the copy costs, whatever the machine's load), the
mappings of the address space at exit and the state size; and, to split the pause further: the
park of the receivers alone, the coordinator's involuntary context switches inside the clones (the
fork preempted by the machine's other threads), and the resume latency (the resume -> the last
parked thread running again, after the pause). `nat` is the bundled example
(examples/nat, built with ftmb-cc), the other names DPDK's example applications.

DPDK is linked as ftmb-cc links it: statically (`pkg-config --static --libs libdpdk`, the drivers
inside the binary, ~200 mappings). --shared-dpdk links it as written (`pkg-config --libs libdpdk`,
what `FTMB_DPDK_LINK=shared ftmb-cc` keeps): a dynamically linked DPDK application loads every
driver of DPDK's plugin directory at rte_eal_init (189 shared objects, ~1000 mappings on Debian 12).
The fork copies each mapping, so this is the application's lever on the pause (the runtime's works
either way). --static-dpdk is the default, accepted for older command lines.

    .venv/bin/python bench/checkpoint_pause.py [--only l2fwd nat ...] [--runs 3] [--packets 6000] [--shared-dpdk]
        [--before DIR]

--before DIR compares with another runtime in the same script run: DIR holds its sources (for example
`mkdir DIR && git archive COMMIT runtime | tar -x -C DIR`); each app is linked against both runtimes
(the same instrumented objects: the runtime's public headers must be the same) and the runs alternate
before / after, so both see the same load.

Timings only (never asserted in tests); min / median / max over --runs of each run's figure. The
least load-dependent one is the minimum of the fork's CPU time over a run's checkpoints.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import instrument_dpdk_examples as build  # noqa: E402
from dpdk_examples import enumerate_examples  # noqa: E402
from failover_dpdk_examples import APPS, EAL, App  # noqa: E402

from ftmb_instrument import run as runlib  # noqa: E402
from ftmb_instrument.semantics import load_semantics  # noqa: E402

BIN = Path(sys.executable).parent
STATS = re.compile(r"ftmb: checkpoints (\d+) skipped (\d+) pause_us p50 ([\d.]+) max ([\d.]+) fork_us p50 ([\d.]+) "
                   r"max ([\d.]+) state_bytes (\d+) park_us p50 ([\d.]+) max ([\d.]+) fork_cpu_us p50 ([\d.]+) "
                   r"max ([\d.]+) mappings (\d+) pause_us p99 ([\d.]+) fork_cpu_us min ([\d.]+) "
                   r"park_rx_us p50 ([\d.]+) "
                   r"max ([\d.]+) fork_preempted (\d+) resumed_us p50 ([\d.]+) max ([\d.]+)")
STATS_OLD = re.compile(STATS.pattern.split(" park_rx_us")[0])  # a runtime before these figures (--before)
NAT_APP = App(("--vdev", "net_null0", "--lcores", "(0-2)@(0,1)"), (), 2, 3)


def build_nat(work: Path, static: bool) -> Path:
    """examples/nat built with ftmb-cc into WORK/examples (make: the runtime is ftmb-cc's)."""
    build_dir = work / "examples"
    cmd = ["make", "-s", "-C", str(ROOT / "examples"), f"BUILD={build_dir}", f"CC={BIN / 'ftmb-cc'}",
           str(build_dir / "nat")]
    env = {**os.environ, **({} if static else {"FTMB_DPDK_LINK": "shared"})}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return build_dir / "nat"


def build_runtime(src: Path, out: Path) -> Path:
    """The runtime of SRC/runtime built into OUT (libraries and loggers), for --before."""
    want = [out / f for f in ("libftmb.a", "libftmb_dpdk.a", "ftmb-input-logger", "ftmb-output-logger", "ftmb-relay")]
    subprocess.run(["make", "-s", "-C", str(src / "runtime"), f"B={out}", "CC=gcc", *map(str, want)], check=True,
                   capture_output=True)
    return out


def run_once(app_bin: Path, app: App, trace: Path, out: Path, runtime: str, rate: int) -> re.Match | None:
    """One run of APP_BIN with the loggers of the runtime built in RUNTIME; its checkpoint line."""
    os.environ["FTMB_RUNTIME_BUILD"] = runtime
    res = runlib.run([str(app_bin), *EAL, *app.eal, "--", *app.args], trace, out, queues=app.queues,
                     threads=app.threads, rate=rate, timeout_s=120, failover=True, checkpoint_ms=50,
                     verify_replay=False, workdir=app_bin.parent)
    if not res.ok:
        print(f"{app_bin}: the run failed: {res.nf_stderr.strip().splitlines()[-1:] or res}")
    return STATS.search(res.nf_stderr) or STATS_OLD.search(res.nf_stderr)


def spread(xs: list[float] | None) -> str:
    xs = sorted(xs or [])
    return "-" if not xs else f"{xs[0]:.0f} / {statistics.median(xs):.0f} / {xs[-1]:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=["l2fwd", "packet_ordering"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=6000)
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--shared-dpdk", action="store_true", help="link DPDK's shared libraries (see above)")
    ap.add_argument("--static-dpdk", action="store_true", help="the default: link DPDK statically (see above)")
    ap.add_argument("--before", type=Path, help="sources of a runtime to compare with, runs interleaved (see above)")
    a = ap.parse_args(argv)
    a.static_dpdk = not a.shared_dpdk
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs (shared), load {os.getloadavg()[0]:.1f}")
    examples = {e.name: e for e in enumerate_examples()[0]}
    sem = load_semantics()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ftmb-ckpt-pause-") as tmp:
        work = Path(tmp)
        os.environ["FTMB_RUNTIME_BUILD"] = str(work / "runtime")
        rt = build.ensure_runtime(dpdk=True, loggers=True)
        trace = work / "in.pcap"
        subprocess.run([str(BIN / "ftmb-instrument"), "traffic", str(trace), "--seed", "7", "--flows", "80",
                        "--packets", str(a.packets)], check=True, capture_output=True)
        after_rt = os.environ["FTMB_RUNTIME_BUILD"]
        before_rt = str(build_runtime(a.before.resolve(), work / "runtime-before")) if a.before else None
        for name in a.only:
            bins: dict[str, Path] = {}
            if name == "nat":
                app, bins["after"] = NAT_APP, build_nat(work, a.static_dpdk)
                if before_rt:
                    os.environ["FTMB_RUNTIME_BUILD"] = before_rt
                    bins["before"] = build_nat(work / "before", a.static_dpdk)
                    os.environ["FTMB_RUNTIME_BUILD"] = after_rt
            else:
                app = APPS[name]
                outcome = build.run_one(examples[name], sem, work, rt, static_dpdk=a.static_dpdk)
                if outcome.status != "built":
                    print(f"{name}: not built: {outcome.status}: {outcome.detail}")
                    return 1
                inst = work / name.replace("/", "__") / "inst"
                bins["after"] = inst / "app"
                if before_rt:
                    err = build._link(sorted(inst.glob("*.o")), inst / "app-before",
                                      [f"{before_rt}/libftmb_dpdk.a", f"{before_rt}/libftmb.a"], a.static_dpdk)
                    if err:
                        print(f"{name}: not linked against the --before runtime: {err}")
                        return 1
                    bins["before"] = inst / "app-before"
            got_of: dict[str, dict[str, list[float]]] = {v: {} for v in bins}
            for i in range(a.runs):
                for variant in bins if not before_rt else ("before", "after"):
                    got = got_of[variant]
                    m = run_once(bins[variant], app, trace, work / f"{name}.pcap",
                                 before_rt if variant == "before" else after_rt, a.rate)
                    print(f"{name} {variant} run {i + 1}: load {os.getloadavg()[0]:.1f} "
                          f"{m.group(0) if m else '(no checkpoint line)'}", flush=True)
                    for key, g in (("taken", 1), ("skipped", 2), ("pause50", 3), ("pausemax", 4), ("fork50", 5),
                                   ("forkmax", 6), ("state", 7), ("park50", 8), ("parkmax", 9), ("forkcpu50", 10),
                                   ("maps", 12), ("pause99", 13), ("forkcpumin", 14), ("parkrx50", 15),
                                   ("preempted", 17), ("resumed50", 18)):
                        if m and g <= m.re.groups:
                            got.setdefault(key, []).append(float(m.group(g)))
            rows += [(f"{name}, {v}" if before_rt else name, got_of[v]) for v in got_of]
    print()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    cols = ["pause50", "pause99", "pausemax", "park50", "parkmax", "parkrx50", "resumed50", "fork50", "forkcpu50",
            "forkcpumin"]
    print("| app | checkpoints (skipped) | pause µs p50 | pause µs p99 | pause µs max | park µs p50 | park µs max "
          "| receivers parked µs p50 | resumed µs p50 | fork µs p50 | fork CPU µs p50 | fork CPU µs min "
          "| coordinator preempted in forks | mappings | state |")
    print("|---" * 15 + "|")
    for name, g in rows:
        if not g:
            print(f"| {name} |" + " - |" * 14)
            continue
        preempted = f"{sum(g['preempted']):.0f} switches in {sum(g['taken']):.0f}" if "preempted" in g else "-"
        print(f"| {name} | {sum(g['taken']):.0f} ({sum(g['skipped']):.0f}) | "
              + " | ".join(spread(g.get(c)) for c in cols)
              + f" | {preempted} | {statistics.median(g['maps']):.0f} | {statistics.median(g['state']) / 2**20:.1f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
