"""Run an instrumented network function between the two loggers: the `run` command's library.

One run is a session of three processes, started in the order the runtime needs:

1. the output logger (`ftmb-output-logger --session S --out OUT --stats`) and the input logger
   (`ftmb-input-logger --session S --in IN --queues Q`), each in its own process group; the run
   waits until both shared-memory regions (`/dev/shm/ftmb-S.{out,in}`) exist;
2. the network function (the master), with `FTMB_MODE` and `FTMB_SESSION=S` in its environment,
   in its own process group;
3. the drain: the input is drained when every queue's last served entry is its EOF mark and the
   master has taken everything served (read from the input region). Inside a session a master's
   time is virtual and stops at the EOF entry, so an idle-exit timer in the program never fires:
   once the input is drained (and the master has not exited by itself within `settle_s`, as a
   program that watches `ftmb_input_done` does) the run sends the master `--stop-signal` (SIGINT), which a DPDK
   program handles by finishing its loop iteration (so the last burst is transmitted) and exiting.
   A master that exits by itself before that is fine too.
4. the loggers exit by themselves once the master has called `ftmb_exit` (at exit) and every
   output is handled; one that does not within the grace period gets SIGTERM, then SIGKILL.

Failover (`kill_master_at`, `failover`): see `run()`; the loggers then keep the session after the
master's death (`--until-signal`), a warm standby backup waits next to the master, and the run
stops the loggers itself once the last master's outputs are handled.

The code is one object or function per role, each starting its processes through the session's
`_Session.spawn` (the transport: here children of the run on this host): `_OutputLogger`,
`_InputLogger`, the master (started by `run`, watched by `_drain`), `_Backup` (standby, follower,
snapshot or cold backup: `take_over`) and `_verify_replay` (the verifier). What each process is,
its command line (`output_logger_argv`, `input_logger_argv`) or the environment of the master's
binary in each role (`program_env`, `same_addresses`), is shared with roles.py, which starts the
same roles each on its own host through ftmb-relay.

Whatever happens (a failure, a timeout, an exception, Ctrl-C), a `finally` kills every process
group the run started that is still alive, reaps it, and removes the session's regions. The result
is data (`RunResult`): each process's exit status, packet counts, records logged, and the output
logger's hold times (release time minus the input's arrival time, p50/p99).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .bundle import ensure_runtime
from . import replaylog
from .errors import FtmbError, InputError

MODES = ("record", "passthrough", "replay")

# Layout of the input logger's region (runtime/src/ftmb_internal.h, layout version 3); the run
# reads it to learn whether the input is drained, who the master is and who holds its snapshot.
_IN_MAGIC = 0x4E492D424D5446
_LAYOUT_VERSION = 3
_HDR = struct.Struct("<QIIQIiQiIIiiI")       # magic .. master_mode, snapshot_pid, sleeper, pad: 64 bytes
_IN_GEOMETRY = struct.Struct("<II")          # nqueues, capacity (after the header)
_QUEUE_BASE, _QUEUE_SIZE = 128, 320         # queue[] is cache-aligned; one queue is 5 lines
_RING_HEAD, _RING_TAIL, _RING_BUF = 0, 64, 128
_ENTRY_KIND_OFFSET, _IN_EOF = 20, 3

_STATS = re.compile(r"released (\d+) held (\d+) records (\d+) corrupt (\d+) duplicates (\d+) "
                    r"latency_us p50 ([\d.]+) p99 ([\d.]+)")


class RunError(FtmbError):
    """A process of the run failed or the run could not finish; the message names which and why."""


class RunInterrupted(RunError):
    """Ctrl-C, SIGTERM or SIGHUP ended the run; the message says what OUT keeps."""

    exit_code = 130


@dataclass
class ProcessStatus:
    """One process of the run and how it ended."""

    name: str
    argv: list[str]
    pid: int = 0
    returncode: int | None = None   # negative: killed by that signal (subprocess convention)
    stopped_by: str | None = None   # the signal the run sent to end it, if any
    stderr_tail: str = ""
    stuck: str = ""                 # its threads when the stop signal had not ended it (before the SIGKILL)

    @property
    def status(self) -> str:
        if self.returncode is None:
            return "not started" if not self.pid else "running"
        if self.returncode < 0:
            return f"killed by {_signal_name(-self.returncode)}"
        return f"exit {self.returncode}"

    def failed(self) -> bool:
        return self.returncode is not None and self.returncode != 0


@dataclass
class RunResult:
    """What a run did: per-process exit statuses and the session's counts."""

    mode: str
    session: str
    queues: int
    input_packets: int = 0
    output_packets: int = 0
    released: int = 0
    held: int = 0                  # output packets never released (records missing or corrupt)
    records: int = 0               # records the output logger stored
    corrupt: int = 0
    duplicates: int = 0
    hold_p50_us: float | None = None   # release time - arrival time of the input it answers
    hold_p99_us: float | None = None
    elapsed_s: float = 0.0
    drain_s: float | None = None   # from the master's start until it had taken all its input
    drained: bool = False          # the master took every input entry, EOF marks included
    stopped_nf: bool = False       # the run sent the master its stop signal after the drain
    processes: list[ProcessStatus] = field(default_factory=list)
    nf_stdout: str = ""
    nf_stderr: str = ""
    failure: str | None = None     # one line: which process failed and how
    failover: "Failover | None" = None  # set when the run killed the master (or it died) and a backup took over
    fault_tolerance_lost: str | None = None  # the standby backup died while the master ran (it forwards on)
    follower_lag: "FollowerLag | None" = None  # backup="follower": how far behind the master it replayed
    replay_check: "ReplayCheck | None" = None  # oracle 1 after a failover (verify_replay)
    interrupted: bool = False      # Ctrl-C, SIGTERM or SIGHUP ended the run (OUT keeps what was released)

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class ReplayCheck:
    """Oracle 1: a re-execution from the initial state following the complete log regenerated each
    released packet (compared: as a duplicate, per thread and output sequence) with the same bytes
    (a 64-bit FNV-1a digest of each released packet is kept; mismatches counts differences)."""

    released: int
    compared: int
    mismatches: int
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and self.mismatches == 0 and self.compared == self.released

    def summary(self) -> str:
        """One line: the counts, and why the replay did not finish when it did not."""
        line = f"replay check: {self.compared} of {self.released} released packets regenerated, " \
               f"{self.mismatches} with different bytes"
        return f"{line}; {self.failure}" if self.failure else line


@dataclass
class FollowerLag:
    """The follower's lag, sampled every ms by the output logger while the master ran: the time from a
    record's storage to its replay (ms) and the records stored but not replayed yet."""

    ms_min: float
    ms_p50: float
    ms_p99: float
    ms_max: float
    records_min: int
    records_p50: int
    records_p99: int
    records_max: int
    samples: int


@dataclass
class Failover:
    """A master failure and the backup's takeover, times in ms from the SIGKILL (or the death seen)."""

    killed_at_s: float               # seconds after the master started
    injected: bool                   # the run sent the SIGKILL (else the master died by itself)
    backup_pid: int = 0
    reaped_ms: float | None = None      # the killed master was gone (its process reaped): the kernel's teardown
    log_ready_ms: float | None = None   # the output logger stored every record and wrote the log
    detected_ms: float | None = None    # the backup saw the master's death
    from_snapshot: bool = False         # the backup was the master's newest checkpoint (not a replay from the start)
    follower: bool = False              # the backup was a follower (it had replayed the log as it came)
    live_ms: float | None = None        # the backup finished replaying and records live (recovery time)
    replayed_records: int = 0
    killed_wall_ns: int = 0             # CLOCK_REALTIME of the SIGKILL: the clock of the released pcap's timestamps

    @property
    def recovered(self) -> bool:
        return self.live_ms is not None


_TAKEOVER = re.compile(r"ftmb: (?:standby|snapshot|follower): the master \(pid \d+\) died; taking over at (\d+) ns")
_LIVE = re.compile(r"ftmb: failover: replayed (\d+) records; live \(recording\) from thread \d+ at (\d+) ns")
# The runtime's line when a master gives up on a logger (runtime/src/runtime.c, report_dead).
_LOGGER_GONE = re.compile(r"ftmb: the (input|output) logger of session \S+ \(pid (\d+)\) is gone "
                          r"\(no heartbeat for (\d+) ms\); (.*)")




def logger_queue(frame: bytes, queues: int) -> int:
    """The input queue `ftmb-input-logger` puts `frame` on (its symmetric flow hash, ported)."""

    def mix(h: int, v: int) -> int:
        h = ((h ^ v) * 0x01000193) & 0xFFFFFFFF
        return h ^ (h >> 15)

    n = len(frame)
    if n < 14:
        return 0
    le32 = lambda b, o: int.from_bytes(b[o:o + 4], "little")  # noqa: E731 (memcpy on x86)
    et = frame[12] << 8 | frame[13]
    l3, rest = 14, n - 14
    if et == 0x8100 and n >= 18:
        et, l3, rest = frame[16] << 8 | frame[17], l3 + 4, rest - 4
    a = b = proto = sport = dport = 0
    l4 = l4len = None
    if et == 0x0800 and rest >= 20:
        ihl = (frame[l3] & 15) * 4
        a, b, proto = le32(frame, l3 + 12), le32(frame, l3 + 16), frame[l3 + 9]
        if ihl >= 20 and rest >= ihl and not (frame[l3 + 6] & 0x1F) and not frame[l3 + 7]:
            l4, l4len = l3 + ihl, rest - ihl
    elif et == 0x86DD and rest >= 40:
        for i in range(0, 16, 4):
            a = mix(a, le32(frame, l3 + 8 + i))
            b = mix(b, le32(frame, l3 + 24 + i))
        proto, l4, l4len = frame[l3 + 6], l3 + 40, rest - 40
    else:
        a = le32(frame, 0) ^ (frame[4] << 8 | frame[5])
        b = le32(frame, 6) ^ (frame[10] << 8 | frame[11])
    if l4 is not None and proto in (6, 17, 132) and l4len >= 4:
        sport, dport = frame[l4] << 8 | frame[l4 + 1], frame[l4 + 2] << 8 | frame[l4 + 3]
    e1, e2 = a << 16 | sport, b << 16 | dport
    if e1 > e2:
        e1, e2 = e2, e1
    h = 0x811C9DC5
    for v in (e1 & 0xFFFFFFFF, e1 >> 32, e2 & 0xFFFFFFFF, e2 >> 32, proto):
        h = mix(h, v)
    return h % queues


class InputRegion:
    """A read-only view of a session's input region, kept mapped after its logger unlinks it."""

    def __init__(self, session: str, shm: str | Path = "/dev/shm"):
        with open(f"{shm}/ftmb-{session}.in", "rb") as f:
            self._m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)

    def close(self) -> None:
        self._m.close()

    def master(self) -> tuple[int, int, int]:
        """The attached master's pid, state (0 none, 1 attached, 2 done) and mode (1 record, 2 replay)."""
        hdr = _HDR.unpack_from(self._m, 0)
        return hdr[7], hdr[8], hdr[9]

    def snapshot_pid(self) -> int:
        """The process holding the master's newest checkpoint (it takes over if the master dies), or 0."""
        return _HDR.unpack_from(self._m, 0)[10]

    def attached(self) -> bool:
        """A master has attached (its `ftmb_init` found the session)."""
        return _HDR.unpack_from(self._m, 0)[8] != 0

    def queues(self) -> list[tuple[int, int, bool]]:
        """Per queue: entries served, entries the master took, whether the last served is the EOF."""
        m = self._m
        nqueues, _cap = _IN_GEOMETRY.unpack_from(m, _HDR.size)
        out = []
        for q in range(min(nqueues, 32)):
            base = _QUEUE_BASE + q * _QUEUE_SIZE
            head, = struct.unpack_from("<Q", m, base + _RING_HEAD)
            tail, = struct.unpack_from("<Q", m, base + _RING_TAIL)
            buf, cap, slot = struct.unpack_from("<QII", m, base + _RING_BUF)
            kind = struct.unpack_from("<H", m, buf + ((head - 1) & (cap - 1)) * slot + _ENTRY_KIND_OFFSET)[0] \
                if head else 0
            out.append((head, tail, kind == _IN_EOF))
        return out

    def describe(self) -> str:
        try:
            return ", ".join(f"queue {q}: took {t} of {h} served{' (EOF served)' if eof else ''}"
                             for q, (h, t, eof) in enumerate(self.queues()))
        except (ValueError, struct.error):
            return "unreadable"

    def drained(self) -> bool:
        """True once every queue served its EOF entry and the master took everything served."""
        m = self._m
        try:
            magic, _abi, layout, _size, ready, *_ = _HDR.unpack_from(m, 0)
            if magic == _IN_MAGIC and layout != _LAYOUT_VERSION:
                raise RunError(f"the input logger's region has layout version {layout}; this ftmb-instrument "
                               f"reads version {_LAYOUT_VERSION} (rebuild the runtime from the same tree)")
            if magic != _IN_MAGIC or not ready:
                return False
            nqueues, _cap = _IN_GEOMETRY.unpack_from(m, _HDR.size)
            if not 1 <= nqueues <= 32:
                return False
            for q in range(nqueues):
                base = _QUEUE_BASE + q * _QUEUE_SIZE
                head, = struct.unpack_from("<Q", m, base + _RING_HEAD)
                tail, = struct.unpack_from("<Q", m, base + _RING_TAIL)
                buf, cap, slot = struct.unpack_from("<QII", m, base + _RING_BUF)
                if head == 0 or tail != head:
                    return False
                kind, = struct.unpack_from("<H", m, buf + ((head - 1) & (cap - 1)) * slot + _ENTRY_KIND_OFFSET)
                if kind != _IN_EOF:
                    return False
            return True
        except (ValueError, struct.error):
            return False


def input_drained(session: str, shm: str | Path = "/dev/shm") -> bool:
    """True once every input queue of `session` (its region in `shm`) served its EOF entry and the
    master took it."""
    try:
        region = InputRegion(session, shm)
    except (OSError, ValueError):
        return False
    try:
        return region.drained()
    finally:
        region.close()


def _region_ready(path: Path) -> bool:
    """The region exists, has its size, and its owner marked it ready (the header's `ready`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HDR.size)
    except OSError:
        return False
    return len(head) == _HDR.size and _HDR.unpack(head)[4] == 1


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_output(path: Path, option: str, input_pcap: Path) -> None:
    """A file the run will write (`--out`, `--log`): refused now, before anything starts, if it cannot be."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a file name for {option}")
    if not path.parent.is_dir():
        raise InputError(f"{path}: its directory does not exist ({option})")
    if _same_file(path, input_pcap):
        raise InputError(f"{path}: {option} is the input (--in); give another file")
    existed = path.exists()
    try:  # the real test (permissions, a read-only file system): open it for writing, changing nothing
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if existed else os.O_CREAT | os.O_EXCL),
                     0o644)
    except OSError as exc:
        raise InputError(f"{path}: cannot write {option}: {exc.strerror}") from None
    os.close(fd)
    if not existed:
        path.unlink()


def _lock_output(path: Path) -> int:
    """Hold an exclusive lock on OUT for the run (an fd the caller closes): a second run to the same
    OUT is refused while one runs. OUT is created if missing (the output logger writes it next)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the output: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a device or a FIFO: written as it is, nothing to lock
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(f"{path}: another run is writing this output now; give another --out") from None
    return fd


# A process that outlives a run killed by SIGKILL for one purpose: its parent-death signal (SIGTERM)
# makes it remove the run's temporary directory and the session's regions (the loggers remove their
# own on SIGTERM too; this covers one that could not).
_JANITOR = """import os, shutil, signal, sys, time
sigs = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
if os.getppid() == int(sys.argv[2]):
    signal.sigwait(sigs)
time.sleep(0.5)
shutil.rmtree(sys.argv[1], ignore_errors=True)
for suffix in ("in", "out"):
    try:
        os.unlink(f"/dev/shm/ftmb-{os.environ['FTMB_RUN_JANITOR']}.{suffix}")
    except OSError:
        pass
"""


def _start_janitor(tmp: Path, session: str) -> subprocess.Popen:
    import sys
    # (the session goes in its environment under another name: the run's final sweep of the session's
    # processes, _kill_session_leftovers, is not for it)
    return subprocess.Popen([sys.executable, "-c", _JANITOR, str(tmp), str(os.getpid())],
                            env=dict(os.environ, FTMB_RUN_JANITOR=session),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_logger_dies_with_the_run)


def _stop_janitor(janitor: subprocess.Popen) -> None:
    """At the run's own end (it removed everything itself): the janitor has nothing left to do."""
    if janitor.poll() is None:
        janitor.kill()
    janitor.wait()


MANIFEST_FORMAT = "ftmb-run-manifest/1"


def manifest_path(output_pcap: str | Path) -> Path:
    """Where a run to `output_pcap` describes itself: OUT + ".ftmb.json"."""
    return Path(f"{output_pcap}.ftmb.json")


def _write_manifest(output_pcap: Path, conditions: dict) -> None:
    import json
    from . import __version__
    doc = {"format": MANIFEST_FORMAT, "tool": {"name": "ftmb-instrument", "version": __version__}, **conditions}
    path = manifest_path(output_pcap)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def arrivals_path(output_pcap: str | Path) -> Path:
    """Where a run to `output_pcap` keeps each served packet's arrival time (the session's clock: the
    time the input logger first served it), written by the input logger at its exit:
    OUT + ".arrivals" (`read_arrivals`)."""
    return Path(f"{output_pcap}.arrivals")


@dataclass
class Arrivals:
    """A run's arrival times (`read_arrivals`): `times` by the packet's index in the input pcap (or by
    its tag, `verify.arrivals_by_tag`), ns on the session's clock; `start_ns` the session's clock when
    the input logger created its region, before any master could read it (a lower bound of every time
    a worker stamps; None in an ftmb-arrivals/1 file, which predates it)."""

    times: dict[int, int]
    start_ns: int | None = None


def read_arrivals(output_pcap: str | Path, session: str) -> Arrivals | None:
    """The arrival times of the run to `output_pcap` whose session is `session`; None when there is
    no such file or it is another session's. A malformed file is an InputError naming it. Reads
    'ftmb-arrivals/2 SESSION START_NS' and the older 'ftmb-arrivals/1 SESSION' (no start)."""
    path = arrivals_path(output_pcap)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the arrival times: {exc}") from None
    head = lines[0].split() if lines else []
    if head[:1] not in (["ftmb-arrivals/1"], ["ftmb-arrivals/2"]):
        raise InputError(f"{path}: line 1: not an ftmb-arrivals/1 or /2 file")
    if head[1:2] != [session]:
        return None
    start_ns = None
    if head[0] == "ftmb-arrivals/2":
        if len(head) != 3 or not head[2].isdigit():
            raise InputError(f"{path}: line 1: {lines[0]!r} is not 'ftmb-arrivals/2 SESSION START_NS'")
        start_ns = int(head[2])
    elif len(head) != 2:
        raise InputError(f"{path}: line 1: {lines[0]!r} is not 'ftmb-arrivals/1 SESSION'")
    out = {}
    for n, line in enumerate(lines[1:], start=2):
        try:
            index, t = (int(x) for x in line.split())
        except ValueError:
            raise InputError(f"{path}: line {n}: {line!r} is not 'INDEX TIME_NS'") from None
        out[index] = t
    return Arrivals(out, start_ns)


def read_manifest(output_pcap: str | Path) -> dict | None:
    """The manifest a run wrote beside `output_pcap`, or None if there is none; a malformed one is an
    InputError naming it."""
    import json
    path = manifest_path(output_pcap)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a run manifest: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not a run manifest (format is not {MANIFEST_FORMAT})")
    want = {"program": list, "queues": int, "rate": (int, type(None)), "tick_us": (int, type(None))}
    for key, types in want.items():
        if not isinstance(doc.get(key), types) or isinstance(doc.get(key), bool):
            raise InputError(f"{path}: {key}: missing or of the wrong type")
    if not doc["program"] or not all(isinstance(a, str) for a in doc["program"]):
        raise InputError(f"{path}: program: expected the program's argv (strings)")
    return doc


def _check_pcap(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the input: {exc.strerror}") from None
    if magic not in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        raise InputError(f"{path}: not a pcap file")


def _resolve_program(arg: str) -> str:
    found = shutil.which(arg) if os.sep not in arg else (arg if os.access(arg, os.X_OK) and os.path.isfile(arg)
                                                          else None)
    if not found:
        raise InputError(f"{arg}: the network function is not an executable file (or not on PATH)")
    return found


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Adopted:
    """The part of `subprocess.Popen` the run uses, for a process it did not start: the snapshot a
    dead master forked, which the kernel re-parents to the run (a child subreaper, see `run`)."""

    def __init__(self, pid: int):
        self.pid, self.returncode, self.unknown = pid, None, False

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not ours after all (the run is not its subreaper): watch it
                if _pid_alive(self.pid):
                    return None
                self.unknown = True  # gone, status unknown: the run judges it by the drain
                return self._set(0)
            if pid:
                self._set(os.waitstatus_to_exitcode(status))
        return self.returncode

    def _set(self, code: int) -> int:
        self.returncode = code
        return code

    def wait(self, timeout: float | None = None) -> int:
        until = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if until is not None and time.monotonic() > until:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.002)
        return self.returncode


def _pid_alive(pid: int) -> bool:
    """Like the runtime's _ftmb_pid_alive: gone once it does not exist or is a zombie with no thread left."""
    try:
        fields = dict(ln.split(":\t", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in ln)
    except OSError:
        return False
    return fields.get("State", "Z")[:1] not in ("Z", "X") or int(fields.get("Threads", "1")) > 1


def _die_with_the_run(sig: int = signal.SIGKILL) -> None:
    """In each child before exec: `sig` when the run dies (even by SIGKILL), so nothing it started
    is left behind (the loggers would wait for a master forever). The loggers get SIGTERM, which
    they handle by removing their regions on the way out; the rest SIGKILL. And SIGINT and SIGTERM
    at their defaults (below)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    # The stop signals at their defaults: a run started in the background by a non-interactive shell
    # inherits SIGINT ignored, and the program would never see the stop signal the run sends it.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_DFL)


def _logger_dies_with_the_run() -> None:
    _die_with_the_run(signal.SIGTERM)


def _set_subreaper(on: bool) -> None:
    """Orphaned descendants (a dead master's snapshot) become the run's children, so it can wait for them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1 if on else 0, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


class _Child:
    def __init__(self, status: ProcessStatus, proc: subprocess.Popen | _Adopted, err_path: Path):
        self.status, self.proc, self.err_path = status, proc, err_path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the child's whole process group (it leads one): helpers it started go too."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, first: int, grace_s: float) -> None:
        """`first`, then SIGKILL after `grace_s` if it is still alive; always reaped."""
        if not self.alive():
            return
        self.status.stopped_by = signal.Signals(first).name
        self.signal(first)
        self.signal(signal.SIGCONT)  # a stopped process (SIGSTOP) acts on `first` only once continued
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.status.stuck = _thread_states(self.proc.pid)
            self.status.stopped_by = "SIGKILL"
            self.signal(signal.SIGKILL)
            self.proc.wait()


def _thread_states(pid: int) -> str:
    """Where each thread of `pid` is: tid, state, kernel wait channel, and the signals it blocks
    and has pending (hex masks as in /proc), then those pending for the whole process."""
    out, shared = [], ""
    try:
        tasks = sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda t: int(t.name))
    except OSError:
        return ""
    for t in tasks:
        try:
            st = dict(ln.split(":\t", 1) for ln in (t / "status").read_text().splitlines() if ":\t" in ln)
            wchan = (t / "wchan").read_text().strip() or "-"
        except OSError:
            continue
        shared = st.get("ShdPnd", "").lstrip("0") or "0"
        out.append(f"{t.name} {st.get('State', '?')[:1]} {wchan} blk {st.get('SigBlk', '').lstrip('0') or '0'} "
                   f"pnd {st.get('SigPnd', '').lstrip('0') or '0'}")
    return f"{'; '.join(out)}; process pending {shared}" if out else ""


# What each role runs: shared by `run` (every role on this host, children of the run) and roles.py
# (each role on its own host, started through ftmb-relay). Placing a role elsewhere changes how its
# processes are started, not what they are.

def output_logger_argv(binary: str | Path, session: str, output_pcap: str | Path, *, threads: int | None = None,
                       log: str | Path | None = None, until_signal: bool = False,
                       follow: str | None = None) -> list[str]:
    """`ftmb-output-logger`'s command line. `until_signal`: it keeps the session for another master
    (failover); `follow` "keep" or "forget": it publishes every stored record to a follower (and,
    with "forget", forgets what the follower applied)."""
    argv = [binary, "--session", session, "--out", output_pcap, "--stats"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if log:
        argv += ["--log", str(log)]
    if until_signal:
        argv.append("--until-signal")
    return argv + _follow_args(follow)


def input_logger_argv(binary: str | Path, session: str, input_pcap: str | Path, *, queues: int = 1,
                      until_signal: bool = False, follow: str | None = None, tick_us: int | None = None,
                      rate: int | None = None, arrivals: str | Path | None = None) -> list[str]:
    """`ftmb-input-logger`'s command line (`until_signal`, `follow`: as for the output logger;
    `arrivals`: where it writes each served packet's arrival time at exit)."""
    argv = [binary, "--session", session, "--in", input_pcap, "--queues", str(queues)]
    if arrivals:
        argv += ["--arrivals", str(arrivals)]
    if until_signal:
        argv.append("--until-signal")
    argv += _follow_args(follow)
    if tick_us:
        argv += ["--tick-us", str(tick_us)]
    if rate:
        argv += ["--rate", str(rate)]
    return argv


def _follow_args(follow: str | None) -> list[str]:
    return {None: [], "keep": ["--follow"], "forget": ["--follow", "--follow-forget"]}[follow]


# The processes of the master's binary besides the master, by role: what each adds to the master's
# environment (FTMB_REPLAY_LOG, the log it reads, comes with it: program_env).
PROGRAM_ROLES: dict[str, dict[str, str]] = {
    "standby": {"FTMB_MODE": "standby"},  # warm: runs the initialization, waits for the master's death
    "follower": {"FTMB_MODE": "follow"},  # warm: replays the log as it is stored, outputs dropped
    "backup": {"FTMB_MODE": "replay", "FTMB_REPLAY_HANDOVER": "1"},  # cold: replays the log, goes live
    "verifier": {"FTMB_MODE": "replay", "FTMB_REPLAY_STOP_AT_END": "1"},  # replays the complete log (oracle 1)
}


def program_env(master_env: Mapping[str, str], role: str, log: str | Path) -> dict[str, str]:
    """The environment of a process of the master's binary in `role` (PROGRAM_ROLES), from the master's."""
    return dict(master_env, **PROGRAM_ROLES[role], FTMB_REPLAY_LOG=str(log))


def same_addresses(cmd: Sequence[str]) -> list[str]:
    """`cmd` with address-space randomization off (`setarch -R`, where there is one): a master and
    the processes that replay its log map the same addresses."""
    cmd = [str(a) for a in cmd]
    return ["setarch", os.uname().machine, "-R", *cmd] if shutil.which("setarch") else cmd


class _Session:
    """One run's processes on this host and its verdict. Every role starts its processes through
    `spawn` (children of the run, each leading its own process group and dying with the run) and
    reports through `fail` (the first failure is the run's)."""

    def __init__(self, result: RunResult, tmp: Path, deadline: float, grace_s: float):
        self.result, self.tmp, self.deadline, self.grace_s = result, tmp, deadline, grace_s
        self.children: list[_Child] = []

    def spawn(self, name: str, argv: list[str], child_env: Mapping[str, str] | None = None,
              capture_stdout: bool = False, logger: bool = False) -> _Child:
        st = ProcessStatus(name=name, argv=[str(a) for a in argv])
        err_path = self.tmp / f"{name}.err"
        out = open(self.tmp / f"{name}.out", "wb") if capture_stdout else subprocess.DEVNULL
        try:
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(st.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        env=dict(child_env) if child_env is not None else None,
                                        start_new_session=True,
                                        preexec_fn=_logger_dies_with_the_run if logger else _die_with_the_run)
        except OSError as exc:
            raise InputError(f"{argv[0]}: cannot start the {name}: {exc.strerror}") from None
        finally:
            if capture_stdout:
                out.close()
        st.pid = proc.pid
        self.result.processes.append(st)
        child = _Child(st, proc, err_path)
        self.children.append(child)
        return child

    def adopt(self, name: str, argv: list[str], pid: int, err_path: Path) -> _Child:
        """A process of the session the run did not start (a snapshot the master forked)."""
        st = ProcessStatus(name=name, argv=argv, pid=pid)
        self.result.processes.append(st)
        child = _Child(st, _Adopted(pid), err_path)
        self.children.append(child)
        return child

    def fail(self, child: _Child, why: str) -> None:
        if self.result.failure is None:
            self.result.failure = f"{child.status.name} (pid {child.status.pid}) {why}"


class _OutputLogger:
    """The output logger role: stores the records, releases the held outputs into OUT, writes the log."""

    def __init__(self, s: _Session, argv: list[str], env: Mapping[str, str] | None):
        self.s = s
        self.child = s.spawn("output-logger", argv, env, logger=True)

    def wait_log(self, log_file: Path, t0: float) -> bool:
        """After the master's death: wait until the output logger has written the log for the backup."""
        ol = self.child
        while not log_file.exists():
            if not ol.alive():
                self.s.fail(ol, f"exited before writing the log for the backup ({_status(ol)})")
                return False
            if time.monotonic() - t0 > 10:
                self.s.fail(ol, "did not write the log for the backup within 10 s of the master's death")
                return False
            time.sleep(0.0005)
        return True

    def finished(self, pid: int, until: float) -> tuple[int, int, int] | None:
        return _ol_finished(self.child, pid, until)


class _InputLogger:
    """The input logger role: serves IN on the session's queues; its region says whether the input is drained."""

    def __init__(self, s: _Session, argv: list[str]):
        self.s = s
        self.child = s.spawn("input-logger", argv, logger=True)

    def open_region(self, session: str) -> InputRegion | None:
        il = self.child
        try:
            return InputRegion(session)
        except (OSError, ValueError) as exc:
            self.s.fail(il, f"region vanished as the session started ({_status(il)}): {exc}")
            return None


def _wait_for_regions(s: _Session, session: str, ol: _Child, il: _Child, attach_timeout_s: float) -> bool:
    """Step 1: both regions are ready (a logger that exits first failed on its arguments or input)."""
    loggers = [ol, il]
    regions = [Path(f"/dev/shm/ftmb-{session}.out"), Path(f"/dev/shm/ftmb-{session}.in")]
    attach_deadline = min(s.deadline, time.monotonic() + attach_timeout_s)
    while not all(_region_ready(r) for r in regions):
        dead = [c for c in loggers if not c.alive()]
        if dead:
            c = dead[0]
            s.fail(c, f"exited before the session was ready ({_status(c)}): {_first_line(c.err_path)}")
            return False
        if time.monotonic() > attach_deadline:
            late = ol if not _region_ready(regions[0]) else il
            s.fail(late, f"did not create its region within {attach_timeout_s:g} s")
            return False
        time.sleep(0.005)
    return True


class _Backup:
    """The backup role: a warm one started next to the master (`kind` "standby" or "follower"), or
    none (`kind` None: a cold backup is started at the master's death); `take_over` names the
    process that carries the session on (the master's newest snapshot, the warm backup, or a cold one)."""

    def __init__(self, s: _Session, kind: str | None, nf_cmd: list[str], nf_env: Mapping[str, str],
                 log_file: Path | None):
        self.s, self.kind, self.nf_cmd, self.nf_env, self.log_file = s, kind, nf_cmd, nf_env, log_file
        self.warm: _Child | None = None
        if kind == "follower":
            # it replays the log as the output logger stores it, from the program's start
            # (FTMB_REPLAY_LOG: the empty log the run writes if the master dies before it attaches)
            self.warm = s.spawn("follower", nf_cmd, program_env(nf_env, "follower", log_file), capture_stdout=True)
        elif kind == "standby":
            # the backup runs the same initialization now and waits at its first spawn wrapper
            self.warm = s.spawn("standby", nf_cmd, program_env(nf_env, "standby", log_file), capture_stdout=True)

    def lost(self, nf: _Child) -> None:
        """While the master runs: a warm backup that died leaves it without fault tolerance (it forwards on)."""
        standby, result = self.warm, self.s.result
        if (standby is not None and result.fault_tolerance_lost is None
                and not standby.alive() and standby.proc.returncode != 0 and nf.alive()):
            # (exit 0: it saw the master call ftmb_exit, the normal end)
            result.fault_tolerance_lost = (f"the {standby.status.name} backup (pid {standby.proc.pid}) died "
                                           f"({_status(standby)}): {_first_line(standby.err_path)}; "
                                           "the master goes on without fault tolerance")

    def step_aside(self) -> None:
        """The master finished: a warm backup sees it and exits."""
        standby = self.warm
        if standby is not None:
            try:
                standby.proc.wait(timeout=self.s.grace_s)
            except subprocess.TimeoutExpired:
                standby.stop(signal.SIGTERM, self.s.grace_s)

    def take_over(self, nf: _Child, ol: _OutputLogger, in_region: InputRegion, nf_start: float,
                  injected: bool, kill_wall_ns: int) -> _Child | None:
        """The master is dead: wait for the output logger's log, start the backup (or wake the standby)."""
        s, result, log_file, standby = self.s, self.s.result, self.log_file, self.warm
        result.failover = Failover(killed_at_s=time.monotonic() - nf_start, injected=injected,
                                   killed_wall_ns=kill_wall_ns,
                                   reaped_ms=(time.time_ns() - kill_wall_ns) / 1e6 if injected else None)
        t0 = time.monotonic()
        snapshot = in_region.snapshot_pid()  # final: nobody names another until a new master checkpoints
        taken_by = in_region.master()[0]  # (read after it: a snapshot named by a backup implies this)
        if snapshot > 0 and taken_by not in (0, nf.proc.pid):
            # the snapshot took over already, went live and names snapshots of its own (the run
            # was descheduled that long): the backup is the new master, not its newest snapshot
            snapshot = taken_by
        if not in_region.attached():  # it died before attaching: nothing logged, the backup starts afresh
            _write_empty_log(log_file, in_region)
        if not ol.wait_log(log_file, t0):
            return None
        result.failover.log_ready_ms = (time.monotonic() - t0) * 1e3
        if snapshot > 0 and not _pid_alive(snapshot):  # (the standby stepped aside for it)
            s.fail(nf, f"died, and its snapshot (pid {snapshot}) could not take over: "
                       f"{_last_ftmb_line(nf.err_path)}")
            return None
        if snapshot > 0:
            b = s.adopt("backup", nf.status.argv, snapshot, nf.err_path)
            result.failover.backup_pid = snapshot
            result.failover.from_snapshot = True
            return b
        if standby is not None:
            # (exit 0 after taking over: it saw the death before us, replayed, went live and finished)
            took_over = standby.err_path.exists() and _TAKEOVER.search(standby.err_path.read_text(errors="replace"))
            if not standby.alive() and not (standby.proc.returncode == 0 and took_over):
                s.fail(standby, f"the {standby.status.name} backup was gone when the master died "
                                f"({_status(standby)}): {_first_line(standby.err_path)}")
                return None
            result.failover.backup_pid = standby.proc.pid
            result.failover.follower = self.kind == "follower"
            return standby
        b = s.spawn("backup", self.nf_cmd, program_env(self.nf_env, "backup", log_file), capture_stdout=True)
        result.failover.backup_pid = b.proc.pid
        return b


def _verify_replay(s: _Session, ol: _OutputLogger, nf_cmd: list[str], nf_env: Mapping[str, str], log_file: Path,
                   done: tuple[int, int, int]) -> ReplayCheck:
    """The verifier role (oracle 1): an uninterrupted re-execution that follows the complete log, from
    the initial state, on the same session (the input logger kept every entry); each of its outputs is
    a duplicate, which the output logger compares with the released one."""
    grace_s, deadline = s.grace_s, s.deadline
    v = s.spawn("verifier", nf_cmd, program_env(nf_env, "verifier", log_file), capture_stdout=True)
    try:
        v.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        v.stop(signal.SIGKILL, grace_s)
    # The output logger reports the verifier's end once it has compared every output the
    # verifier left in its rings: on a loaded machine that may take longer than the
    # grace period, so wait for it as long as the run may last (it is alive and working).
    after = ol.finished(v.proc.pid, max(time.monotonic() + grace_s, deadline))
    why = None
    if v.proc.returncode != 0:
        why = f"the verification replay did not finish ({_status(v)}): {_telling_line(v.err_path)}"
    elif after is None:
        why = (f"the output logger did not report the verification replay's end ({_status(ol.child)}; "
               f"the verifier exited 0: {_last_ftmb_line(v.err_path)})")
    check = ReplayCheck(released=done[0], compared=(after[1] - done[1]) if after else 0,
                        mismatches=(after[2] - done[2]) if after else 0, failure=why)
    if not check.ok:  # fail closed: a recovery nobody could reproduce
        s.fail(v, check.summary())
    return check


def run(nf_argv: Sequence[str], input_pcap: str | Path, output_pcap: str | Path, *, mode: str = "record",
        queues: int = 1, threads: int | None = None, timeout_s: float = 60.0, grace_s: float = 3.0,
        attach_timeout_s: float = 10.0, settle_s: float = 0.3, stop_signal: int = signal.SIGINT,
        tick_us: int | None = None, rate: int | None = None, log_file: str | Path | None = None,
        peer_timeout_ms: int = 10000,
        env: Mapping[str, str] | None = None, runtime_dir: str | Path | None = None,
        workdir: str | Path | None = None, kill_master_at: float | None = None, kill_from_input: bool = False,
        failover: bool = False, replay_log: str | Path | None = None,
        release_rule: bool = True, warm_standby: bool = True, verify_replay: bool = True, follower: bool = False,
        checkpoint_ms: int | None = None, seed: int | None = None) -> RunResult:
    """Run `nf_argv` (an instrumented program and its arguments) in a session; see the module doc.

    Bad input (missing program, missing or non-pcap input, loggers not built) raises `InputError`
    before anything starts. Failures of the processes are reported in the result (`failure`).
    The output logger writes `output_pcap` itself, each packet as it is released (flushed whenever
    it is idle): OUT replaces an earlier file of that name once the loggers start, and keeps what
    was released whatever ends the run (a failure, a death, an interrupt: `failure` then says how
    many packets OUT holds). A run holds a lock on OUT (`flock`): a second run to the same OUT is
    refused while the first runs.

    Failover (`failover=True`, implied by `kill_master_at`): the loggers keep the session after
    the master dies (`--until-signal`), the master runs with address-space randomization off
    (`setarch -R`), the run SIGKILLs it `kill_master_at` seconds after it started (if given; with
    `kill_from_input`, after it took its first input entry, however long its start-up took on a
    loaded machine, as `roles.run_on_hosts` does) and,
    once the output logger has stored every record the master published and written its log,
    starts a backup: the same command line with FTMB_MODE=replay, FTMB_REPLAY_LOG and
    FTMB_REPLAY_HANDOVER=1 (`warm_standby=False`), or, by default, wakes the backup it started
    next to the master with FTMB_MODE=standby, which has run the same initialization and waits at
    its first spawn wrapper for the master's death and the log. It replays the log, goes live, and runs to the end of the input; the
    output logger drops the outputs it regenerates that were already released. `result.failover`
    says when each step happened. `mode="replay"` with `replay_log` re-executes a log (the oracle).

    The manifest (`manifest_path(output_pcap)`, JSON, written once the session exists): the
    conditions of the run (program argv, input, queues, rate, tick, seed and kill time, checkpoint
    interval, tool and runtime versions), which `verify` reads to reproduce them.

    Checkpoints (`checkpoint_ms`, with failover): the master forks a snapshot of itself every
    `checkpoint_ms` ms (runtime/src/checkpoint.c); when it dies the newest snapshot takes over and
    replays only the log since that checkpoint, and the standby steps aside. The run makes itself a
    child subreaper for the run's duration so that the snapshot becomes its child when the master
    dies; the backup is the snapshot the region names then, or, once it has published itself as
    the master (a run that looks late: it may already name snapshots of its own), that master.
    The input logger forgets what precedes the newest checkpoint unless the verification replay
    (which re-executes from the start) needs it.
    `follower=True` (with failover; not with checkpoints): instead of the standby, a follower
    (FTMB_MODE=follow, the loggers with --follow) replays the log as the output logger stores it,
    outputs dropped; when the master dies it finishes the tail of the log and goes live. Without
    `verify_replay` the loggers forget what the follower has applied (--follow-forget).
    `release_rule=False` is the mutation check only: the output logger releases every packet at
    once (FTMB_OL_NO_RELEASE_RULE=1), which the oracle must catch.
    """
    if kill_master_at is not None:
        failover = True
    if failover and mode != "record":
        raise InputError("failover needs --mode record")
    if mode == "replay" and not replay_log:
        raise InputError("--mode replay needs a log (the output logger's --log of a recorded run)")
    if mode not in MODES:
        raise InputError(f"--mode {mode}: expected one of {', '.join(MODES)}")
    if not nf_argv:
        raise InputError("no network function: give its command line after --")
    if checkpoint_ms is not None and not 1 <= checkpoint_ms <= 3600000:
        raise InputError(f"--checkpoint-ms {checkpoint_ms}: expected 1 to 3600000")
    if follower and checkpoint_ms is not None:
        raise InputError("--backup follower and --checkpoint-ms: one backup at a time")
    if follower and not failover:
        raise InputError("--backup follower needs failover (--failover or --kill-master-at)")
    if checkpoint_ms is not None and not failover:
        raise InputError("--checkpoint-ms needs failover (--failover or --kill-master-at)")
    if not 1 <= queues <= 32:
        raise InputError(f"--queues {queues}: expected 1 to 32")
    if not timeout_s > 0 or timeout_s == float("inf"):
        raise InputError(f"--timeout {timeout_s:g}: expected a positive number of seconds")
    if not grace_s >= 0 or grace_s == float("inf"):
        raise InputError(f"--grace {grace_s:g}: expected seconds, 0 or more")
    if kill_master_at is not None and (not kill_master_at >= 0 or kill_master_at == float("inf")):
        raise InputError(f"--kill-master-at {kill_master_at:g}: expected seconds after the master's start, "
                         "0 or more (or 'random')")
    if kill_master_at is not None and kill_master_at >= timeout_s:
        raise InputError(f"--kill-master-at {kill_master_at:g}: not before --timeout {timeout_s:g}")
    if runtime_dir:
        il_bin, ol_bin = Path(runtime_dir) / "build" / "ftmb-input-logger", Path(runtime_dir) / "build" / "ftmb-output-logger"
        for b in (il_bin, ol_bin):
            if not os.access(b, os.X_OK):
                raise InputError(f"{b}: the logger is not built (run: make -C {runtime_dir})")
    else:
        rt = ensure_runtime(loggers=True)
        il_bin, ol_bin = rt["input_logger"], rt["output_logger"]
    program = _resolve_program(nf_argv[0])
    input_pcap, output_pcap = Path(input_pcap), Path(output_pcap)
    _check_pcap(input_pcap)
    _check_output(output_pcap, "--out", input_pcap)
    if log_file:
        log_file = Path(log_file)
        _check_output(log_file, "--log", input_pcap)
        if _same_file(log_file, output_pcap):
            raise InputError(f"{log_file}: --log and --out are the same file")

    session = f"run-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    result = RunResult(mode=mode, session=session, queues=queues)
    result.input_packets = _count_packets(input_pcap)
    out_lock = _lock_output(output_pcap)
    tmp = Path(tempfile.mkdtemp(prefix="ftmb-run-", dir=workdir))
    janitor = _start_janitor(tmp, session)
    # Orphans of the session (a dead master's snapshot, a helper the program left) become the run's
    # children, so it can wait for them and reap what it kills at the end.
    _set_subreaper(True)
    in_region: InputRegion | None = None
    start = time.monotonic()
    deadline = start + timeout_s

    s = _Session(result, tmp, deadline, grace_s)
    try:
        if failover and not log_file:
            log_file = tmp / "ftmb.log"
        if log_file:
            Path(log_file).unlink(missing_ok=True)
        follow = ("keep" if verify_replay else "forget") if follower else None
        # Without --threads the output logger has rings for the runtime's maximum (32): the region is
        # sparse, so threads that never start cost nothing, and no guess of the program's threads is needed.
        ol = _OutputLogger(s, output_logger_argv(ol_bin, session, output_pcap, threads=threads, log=log_file,
                                                 until_signal=failover, follow=follow),
                           None if release_rule else dict(os.environ, FTMB_OL_NO_RELEASE_RULE="1"))
        arrivals_path(output_pcap).unlink(missing_ok=True)  # (an earlier run's)
        il = _InputLogger(s, input_logger_argv(il_bin, session, input_pcap, queues=queues, until_signal=failover,
                                               follow=follow, tick_us=tick_us, rate=rate,
                                               arrivals=arrivals_path(output_pcap)))
        loggers = [ol.child, il.child]

        # 1. both regions are ready
        if not _wait_for_regions(s, session, ol.child, il.child, attach_timeout_s):
            return result
        in_region = il.open_region(session)
        if in_region is None:
            return result
        if output_pcap.is_file():
            _write_manifest(output_pcap, dict(
                program=[os.path.abspath(program), *map(str, nf_argv[1:])], input=str(input_pcap.resolve()), mode=mode, queues=queues,
                rate=rate, tick_us=tick_us, threads=threads, stop_signal=signal.Signals(stop_signal).name,
                timeout_s=timeout_s, failover=failover, kill_master_at=kill_master_at, seed=seed,
                checkpoint_ms=checkpoint_ms, session=session,
                runtime={"abi_version": _HDR.unpack_from(in_region._m, 0)[1], "layout_version": _LAYOUT_VERSION}))

        # 2. the master, and a warm backup beside it
        nf_env = dict(os.environ if env is None else env, FTMB_MODE=mode, FTMB_SESSION=session)
        # The master declares a logger gone when its heartbeat is older than this; on a loaded
        # machine a descheduled logger misses the runtime's default (and the master then drops its
        # input or output for good). Here the run itself watches the loggers (it is their parent),
        # so a generous timeout loses nothing: a logger that dies is reported and everything stops.
        nf_env.setdefault("FTMB_PEER_TIMEOUT_MS", str(peer_timeout_ms))
        if mode == "replay":
            nf_env["FTMB_REPLAY_LOG"] = str(replay_log)
        if checkpoint_ms is not None:
            nf_env.update(FTMB_CHECKPOINT_MS=str(checkpoint_ms), FTMB_REPLAY_LOG=str(log_file),
                          FTMB_CHECKPOINT_GC="0" if verify_replay else "1")
        nf_cmd = [program, *nf_argv[1:]]
        if failover:
            nf_cmd = same_addresses(nf_cmd)
        nf = s.spawn(Path(program).name, nf_cmd, nf_env, capture_stdout=True)
        nf_start = time.monotonic()
        backups = _Backup(s, "follower" if follower else "standby" if failover and warm_standby else None,
                          nf_cmd, nf_env, Path(log_file) if log_file else None)

        # 3. the drain
        nf, backup = _drain(s, nf, nf_start, backups, ol, il, in_region, session=session, failover=failover,
                            kill_master_at=kill_master_at, kill_from_input=kill_from_input, settle_s=settle_s,
                            stop_signal=stop_signal,
                            attach_timeout_s=attach_timeout_s, timeout_s=timeout_s)
        _check_end(s, nf, backup, loggers, in_region, stop_signal)
        if failover and result.failure is None:
            # the loggers stay for another master (--until-signal): once the output logger has
            # handled the last master's exit (it rewrites the log then), stop them; both exit 0
            done = ol.finished(nf.proc.pid, time.monotonic() + grace_s)
            if verify_replay and result.failover is not None and done is not None:
                result.replay_check = _verify_replay(s, ol, nf_cmd, nf_env, Path(log_file), done)
            elif verify_replay and result.failover is not None:  # fail closed: no check, no success
                s.fail(ol.child, f"did not report the end of the last master (pid {nf.proc.pid}): no replay check "
                                 f"({_status(ol.child)}): {_last_ftmb_line(ol.child.err_path)}")
            for c in loggers:
                c.stop(signal.SIGTERM, grace_s)
        # 4. the loggers finish by themselves once the master is gone
        _stop_loggers(s, loggers, failover)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP through the command's handler
        result.interrupted = True
        result.failure = "interrupted" if result.failure is None else f"interrupted ({result.failure})"
    finally:
        _end_session(s, session, in_region, output_pcap)
        result.elapsed_s = time.monotonic() - start
        _keep_session_files(tmp, session, output_pcap)
        shutil.rmtree(tmp, ignore_errors=True)
        _stop_janitor(janitor)
        os.close(out_lock)
    return result


def _keep_session_files(tmp: Path, session: str, output_pcap: Path) -> None:
    """FTMB_RUN_KEEP=DIR (a debugging switch): copy the session's files (each process's stderr and
    stdout, the log) and OUT with its manifest into DIR/SESSION before they are removed."""
    keep = os.environ.get("FTMB_RUN_KEEP")
    if not keep:
        return
    dest = Path(keep) / session
    try:
        shutil.copytree(tmp, dest, dirs_exist_ok=True)
        for f in (output_pcap, manifest_path(output_pcap), arrivals_path(output_pcap)):
            if f.is_file():
                shutil.copy(f, dest / f.name)
    except OSError as exc:
        print(f"ftmb-instrument run: FTMB_RUN_KEEP={keep}: cannot keep the session files: {exc}", file=sys.stderr)


def _drain(s: _Session, master: _Child, nf_start: float, backups: _Backup, ol: _OutputLogger, il: _InputLogger,
           in_region: InputRegion, *, session: str, failover: bool, kill_master_at: float | None,
           kill_from_input: bool, settle_s: float,
           stop_signal: int, attach_timeout_s: float, timeout_s: float) -> tuple[_Child, _Child | None]:
    """Step 3, the drain: watch the master (the run SIGKILLs it at `kill_master_at`; a backup takes
    over when it dies) until its input is drained, then stop it; the process that ran last and the
    backup that took over (or None)."""
    result, grace_s, deadline = s.result, s.grace_s, s.deadline
    fail = s.fail
    nf = master
    loggers = [ol.child, il.child]
    attached = False
    backup: _Child | None = None
    kill_wall_ns = 0
    kill_t0 = None if kill_from_input else nf_start  # the kill's clock starts (the first input taken)
    while True:
        if backup is None:
            backups.lost(nf)
        if kill_t0 is None and any(tail > 0 for _head, tail, _eof in in_region.queues()):
            kill_t0 = time.monotonic()
        if failover and backup is None and not result.failure:
            due = kill_master_at is not None and kill_t0 is not None and time.monotonic() - kill_t0 >= kill_master_at
            if due or not nf.alive():
                # (a master past ftmb_exit has finished: killing it in its exit is no failover)
                finished = nf.alive() and in_region.master()[1] == 2
                injected = nf.alive() and not finished
                if injected:
                    kill_wall_ns = time.time_ns()
                    nf.status.stopped_by = "SIGKILL"
                    nf.signal(signal.SIGKILL)
                    nf.proc.wait()
                elif finished or nf.proc.returncode == 0 or in_region.drained():
                    backups.step_aside()
                    break   # it finished by itself before the failure was due
                else:
                    kill_wall_ns = time.time_ns()
                backup = backups.take_over(nf, ol, in_region, nf_start, injected, kill_wall_ns)
                if backup is None:
                    if result.fault_tolerance_lost:
                        result.failure = f"the master died without a backup: {result.fault_tolerance_lost}"
                    break
                nf = backup
                continue
        if not nf.alive():
            break
        for c in loggers:  # exit 0 is a logger that saw the master's ftmb_exit: fine
            if not c.alive() and c.proc.returncode != 0 and nf.alive():  # (else the master's fault)
                fail(c, f"exited while the network function was running ({_status(c)}): "
                        f"{_first_line(c.err_path)}")
        if result.failure:
            break
        handed_over = backup is None or in_region.master()[::2] == (backup.proc.pid, 1)
        if handed_over and in_region.drained():
            result.drained = True
            result.drain_s = time.monotonic() - nf_start
            try:  # a program that watches ftmb_input_done exits by itself
                nf.proc.wait(timeout=settle_s)
                break
            except subprocess.TimeoutExpired:
                pass
            result.stopped_nf = True
            nf.stop(stop_signal, grace_s)
            if nf.status.stopped_by == "SIGKILL":
                fail(nf, f"did not stop within {grace_s:g} s of {signal.Signals(stop_signal).name} "
                         f"after its input was drained (its threads then: {nf.status.stuck or 'unknown'})")
            break
        if not attached and backup is None and time.monotonic() - nf_start > attach_timeout_s:
            attached = in_region.attached()
            if not attached:
                fail(nf, f"did not join session {session} within {attach_timeout_s:g} s: was it built "
                         "with ftmb-cc?")
                break
        if time.monotonic() > deadline:
            fail(nf, f"was still running after {timeout_s:g} s (input not drained: {in_region.describe()}; "
                     f"its stderr: {_first_line(nf.err_path)})")
            break
        time.sleep(0.01)
    return nf, backup


def _check_end(s: _Session, nf: _Child, backup: _Child | None, loggers: list[_Child], in_region: InputRegion,
               stop_signal: int) -> None:
    """After the drain: how the last master ended, and whether a master gave up on a logger."""
    result, fail = s.result, s.fail
    for c in s.children:  # a master that gave up on a logger lost outputs or input: never a success
        gone = None if c in loggers else _logger_gone(c.err_path)
        if gone:  # a logger that died is the cause: its own status says why (SIGKILL, a crash)
            dead = [d for d in loggers if not d.alive() and d.proc.returncode != 0]
            if dead:
                fail(dead[0], f"exited while the network function was running ({_status(dead[0])}): "
                              f"{_first_line(dead[0].err_path)}")
            fail(c, gone)
    if not result.failure:
        nf.proc.wait()
        nf.status.returncode = nf.proc.returncode
        # A program without a handler for the stop signal dies of it: after the drain that is
        # the stop the run asked for (the runtime marked it so; the loggers' exit statuses say
        # whether every output was released), any other death a failure.
        stopped = (result.stopped_nf and nf.status.stopped_by == signal.Signals(stop_signal).name
                   and nf.proc.returncode == -stop_signal)
        if nf.proc.returncode != 0 and not stopped:
            fail(nf, f"failed ({_status(nf)}): {_telling_line(nf.err_path)}")
        elif backup is None and not in_region.attached():  # (the loggers would wait for it in vain)
            fail(nf, f"exited ({_status(nf)}) but never joined the session: was it built with ftmb-cc?")
        result.drained = result.drained or in_region.drained()
        if backup is not None and not result.drained:  # a backup must carry the session to its end
            fail(nf, f"exited before its input was drained ({_status(nf)}"
                     f"{'; not the run child: status unknown' if getattr(nf.proc, 'unknown', False) else ''})"
                     f": {_last_ftmb_line(nf.err_path)}")


def _stop_loggers(s: _Session, loggers: list[_Child], failover: bool) -> None:
    """Step 4: the loggers finish by themselves once the master is gone (a master that failed may
    never have attached: the loggers would wait for it forever)."""
    result, grace_s, fail = s.result, s.grace_s, s.fail
    logger_deadline = time.monotonic() + (grace_s if result.failure is None else min(grace_s, 0.5))
    for c in loggers:
        try:
            c.proc.wait(timeout=max(0.0, logger_deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.stop(signal.SIGTERM, grace_s)
            fail(c, f"did not exit within {grace_s:g} s of the network function ({_status(c)})")
    for c in loggers:
        if c.proc.returncode != 0 and (not c.status.stopped_by or failover):
            fail(c, f"failed ({_status(c)}): {_first_line(c.err_path)}")


def _end_session(s: _Session, session: str, in_region: InputRegion | None, output_pcap: Path) -> None:
    """Whatever ended the run: stop every process, remove the session's regions, collect the result."""
    result, children, grace_s = s.result, s.children, s.grace_s
    # The loggers first (SIGTERM: the output logger closes OUT with every released packet in
    # it, both remove their regions): a snapshot whose master dies next then finds the session
    # gone and exits instead of taking over (runtime/src/checkpoint.c); then everyone else, and
    # whatever of the session is left that the run did not start (a backup's own snapshots, a
    # helper in a session of its own). The verification replay has ended before this point.
    for c in loggers_first(children):
        c.stop(signal.SIGTERM if c.status.name in _LOGGERS else signal.SIGKILL, grace_s)
    _kill_session_leftovers(session)
    for c in children:
        c.status.returncode = c.proc.returncode
        c.status.stderr_tail = _tail(c.err_path)
    if in_region is not None:
        in_region.close()
    for suffix in ("in", "out", "fol", "infol"):
        Path(f"/dev/shm/ftmb-{session}.{suffix}").unlink(missing_ok=True)
    _collect(result, children, s.tmp, output_pcap)
    _set_subreaper(False)
    if result.failover is not None:
        kill_wall_ns = result.failover.killed_wall_ns
        b = next((c for c in children if c.status.pid == result.failover.backup_pid), None)
        m = _LIVE.search(b.err_path.read_text(errors="replace")) if b and b.err_path.exists() else None
        t = _TAKEOVER.search(b.err_path.read_text(errors="replace")) if b and b.err_path.exists() else None
        if t:
            result.failover.detected_ms = (int(t.group(1)) - kill_wall_ns) / 1e6
        if m:
            result.failover.replayed_records = int(m.group(1))
            result.failover.live_ms = (int(m.group(2)) - kill_wall_ns) / 1e6
    # the input logger writes OUT.arrivals as OUT.arrivals.tmp (and probes it so at its start): one
    # killed while it wrote it (the session ended by a failure) leaves a half-written file
    Path(f"{arrivals_path(output_pcap)}.tmp").unlink(missing_ok=True)
    if result.failure is not None:  # (one line: what OUT holds after all)
        result.failure += (f"; {output_pcap} keeps the {result.output_packets} packets released until then"
                           if result.output_packets else "; nothing was released")
        if output_pcap.is_file() and output_pcap.stat().st_size <= 24:  # OUT without a packet: not kept
            output_pcap.unlink()
            manifest_path(output_pcap).unlink(missing_ok=True)
            arrivals_path(output_pcap).unlink(missing_ok=True)
    if output_pcap.is_file() and output_pcap.stat().st_size == 0:  # the lock's file; no logger wrote it
        output_pcap.unlink()
        arrivals_path(output_pcap).unlink(missing_ok=True)


_LOGGERS = ("output-logger", "input-logger")


def loggers_first(children: list[_Child]) -> list[_Child]:
    """The order the run ends its processes in: the loggers, then the rest, newest first."""
    loggers = [c for c in children if c.status.name in _LOGGERS]
    return loggers + [c for c in reversed(children) if c not in loggers]


def _session_processes(session: str) -> list[int]:
    """Every process of the session: its environment names it (FTMB_SESSION, inherited by forks
    such as snapshots) or its command line does (the loggers)."""
    env, arg = f"FTMB_SESSION={session}\0".encode(), session.encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if env in (d / "environ").read_bytes() or arg in (d / "cmdline").read_bytes():
                found.append(int(d.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


def _kill_session_leftovers(session: str, within_s: float = 5.0) -> None:
    """SIGKILL every process of the session still alive, until none is left (one may be forking a
    snapshot as it dies); reap those the run is the parent or subreaper of."""
    until = time.monotonic() + within_s
    while time.monotonic() < until:
        alive = [pid for pid in _session_processes(session) if _pid_alive(pid)]
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
        for pid in alive:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not the run's child: its own parent or init reaps it
                pass


# The output logger's line once it has handled a master's end (after "the master (pid P) "): its
# released, duplicates and mismatches counts so far. Read here and by roles.py.
MASTER_END = r"(?:finished|was stopped by a signal); every output handled; released (\d+) duplicates (\d+) mismatches (\d+)"


def _ol_finished(ol: _Child, pid: int, until: float) -> tuple[int, int, int] | None:
    """The output logger's released/duplicates/mismatches when it handled master `pid`'s exit (or its
    death by a stop signal it does not handle)."""
    pat = re.compile(re.escape(f"(pid {pid}) ") + MASTER_END)
    while True:
        last = time.monotonic() > until or not ol.alive()  # (then one more look: it may have just written it)
        m = pat.search(_tail(ol.err_path, 200))
        if m:
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
        if last:
            return None
        time.sleep(0.005)


def _write_empty_log(path: Path, region: InputRegion) -> None:
    """A log with no records (runtime/src/ftmb_internal.h, struct _ftmb_log_file_hdr)."""
    hdr = _HDR.unpack_from(region._m, 0)
    tsc_hz, = struct.unpack_from("<Q", region._m, _HDR.size + _IN_GEOMETRY.size)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(replaylog.pack_header(0, tsc_hz, abi_version=hdr[1]))
    os.replace(tmp, path)


def _status(c: _Child) -> str:
    rc = c.proc.poll()
    if rc is None:
        return "still running"
    return f"killed by {_signal_name(-rc)}" if rc < 0 else f"exit {rc}"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:  # real-time signals have no name in the enum
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}" if sig >= signal.SIGRTMIN else f"signal {sig}"


def _last_ftmb_line(path: Path) -> str:
    """The runtime's last word in a process's stderr (several processes may share the file)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.startswith("ftmb")]
    except OSError:
        return ""
    return lines[-1] if lines else _first_line(path)


def _telling_line(path: Path) -> str:
    """Why a network function failed, in one line: the runtime's last `ftmb:` line (it explains an
    abort the program's own output only precedes), else the program's last line that is not DPDK's
    chatter."""
    lines = [ln.strip() for ln in _tail(path, 200).splitlines() if ln.strip()]
    ftmb = [ln for ln in lines if ln.startswith("ftmb:") and not ln.startswith("ftmb: checkpoints ")]
    if ftmb:
        return ftmb[-1]
    own = [ln for ln in lines if not ln.startswith(_CHATTER)]
    return own[-1] if own else lines[-1] if lines else "(nothing on stderr)"


_CHATTER = ("EAL:", "TELEMETRY:")


def _logger_gone(path: Path) -> str | None:
    """What a master said when it declared a logger gone (its heartbeat too old: the logger died,
    was stopped, or was starved of CPU for FTMB_PEER_TIMEOUT_MS), as the run's failure; None if it did not."""
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                m = _LOGGER_GONE.match(line.strip())
                if m:
                    who, pid, ms, then = m.groups()
                    return (f"declared the {who} logger (pid {pid}) gone: no heartbeat for {ms} ms "
                            f"(FTMB_PEER_TIMEOUT_MS); {then}")
    except OSError:
        pass
    return None


def _first_line(path: Path) -> str:
    """The most telling line of a process's stderr: the first that is not DPDK's chatter."""
    lines = [ln.strip() for ln in _tail(path, 200).splitlines() if ln.strip()]
    for ln in lines:
        if not ln.startswith(_CHATTER):
            return ln
    return lines[0] if lines else "(nothing on stderr)"


def _count_packets(path: Path) -> int:
    from .pcap import iter_pcap
    try:
        return sum(1 for _ in iter_pcap(path))
    except FtmbError as exc:
        raise InputError(str(exc)) from None


def _collect(result: RunResult, children: list[_Child], tmp: Path, output_pcap: Path) -> None:
    for c in children:
        if c.status.name == "output-logger":
            m = _STATS.search(c.status.stderr_tail)
            if m:
                (result.released, result.held, result.records, result.corrupt,
                 result.duplicates) = (int(x) for x in m.groups()[:5])
                if result.released:
                    result.hold_p50_us, result.hold_p99_us = float(m.group(6)), float(m.group(7))
            lag = _FOLLOWER_LAG.search(c.status.stderr_tail)
            if lag:
                g = lag.groups()
                result.follower_lag = FollowerLag(*(float(x) for x in g[:4]), *(int(float(x)) for x in g[4:]))
        elif c.status.name not in ("input-logger", "verifier", "standby", "follower") or (
                c.status.name in ("standby", "follower") and result.failover and
                c.status.pid == result.failover.backup_pid):
            try:  # (a snapshot that took over writes to the master's files)
                result.nf_stdout = c.err_path.with_suffix(".out").read_text(errors="replace")
                result.nf_stderr = c.err_path.read_text(errors="replace")
            except OSError:
                pass
    # (a device or a FIFO cannot be read back: the output logger's own count)
    result.output_packets = _count_released(output_pcap) if output_pcap.is_file() else result.released


_FOLLOWER_LAG = re.compile(r"follower lag_ms min ([\d.]+) p50 ([\d.]+) p99 ([\d.]+) max ([\d.]+) lag_records "
                           r"min (\d+) p50 (\d+) p99 (\d+) max (\d+) samples (\d+)")


def _count_released(path: Path) -> int:
    """The complete packets in the output logger's pcap (a logger killed mid-write may leave a
    truncated last record: the ones before it count); 0 for what is not a regular pcap file."""
    try:
        if not path.is_file():
            return 0
        data = path.read_bytes()
    except OSError:
        return 0
    if len(data) < 24 or data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return 0
    n, off = 0, 24
    while off + 16 <= len(data):
        incl, = struct.unpack_from("<I", data, off + 8)
        if off + 16 + incl > len(data):
            break
        n, off = n + 1, off + 16 + incl
    return n


__all__ = ["MODES", "MANIFEST_FORMAT", "manifest_path", "read_manifest", "arrivals_path", "Arrivals", "read_arrivals", "ProcessStatus", "RunError",
           "RunInterrupted", "RunResult", "InputRegion", "input_drained", "logger_queue", "run",
           "PROGRAM_ROLES", "input_logger_argv", "output_logger_argv", "program_env", "same_addresses"]
