"""The suite-wide leftover check (tests/leftovers.py) fails a session that leaves something of ours:
a pytest run of a small test file that leaks a /dev/shm/ftmb-* file and an instrumented-looking
process (real files, real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_run(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "leftovers", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_leaky.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_leaked_region_and_process_fail_the_session(tmp_path):
    name = f"/dev/shm/ftmb-test-{uuid.uuid4().hex[:8]}"
    pidfile = tmp_path / "pid"
    try:
        proc = pytest_run(tmp_path, f"""
            import os, subprocess
            def test_leaks():
                open({name!r}, "w").close()
                p = subprocess.Popen(["sleep", "60"], env=dict(os.environ, FTMB_SESSION="leaky"))
                open({str(pidfile)!r}, "w").write(str(p.pid))
            """)
        pid = int(pidfile.read_text())
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "1 passed" in proc.stdout, proc.stdout
        assert "leftover check: 2 thing(s) of this test session outlived it:" in proc.stdout, proc.stdout
        assert f"  {name}" in proc.stdout and f"  pid {pid}: sleep 60" in proc.stdout, proc.stdout
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        Path(name).unlink(missing_ok=True)


def test_a_session_that_cleans_up_passes(tmp_path):
    proc = pytest_run(tmp_path, """
        import os, subprocess
        def test_tidy():
            with open("/dev/shm/ftmb-test-tidy-%d" % os.getpid(), "w"):
                pass
            os.unlink("/dev/shm/ftmb-test-tidy-%d" % os.getpid())
            subprocess.run(["true"], env=dict(os.environ, FTMB_SESSION="tidy"), check=True)
        """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "leftover check" not in proc.stdout
