"""The demo: an example NAT made fault tolerant, its master killed mid-run, recovered, verified.

Steps (each reported as it happens): build the runtime and `examples/nat` with `ftmb-cc`;
generate a trace; run it between the loggers with 2 workers, SIGKILL the master in the middle;
the backup replays the log the output logger stored and takes over; then the oracle checks that
every forwarded packet was released exactly once and that the NAT's invariants held across the
crash (a flow keeps its mapping, no port shared by two live flows). The released packets' times
around the failure (per millisecond) show the outage and the takeover. `analyze_nat` gives what
ftmb-cc finds and plans for the NAT while building it, for the demo to show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import pcap, traffic, verify
from . import run as runlib
from .bundle import EXAMPLES_DIR, ensure_runtime
from .errors import FtmbError
from .model import Report
from .plan import Plan

EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]


class DemoError(FtmbError):
    """A step of the demo failed; the message names it."""


@dataclass
class Releases:
    """Packets the output logger released in each millisecond around the failure."""
    first_ms: int          # the first bin's start, ms relative to the SIGKILL (negative: before it)
    counts: list[int]      # counts[i]: released in [first_ms + i, first_ms + i + 1) ms
    live_ms: float | None  # the backup live, ms after the SIGKILL


@dataclass
class DemoResult:
    workers: int
    packets: int
    run: runlib.RunResult
    verdict: verify.Verdict
    releases: Releases | None  # None when no failure happened

    @property
    def ok(self) -> bool:
        return self.run.ok and self.run.failover is not None and self.run.failover.recovered and self.verdict.ok


def _ftmb_cc() -> str:
    import shutil
    import sys
    cand = Path(sys.executable).with_name("ftmb-cc")
    return str(cand) if cand.exists() else (shutil.which("ftmb-cc") or "ftmb-cc")


def demo(workdir: Path, *, workers: int = 2, packets: int = 6000, rate: int = 5000, kill_at: float = 0.8,
         checkpoint_ms: int = 50,
         seed: int = 5, say: Callable[[str], None] = print) -> DemoResult:
    workdir.mkdir(parents=True, exist_ok=True)
    build = workdir / "build"
    build.mkdir(exist_ok=True)
    say("1/5 building the runtime and examples/nat with ftmb-cc ...")
    ensure_runtime(dpdk=True, loggers=True)
    cmd = ["make", "-s", "-C", str(EXAMPLES_DIR), f"BUILD={build}", f"CC={_ftmb_cc()}", str(build / "nat")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise DemoError(f"{' '.join(cmd)} failed:\n{(p.stdout + p.stderr)[-2000:]}")
    trace = workdir / "trace.pcap"
    say(f"2/5 generating {packets} packets of client/server traffic (seed {seed}) -> {trace}")
    traffic.generate(trace, seed=seed, flows=200, packets=packets, duration_s=0.5)
    prefix = f"ftmbdemo{os.getpid()}"
    argv = [str(build / "nat"), *EAL, f"--file-prefix={prefix}", "--lcores", f"(0-{workers})@(0,1)",
            "--vdev", "net_null0", "--"]
    try:
        out = workdir / "released.pcap"
        say(f"3/5 running the NAT ({workers} workers, {rate} packets/s, a checkpoint every {checkpoint_ms} ms) and "
            f"SIGKILLing the master {kill_at:g} s after it took its first packet ...")
        res = runlib.run(argv, trace, out, queues=workers, rate=rate, kill_master_at=kill_at, kill_from_input=True,
                         timeout_s=120, checkpoint_ms=checkpoint_ms)
        if not res.ok:
            raise DemoError(f"the run failed: {res.failure}")
        fo = res.failover
        say(f"4/5 the backup ({'the newest checkpoint' if fo and fo.from_snapshot else 'replaying from the start'}) "
            "replayed the log and took over; verifying against an uninterrupted run ...")
        ref_argv = [a + "r" if a.startswith("--file-prefix") else a for a in argv]
        v = verify.verify(ref_argv, trace, out, queues=workers, example="nat", workdir=workdir,
                          **verify.run_conditions(out))
        v.add_replay_check(res.replay_check)
    finally:
        # DPDK makes a runtime directory per --file-prefix even with --no-shconf (its telemetry
        # socket lives there) and never removes it: the run's and the reference run's go here.
        for p in (prefix, prefix + "r"):
            shutil.rmtree(dpdk_runtime_dir(p), ignore_errors=True)
    say("5/5 done")
    rel = releases_around_failure(out, fo) if fo is not None else None
    return DemoResult(workers=workers, packets=packets, run=res, verdict=v, releases=rel)


def dpdk_runtime_dir(file_prefix: str) -> Path:
    """Where DPDK's EAL puts the runtime directory of `--file-prefix` (eal_create_runtime_dir)."""
    base = "/var/run" if os.getuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "/tmp")
    return Path(base) / "dpdk" / file_prefix


def analyze_nat() -> tuple[Report, Plan]:
    """What ftmb-cc finds and plans for examples/nat/nat.c (it does the same on its own while building)."""
    from .frontend import from_files
    from .rewrite.pipeline import make_plan
    from .semantics import load_semantics

    nat = EXAMPLES_DIR / "nat" / "nat.c"
    cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True)
    if cflags.returncode != 0:
        raise DemoError("pkg-config --cflags libdpdk failed: the demo needs libdpdk-dev")
    return make_plan(from_files([nat], cflags.stdout.split()), load_semantics(), str(nat.parent), jobs=1)


def releases_around_failure(released_pcap: Path, fo: runlib.Failover, before_ms: int = 30,
                            after_ms: int = 40) -> Releases:
    """Per-millisecond release counts from `before_ms` before the SIGKILL to `after_ms` after the backup went
    live (the released pcap's timestamps are the output logger's release times)."""
    end_ms = int(fo.live_ms if fo.live_ms is not None else 0) + after_ms
    counts = [0] * (before_ms + end_ms)
    for pkt in pcap.read_pcap(released_pcap):
        i = (pkt.ts_ns - fo.killed_wall_ns) // 1_000_000 + before_ms
        if 0 <= i < len(counts):
            counts[i] += 1
    return Releases(-before_ms, counts, fo.live_ms)


__all__ = ["DemoError", "DemoResult", "Releases", "analyze_nat", "demo", "releases_around_failure"]
