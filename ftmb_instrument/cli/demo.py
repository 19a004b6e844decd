"""`ftmb-instrument demo`: build the example NAT with ftmb-cc, crash its master mid-run, recover, verify."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .. import demo as demolib
from ..errors import FtmbError
from . import app

HELP = """The whole idea in one command. Builds examples/nat with ftmb-cc (the rewriter's compiler
wrapper), generates client/server traffic, runs the NAT between the input and output loggers,
checkpoints the master every 50 ms (a forked snapshot), SIGKILLs it in the middle of the traffic,
lets the newest checkpoint replay the log stored since it and take over, and verifies the released output against an uninterrupted run: every forwarded packet
released exactly once, a flow keeps its NAT mapping, no port shared by two live flows.

Exit codes: 0 recovered and verified; 1 a step failed or the verification found violations.
"""


@app.command("demo", help=HELP)
def demo_command(
    workdir: Annotated[Optional[Path], typer.Option(help="Keep the build, trace and outputs here "
                                                    "(default: a temporary directory).")] = None,
    workers: Annotated[int, typer.Option(help="Worker lcores of the NAT.")] = 2,
    kill_at: Annotated[float, typer.Option(help="Seconds after the master's start to SIGKILL it.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Traffic seed.")] = 5,
    checkpoint_ms: Annotated[int, typer.Option(help="Checkpoint the master this often (ms).")] = 50,
) -> None:
    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="ftmb-demo-") as tmp:
        d = workdir or Path(tmp)
        r = demolib.demo(d, workers=workers, kill_at=kill_at, seed=seed, checkpoint_ms=checkpoint_ms,
                         say=console.print)
        fo, res, v = r.run.failover, r.run, r.verdict
        console.print(f"\npackets in {res.input_packets}, released {res.released} "
                      f"(duplicates dropped by the output logger: {res.duplicates}), held {res.held}")
        if fo is None:
            console.print("the master finished before the kill instant: no failure happened (use a smaller "
                          "--kill-at)")
        else:
            console.print(f"master SIGKILLed at {fo.killed_at_s:.3f} s; log stored {fo.log_ready_ms:.1f} ms later; "
                          + ("the newest checkpoint" if fo.from_snapshot else "the standby (from the start)")
                          + " live "
                          + (f"{fo.live_ms:.1f} ms after the failure ({fo.replayed_records} records replayed)"
                             if fo.live_ms is not None else "NEVER"))
        rc = res.replay_check
        if rc is not None:
            console.print(f"re-execution following the complete log: regenerated {rc.compared} of {rc.released} "
                          f"released packets, {rc.mismatches} differing")
        console.print("verification: " + ("PASS (same bytes as the execution that follows the logs, "
                                          "exactly-once release, NAT invariants)" if v.ok else
                                          "FAIL\n  " + "\n  ".join(str(x) for x in v.violations[:20])))
        if not r.ok:
            raise FtmbError("the demo did not recover and verify cleanly")
