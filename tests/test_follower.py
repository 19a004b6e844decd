"""The follower (`run --backup follower`, FTMB_MODE=follow): a process of the master's binary replays
the log as the output logger stores it, its outputs dropped; when the master is SIGKILLed it
replays the tail and goes live. Each failover is checked by `verify` (exactly-once release against
an uninterrupted run, the example's invariants) and by the verification replay (every released
packet regenerated with the same bytes). Also: a follower that dies leaves the master forwarding,
and a follower without follow regions fails in one line. No timing is asserted (bench/follower.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
BIN = Path(sys.executable).parent
L2FWD = Path("/usr/share/dpdk/examples/l2fwd/main.c")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    import crash_trials
    d = tmp_path_factory.mktemp("instrumented")
    crash_trials.build(d)
    return d


def _assert_follower_took_over(res, verdict, what):
    assert res.ok, f"{what}: {res.failure}\n{res.nf_stderr[-2000:]}"
    assert verdict.ok, f"{what}: " + "\n".join(str(v) for v in verdict.violations[:10])
    assert res.failover is not None, f"{what}: the master finished before the kill"
    assert res.failover.follower and res.failover.recovered, f"{what}: {res.failover}"
    assert res.held == 0
    check = res.replay_check
    assert check is not None and check.failure is None, check
    assert check.compared == res.released > 0 and check.mismatches == 0, check
    assert res.follower_lag is not None and res.follower_lag.samples > 0, "no lag samples: it did not follow"
    follower = next(p for p in res.processes if p.name == "follower")
    assert "ftmb: follower: the master" in follower.stderr_tail, follower.stderr_tail


@pytest.mark.parametrize("workers,kill_at", [(2, 1.6), (2, 2.4), (3, 1.8), (3, 2.1)])
def test_nat_master_killed_follower_goes_live(build_dir, tmp_path, workers, kill_at):
    """3000 packets at 1000 packets/s: the kill falls while the master forwards (after its start-up,
    which takes up to a second on a loaded machine, and before the end of its input). Several
    workers: at this pace a one-worker NAT's bytes are not those of an uninterrupted run even
    without a failover (its bindings expire on virtual time, which the input logger's ticks drive;
    the standby shows the same difference), so verify compares them only through the replay check."""
    import crash_trials
    res, verdict = crash_trials.trial(build_dir, "nat", workers, kill_at, tmp_path, rate=1000, follower=True)
    _assert_follower_took_over(res, verdict, f"nat, {workers} workers, kill at {kill_at} s")


@pytest.fixture(scope="module")
def l2fwd(tmp_path_factory):
    if not L2FWD.is_file():
        pytest.fail(f"{L2FWD} missing: install dpdk-doc and libdpdk-dev (./dev.sh does)")
    d = tmp_path_factory.mktemp("l2fwd")
    shutil.copy(L2FWD, d / "main.c")
    cflags, libs = (subprocess.run(["pkg-config", opt, "libdpdk"], capture_output=True, text=True,
                                   check=True).stdout.split() for opt in ("--cflags", "--libs"))
    subprocess.run([str(BIN / "ftmb-cc"), "-O2", *cflags, "main.c", "-o", "l2fwd", *libs], cwd=d, check=True,
                   capture_output=True, timeout=300)
    subprocess.run([str(BIN / "ftmb-instrument"), "traffic", "in.pcap", "--seed", "1", "--flows", "100",
                    "--packets", "3000"], cwd=d, check=True, capture_output=True, timeout=60)
    return d


def _l2fwd_cmd(prefix: str, extra: list[str]) -> list[str]:
    return [str(BIN / "ftmb-instrument"), "run", "--json", "--in", "in.pcap", "--out", f"{prefix}.pcap",
            "--queues", "2", "--rate", "2000", "--backup", "follower", *extra,
            "--", "./l2fwd", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", f"--file-prefix={prefix}",
            "--vdev", "net_null0", "--vdev", "net_null1", "--lcores", "(0-2)@(0,1)", "--", "-p", "0x3", "-T", "0"]


@pytest.mark.parametrize("kill_at", [1.0, 1.4])
def test_l2fwd_master_killed_follower_goes_live(l2fwd, kill_at):
    """Unmodified DPDK l2fwd: its per-process MAC address reaches the follower through the log."""
    prefix = f"ftmbfl_{os.getpid()}_{int(kill_at * 10)}"
    proc = subprocess.run(_l2fwd_cmd(prefix, ["--kill-master-at", str(kill_at)]), cwd=l2fwd, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["failover"] is not None and res["failover"]["follower"], res["failover"]
    assert res["failover"]["live_ms"] is not None, res["failover"]
    check = res["replay_check"]
    assert check["failure"] is None and check["mismatches"] == 0, check
    assert check["compared"] == res["released"] == res["output_packets"] > 0, check
    assert res["follower_lag"]["samples"] > 0


def _pids_with_env(marker: bytes) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "environ").read_bytes().split(b"\0"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_follower_killed_master_forwards_on(l2fwd):
    """SIGKILL the follower mid-run: the master keeps forwarding every packet, the output logger
    reports the loss once, and the run says fault tolerance was lost (no failure)."""
    prefix = f"ftmbfk_{os.getpid()}"
    env = dict(os.environ, FTMB_TEST_MARK=prefix)
    run = subprocess.Popen(_l2fwd_cmd(prefix, ["--failover"]), cwd=l2fwd, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    marker = b"FTMB_MODE=follow"
    follower = None
    deadline = time.monotonic() + 60
    while follower is None and time.monotonic() < deadline and run.poll() is None:
        mine = set(_pids_with_env(f"FTMB_TEST_MARK={prefix}".encode()))
        found = [p for p in _pids_with_env(marker) if p in mine]
        follower = found[0] if found else None
        time.sleep(0.05)
    assert follower is not None, "no follower process found"
    time.sleep(0.5)
    os.kill(follower, signal.SIGKILL)
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err[-3000:]
    res = json.loads(out)
    assert res["failover"] is None
    assert res["fault_tolerance_lost"] and "follower" in res["fault_tolerance_lost"], res["fault_tolerance_lost"]
    assert res["released"] == res["output_packets"] == 3000 and res["held"] == 0
    ol = next(p for p in res["processes"] if p["name"] == "output-logger")
    assert f"the follower (pid {follower}) died" in ol["stderr_tail"], ol["stderr_tail"]


def test_follow_without_follow_regions_is_one_line(build_dir, tmp_path):
    """A follower started against loggers without --follow: one line naming what is missing, exit != 0."""
    env = dict(os.environ, FTMB_MODE="follow", FTMB_SESSION=f"nofollow{os.getpid()}", FTMB_ATTACH_TIMEOUT_MS="50")
    proc = subprocess.run([str(build_dir / "nat"), "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                           f"--file-prefix=ftnf{os.getpid()}", "--vdev", "net_null0", "--"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ftmb:")]
    assert lines and "start both loggers with --follow" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
