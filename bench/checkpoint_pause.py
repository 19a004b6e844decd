"""Checkpoint pause of the DPDK example applications: where the time goes.

Each application is instrumented as a whole program and built (bench/instrument_dpdk_examples.py),
then run under `ftmb-instrument run` in record mode with a checkpoint every 50 ms and no failure.
The runtime's line at exit (runtime/src/checkpoint.c) gives, over the run's checkpoints, p50 and
max of the pause (request -> resume), of the park (request -> every thread parked), of the fork
(parked -> resumed: the clone system call, the kernel's copy of the address space), the
coordinator's CPU time inside that clone (what the copy costs, whatever the machine's load), the
mappings of the address space at exit and the state size. `nat` is the bundled example
(examples/nat, built with ftmb-cc), the other names DPDK's example applications.

--static-dpdk links DPDK statically (`pkg-config --static --libs libdpdk`): a dynamically linked
DPDK application loads every driver of DPDK's plugin directory at rte_eal_init (189 shared objects,
~950 mappings on Debian 12), a statically linked one has its drivers inside the binary and none to
load. The fork copies each mapping, so this is the application's lever on the pause (the runtime's
works either way).

    .venv/bin/python bench/checkpoint_pause.py [--only l2fwd nat ...] [--runs 3] [--packets 6000] [--static-dpdk]

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
                   r"max ([\d.]+) mappings (\d+) pause_us p99 ([\d.]+) fork_cpu_us min ([\d.]+)")
NAT_APP = App(("--vdev", "net_null0", "--lcores", "(0-2)@(0,1)"), (), 2, 3)


def build_nat(work: Path, static: bool) -> Path:
    """examples/nat built with ftmb-cc into WORK/examples (make: the runtime is ftmb-cc's)."""
    build_dir = work / "examples"
    cmd = ["make", "-s", "-C", str(ROOT / "examples"), f"BUILD={build_dir}", f"CC={BIN / 'ftmb-cc'}",
           str(build_dir / "nat")]
    if static:
        cmd.append("LDLIBS=" + " ".join([*build.dpdk_libs(static=True), "-lpthread", "-lm"]))
    subprocess.run(cmd, check=True, capture_output=True)
    return build_dir / "nat"


def spread(xs: list[float]) -> str:
    xs = sorted(xs)
    return "-" if not xs else f"{xs[0]:.0f} / {statistics.median(xs):.0f} / {xs[-1]:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=["l2fwd", "packet_ordering"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=6000)
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--static-dpdk", action="store_true", help="link DPDK statically (see above)")
    a = ap.parse_args(argv)
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
        for name in a.only:
            if name == "nat":
                app, app_bin = NAT_APP, build_nat(work, a.static_dpdk)
            else:
                app = APPS[name]
                outcome = build.run_one(examples[name], sem, work, rt, static_dpdk=a.static_dpdk)
                if outcome.status != "built":
                    print(f"{name}: not built: {outcome.status}: {outcome.detail}")
                    return 1
                app_bin = work / name.replace("/", "__") / "inst" / "app"
            got: dict[str, list[float]] = {}
            for i in range(a.runs):
                res = runlib.run([str(app_bin), *EAL, *app.eal, "--", *app.args], trace, work / f"{name}.pcap",
                                 queues=app.queues, threads=app.threads, rate=a.rate, timeout_s=120,
                                 failover=True, checkpoint_ms=50, verify_replay=False, workdir=app_bin.parent)
                m = STATS.search(res.nf_stderr)
                print(f"{name} run {i + 1}: ok {res.ok} {m.group(0) if m else '(no checkpoint line)'}", flush=True)
                if not m:
                    continue
                for key, g in (("taken", 1), ("skipped", 2), ("pause50", 3), ("pausemax", 4), ("fork50", 5),
                               ("forkmax", 6), ("state", 7), ("park50", 8), ("parkmax", 9), ("forkcpu50", 10),
                               ("maps", 12), ("pause99", 13), ("forkcpumin", 14)):
                    got.setdefault(key, []).append(float(m.group(g)))
            rows.append((name, got))
    print()
    print("| app | checkpoints (skipped) | pause µs p50 | pause µs p99 | pause µs max | park µs p50 | park µs max "
          "| fork µs p50 | fork CPU µs p50 | fork CPU µs min | mappings | state |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, g in rows:
        if not g:
            print(f"| {name} | - | - | - | - | - | - | - | - | - | - | - |")
            continue
        print(f"| {name} | {sum(g['taken']):.0f} ({sum(g['skipped']):.0f}) | {spread(g['pause50'])} | "
              f"{spread(g['pause99'])} | {spread(g['pausemax'])} | {spread(g['park50'])} | {spread(g['parkmax'])} | "
              f"{spread(g['fork50'])} | {spread(g['forkcpu50'])} | {spread(g['forkcpumin'])} | "
              f"{statistics.median(g['maps']):.0f} | "
              f"{statistics.median(g['state']) / 2**20:.1f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
