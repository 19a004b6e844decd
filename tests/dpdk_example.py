"""Debian's DPDK example sources (dpdk-doc), copied and built with `ftmb-cc` at test time: the
real-code tests share this, so nothing of DPDK's is ever committed here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path("/usr/share/dpdk/examples")
BIN = Path(sys.executable).parent  # ftmb-cc and ftmb-instrument of this environment


def source(relative: str) -> Path:
    """An example's source file; the test fails (never skips) when dpdk-doc is missing."""
    path = EXAMPLES / relative
    if not path.is_file():
        pytest.fail(f"{path} missing: install dpdk-doc and libdpdk-dev (./dev.sh does)")
    return path


def pkg_config(*args: str) -> list[str]:
    return subprocess.run(["pkg-config", *args, "libdpdk"], capture_output=True, text=True, check=True).stdout.split()


def build(directory: Path, source_name: str, binary: str, *flags: str) -> Path:
    """Build `directory/source_name` with ftmb-cc into `directory/binary`."""
    subprocess.run([str(BIN / "ftmb-cc"), "-O2", *flags, *pkg_config("--cflags"), source_name, "-o", binary,
                    *pkg_config("--libs")], cwd=directory, check=True, capture_output=True, timeout=300)
    return directory / binary
