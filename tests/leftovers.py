"""The suite-wide leftover check (a pytest plugin; tests/conftest.py loads it).

After the whole session, the run fails if anything of ours that appeared during it is still there:
shared-memory regions /dev/shm/ftmb-*, run directories /tmp/ftmb-run-*, ftmb-cc's /tmp/ftmb-cc.*,
and processes started by the session that are
instrumented programs (FTMB_SESSION in their environment) or loggers (ftmb-input-logger,
ftmb-output-logger). Paths are compared with a snapshot taken when the session starts, so what a
developer's own runs left before is not counted, and a path that a live process outside the session
names on its command line (a run of another session on the same machine: its loggers' --session,
its --file-prefix, its run directory) or whose name carries the pid of a live process outside the
session (run-PID-..., a test's --file-prefix=ftmbhPID...) is not counted either; processes are the session's by a token
in the environment every process it starts inherits (FTMB_TEST_SESSION).

DPDK runtime directories (/var/run/dpdk/PREFIX) are not checked: DPDK 22.11's EAL creates one per
--file-prefix and leaves it behind at every exit, a clean one too (an empty directory after
`rte_eal_cleanup`), so every DPDK process the tests start leaves one. The session removes the ones
that appeared during it (ftmb*, ft*, q*: the tests' prefixes) once no live process names them; a
DPDK process still running is a leftover process above. The tool's own prefixes (the demo's) are
checked where it picks them (tests/test_demo.py).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import time
import uuid

import pytest

PATTERNS = ("/dev/shm/ftmb-*", "/tmp/ftmb-run-*", "/tmp/ftmb-cc.*")
DPDK_DIRS = ("/var/run/dpdk/ft*", "/var/run/dpdk/q*")
LOGGERS = {"ftmb-input-logger", "ftmb-output-logger"}
TOKEN_VAR = "FTMB_TEST_SESSION"
SETTLE_S = 5.0  # processes and files being torn down as the last test ends get this long to go

_before: set[str] = set()
_dpdk_before: set[str] = set()


def dpdk_dirs() -> set[str]:
    return {p for pattern in DPDK_DIRS for p in glob.glob(pattern)}


def remove_dpdk_dirs(before: set[str]) -> None:
    """The DPDK runtime directories that appeared during the session and that no live process
    names (see the top)."""
    names = "\0".join(a for _, _, argv in live_processes() for a in argv)
    for d in dpdk_dirs() - before:
        if os.path.basename(d) not in names:
            shutil.rmtree(d, ignore_errors=True)


def paths() -> set[str]:
    return {p for pattern in PATTERNS for p in glob.glob(pattern)}


def live_processes() -> list[tuple[str, list[bytes], list[str]]]:
    """(pid, environment, argv) of every live process this user can read."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"{d}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if argv:  # a zombie has none
            out.append((os.path.basename(d), env, argv))
    return out


def key(path: str) -> str:
    """What a process using `path` names on its command line: /dev/shm/ftmb-S.in -> S (the
    loggers' --session), a directory -> its path."""
    if path.startswith("/dev/shm/ftmb-"):
        return os.path.splitext(path[len("/dev/shm/ftmb-"):])[0]
    return path


def leftovers(before: set[str], token: str) -> list[str]:
    mine = f"{TOKEN_VAR}={token}".encode()
    procs = live_processes()
    theirs = [(pid, argv) for pid, env, argv in procs if mine not in env and int(pid) != os.getpid()]
    others = "\0".join(a for _, argv in theirs for a in argv)
    their_pids = {pid for pid, _ in theirs}

    def another_sessions(path: str) -> bool:
        """Named on a live process's command line, or after its pid (run-PID-..., a test's
        --file-prefix=ftmbhPID...): a process outside this session made it."""
        return key(path) in others or bool(set(re.findall(r"\d{3,}", os.path.basename(path))) & their_pids)

    left = sorted(p for p in paths() - before if not another_sessions(p))
    for pid, env, argv in procs:
        if mine in env and (any(e.startswith(b"FTMB_SESSION=") for e in env)
                            or os.path.basename(argv[0]) in LOGGERS):
            left.append(f"pid {pid}: {' '.join(argv)[:200]}")
    return left


def pytest_sessionstart(session: pytest.Session) -> None:
    global _before, _dpdk_before
    _before = paths()
    _dpdk_before = dpdk_dirs()
    os.environ[TOKEN_VAR] = uuid.uuid4().hex  # a pytest run inside a test gets its own


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    token = os.environ[TOKEN_VAR]
    remove_dpdk_dirs(_dpdk_before)
    deadline = time.monotonic() + SETTLE_S
    left = leftovers(_before, token)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftovers(_before, token)
    if not left:
        return
    tw = session.config.get_terminal_writer()
    tw.line(f"\nleftover check: {len(left)} thing(s) of this test session outlived it:", red=True)
    for x in left:
        tw.line(f"  {x}", red=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
