"""Tests that start a session's loggers by hand: the one clean-up, whatever the test's outcome."""

from __future__ import annotations

import subprocess
from pathlib import Path


def end_session(procs: list[subprocess.Popen], session: str) -> None:
    """Kill what of `procs` still runs (each reaped) and remove the session's /dev/shm regions."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for suffix in ("in", "out"):
        Path(f"/dev/shm/ftmb-{session}.{suffix}").unlink(missing_ok=True)
