"""Each FTMB role as its own process tree, for roles on separate hosts (issue 13).

A role talks to the others over TCP through `ftmb-relay` (runtime/tools/ftmb-relay.c); on its own
host everything stays shared memory:

- input logger host: `ftmb-input-logger --until-signal` and `ftmb-relay export --region in`;
- output logger host: `ftmb-output-logger --until-signal --log LOG` and `ftmb-relay export --region out
  --log LOG` (the log goes to a backup that asks for it);
- master host: `ftmb-relay import --region in` and `--region out` make local regions of the loggers'
  layout, then the instrumented program runs in record mode against them;
- backup host: the same, the out import fetching the log first (`--log`), and the program replays it
  from the start and goes live (a cold backup: FTMB_MODE=replay, FTMB_REPLAY_HANDOVER=1); with
  `verify` it replays the complete log with FTMB_REPLAY_STOP_AT_END=1 (the verification replay:
  the output logger compares every regenerated packet with the released one);
- follower host (`start_follower`): the loggers also run `ftmb-relay export --region infol|fol`
  (started with --follow); `ftmb-relay import --region in|out --follow ADDR` make the follow regions
  and the session regions here, and the program follows (FTMB_MODE=follow) and takes over when the
  master's link ends (runtime/README.md, Roles on separate hosts, Follower links).

`_start_session` is the one start-up of a run across hosts (`run_on_hosts`, `logger_loss_on_hosts`).

`Role` is one such process tree: it starts the processes, waits for what the next one needs,
forwards SIGINT/SIGTERM, and stops them all. What each process is (a logger's command line, the
environment of the master's binary in each role) comes from run.py, which starts the same roles on
one host: only the transport differs (`Role.spawn` with a host's prefix, and the relays). The CLI (`ftmb-instrument input-logger|output-logger|
master|backup`) and the tests (tests/test_hosts.py, through `netns.Topology`) use the same code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .bundle import ensure_runtime
from .errors import FtmbError, InputError
from .run import MASTER_END, arrivals_path, input_logger_argv, output_logger_argv, program_env, same_addresses

ROLES = ("input-logger", "output-logger", "master", "backup", "verify")


def _region_ready(path: Path, owner_pid: int) -> bool:
    """Ready, and made by `owner_pid` (not a region an earlier relay of this host still holds)."""
    from .run import _HDR
    try:
        with open(path, "rb") as f:
            head = f.read(_HDR.size)
    except OSError:
        return False
    if len(head) != _HDR.size:
        return False
    fields = _HDR.unpack(head)
    return fields[4] == 1 and fields[5] == owner_pid


@dataclass
class Role:
    """One role's processes; `prefix` runs each command elsewhere (e.g. `ip netns exec ...`)."""

    name: str
    session: str
    workdir: Path
    prefix: Sequence[str] = ()
    shm: Path = Path("/dev/shm")
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def spawn(self, what: str, argv: Sequence[str], env: dict[str, str] | None = None,
              stdout: bool = False) -> subprocess.Popen:
        self.workdir.mkdir(parents=True, exist_ok=True)
        err = open(self.workdir / f"{what}.err", "w")
        out = open(self.workdir / f"{what}.out", "w") if stdout else subprocess.DEVNULL
        p = subprocess.Popen([*self.prefix, *map(str, argv)], stdout=out, stderr=err, env=env,
                             start_new_session=True)
        err.close()
        if stdout:
            out.close()
        self.procs.append((what, p))
        return p

    def err(self, what: str) -> str:
        try:
            return (self.workdir / f"{what}.err").read_text()
        except OSError:
            return ""

    def wait_region(self, suffix: str, owner: subprocess.Popen, timeout_s: float) -> None:
        path = self.shm / f"ftmb-{self.session}.{suffix}"
        deadline = time.monotonic() + timeout_s
        while not _region_ready(path, owner.pid):
            if owner.poll() is not None:
                what = next(w for w, p in self.procs if p is owner)
                last = (self.err(what).strip().splitlines() or ["(nothing on stderr)"])[-1]
                raise FtmbError(f"{self.name}: {what} exited ({owner.returncode}) before "
                                f"/dev/shm/ftmb-{self.session}.{suffix} was ready: {last}")
            if time.monotonic() > deadline:
                raise FtmbError(f"{self.name}: /dev/shm/ftmb-{self.session}.{suffix} not ready "
                                   f"within {timeout_s:g} s")
            time.sleep(0.005)

    def wait_all(self, timeout_s: float) -> dict[str, int | None]:
        """Wait up to `timeout_s` for every process to end; the exit codes by name (None: running)."""
        deadline = time.monotonic() + timeout_s
        for _, p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        return {what: p.poll() for what, p in self.procs}

    def signal(self, sig: int) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass

    def stop(self, grace_s: float = 5.0) -> dict[str, int]:
        """SIGTERM every process, SIGKILL what is left after `grace_s`; the exit codes by name."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _, p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        return {what: p.returncode for what, p in self.procs}


def _bins() -> dict[str, Path]:
    return ensure_runtime(loggers=True)


def _follow(follow_listen: str | None, forget: bool) -> str | None:
    if forget and not follow_listen:
        raise InputError("--follow-forget needs --follow-listen (a follower to forget up to)")
    return ("forget" if forget else "keep") if follow_listen else None


def start_input_logger(role: Role, input_pcap: Path, listen: str, *, queues: int = 1, rate: int | None = None,
                       tick_us: int | None = None, timeout_ms: int = 1000, follow_listen: str | None = None,
                       forget: bool = False, peer_timeout_ms: int | None = None,
                       arrivals: Path | None = None) -> None:
    """`follow_listen`: the logger publishes every entry it serves for a follower (--follow), and
    `ftmb-relay export --region infol` serves them there to a follower's host; `forget`: it forgets
    the entries the follower took (--follow-forget; no verification replay can follow);
    `peer_timeout_ms`: the exports' --peer-timeout-ms (the logger's heartbeat; the relay's default);
    `arrivals`: where the logger writes each served packet's arrival time at its exit (--arrivals,
    as `run` does on one host: OUT.arrivals, which lets the NAT oracle allow an expired binding)."""
    b = _bins()
    il = role.spawn("input-logger", input_logger_argv(b["input_logger"], role.session, input_pcap, queues=queues,
                                                      until_signal=True, tick_us=tick_us, rate=rate,
                                                      follow=_follow(follow_listen, forget), arrivals=arrivals))
    role.wait_region("in", il, 30)
    peer = ["--peer-timeout-ms", peer_timeout_ms] if peer_timeout_ms else []
    role.spawn("relay-in", [b["relay"], "export", "--session", role.session, "--region", "in", "--listen", listen,
                            "--timeout-ms", timeout_ms, *peer])
    if follow_listen:
        role.spawn("relay-infol", [b["relay"], "export", "--session", role.session, "--region", "infol",
                                   "--listen", follow_listen, "--timeout-ms", timeout_ms, *peer])


def start_output_logger(role: Role, output_pcap: Path, log: Path, listen: str, *, timeout_ms: int = 1000,
                        follow_listen: str | None = None, forget: bool = False,
                        peer_timeout_ms: int | None = None) -> None:
    """`follow_listen`: as for the input logger, the records it stores (--follow, `--region fol`);
    `forget`: it forgets the records the follower applied (--follow-forget); `peer_timeout_ms`: as
    for the input logger."""
    b = _bins()
    ol = role.spawn("output-logger", output_logger_argv(b["output_logger"], role.session, output_pcap, log=log,
                                                        until_signal=True, follow=_follow(follow_listen, forget)))
    role.wait_region("out", ol, 30)
    peer = ["--peer-timeout-ms", peer_timeout_ms] if peer_timeout_ms else []
    role.spawn("relay-out", [b["relay"], "export", "--session", role.session, "--region", "out", "--listen", listen,
                             "--log", log, "--timeout-ms", timeout_ms, *peer])
    if follow_listen:
        role.spawn("relay-fol", [b["relay"], "export", "--session", role.session, "--region", "fol",
                                 "--listen", follow_listen, "--timeout-ms", timeout_ms, *peer])


def start_master(role: Role, nf_argv: Sequence[str], connect_in: str, connect_out: str, *, kind: str = "master",
                 log: Path | None = None, timeout_ms: int = 1000, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The relays to both loggers, then the program: `kind` master (record), backup (replay the log
    fetched from the output logger's host from the start, then live) or verify (replay it all)."""
    if kind not in ("master", "backup", "verify"):
        raise InputError(f"{kind}: expected master, backup or verify")
    if kind != "master" and log is None:
        raise InputError(f"a {kind} needs --log FILE (where the output logger's log is stored)")
    b = _bins()
    common = ["--session", role.session, "--timeout-ms", timeout_ms, "--connect-wait-ms", 30000]
    rin = role.spawn("relay-in", [b["relay"], "import", "--region", "in", "--connect", connect_in, *common])
    out_argv = [b["relay"], "import", "--region", "out", "--connect", connect_out, *common]
    if log is not None and kind != "master":
        out_argv += ["--log", log]
    rout = role.spawn("relay-out", out_argv)
    role.wait_region("in", rin, 60)
    role.wait_region("out", rout, 60)
    nf_env = dict(os.environ if env is None else env, FTMB_MODE="record", FTMB_SESSION=role.session,
                  FTMB_PEER_TIMEOUT_MS=str(max(timeout_ms * 2, 2000)))
    # (a backup of a master that never attached starts afresh: it records)
    if kind == "verify" or (kind == "backup" and Path(log).stat().st_size > 0):
        nf_env = program_env(nf_env, "verifier" if kind == "verify" else "backup", log)
    return role.spawn("program", same_addresses(nf_argv), nf_env, stdout=True)


def start_follower(role: Role, nf_argv: Sequence[str], connect_in: str, connect_out: str, follow_in: str,
                   follow_out: str, *, timeout_ms: int = 1000, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A follower on this host: each import (`--follow`) makes the logger's follow region and the
    session's region here, fills the follow rings from the follow export, and keeps a session link
    waiting for its turn (served once the master's link ends); then the program as a follower
    (FTMB_MODE=follow), which replays the log as it arrives and takes over when the master dies.
    Start it once the master's links are up (the exports serve their connections in turn)."""
    b = _bins()
    common = ["--session", role.session, "--timeout-ms", timeout_ms, "--connect-wait-ms", 30000]
    rin = role.spawn("relay-in", [b["relay"], "import", "--region", "in", "--connect", connect_in,
                                  "--follow", follow_in, *common])
    rout = role.spawn("relay-out", [b["relay"], "import", "--region", "out", "--connect", connect_out,
                                    "--follow", follow_out, *common])
    role.wait_region("in", rin, 60)
    role.wait_region("out", rout, 60)
    nf_env = dict(os.environ if env is None else env, FTMB_SESSION=role.session,
                  FTMB_PEER_TIMEOUT_MS=str(max(timeout_ms * 2, 2000)))
    # (FTMB_REPLAY_LOG names a file nobody writes here: a master that dies before it attaches is not
    # taken over across hosts, runtime/README.md)
    return role.spawn("program", same_addresses(nf_argv),
                      program_env(nf_env, "follower", role.workdir / "no-master.log"), stdout=True)


def serve(role: Role, main: subprocess.Popen | None = None) -> int:
    """Wait until `main` ends (or, without it, a signal), forwarding SIGINT/SIGTERM; stop the rest."""
    got: list[int] = []

    def on_signal(sig, _frame):
        got.append(sig)
        if main is not None:
            role.signal(sig) if main.poll() is not None else os.killpg(main.pid, sig)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (main.poll() is None) if main is not None else not got:
            dead = [(w, p) for w, p in role.procs if p.poll() is not None and p is not main]
            if dead and main is None:
                w, p = dead[0]
                print(f"ftmb-instrument {role.name}: {w} exited ({p.returncode}): "
                      f"{role.err(w).strip().splitlines()[-1:] or ''}", flush=True)
                break
            time.sleep(0.05)
        rc = main.returncode if main is not None else 0
        if main is not None:  # the relays finish once they forwarded the program's end
            deadline = time.monotonic() + 5
            for _, p in role.procs:
                while p.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
        codes = role.stop()
        for w, c in codes.items():
            err = role.err(w).strip()
            if err:
                print(f"[{w} exit {c}] {err.splitlines()[-1]}", flush=True)
        return rc
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class HostsResult:
    """What `run_on_hosts` saw; `ok` when the run carried the session to its end and checked it."""

    released: int = 0             # packets in OUT
    distinct: int = 0             # of them, distinct byte strings
    released_at_kill: int = 0     # packets in OUT just before the master's host failed
    killed: int = 0               # processes SIGKILLed on the master's (or follower's) host
    backup_live: bool = False     # the backup replayed a log and went live
    verified: int = 0             # released packets the verification replay regenerated
    mismatches: int = -1
    held: int = -1
    takeover_ms: float = -1       # follower: from the host's failure to its takeover line
    live_ms: float = -1           # from the host's failure to the backup's `live (recording)` line
    first_kill_ms: float = -1     # from the host's failure to its first SIGKILL (Topology.fail lists the pids first)
    fault_tolerance_lost: str = ""  # the output logger's line about a follower that died
    follower_lag: str = ""        # the output logger's `follower lag_ms ...` line (--stats)
    # with a follower: what each logger kept of its log, (at the end, at most at once, of all logged,
    # at most at once while the master ran, of what was logged by its end): the input logger's
    # entries, the output logger's records (with forget, bounded by the follower's lag while it follows)
    entries_held: tuple[int, ...] = (-1, -1, -1, -1, -1)
    records_held: tuple[int, ...] = (-1, -1, -1, -1, -1)
    failure: str = ""
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failure


def _master_ends(role: Role) -> list[tuple[int, int, int]]:
    import re
    return [tuple(map(int, m)) for m in re.findall(r"the master \(pid \d+\) " + MASTER_END, role.err("output-logger"))]


PORTS = {"in": 7001, "out": 7002, "infol": 7003, "fol": 7004}


def _start_session(topo, r: dict[str, Role], nf_argv: Sequence[str], input_pcap: Path, output_pcap: Path,
                   workdir: Path, *, queues: int, rate: int | None, timeout_ms: int,
                   follower: bool = False, forget: bool = False) -> tuple[subprocess.Popen, str, str]:
    """The loggers on il and ol, the master on m (and, with `follower`, a follower on b): the master's
    program and the two loggers' addresses. The one start-up of every run across hosts. As `run`
    does on one host, the input logger writes OUT.arrivals and OUT gets a manifest (the session,
    the input, the rate), so `verify` and the NAT oracle see the arrival times."""
    in_addr, out_addr = f"{topo.addr('il')}:{PORTS['in']}", f"{topo.addr('ol')}:{PORTS['out']}"
    fin = f"{topo.addr('il')}:{PORTS['infol']}" if follower else None
    fout = f"{topo.addr('ol')}:{PORTS['fol']}" if follower else None
    from .run import _write_manifest
    arrivals_path(output_pcap).unlink(missing_ok=True)  # (an earlier run's)
    start_input_logger(r["il"], input_pcap, in_addr, queues=queues, rate=rate, timeout_ms=timeout_ms, follow_listen=fin,
                       forget=forget, arrivals=arrivals_path(output_pcap))
    start_output_logger(r["ol"], output_pcap, workdir / "ftmb.log", out_addr, timeout_ms=timeout_ms,
                        follow_listen=fout, forget=forget)
    _write_manifest(output_pcap, dict(program=[os.path.abspath(nf_argv[0]), *map(str, nf_argv[1:])],
                                      input=str(Path(input_pcap).resolve()), mode="record", queues=queues, rate=rate,
                                      tick_us=None, session=r["il"].session, hosts=sorted(topo.hosts)))
    prog = start_master(r["m"], nf_argv, in_addr, out_addr, timeout_ms=timeout_ms)
    if follower:  # (after the master's links: the exports serve their connections in turn)
        start_follower(r["b"], nf_argv, in_addr, out_addr, fin, fout, timeout_ms=timeout_ms)
    return prog, in_addr, out_addr


def _took_input(session: str, shm: Path) -> bool:
    """The master of `session` (its input region in `shm`) has taken an input entry."""
    from .run import InputRegion
    try:
        region = InputRegion(session, shm)
    except (OSError, ValueError):
        return False
    try:
        return any(tail > 0 for _head, tail, _eof in region.queues())
    finally:
        region.close()


def _follower_drained(session: str, shm: Path) -> bool:
    """On a follower's host after its takeover: every queue's EOF taken, through the follow ring
    (S.infol, before the takeover) or the session's ring (S.in, after), and nothing left unread in
    the session's ring. (The follower may have taken a queue's EOF before the master died: the
    session's ring here then never serves it, and `input_drained` alone would wait forever.)"""
    import mmap
    import struct
    from .run import _ENTRY_KIND_OFFSET, _HDR, _IN_EOF, InputRegion
    try:
        region = InputRegion(session, shm)
        with open(shm / f"ftmb-{session}.infol", "rb") as f:
            m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    except (OSError, ValueError):
        return False
    try:
        local = region.queues()
        nq, _ = struct.unpack_from("<II", m, _HDR.size)
        base = (_HDR.size + 8 + 63) // 64 * 64  # (struct _ftmb_infol_region: queue[] on a cache line)
        for q in range(min(nq, len(local))):
            ctl = base + q * 192  # (struct _ftmb_ring_ctl: head, tail, geometry, a line each)
            head, = struct.unpack_from("<Q", m, ctl)
            tail, = struct.unpack_from("<Q", m, ctl + 64)
            buf, cap, slot = struct.unpack_from("<QII", m, ctl + 128)
            fol_eof = head > 0 and tail == head and struct.unpack_from(
                "<H", m, buf + ((head - 1) & (cap - 1)) * slot + _ENTRY_KIND_OFFSET)[0] == _IN_EOF
            lhead, ltail, leof = local[q]
            if not (lhead == ltail and (fol_eof or (lhead and leof))):
                return False
        return True
    except (ValueError, struct.error):
        return False
    finally:
        m.close()
        region.close()


def run_on_hosts(nf_argv: Sequence[str], input_pcap: Path, output_pcap: Path, workdir: Path, *,
                 queues: int = 1, rate: int | None = None, kill_master_at: float | None = None,
                 backup: str = "cold", kill_follower_at: float | None = None, forget: bool = False,
                 timeout_ms: int = 2000, timeout_s: float = 120.0) -> HostsResult:
    """The session with each role on its own host (`netns.Topology`: il, ol, m, b, v on one machine).

    The master runs on m; with `kill_master_at` host m fails that many seconds after the master
    took its first input (mid-run, however long its start-up took). `backup` "cold": a backup on b then fetches the log, replays it and goes live;
    "follower": a follower on b has replayed the log as it came since the start and takes over.
    `kill_follower_at` (follower): host b fails instead; the master forwards on, without fault
    tolerance (the output logger says so). Once the input is drained (every queue's EOF taken) the
    program is stopped with SIGINT, then a verification replay on v re-executes the complete log
    (the output logger compares every regenerated packet). `forget` (follower): the loggers forget
    what the follower applied (--follow-forget), so there is no complete log and no verification
    replay; the check is then the output logger's comparison of the outputs the takeover sent again
    (mismatches), and `entries_held`/`records_held` say how much of the log the loggers kept."""
    import re
    import signal as _signal
    from .netns import Topology
    from .run import input_drained

    if backup not in ("cold", "follower"):
        raise InputError(f"--backup {backup}: expected cold or follower")
    if kill_follower_at is not None and (backup != "follower" or kill_master_at is not None):
        raise InputError("killing the follower's host needs --backup follower, and no --kill-master-at")
    if forget and backup != "follower":
        raise InputError("--follow-forget needs --backup follower")
    follower = backup == "follower"
    res = HostsResult()
    s = "hosts"
    with Topology(["il", "ol", "m", "b", "v"]) as topo:
        r = {h: Role(h, s, workdir / h, topo.prefix(h), topo.shm(h)) for h in topo.hosts if h != "v"}
        verifier = Role("verify", s, workdir / "verify", topo.prefix("v"), topo.shm("v"))

        def wait(cond, what: str) -> bool:
            deadline = time.monotonic() + timeout_s
            while not cond():
                if time.monotonic() > deadline:
                    res.failure = f"{what} within {timeout_s:g} s"
                    return False
                time.sleep(0.05)
            return True

        try:
            prog, in_addr, out_addr = _start_session(topo, r, nf_argv, input_pcap, output_pcap, workdir, queues=queues,
                                                     rate=rate, timeout_ms=timeout_ms, follower=follower,
                                                     forget=forget)
            host = "m"
            fol = dict(r["b"].procs).get("program")
            kill_at = kill_master_at if kill_master_at is not None else kill_follower_at
            if kill_at is not None:
                if not wait(lambda: prog.poll() is not None or _took_input(s, topo.shm("m")),
                            "the master took no input"):
                    return res
                time.sleep(kill_at)
                if prog.poll() is not None:
                    res.failure = f"the master exited ({prog.returncode}) before {kill_at:g} s"
                    return res
                if fol is not None and fol.poll() is not None:
                    res.failure = f"the follower exited ({fol.returncode}) before {kill_at:g} s: {r['b'].err('program')[-500:]}"
                    return res
                res.released_at_kill = _count(output_pcap)  # (before: after it, the backup's would count)
                kill_ns = time.time_ns()
                res.killed = topo.fail("m" if kill_master_at is not None else "b")
                res.first_kill_ms = (topo.first_kill_ns - kill_ns) / 1e6
            if kill_master_at is not None:
                host = "b"
                if follower:
                    prog = fol
                else:
                    prog = start_master(r["b"], nf_argv, in_addr, out_addr, kind="backup", log=workdir / "backup.log",
                                        timeout_ms=timeout_ms)
            drained = _follower_drained if follower and host == "b" else input_drained
            if not wait(lambda: prog.poll() is not None or drained(s, topo.shm(host)), "the input was not drained"):
                return res
            if prog.poll() is None:
                os.killpg(prog.pid, _signal.SIGINT)
            try:
                rc = prog.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                res.failure = "the program did not stop on SIGINT"
                return res
            err_b = r["b"].err("program") if host == "b" else ""
            res.backup_live = "live (recording)" in err_b
            if kill_master_at is not None:
                took = re.search(r"ftmb: follower: the master \(pid \d+\) died; taking over at (\d+) ns", err_b)
                live = re.search(r"ftmb: failover: replayed \d+ records; live \(recording\) from thread \d+ at (\d+) ns",
                                 err_b)
                res.takeover_ms = (int(took[1]) - kill_ns) / 1e6 if took else -1
                res.live_ms = (int(live[1]) - kill_ns) / 1e6 if live else -1
            if rc != 0:
                res.failure = f"the program on host {host} exited {rc}"
                return res
            if not wait(lambda: len(_master_ends(r["ol"])) >= 1, "the output logger did not report the end"):
                return res
            r[host].wait_all(30)
            if follower and host == "m" and "b" in topo.hosts:
                # the follower saw the master finish and exited 0; its relays' session links wait for a
                # turn the verification replay needs
                try:
                    fol.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                if fol.poll() != 0:
                    res.failure = f"the follower exited {fol.poll()} after the master finished: {r['b'].err('program')[-500:]}"
                    return res
                r["b"].stop()
            if forget:  # (no complete log to replay: the outputs the takeover sent again were compared)
                res.mismatches = _master_ends(r["ol"])[0][2]
            else:
                v = start_master(verifier, nf_argv, in_addr, out_addr, kind="verify", log=workdir / "verify.log",
                                 timeout_ms=timeout_ms)
                try:
                    v.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    res.failure = "the verification replay did not finish"
                    return res
                if not wait(lambda: len(_master_ends(r["ol"])) >= 2, "the verification replay's end was not reported"):
                    return res
                ends = _master_ends(r["ol"])
                res.verified = ends[1][1] - ends[0][1]
                res.mismatches = ends[1][2]
            r["il"].stop()
            r["ol"].stop()
            ol_err = r["ol"].err("output-logger")
            stats = re.search(r"released (\d+) held (\d+) ", ol_err)
            res.held = int(stats[2]) if stats else -1
            gone = re.search(r"the follower \(pid \d+\) died; [^\n]*", ol_err)
            res.fault_tolerance_lost = gone[0] if gone else ""
            lag = re.search(r"follower lag_ms [^\n]*", ol_err)
            res.follower_lag = lag[0] if lag else ""
            held = re.search(r"log held entries (\d+) max (\d+) of (\d+); following max (\d+) of (\d+)",
                             r["il"].err("input-logger"))
            res.entries_held = tuple(map(int, held.groups())) if held else res.entries_held
            held = re.search(r"log held records (\d+) max (\d+) of (\d+); following max (\d+) of (\d+)", ol_err)
            res.records_held = tuple(map(int, held.groups())) if held else res.records_held
            from .pcap import read_pcap
            packets = [p.data for p in read_pcap(output_pcap)]
            res.released, res.distinct = len(packets), len(set(packets))
            if forget and (res.mismatches or res.held):
                res.failure = f"{res.mismatches} outputs sent again with different bytes, {res.held} held"
            elif not forget and (res.verified != res.released or res.mismatches or res.held):
                res.failure = (f"replay check: {res.verified} of {res.released} released packets regenerated, "
                               f"{res.mismatches} with different bytes, {res.held} held")
            elif kill_master_at is not None and follower and not res.backup_live:
                res.failure = "the follower did not take over"
            elif kill_follower_at is not None and not res.fault_tolerance_lost:
                res.failure = "the output logger did not report the follower's loss"
            return res
        finally:
            for role in (*r.values(), verifier):
                role.stop()
            res.logs = {f"{role.name}/{w}": role.err(w) for role in (*r.values(), verifier) for w, _ in role.procs}


LOGGERS = {"il": "input logger", "ol": "output logger"}


def report(role: Role) -> str:
    """One line for a role: each process's state, and the master's word on a logger it declared gone."""
    parts = []
    for what, p in role.procs:
        rc = p.poll()
        parts.append(f"{what} " + ("running" if rc is None else f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"))
    gone = [ln for ln in role.err("program").splitlines() if " is gone (" in ln]
    return f"{role.name}: " + ", ".join(parts or ["nothing started"]) + (f"; {gone[0].strip()}" if gone else "")


@dataclass
class LoggerLossResult:
    """What `logger_loss_on_hosts` saw; `ok` when the master did what runtime/README.md documents."""

    released_at_kill: int = 0     # packets in OUT when the logger (or its host) was killed
    released: int = 0             # packets in OUT at the end (OUT is written as released: kept)
    master_rc: int | None = None  # None: still forwarding when it was stopped
    master_said: str = ""         # the master's line about the logger it declared gone
    declared_after_s: float = -1  # from the kill to that line (within 50 ms): link and peer timeouts
    report: list[str] = field(default_factory=list)  # one line per role
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure


def logger_loss_on_hosts(nf_argv: Sequence[str], input_pcap: Path, output_pcap: Path, workdir: Path, *,
                         victim: str, kill_at: float, whole_host: bool = False, queues: int = 1,
                         rate: int | None = None,
                         timeout_ms: int = 500, timeout_s: float = 120.0) -> LoggerLossResult:
    """A logger dies mid-run, each role on its own host (il, ol, m): `victim` il or ol, its process
    SIGKILLed `kill_at` s after the master started (`whole_host`: every process of its host, the
    namespace deleted). The master's documented behaviour (runtime/README.md, The loggers, Faults),
    which the link's loss reaches through the relays (the export sees its logger die, the import its
    link close, the master the import's region go silent):
    - input logger: the input ends; the NAT stops through its SIGINT handler, exit 0, and the
      output logger releases everything the master sent before (its end is reported);
    - output logger: logging off, the master goes on forwarding through its port (no fault
      tolerance) until stopped or its input ends; what the logger released is in OUT (written as released)."""
    from .netns import Topology

    if victim not in LOGGERS:
        raise InputError(f"{victim}: expected il (input logger) or ol (output logger)")
    res = LoggerLossResult()
    s = "hosts"
    peer_timeout_ms = max(timeout_ms * 2, 2000)  # (start_master's FTMB_PEER_TIMEOUT_MS)
    with Topology(["il", "ol", "m"]) as topo:
        r = {h: Role(h, s, workdir / h, topo.prefix(h), topo.shm(h)) for h in topo.hosts}
        try:
            prog, _, _ = _start_session(topo, r, nf_argv, input_pcap, output_pcap, workdir, queues=queues, rate=rate,
                                        timeout_ms=timeout_ms)
            time.sleep(kill_at)
            if prog.poll() is not None:
                res.failure = f"the master exited ({prog.returncode}) before {kill_at:g} s"
                return res
            if whole_host:
                topo.fail(victim)
            else:
                logger = dict(r[victim].procs)["input-logger" if victim == "il" else "output-logger"]
                os.kill(logger.pid, signal.SIGKILL)
                logger.wait()
            res.released_at_kill = _count(output_pcap)
            # the export's check, the link's timeout, the master's peer timeout, and a margin
            settle = (timeout_ms * 3 + peer_timeout_ms) / 1000 + 3
            killed = time.monotonic()
            if _wait(lambda: " is gone (" in r["m"].err("program"), settle):
                res.declared_after_s = time.monotonic() - killed
            try:
                prog.wait(timeout=max(0.0, killed + settle - time.monotonic()) if victim == "ol" else timeout_s)
            except subprocess.TimeoutExpired:
                pass
            res.master_rc = prog.poll()
            said = [ln.strip() for ln in r["m"].err("program").splitlines() if " is gone (" in ln]
            res.master_said = said[0] if said else ""
            if f"the {LOGGERS[victim]} of session {s}" not in res.master_said:
                res.failure = f"the master did not declare its {LOGGERS[victim]} gone"
            elif victim == "il" and res.master_rc != 0:
                res.failure = f"the master did not stop cleanly once its input ended (exit {res.master_rc})"
            elif victim == "ol" and res.master_rc not in (None, 0):  # (0: it finished its input meanwhile)
                res.failure = f"the master stopped ({res.master_rc}) instead of forwarding without its output logger"
            elif victim == "il" and not _wait(lambda: _master_ends(r["ol"]), 30):
                res.failure = "the output logger did not report the master's end"
            res.report = [report(role) for role in r.values()]
            if victim == "ol" and prog.poll() is None:
                os.killpg(prog.pid, signal.SIGINT)
                try:
                    prog.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            res.released = _count(output_pcap)
            if not res.failure and res.released < res.released_at_kill:
                res.failure = f"OUT lost packets: {res.released_at_kill} at the kill, {res.released} at the end"
            return res
        finally:
            for role in r.values():
                role.stop()
            if not res.report:
                res.report = [report(role) for role in r.values()]


def _wait(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _count(path: Path) -> int:
    """Packets in OUT so far (the output logger may be writing one: counted up to it)."""
    from .pcap import iter_pcap
    n = 0
    try:
        for _ in iter_pcap(path):
            n += 1
    except (OSError, ValueError, FtmbError):  # (InputError: a packet being written, cut short)
        pass
    return n
