"""A non-editable install works away from the checkout: the checkout's files (what `git clone` gives,
plus uncommitted work) are copied out, installed into a fresh virtual environment with
`pip install DIR`, and from an unrelated directory the installed tools build their runtime into the
user's cache (XDG_CACHE_HOME), link a corpus program with ftmb-cc, and run the demo end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def copy_checkout(dst: Path) -> None:
    names = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the work tree is not part of it
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def test_installed_tool_builds_links_and_runs_the_demo(tmp_path):
    src, venv, elsewhere, cache = (tmp_path / d for d in ("src", "venv", "elsewhere", "cache"))
    copy_checkout(src)
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    shutil.rmtree(src)  # nothing of the checkout copy may be needed any more
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTMB_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(XDG_CACHE_HOME=str(cache), PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")

    def tool(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)

    libs = tool("ftmb-instrument", "config", "--libs")
    assert libs.returncode == 0, libs.stderr
    core = Path(libs.stdout.split()[0])
    assert core.name == "libftmb.a" and core.is_file() and core.is_relative_to(cache / "ftmb-instrument"), libs.stdout
    cflags = tool("ftmb-instrument", "config", "--cflags")
    assert cflags.returncode == 0 and "site-packages" in cflags.stdout, cflags.stdout + cflags.stderr

    shutil.copy2(ROOT / "corpus" / "pt_nat_mutex.c", elsewhere)
    built = tool("ftmb-cc", "-std=gnu11", "-Wall", "-Wextra", "-O2", "-pthread", "pt_nat_mutex.c", "-o", "nat")
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(elsewhere / "nat"), "3", "1500"], env=dict(env, FTMB_MODE="passthrough"),
                         capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0 and "pt_nat_mutex: translated=" in ran.stdout, ran.stdout + ran.stderr
    nm = subprocess.run(["nm", str(elsewhere / "nat")], capture_output=True, text=True, check=True).stdout
    assert " T ftmb_" in nm  # instrumented and linked with the runtime

    demo = tool("ftmb-instrument", "demo", "--workdir", str(tmp_path / "demo"), "--workers", "1", "--kill-at", "0.5")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "verification: PASS" in " ".join(demo.stdout.split())
