"""The demo: an example NAT made fault tolerant, its master killed mid-run, recovered, verified.

Steps (each reported as it happens): build the runtime and `examples/nat` with `ftmb-cc`;
generate a trace; run it between the loggers with 2 workers, SIGKILL the master in the middle;
the backup replays the log the output logger stored and takes over; then the oracle checks that
every forwarded packet was released exactly once and that the NAT's invariants held across the
crash (a flow keeps its mapping, no port shared by two live flows).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import run as runlib
from .bundle import EXAMPLES_DIR, ensure_runtime
from . import traffic, verify
from .errors import FtmbError

EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]


class DemoError(FtmbError):
    """A step of the demo failed; the message names it."""


@dataclass
class DemoResult:
    workers: int
    packets: int
    run: runlib.RunResult
    verdict: verify.Verdict

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
    argv = [str(build / "nat"), *EAL, f"--file-prefix=ftmbdemo{os.getpid()}", "--lcores", f"(0-{workers})@(0,1)",
            "--vdev", "net_null0", "--"]
    out = workdir / "released.pcap"
    say(f"3/5 running the NAT ({workers} workers, {rate} packets/s, a checkpoint every {checkpoint_ms} ms) and "
        f"SIGKILLing the master {kill_at:g} s after its start ...")
    res = runlib.run(argv, trace, out, queues=workers, rate=rate, kill_master_at=kill_at, timeout_s=120,
                     checkpoint_ms=checkpoint_ms)
    if not res.ok:
        raise DemoError(f"the run failed: {res.failure}")
    fo = res.failover
    say(f"4/5 the backup ({'the newest checkpoint' if fo and fo.from_snapshot else 'replaying from the start'}) "
        "replayed the log and took over; verifying against an uninterrupted run ...")
    ref_argv = [a + "r" if a.startswith("--file-prefix") else a for a in argv]
    v = verify.verify(ref_argv, trace, out, queues=workers, example="nat", workdir=workdir)
    v.add_replay_check(res.replay_check)
    say("5/5 done")
    return DemoResult(workers=workers, packets=packets, run=res, verdict=v)


__all__ = ["DemoError", "DemoResult", "demo"]
