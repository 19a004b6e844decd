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
import re
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


@pytest.mark.parametrize("workers,kill_at", [(2, 2.0), (2, 3.5), (3, 2.5), (3, 3.0)])
def test_nat_master_killed_follower_goes_live(build_dir, tmp_path, workers, kill_at):
    """6000 packets at 1000 packets/s: the kill falls while the master forwards, kill_at seconds
    after it took its first input (counted from its start, a start-up of more than 1.6 s on a
    loaded machine had the kill land before the master attached: an empty log, no lag sample, a
    failed test), at least 2 s after it (the follower's own start-up, at a load of 20, outlasted
    1.4 s: it had replayed nothing, no lag sample) and 2.5 s before the end of its input (the
    run may see the first input late on a loaded machine). Several
    workers: at this pace a one-worker NAT's bytes are not those of an uninterrupted run even
    without a failover (its bindings expire on virtual time, which the input logger's ticks drive;
    the standby shows the same difference), so verify compares them only through the replay check."""
    import crash_trials
    res, verdict = crash_trials.trial(build_dir, "nat", workers, kill_at, tmp_path, rate=1000, follower=True,
                                      kill_from_input=True, packets=6000)
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


def _l2fwd_cmd(prefix: str, extra: list[str], rate: int = 2000) -> list[str]:
    return [str(BIN / "ftmb-instrument"), "run", "--json", "--in", "in.pcap", "--out", f"{prefix}.pcap",
            "--queues", "2", "--rate", str(rate), "--backup", "follower", *extra,
            "--", "./l2fwd", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", f"--file-prefix={prefix}",
            "--vdev", "net_null0", "--vdev", "net_null1", "--lcores", "(0-2)@(0,1)", "--", "-p", "0x3", "-T", "0"]


@pytest.mark.parametrize("kill_at", [0.6, 1.0])
def test_l2fwd_master_killed_follower_goes_live(l2fwd, kill_at):
    """Unmodified DPDK l2fwd: its per-process MAC address reaches the follower through the log. The
    input lasts 1.5 s (3000 packets at 2000/s) from the master's first one."""
    prefix = f"ftmbfl_{os.getpid()}_{int(kill_at * 10)}"
    # (counted from the master's first input: a loaded machine's start-up may outlast kill_at; and
    # 10 s to stop after the drain, not 3: at a load of 18 the live follower took longer to exit)
    proc = subprocess.run(_l2fwd_cmd(prefix, ["--kill-master-at", str(kill_at), "--kill-from-input", "--grace", "10"]),
                          cwd=l2fwd, capture_output=True, text=True, timeout=180)
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


def _maps_follow_regions(pid: int) -> bool:
    try:
        return ".infol" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_follower_killed_master_forwards_on(l2fwd):
    """SIGKILL the follower mid-run: the master keeps forwarding every packet, the output logger
    reports the loss once, and the run says fault tolerance was lost (no failure)."""
    prefix = f"ftmbfk_{os.getpid()}"
    env = dict(os.environ, FTMB_TEST_MARK=prefix)
    # 500 packets/s: 6 s of input, so that the follower's start-up on a loaded machine does not
    # outlast the whole run (at 2000/s the run had finished, and the follower exited, first)
    run = subprocess.Popen(_l2fwd_cmd(prefix, ["--failover"], rate=500), cwd=l2fwd, stdout=subprocess.PIPE,
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
    # killed once it follows (its follow regions mapped: it names itself to the output logger right
    # after), not at a fixed delay: on a loaded machine its start-up took longer than 0.5 s, and the
    # output logger never knew the follower it was to report
    while time.monotonic() < deadline and not _maps_follow_regions(follower):
        assert Path(f"/proc/{follower}").exists() and run.poll() is None, "the follower exited before it followed"
        time.sleep(0.05)
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


RUNTIME_BUILD = ROOT / "runtime" / "build"


def test_a_starved_logger_does_not_end_the_follower(tmp_path):
    """Both loggers stopped (SIGSTOP) for 1.5 s, far longer than the follower's heartbeat timeout
    (FTMB_PEER_TIMEOUT_MS=200; the master's is 60 s): what a very loaded machine does to them. A
    follower judges its loggers by their processes (alive: waited for), so it keeps following and,
    when the master finishes, exits 0; it must not declare a logger gone, end its input and abort
    (CI: `the input logger ... is gone (no heartbeat for 10000 ms)` ended a healthy session's
    follower)."""
    from test_runtime_pipeline import traffic, write_pcap
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    write_pcap(tmp_path / "in.pcap", traffic(flows=8, per_flow=500))  # 4000 packets at 2000/s: 2 s
    session = f"fst-{os.getpid()}"
    ol = subprocess.Popen([RUNTIME_BUILD / "ftmb-output-logger", "--session", session, "--out", tmp_path / "out.pcap",
                           "--threads", "3", "--follow"], stderr=subprocess.PIPE, text=True)
    il = subprocess.Popen([RUNTIME_BUILD / "ftmb-input-logger", "--session", session, "--in", tmp_path / "in.pcap",
                           "--queues", "2", "--rate", "2000", "--follow"], stderr=subprocess.PIPE, text=True)
    env = dict(os.environ, FTMB_SESSION=session)
    master = follower = None
    try:
        master = subprocess.Popen(["timeout", "120", RUNTIME_BUILD / "ftmb-test-fwd", "2"], text=True,
                                  env=dict(env, FTMB_MODE="record", FTMB_PEER_TIMEOUT_MS="60000"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        follower = subprocess.Popen(["timeout", "120", RUNTIME_BUILD / "ftmb-test-fwd", "2"], text=True,
                                    env=dict(env, FTMB_MODE="follow", FTMB_PEER_TIMEOUT_MS="200"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        for p in (il, ol):
            p.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        for p in (il, ol):
            p.send_signal(signal.SIGCONT)
        _, merr = master.communicate(timeout=120)
        _, ferr = follower.communicate(timeout=120)
        assert master.returncode == 0, merr
        assert "is gone" not in ferr, ferr
        assert follower.returncode == 0 and "finished; nothing to take over" in ferr, ferr
        _, olerr = ol.communicate(timeout=60)
        il.communicate(timeout=60)
        assert ol.returncode == 0, olerr
    finally:
        for p in (master, follower, ol, il):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        for suffix in ("in", "out", "fol", "infol"):
            Path(f"/dev/shm/ftmb-{session}.{suffix}").unlink(missing_ok=True)


def test_follower_keeps_up_while_the_master_idles(build_dir, tmp_path):
    """After the input's end the master idles (quiet polls, idle sleeps: no record). The follower
    must still have replayed every record the master logged: a quiet-capable operation needs the
    thread's next record, not the next record that carries the quiet count, which the master
    writes only at its next loud operation (here never). Waiting for it stalled one NAT worker at
    its expiry scan and the other at the scan's locks (`thread 2 has waited 10000 ms for object
    0`), so the follower took over thousands of records behind. Killed 2 s after the drain, it
    takes over with none left to replay."""
    import crash_trials
    from ftmb_instrument import run as runlib
    b = ROOT / "runtime" / "build"
    trace = crash_trials.trace_for("nat", tmp_path, 5, 1000)
    session = f"fidle-{os.getpid()}"
    ol = subprocess.Popen([b / "ftmb-output-logger", "--session", session, "--out", tmp_path / "out.pcap", "--follow",
                           "--until-signal", "--log", tmp_path / "ftmb.log"], stderr=subprocess.DEVNULL)
    il = subprocess.Popen([b / "ftmb-input-logger", "--session", session, "--in", trace, "--queues", "2", "--rate",
                           "1000", "--follow", "--until-signal"], stderr=subprocess.DEVNULL)
    env = dict(os.environ, FTMB_SESSION=session, FTMB_PEER_TIMEOUT_MS="60000")
    argv = [*runlib.same_addresses([build_dir / "nat"]), *crash_trials.EAL, "--lcores", "(0-2)@(0,1)", "--vdev",
            "net_null0"]
    procs = []
    try:
        master = subprocess.Popen([*argv, f"--file-prefix=fim{os.getpid()}", "--"], env=dict(env, FTMB_MODE="record"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(master)
        follower = subprocess.Popen([*argv, f"--file-prefix=fif{os.getpid()}", "--"], text=True,
                                    env=dict(env, FTMB_MODE="follow"), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        procs.append(follower)
        deadline = time.monotonic() + 120
        region = None
        while time.monotonic() < deadline and master.poll() is None:
            try:
                region = region or runlib.InputRegion(session)
                if region.drained():
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert region is not None and region.drained(), "the master did not take its whole input"
        region.close()
        time.sleep(2.0)
        os.killpg(master.pid, signal.SIGKILL)
        line = ""
        while time.monotonic() < deadline and "taking over" not in line:
            line = follower.stderr.readline()
            assert line or follower.poll() is None, "the follower exited without taking over"
        m = re.search(r"taking over at \d+ ns with (\d+) records to replay", line)
        assert m and int(m.group(1)) == 0, line
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        for p in (ol, il):
            p.terminate()
            p.wait(timeout=30)
        for suffix in ("in", "out", "fol", "infol"):
            Path(f"/dev/shm/ftmb-{session}.{suffix}").unlink(missing_ok=True)
