"""Release latency of remote logging (roles on separate hosts, ftmb-relay over veth) against
same-host rings (issue 13).

Both configurations run ftmb-test-fwd (2 worker threads, 2 queues) on the same trace at the same
rate, with the input and output loggers of roles.py. Same host: the master attaches to the loggers'
regions in their own namespace (the shared-memory fast path). Remote: input logger, output logger
and master each on its own host (network namespace, own /dev/shm), joined by veth pairs and a
bridge, the master's regions mirrored by ftmb-relay. Latency is the output logger's: release time
minus the input entry's arrival (both the machine's CLOCK_REALTIME), p50 and p99 over every packet.

    sudo .venv/bin/python bench/bench_hosts.py [--packets 10000] [--rate 5000] [--trials 3]
"""

from __future__ import annotations

import argparse
import re
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True)
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
