"""Where the C runtime's sources and the demo's example are, where the runtime is built, and building it.

In a checkout (and an editable install) they are the checkout's `runtime/` and `examples/`, and the
runtime is built into `runtime/build`. A wheel carries a copy of both under
`ftmb_instrument/_bundled/` (setup.py puts it there); site-packages may be read-only, so an
installed tool builds its runtime into the user's cache,
`$XDG_CACHE_HOME/ftmb-instrument/<version>-<hash of the runtime sources>` (`~/.cache` when
XDG_CACHE_HOME is unset), one directory per runtime version. `$FTMB_RUNTIME_BUILD` overrides both.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
from pathlib import Path

from . import __version__
from .errors import FtmbError

PACKAGE = Path(__file__).resolve().parent
BUNDLED = PACKAGE / "_bundled"
INSTALLED = (BUNDLED / "runtime").is_dir()
SOURCE_ROOT = BUNDLED if INSTALLED else PACKAGE.parent
RUNTIME_DIR = SOURCE_ROOT / "runtime"
EXAMPLES_DIR = SOURCE_ROOT / "examples"
RUNTIME_SOURCES = ("Makefile", "src/*", "include/ftmb/*", "tools/*")  # what a build reads (setup.py ships them)


def _runtime_sources() -> list[Path]:
    return sorted(p for pattern in RUNTIME_SOURCES for p in RUNTIME_DIR.glob(pattern) if p.is_file())


@functools.cache
def _sources_hash() -> str:
    h = hashlib.sha256()
    for p in _runtime_sources():
        h.update(str(p.relative_to(RUNTIME_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def runtime_build_dir() -> Path:
    """$FTMB_RUNTIME_BUILD; else runtime/build in a checkout, the user's cache in an installed tool."""
    env = os.environ.get("FTMB_RUNTIME_BUILD")
    if env:
        return Path(env).resolve()
    if not INSTALLED:
        return RUNTIME_DIR / "build"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ftmb-instrument" / f"{__version__}-{_sources_hash()}"


def runtime_paths() -> dict[str, Path]:
    b = runtime_build_dir()
    return {"include": RUNTIME_DIR / "include", "core": b / "libftmb.a", "dpdk": b / "libftmb_dpdk.a",
            "pcap": b / "libftmb_pcap.a",
            "input_logger": b / "ftmb-input-logger", "output_logger": b / "ftmb-output-logger",
            "relay": b / "ftmb-relay"}


def ensure_runtime(dpdk: bool = False, loggers: bool = False, pcap: bool = False) -> dict[str, Path]:
    """The runtime's paths, building it first when a wanted file is missing or out of date:
    libftmb always, libftmb_dpdk with `dpdk`, libftmb_pcap with `pcap`, the input and output logger executables with `loggers`.

    Parallel builds (`make -j CC=ftmb-cc`) start several ftmb-cc at once: the first one builds
    the runtime under a lock on the build directory, the others wait for it."""
    p = runtime_paths()
    want = [p["core"]] + ([p["dpdk"]] if dpdk else []) + ([p["pcap"]] if pcap else []) + ([p["input_logger"], p["output_logger"], p["relay"]] if loggers else [])
    if _up_to_date(want):
        return p
    if not (RUNTIME_DIR / "Makefile").exists():
        raise FtmbError(f"{RUNTIME_DIR}: the runtime sources are missing; reinstall ftmb-instrument")
    b = runtime_build_dir()
    try:
        b.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FtmbError(f"{b}: cannot create the runtime's build directory ({exc.strerror}); "
                        f"set FTMB_RUNTIME_BUILD to a writable directory") from None
    with open(b / ".ftmb-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _up_to_date(want):
            return p
        # a plain compiler and no inherited MAKEFLAGS: under `make CC=ftmb-cc` the runtime itself
        # must not be compiled by ftmb-cc
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CC")}
        cc = os.environ.get("FTMB_REAL_CC") or "gcc"
        res = subprocess.run(["make", "-s", "-C", str(RUNTIME_DIR), f"B={b}", f"CC={cc}", *map(str, want)],
                             capture_output=True, text=True, env=env)
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines()
        first = next((ln for ln in lines if "error" in ln), lines[-1] if lines else "(no output)")
        raise FtmbError(f"{RUNTIME_DIR}: building the runtime failed (make -C {RUNTIME_DIR} B={b}): {first}")
    missing = [str(w) for w in want if not w.exists()]
    if missing:
        raise FtmbError(f"{missing[0]}: not built by make -C {RUNTIME_DIR} (is libdpdk-dev or libpcap-dev installed?)")
    return p


def _up_to_date(want: list[Path]) -> bool:
    newest = max((s.stat().st_mtime for s in _runtime_sources()), default=0)
    return all(w.exists() and w.stat().st_mtime >= newest for w in want)


__all__ = ["EXAMPLES_DIR", "INSTALLED", "RUNTIME_DIR", "ensure_runtime", "runtime_build_dir", "runtime_paths"]
