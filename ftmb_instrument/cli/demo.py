"""`ftmb-instrument demo`: build the example NAT with ftmb-cc, crash its master mid-run, recover, verify."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .. import demo as demolib
from ..errors import FtmbError
from ..model import Report
from ..plan import Plan
from . import app

HELP = """The whole idea in one command. Shows what the analysis finds in examples/nat (the state
its threads share, and how each object is made replayable) and what the plan instruments; builds examples/nat with ftmb-cc (the rewriter's compiler
wrapper), generates client/server traffic, runs the NAT between the input and output loggers,
checkpoints the master every 50 ms (a forked snapshot), SIGKILLs it in the middle of the traffic,
lets the newest checkpoint replay the log stored since it and take over, and verifies the released output against an uninterrupted run: every forwarded packet
released exactly once, a flow keeps its NAT mapping, no port shared by two live flows. Ends with a
terminal plot of the packets released per millisecond around the crash.

Exit codes: 0 recovered and verified; 1 a step failed or the verification found violations.
"""


@app.command("demo", help=HELP)
def demo_command(
    workdir: Annotated[Optional[Path], typer.Option(help="Keep the build, trace and outputs here "
                                                    "(default: a temporary directory).")] = None,
    workers: Annotated[int, typer.Option(help="Worker lcores of the NAT.")] = 2,
    kill_at: Annotated[float, typer.Option(help="Seconds after the master took its first packet to SIGKILL it.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Traffic seed.")] = 5,
    checkpoint_ms: Annotated[int, typer.Option(help="Checkpoint the master this often (ms).")] = 50,
) -> None:
    console = Console(highlight=False)
    console.print("0/5 analyzing examples/nat/nat.c (what ftmb-cc finds and plans while building it) ...")
    report, plan = demolib.analyze_nat()
    console.print(_shared_state(report, plan))
    console.print(_plan_summary(plan))
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
        if r.releases is not None:
            console.print(_release_plot(r.releases, console.width))
        rc = res.replay_check
        if rc is not None:
            console.print(f"re-execution following the complete log: regenerated {rc.compared} of {rc.released} "
                          f"released packets, {rc.mismatches} differing")
        console.print("verification: " + ("PASS (same bytes as the execution that follows the logs, "
                                          "exactly-once release, NAT invariants)" if v.ok else
                                          "FAIL\n  " + "\n  ".join(str(x) for x in v.violations[:20])))
        if not r.ok:
            raise FtmbError("the demo did not recover and verify cleanly")


SPARK = " ▁▂▃▄▅▆▇█"


STRATEGY = {"ordered": "access order logged", "lock": "acquisition order logged",
            "atomic": "each result logged", "external": "each read's value logged"}


def _shared_state(report: Report, plan: Plan) -> Table:
    """The shared_rw objects and how each is made replayable; the other shared classes as counts."""
    strategy = {o.variable: o.strategy for o in plan.objects}
    rw = sorted((v for v in report.variables if v.cls == "shared_rw"), key=lambda v: (v.decl, v.name))
    counts = {c: sum(v.cls == c for v in report.variables) for c in ("shared_ro", "per_core")}
    t = Table(title="What the analysis found: objects written while other threads use them",
              title_justify="left", caption=f"also shared, nothing to log: {counts['shared_ro']} shared_ro (written "
              f"only while no other thread runs), {counts['per_core']} per_core (each thread its own element)",
              caption_justify="left")
    for col in ("object", "declared", "protection", "how a replay repeats it"):
        t.add_column(col, overflow="fold")
    for v in rw:
        if v.id in strategy:
            how = STRATEGY.get(strategy[v.id], strategy[v.id])
        elif v.protection == "lock":
            how = f"by {', '.join(v.locks)}'s acquisition order"
        else:
            how = "not instrumented (see the plan's problems)"
        t.add_row(v.name, v.decl, v.protection or "", how)
    return t


def _plan_summary(plan: Plan) -> str:
    kinds: dict[str, int] = {}
    for site in plan.sites:
        kinds[site.kind] = kinds.get(site.kind, 0) + 1
    sites = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing"
    return (f"What the plan does: {len(plan.sites)} edited sites ({sites}); {len(plan.objects)} objects get an id; "
            f"{len(plan.skipped)} left as they are (listed by `ftmb-instrument instrument --plan`)")


def _release_plot(rel: demolib.Releases, width: int) -> str:
    """A sparkline of packets released per millisecond, columns merged when it is wider than the console; the
    height is logarithmic so that the steady rate and the burst the backup releases at takeover both show."""
    per = max(1, -(-len(rel.counts) // max(20, width - 12)))
    cols = [sum(rel.counts[i:i + per]) for i in range(0, len(rel.counts), per)]
    top = max(cols) or 1
    line = "".join(SPARK[0 if c == 0 else max(1, round(math.log1p(c) / math.log1p(top) * (len(SPARK) - 1)))]
                   for c in cols)
    marks = [" "] * len(cols)
    marks[(-rel.first_ms) // per] = "K"
    if rel.live_ms is not None and 0 <= (int(rel.live_ms) - rel.first_ms) // per < len(cols):
        marks[(int(rel.live_ms) - rel.first_ms) // per] = "L"
    unit = "millisecond" if per == 1 else f"{per} ms"
    return (f"\npackets released per {unit} from {rel.first_ms} to {rel.first_ms + len(rel.counts)} ms around the "
            f"SIGKILL (K: the kill, L: the backup live; log scale, tallest column: {top} packets)\n"
            f"  |{line}|\n   {''.join(marks)}")
