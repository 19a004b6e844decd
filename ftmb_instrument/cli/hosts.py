"""`ftmb-instrument input-logger|output-logger|master|backup|follower`: each role on its own host, over TCP.

The roles talk through `ftmb-relay` (runtime/tools/ftmb-relay.c); see `ftmb_instrument/roles.py` and
runtime/README.md, "Roles on separate hosts". `run` keeps starting every role on one host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import roles
from ..errors import InputError
from . import app

SESSION = typer.Option("--session", help="Session name (the /dev/shm regions on each host).")
TIMEOUT = typer.Option("--timeout-ms", help="A link with no word for this long is lost (exit 3, one line).")
WORKDIR = typer.Option("--workdir", help="Where each process's stderr goes (NAME.err).")
FOLLOW_LISTEN = typer.Option("--follow-listen", help="IPV4:PORT a follower's host connects to for the "
                             "logger's follow stream (the logger runs with --follow).")
FOLLOW_FORGET = typer.Option("--follow-forget", help="With --follow-listen: the logger forgets what the follower has "
                             "taken or applied (memory bounded by its lag; no verification replay can follow).")


def _role(name: str, session: str, workdir: Path | None) -> roles.Role:
    return roles.Role(name, session, workdir or Path(f"ftmb-{name}"))


@app.command("input-logger")
def input_logger(
    input_pcap: Annotated[Path, typer.Argument(help="IN.pcap, served to the master.")],
    listen: Annotated[str, typer.Option("--listen", help="IPV4:PORT the master's relay connects to.")],
    session: Annotated[str, SESSION] = "ftmb",
    queues: Annotated[int, typer.Option("--queues")] = 1,
    rate: Annotated[Optional[int], typer.Option("--rate", help="Packets per second.")] = None,
    tick_us: Annotated[Optional[int], typer.Option("--tick-us")] = None,
    timeout_ms: Annotated[int, TIMEOUT] = 1000,
    workdir: Annotated[Optional[Path], WORKDIR] = None,
    follow_listen: Annotated[Optional[str], FOLLOW_LISTEN] = None,
    follow_forget: Annotated[bool, FOLLOW_FORGET] = False,
) -> None:
    """The input logger on this host, served over TCP to one master at a time (until SIGINT/SIGTERM)."""
    if not input_pcap.is_file():
        raise InputError(f"{input_pcap}: no such file")
    role = _role("input-logger", session, workdir)
    roles.start_input_logger(role, input_pcap, listen, queues=queues, rate=rate, tick_us=tick_us,
                             timeout_ms=timeout_ms, follow_listen=follow_listen, forget=follow_forget)
    raise typer.Exit(roles.serve(role))


@app.command("output-logger")
def output_logger(
    output_pcap: Annotated[Path, typer.Argument(help="OUT.pcap: the released packets, as they are released.")],
    listen: Annotated[str, typer.Option("--listen", help="IPV4:PORT the master's relay connects to.")],
    log: Annotated[Path, typer.Option("--log", help="The log (written when a master finishes or dies; a backup fetches it).")],
    session: Annotated[str, SESSION] = "ftmb",
    timeout_ms: Annotated[int, TIMEOUT] = 1000,
    workdir: Annotated[Optional[Path], WORKDIR] = None,
    follow_listen: Annotated[Optional[str], FOLLOW_LISTEN] = None,
    follow_forget: Annotated[bool, FOLLOW_FORGET] = False,
) -> None:
    """The output logger on this host: release stays here (until SIGINT/SIGTERM)."""
    role = _role("output-logger", session, workdir)
    roles.start_output_logger(role, output_pcap, log, listen, timeout_ms=timeout_ms, follow_listen=follow_listen,
                              forget=follow_forget)
    raise typer.Exit(roles.serve(role))


def _master(kind: str, ctx: typer.Context, connect_in: str, connect_out: str, session: str, log: Path | None,
            timeout_ms: int, workdir: Path | None) -> None:
    nf_argv = ctx.obj.get("clang_args") or []
    if not nf_argv:
        raise InputError("no network function: give its command line after --")
    role = _role(kind, session, workdir)
    main = roles.start_master(role, nf_argv, connect_in, connect_out, kind=kind, log=log, timeout_ms=timeout_ms)
    raise typer.Exit(roles.serve(role, main))


@app.command("master")
def master(
    ctx: typer.Context,
    connect_in: Annotated[str, typer.Option("--connect-in", help="The input logger's IPV4:PORT.")],
    connect_out: Annotated[str, typer.Option("--connect-out", help="The output logger's IPV4:PORT.")],
    session: Annotated[str, SESSION] = "ftmb",
    timeout_ms: Annotated[int, TIMEOUT] = 1000,
    workdir: Annotated[Optional[Path], WORKDIR] = None,
) -> None:
    """The instrumented program (after --) in record mode on this host; its exit status."""
    _master("master", ctx, connect_in, connect_out, session, None, timeout_ms, workdir)


@app.command("backup")
def backup(
    ctx: typer.Context,
    connect_in: Annotated[str, typer.Option("--connect-in", help="The input logger's IPV4:PORT.")],
    connect_out: Annotated[str, typer.Option("--connect-out", help="The output logger's IPV4:PORT.")],
    log: Annotated[Path, typer.Option("--log", help="Where to store the log fetched from the output logger.")],
    verify: Annotated[bool, typer.Option("--verify", help="Replay the complete log only (the verification replay).")] = False,
    session: Annotated[str, SESSION] = "ftmb",
    timeout_ms: Annotated[int, TIMEOUT] = 1000,
    workdir: Annotated[Optional[Path], WORKDIR] = None,
) -> None:
    """A cold backup on this host, started once the master's host is gone: it fetches the log the
    output logger wrote, replays it from the start and goes live (--verify: replays it and exits)."""
    _master("verify" if verify else "backup", ctx, connect_in, connect_out, session, log, timeout_ms, workdir)


@app.command("follower")
def follower(
    ctx: typer.Context,
    connect_in: Annotated[str, typer.Option("--connect-in", help="The input logger's IPV4:PORT.")],
    connect_out: Annotated[str, typer.Option("--connect-out", help="The output logger's IPV4:PORT.")],
    follow_in: Annotated[str, typer.Option("--follow-in", help="The input logger's --follow-listen IPV4:PORT.")],
    follow_out: Annotated[str, typer.Option("--follow-out", help="The output logger's --follow-listen IPV4:PORT.")],
    session: Annotated[str, SESSION] = "ftmb",
    timeout_ms: Annotated[int, TIMEOUT] = 1000,
    workdir: Annotated[Optional[Path], WORKDIR] = None,
) -> None:
    """A follower on this host, started once the master runs: it replays the master's log as it
    arrives and takes over when the master's host fails (exit status: the program's; 0 when the
    master finished and there was nothing to take over)."""
    nf_argv = ctx.obj.get("clang_args") or []
    if not nf_argv:
        raise InputError("no network function: give its command line after --")
    role = _role("follower", session, workdir)
    main = roles.start_follower(role, nf_argv, connect_in, connect_out, follow_in, follow_out, timeout_ms=timeout_ms)
    raise typer.Exit(roles.serve(role, main))


@app.command("netns-run")
def netns_run(
    ctx: typer.Context,
    input_pcap: Annotated[Path, typer.Argument(help="IN.pcap")],
    output_pcap: Annotated[Path, typer.Argument(help="OUT.pcap: the released packets.")],
    kill_master_at: Annotated[Optional[float], typer.Option("--kill-master-at", help="Seconds after the master took its first input at which its host fails.")] = None,
    queues: Annotated[int, typer.Option("--queues")] = 1,
    rate: Annotated[Optional[int], typer.Option("--rate", help="Packets per second.")] = None,
    timeout_ms: Annotated[int, TIMEOUT] = 2000,
    workdir: Annotated[Optional[Path], WORKDIR] = None,
    kill_logger: Annotated[Optional[str], typer.Option("--kill-logger", help="il or ol: SIGKILL that logger at --kill-at seconds instead (no backup; the master's documented behaviour is checked).")] = None,
    kill_at: Annotated[float, typer.Option("--kill-at", help="Seconds after the master's start, for --kill-logger.")] = 1.5,
    whole_host: Annotated[bool, typer.Option("--whole-host", help="With --kill-logger: the logger's whole host fails.")] = False,
    backup: Annotated[str, typer.Option("--backup", help="cold: a backup started after the master's host failed replays the whole log; follower: a follower on its own host replays the log as it comes and takes over.")] = "cold",
    kill_follower_at: Annotated[Optional[float], typer.Option("--kill-follower-at", help="With --backup follower: the follower's host fails at that many seconds instead (the master forwards on without fault tolerance).")] = None,
    follow_forget: Annotated[bool, typer.Option("--follow-forget", help="With --backup follower: the loggers forget what the follower has taken or applied; no verification replay (the log's start is gone): the outputs the takeover sends again are compared instead.")] = False,
) -> None:
    """Every role on its own host, on this machine (root: one network namespace and /dev/shm per host,
    veth pairs and a bridge): input logger, output logger, master; with --kill-master-at the master's
    host fails (every process SIGKILLed, the namespace deleted) and a backup on a fourth host takes
    over: a cold one (it fetches and replays the whole log) or, with --backup follower, a follower
    that replayed the log as it came since the start; then a verification replay on a fifth host.
    --kill-follower-at: the follower's host fails instead. Exit 1 with one line when a check fails."""
    import os
    nf_argv = ctx.obj.get("clang_args") or []
    if not nf_argv:
        raise InputError("no network function: give its command line after --")
    if os.geteuid() != 0:
        raise InputError("netns-run makes network namespaces: run it as root")
    if not input_pcap.is_file():
        raise InputError(f"{input_pcap}: no such file")
    work = workdir or Path("ftmb-netns-run")
    if kill_logger is not None:
        if kill_master_at is not None:
            raise InputError("--kill-logger and --kill-master-at: one failure per run")
        loss = roles.logger_loss_on_hosts(nf_argv, input_pcap.resolve(), output_pcap.resolve(), work.resolve(),
                                          victim=kill_logger, kill_at=kill_at, whole_host=whole_host, queues=queues, rate=rate,
                                          timeout_ms=timeout_ms)
        for line in loss.report:
            print(line)
        where = "'s host" if whole_host else ""
        print(f"{roles.LOGGERS[kill_logger]}{where} killed at {kill_at:g} s; "
              f"released {loss.released_at_kill} by then, {loss.released} in the end; the master declared it gone "
              f"{loss.declared_after_s:.2f} s after; stderr of each process in {work}/")
        if not loss.ok:
            raise InputError(loss.failure)
        return
    if backup not in ("cold", "follower"):
        raise InputError(f"--backup {backup}: expected cold or follower")
    if kill_follower_at is not None and (backup != "follower" or kill_master_at is not None):
        raise InputError("--kill-follower-at needs --backup follower, and no --kill-master-at")
    res = roles.run_on_hosts(nf_argv, input_pcap.resolve(), output_pcap.resolve(), work.resolve(), queues=queues,
                             rate=rate, kill_master_at=kill_master_at, backup=backup, kill_follower_at=kill_follower_at,
                             forget=follow_forget, timeout_ms=timeout_ms)
    if kill_master_at is not None:
        took = f"; took over {res.takeover_ms:.1f} ms, live {res.live_ms:.1f} ms after" if backup == "follower" else ""
        print(f"master's host failed at {kill_master_at:g} s ({res.killed} processes killed, "
              f"{res.released_at_kill} packets released by then, {backup} backup); backup live: "
              f"{'yes' if res.backup_live else 'no'}{took}")
    if kill_follower_at is not None:
        print(f"follower's host failed at {kill_follower_at:g} s ({res.killed} processes killed); the master forwarded "
              f"on; fault tolerance lost: {res.fault_tolerance_lost or 'not reported'}")
    if res.follower_lag:
        print(res.follower_lag)
    for what, held in (("entries", res.entries_held), ("records", res.records_held)):
        if held[0] >= 0:
            print(f"log held ({what}): {held[0]} at the end, {held[1]} at most, of {held[2]}; while the master ran "
                  f"{held[3]} at most, of {held[4]}")
    check = (f"{res.mismatches} of the outputs the takeover sent again differ (no verification replay: the log "
             f"was forgotten)" if follow_forget else f"replay check: {res.verified} regenerated, {res.mismatches} mismatches")
    print(f"released {res.released} ({res.distinct} distinct), held {res.held}; {check}; stderr of each process in {work}/")
    if not res.ok:
        raise InputError(res.failure)
