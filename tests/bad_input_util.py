"""Shared by the tests/test_bad_input*.py family: run the real command line, check a clean refusal."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "ftmb_instrument"]

THREADED = """#include <pthread.h>
int counter;
static void *worker(void *arg) { counter++; return arg; }
int main(void) { pthread_t t; pthread_create(&t, 0, worker, 0); counter++; pthread_join(t, 0); return counter; }
"""


def cli(*args, cwd=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([*CLI, *map(str, args)], stderr=subprocess.PIPE, text=True, cwd=cwd, timeout=timeout, **kw)


def refused(proc: subprocess.CompletedProcess, *needles: str, rc: int = 1) -> str:
    """The command exited `rc` with one line on stderr naming every needle, and no traceback."""
    err = proc.stderr
    assert proc.returncode == rc, (proc.returncode, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 or rc == 2, err  # usage errors (2) come with click's usage line
    for n in needles:
        assert n in err, (n, err)
    return err


def snapshot(d: Path) -> dict[str, tuple]:
    """What is in `d` (recursively): names, kinds and contents, to see that nothing changed."""
    out = {}
    for p in sorted(d.rglob("*")):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(d))] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            out[str(p.relative_to(d))] = ("link", os.readlink(p))
        else:
            out[str(p.relative_to(d))] = (stat.S_IFMT(st.st_mode),)
    return out


@contextlib.contextmanager
def unwritable(path: Path):
    """Make `path` (a file or directory) unwritable even for root: immutable (chattr +i) as root,
    read-only permissions otherwise; restored afterwards."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
