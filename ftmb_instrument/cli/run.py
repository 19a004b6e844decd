"""`ftmb-instrument run`: an instrumented network function between the input and output loggers."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .. import run as runlib
from . import app

HELP = """Run an instrumented network function (the master) in a session: the input logger serves
IN.pcap, the program's receive and transmit calls go through the loggers, the output logger
writes the released packets to OUT.pcap. Give the program and its arguments after `--`; a DPDK
program still needs its EAL options (e.g. --no-huge --no-pci --no-shconf --vdev net_null0
--lcores '(0-2)@(0,1)'): each receive queue it sets up becomes a session queue.

The command starts every process itself (loggers first, then the program with FTMB_MODE and
FTMB_SESSION), waits until the program has taken all its input (every queue's EOF), sends it
--stop-signal (a program in a session sees virtual time, which stops with the input, so idle
timers never fire), waits for the loggers to finish, and prints a summary: packets in and out,
records logged, packets held and for how long (release time minus arrival, p50/p99). With
--mode passthrough the same processes run with logging off. A failure of any process is one
line naming it and its exit status; nothing is left running and the session's shared memory is
removed, whatever happens. OUT is written as packets are released and keeps them whatever ends
the run (the failure's line, or `interrupted; ...` for Ctrl-C/SIGTERM, says how many); a second run
to the same OUT is refused while one runs. OUT.ftmb.json records the run's conditions for `verify`.

Failover: with --kill-master-at SECONDS (or random --seed N) or --failover, a warm standby
backup (the same command line, FTMB_MODE=standby, address-space randomization off for both) runs
the program's initialization next to the master and waits; the run SIGKILLs the master at that
instant, the output logger stores every record the master published and writes the log, the
backup replays it and goes live, and the run goes on to the end of the input. The summary says
when the master died, when the log was stored and when the backup was live (the recovery time).
With --checkpoint-ms N the master also forks a snapshot of itself every N ms; when it dies the
newest snapshot takes over instead and replays only the log since that checkpoint (the standby
steps aside). With --backup follower the backup is a follower instead of the standby: it replays
the log as the output logger stores it (its outputs dropped), and when the master dies it replays
only the tail and goes live; the summary gives its lag. Check the released output with `ftmb-instrument verify`.

Exit codes: 0 every process finished cleanly; 1 bad input, a process failed (named on
stderr), or after a failover the verification replay did not regenerate every released packet
with the same bytes (one line with the counts; the summary always shows the replay check); 2 usage
error; 130 interrupted.
"""


class Mode(str, Enum):
    record = "record"
    passthrough = "passthrough"


class Backup(str, Enum):
    standby = "standby"
    follower = "follower"


class StopSignal(str, Enum):
    INT = "INT"
    TERM = "TERM"


@app.command("run", help=HELP, context_settings={"allow_extra_args": True})
def run_command(
    ctx: typer.Context,
    input_pcap: Annotated[Path, typer.Option("--in", "-i", help="Input packets (pcap).", show_default=False)],
    output_pcap: Annotated[Path, typer.Option("--out", "-o", help="Released packets (pcap).", show_default=False)],
    mode: Annotated[Mode, typer.Option(help="record: log everything; passthrough: same topology, no logging.")]
    = Mode.record,
    queues: Annotated[int, typer.Option(help="Session input queues (the program's receive queues).")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="At most this many master threads (default: the "
                                                   "runtime's limit, 32; rings of threads that never "
                                                   "start take no memory).")] = None,
    timeout: Annotated[float, typer.Option(help="Give up (and kill everything) after this many seconds.")] = 60.0,
    grace: Annotated[float, typer.Option(help="Seconds a process gets to exit after a stop signal "
                                         "before SIGKILL.")] = 3.0,
    stop_signal: Annotated[StopSignal, typer.Option(help="Signal that stops the program once its "
                                                    "input is drained.")] = StopSignal.INT,
    tick_us: Annotated[Optional[int], typer.Option(help="Input logger: tick a queue idle this long (then "
                                                   "at doubling gaps up to 10 ms).")] = None,
    rate: Annotated[Optional[int], typer.Option(help="Input logger: serve at most this many packets/s.")] = None,
    log: Annotated[Optional[Path], typer.Option(help="Output logger: write the records here "
                                                "(FTMB_REPLAY_LOG for replay).")] = None,
    attach_timeout: Annotated[float, typer.Option(help="Seconds the loggers and then the program get to "
                                                  "join the session.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    kill_master_at: Annotated[Optional[str], typer.Option(
        help="Failover: SIGKILL the master this many seconds after it started (or 'random': uniform in "
             "[0.3, 1.0) s with --seed), then a backup replays the log and takes over.")] = None,
    kill_from_input: Annotated[bool, typer.Option(
        help="--kill-master-at counts from the master's first input instead of its start (a loaded "
             "machine's start-up may take longer than the kill's delay).")] = False,
    seed: Annotated[Optional[int], typer.Option(help="Seed of --kill-master-at random (printed on stderr).")] = None,
    failover: Annotated[bool, typer.Option(help="Keep a backup ready: if the master dies, it takes over "
                                           "(implied by --kill-master-at).")] = False,
    checkpoint_ms: Annotated[Optional[int], typer.Option(
        help="Failover: checkpoint the master this often (ms); the newest checkpoint takes over.")] = None,
    backup: Annotated[Backup, typer.Option(
        help="Failover: standby (runs the initialization, then waits and replays the whole log) or follower "
             "(replays the log as it comes, then finishes its tail).")] = Backup.standby,
) -> None:
    nf_argv = list((ctx.obj or {}).get("clang_args", [])) + list(ctx.args)
    kill_at = None
    if kill_master_at == "random":
        import random
        seed = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
        kill_at = random.Random(seed).uniform(0.3, 1.0)
        # stderr: with --json, stdout is the JSON document and nothing else
        print(f"--kill-master-at random: seed {seed}: {kill_at:.3f} s", file=sys.stderr, flush=True)
    elif kill_master_at is not None:
        try:
            kill_at = float(kill_master_at)
        except ValueError:
            raise typer.BadParameter(f"{kill_master_at}: seconds or 'random'", param_hint="--kill-master-at")
    sig = signal.SIGINT if stop_signal is StopSignal.INT else signal.SIGTERM
    # SIGTERM and SIGHUP end the command like Ctrl-C: through run()'s cleanup, which stops and
    # reaps every process it started (Python's default would exit without it).
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = runlib.run(nf_argv, input_pcap, output_pcap, mode=mode.value, queues=queues, threads=threads,
                            timeout_s=timeout, grace_s=grace, stop_signal=sig, tick_us=tick_us, rate=rate,
                            log_file=log, attach_timeout_s=attach_timeout, kill_master_at=kill_at,
                            kill_from_input=kill_from_input,
                            failover=failover, checkpoint_ms=checkpoint_ms, follower=backup is Backup.follower,
                            seed=seed if kill_master_at == "random" else None)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if as_json:
        print(json.dumps(asdict(result), indent=2))
    else:
        render(result, Console(highlight=False))
    if result.interrupted:
        raise runlib.RunInterrupted(result.failure)
    if not result.ok:
        raise runlib.RunError(result.failure)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def render(result: runlib.RunResult, console: Console) -> None:
    procs = Table(title=f"session {result.session} ({result.mode}, {result.queues} queue"
                  f"{'s' if result.queues != 1 else ''}, {result.elapsed_s:.2f} s)", title_justify="left")
    for col in ("process", "pid", "status", "stopped by"):
        procs.add_column(col)
    for p in result.processes:
        style = "red" if p.failed() else None
        procs.add_row(p.name, str(p.pid), p.status, p.stopped_by or "-", style=style)
    console.print(procs)
    counts = Table(show_header=False, box=None, padding=(0, 2))
    counts.add_column(justify="left")
    counts.add_column(justify="right")
    per_pkt = f" ({result.records / result.input_packets:.1f} per input packet)" if result.input_packets else ""
    rows = [
        ("packets in", f"{result.input_packets}"),
        ("packets out (released)", f"{result.output_packets}"),
        *([("input packets not released", f"{result.input_packets - result.output_packets}: the program's own (it "
            "dropped them, or still kept them at its stop, e.g. in a reorder buffer); the output logger held none")]
          if result.output_packets < result.input_packets and result.held == 0 and not result.failure else []),
        ("records logged", f"{result.records}{per_pkt}"),
        ("packets held at the end", f"{result.held}"),
        ("hold time p50 / p99", "-" if result.hold_p50_us is None
         else f"{result.hold_p50_us:.1f} µs / {result.hold_p99_us:.1f} µs"),
        ("corrupt records / duplicate outputs", f"{result.corrupt} / {result.duplicates}"),
        ("input drained", "yes" if result.drained else "no"),
    ]
    lag = result.follower_lag
    if lag is not None:
        rows.append(("follower lag p50 / max", f"{lag.ms_p50:.2f} / {lag.ms_max:.2f} ms, "
                                               f"{lag.records_p50} / {lag.records_max} records"))
    if result.fault_tolerance_lost:
        rows.append(("fault tolerance", f"LOST: {result.fault_tolerance_lost}"))
    fo = result.failover
    if fo is not None:
        rows += [
            ("master failure", f"{'SIGKILL by the run' if fo.injected else 'died'} at {fo.killed_at_s:.3f} s"),
            ("log stored and written", "-" if fo.log_ready_ms is None else f"{fo.log_ready_ms:.1f} ms after"),
            ("backup", f"pid {fo.backup_pid}: " + ("the master's newest checkpoint" if fo.from_snapshot
                                                   else "the follower, replaying the log's tail" if fo.follower
                                                   else "the standby, replaying from the start")),
            ("backup live (recovery time)", "not recovered" if fo.live_ms is None
             else f"{fo.live_ms:.1f} ms after the failure ({fo.replayed_records} records replayed)"),
        ]
    check = result.replay_check
    rows.append(("replay check (compared / mismatches)", "not run (no failover)" if check is None
                 else f"{check.compared} of {check.released} / {check.mismatches}"
                 + ("" if check.ok else "  FAILED")))
    for k, v in rows:
        counts.add_row(k, v)
    console.print(counts)
    last = [ln for ln in result.nf_stdout.splitlines() if ln.strip()][-1:]
    if last:
        console.print(f"program's last line: {last[0]}", markup=False, style="dim")
