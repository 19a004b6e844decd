"""Roles on separate hosts (issue 13, first slice): each role in its own network namespace with its
own /dev/shm, the links between them TCP through ftmb-relay over veth pairs and a bridge.

The NAT example (built with ftmb-cc, one worker, so its output is a function of its input) runs as
the master on host `m`; the input logger and the output logger each run on their own host, and the
cold backup on host `b`. The master's host fails mid-run (every process SIGKILLed, the namespace
deleted) at several instants; the backup fetches the log from the output logger's host, replays it
from the start and goes live. Then a verification replay on host `b` re-executes the complete log
against the same loggers. Checks: OUT holds every input packet the same NAT forwards in a one-host run (by the
packets' tags), each exactly once, and the NAT's invariants hold on it; the verification replay regenerated every released packet and the output logger
found 0 mismatches; nothing was held. The same with a follower on host b instead of the cold
backup (the follow links of ftmb-relay; NAT at 3 instants, l2fwd at 2), and the follower's host
destroyed instead (the master forwards on; the output logger reports the lost fault tolerance).
With --follow-forget (the loggers forget what the follower took or applied) the same takeover,
checked without a verification replay (the log's start is gone), and the loggers' logs bounded.

Needs root (ip netns) and libdpdk-dev; both are this project's test machine (dev.sh installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from ftmb_instrument import invariants as inv, pcap, roles, run as runlib, traffic, verify
from ftmb_instrument.errors import FtmbError
from ftmb_instrument.netns import Topology

ROOT = Path(__file__).resolve().parents[1]
FTMB_CC = ROOT / ".venv" / "bin" / "ftmb-cc"
EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]
PACKETS, RATE = 6000, 3000  # about 2 s of input


def nat_argv(nat: Path, tag: str) -> list[str]:
    return [str(nat), *EAL, f"--file-prefix=ftmbh{os.getpid()}{tag}", "--lcores", "(0-1)@(0,1)",
            "--vdev", "net_null0", "--"]


@pytest.fixture(scope="module")
def nat(tmp_path_factory):
    build = tmp_path_factory.mktemp("nat")
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    proc = subprocess.run(["make", "-C", str(ROOT / "examples"), f"BUILD={build}", f"CC={FTMB_CC}", f"{build}/nat"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build / "nat"


def _nat_trace(tmp_path_factory, name: str, seed: int, packets: int) -> Path:
    path = tmp_path_factory.mktemp(name) / "trace.pcap"
    traffic.generate(path, seed=seed, flows=150, packets=packets, duration_s=0.5)
    return path


def _nat_reference(nat, trace, tmp_path_factory, name: str, rate: int, packets: int) -> Counter:
    """What the NAT releases for `trace` in a one-host run (record mode, no failure), by tag."""
    out = tmp_path_factory.mktemp(name) / "released.pcap"
    res = runlib.run(nat_argv(nat, name), trace, out, queues=1, rate=rate, timeout_s=120)
    assert res.ok and res.held == 0, res.failure
    released = [p.data for p in pcap.read_pcap(out)]
    assert len(released) > packets // 4  # (inbound packets without a mapping are dropped)
    return Counter(tags(released))


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    return _nat_trace(tmp_path_factory, "trace", 13, PACKETS)


@pytest.fixture(scope="module")
def reference(nat, trace, tmp_path_factory):
    return _nat_reference(nat, trace, tmp_path_factory, "ref", RATE, PACKETS)


def tags(packets: list[bytes]) -> list[int | None]:
    return [pcap.packet_tag(p) for p in packets]


def released(path: Path) -> list[bytes]:
    try:
        return [p.data for p in pcap.read_pcap(path)]
    except (OSError, ValueError, FtmbError):  # (OUT read while a packet is being written)
        return []


def wait_released(path: Path, n: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    got = 0
    while time.monotonic() < deadline:
        got = len(released(path))
        if got >= n:
            return got
        time.sleep(0.1)
    return got


def check_nat(trace: Path, out: Path, session: str = "hosts") -> list:
    """The NAT oracle with the run's arrival times (the input logger's --arrivals, OUT.arrivals, and the
    session's clock start): it allows a binding that surely expired (a takeover seconds later moves
    the clock)."""
    arrivals = verify.arrivals_by_tag(trace, out, session)
    assert arrivals and arrivals.times, f"no arrival times beside {out}"
    return inv.check_nat([trace], [out], burst=None, arrivals=arrivals.times, clock_start_ns=arrivals.start_ns)


def master_end_line(role: roles.Role, since: int) -> re.Match | None:
    """The output logger's report of a master's end, after the first `since` such reports."""
    lines = re.findall(r"the master \(pid \d+\) (?:finished|was stopped by a signal); every output handled; "
                       r"released (\d+) duplicates (\d+) mismatches (\d+)", role.err("output-logger"))
    return lines[since] if len(lines) > since else None


@pytest.mark.parametrize("kill_at", [0.4, 1.0, 1.6])
def test_nat_survives_the_loss_of_the_masters_host(nat, trace, reference, kill_at, tmp_path):
    total = sum(reference.values())
    s = "hosts"
    with Topology(["il", "ol", "m", "b"]) as topo:
        r = {h: roles.Role(h, s, tmp_path / h, topo.prefix(h), topo.shm(h)) for h in topo.hosts}
        verifier = roles.Role("verify", s, tmp_path / "verify", topo.prefix("b"), topo.shm("b"))
        try:
            in_addr, out_addr = f"{topo.addr('il')}:7001", f"{topo.addr('ol')}:7002"
            out, log = tmp_path / "out.pcap", tmp_path / "ftmb.log"
            roles.start_input_logger(r["il"], trace, in_addr, rate=RATE, arrivals=runlib.arrivals_path(out))
            roles.start_output_logger(r["ol"], out, log, out_addr)
            master = roles.start_master(r["m"], nat_argv(nat, "m"), in_addr, out_addr)
            time.sleep(kill_at)
            assert master.poll() is None, r["m"].err("program")
            killed = topo.fail("m")
            before = len(released(out))
            assert killed >= 3 and before < total  # the program and both relays; not finished

            backup = roles.start_master(r["b"], nat_argv(nat, "b"), in_addr, out_addr, kind="backup",
                                        log=tmp_path / "backup.log")
            got = wait_released(out, total, 120)
            assert got == total, f"released {got} of {total}; backup: {r['b'].err('program')[-2000:]}"
            assert backup.poll() is None, r["b"].err("program")
            os.killpg(backup.pid, signal.SIGINT)  # the end of the run: the NAT stops through its handler
            assert backup.wait(timeout=60) == 0, r["b"].err("program")[-2000:]
            if (tmp_path / "backup.log").stat().st_size:  # (empty: the master died before it attached)
                assert "live (recording)" in r["b"].err("program")
            # its relays forward the end and finish: the verification replay gets fresh ones
            assert r["b"].wait_all(30) == {"relay-in": 0, "relay-out": 0, "program": 0}
            deadline = time.monotonic() + 30
            while master_end_line(r["ol"], 0) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert master_end_line(r["ol"], 0), r["ol"].err("output-logger")

            v = roles.start_master(verifier, nat_argv(nat, "v"), in_addr, out_addr, kind="verify",
                                   log=tmp_path / "verify.log")
            assert v.wait(timeout=120) == 0, verifier.err("program")[-2000:]
            deadline = time.monotonic() + 30
            while master_end_line(r["ol"], 1) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            end_backup, end_verify = master_end_line(r["ol"], 0), master_end_line(r["ol"], 1)
            assert end_verify, r["ol"].err("output-logger")
            for role in (r["il"], r["ol"]):
                role.stop()
            stats = re.search(r"released (\d+) held (\d+) records \d+ corrupt (\d+) duplicates (\d+) .*"
                              r"mismatches (\d+)", r["ol"].err("output-logger"))
            assert stats, r["ol"].err("output-logger")
            rel, held, corrupt, _, mismatches = map(int, stats.groups())
            assert (rel, held, corrupt, mismatches) == (total, 0, 0, 0)
            # the verification replay regenerated every released packet, and each matched
            assert int(end_verify[1]) - int(end_backup[1]) == total
            # every input packet the one-host run forwards is released once (its tag: the NAT's
            # choices, ports and IP ids, may differ between two runs' timings, not which packets)
            assert Counter(tags(released(out))) == reference
            assert max(reference.values()) == 1
            r["il"].stop()  # (it writes the arrival times at its exit)
            assert check_nat(trace, out) == []
        finally:
            for role in (*r.values(), verifier):
                role.stop()


@pytest.mark.parametrize("kill_at", [0.3, 0.8, 1.3])  # (of about 2 s of input from the master's first take)
def test_nat_follower_on_its_own_host_takes_over(nat, trace, reference, kill_at, tmp_path):
    """The follower on host b (its own namespace and /dev/shm) replays the log as it arrives over the
    follow links (ftmb-relay export --region fol|infol, import --follow) from the master's start;
    the master's host fails and the follower takes over: no log fetched, only the tail replayed.
    OUT holds every packet the one-host run forwards, exactly once; the verification replay on a
    fifth host regenerates every released packet with 0 mismatches."""
    out = tmp_path / "out.pcap"
    res = roles.run_on_hosts(nat_argv(nat, f"f{kill_at}"), trace, out, tmp_path, rate=RATE, kill_master_at=kill_at,
                             backup="follower")
    assert res.ok, res.failure + "\n" + "\n".join(f"{k}: {v[-800:]}" for k, v in res.logs.items())
    assert res.killed >= 3 and res.released_at_kill < sum(reference.values())
    assert res.backup_live and 0 < res.takeover_ms <= res.live_ms, res.logs["b/program"][-2000:]
    assert "taking over at" in res.logs["b/program"] and "fetch" not in res.logs["b/relay-out"]
    assert "the session link's turn came" in res.logs["b/relay-out"]
    assert (res.held, res.mismatches) == (0, 0) and res.verified == res.released == sum(reference.values())
    assert Counter(tags(released(out))) == reference
    assert check_nat(trace, out) == []
    assert res.follower_lag.startswith("follower lag_ms"), res.logs["ol/output-logger"][-1000:]


FORGET_PACKETS, FORGET_RATE = 20000, 5000  # about 4 s: many times what the loggers keep when they forget


@pytest.fixture(scope="module")
def long_trace(tmp_path_factory):
    return _nat_trace(tmp_path_factory, "long", 17, FORGET_PACKETS)


@pytest.fixture(scope="module")
def long_reference(nat, long_trace, tmp_path_factory):
    return _nat_reference(nat, long_trace, tmp_path_factory, "lref", FORGET_RATE, FORGET_PACKETS)


def test_nat_follower_on_its_own_host_takes_over_with_forgetting_loggers(nat, long_trace, long_reference, tmp_path):
    """--follow-forget across hosts: the follower's position goes back over the follow links (the
    entries it took: F_FREED; the records it applied: F_APPLIED) and each logger forgets what
    precedes it; the master's host fails at 2.5 s of about 4 s and the takeover is served each queue
    again from the follower's position, not from entry 0 (which the input logger no longer has). OUT
    holds every packet the one-host run forwards, exactly once; the outputs the takeover sent again
    match the released ones; nothing was held. And the loggers forgot while the master ran: at no
    time did either keep all it had logged but the last trimming step (4096 entries per queue or
    records per thread; without forgetting they keep everything). What they keep is the follower's
    lag plus that step, the lag being this machine's load (bench_hosts.py --forget-trials gives the
    figures; no bound in time is asserted). After the takeover nothing follows the new master, and
    the loggers keep what comes."""
    out = tmp_path / "out.pcap"
    res = roles.run_on_hosts(nat_argv(nat, "fg"), long_trace, out, tmp_path, rate=FORGET_RATE, kill_master_at=2.5,
                             backup="follower", forget=True)
    assert res.ok, res.failure + "\n" + "\n".join(f"{k}: {v[-800:]}" for k, v in res.logs.items())
    total = sum(long_reference.values())
    assert res.killed >= 3 and res.released_at_kill < total
    assert res.backup_live and 0 < res.takeover_ms <= res.live_ms, res.logs["b/program"][-2000:]
    assert "the session link's turn came" in res.logs["b/relay-in"], res.logs["b/relay-in"]
    assert "cannot serve again" not in res.logs["il/input-logger"], res.logs["il/input-logger"]
    assert (res.held, res.mismatches) == (0, 0) and res.released == total
    assert Counter(tags(released(out))) == long_reference
    assert check_nat(long_trace, out) == []
    for what, held in (("entries", res.entries_held), ("records", res.records_held)):
        kept, most, logged, most_following, logged_following = held
        print(f"{what}: kept {kept} at the end, {most} at most, of {logged}; while the master ran "
              f"{most_following} at most, of {logged_following}")
        assert kept < logged and 0 < most_following <= logged_following - 4096, (what, held)
    assert res.entries_held[2] > FORGET_PACKETS  # (every packet is an entry; ticks and EOF too)


def test_a_killed_follower_host_leaves_the_master_forwarding(nat, trace, reference, tmp_path):
    """The follower's host fails at 1.0 s: the follow export on the output logger's host loses its
    link and exits, the output logger reports the follower gone (fault tolerance lost, records kept),
    and the master forwards on to the end of its input: OUT is the one-host run's, the verification
    replay passes."""
    out = tmp_path / "out.pcap"
    res = roles.run_on_hosts(nat_argv(nat, "kf"), trace, out, tmp_path, rate=RATE, backup="follower",
                             kill_follower_at=1.0)
    assert res.ok, res.failure + "\n" + "\n".join(f"{k}: {v[-800:]}" for k, v in res.logs.items())
    assert res.killed >= 3 and 0 < res.released_at_kill < res.released
    assert "the master goes on without a backup" in res.fault_tolerance_lost, res.fault_tolerance_lost
    assert "follower's host" in res.logs["ol/relay-fol"], res.logs["ol/relay-fol"]
    assert (res.held, res.mismatches) == (0, 0) and res.verified == res.released
    assert Counter(tags(released(out))) == reference


FWD = ROOT / "runtime" / "build" / "ftmb-test-fwd"
CLI = ROOT / ".venv" / "bin" / "ftmb-instrument"


def _logger_commands(topo, trace: Path, out: Path, in_addr: str, out_addr: str, tmp_path: Path,
                     output) -> list[subprocess.Popen]:
    """`ftmb-instrument input-logger` on host il and `output-logger` on host ol (2 queues), each in
    a session of its own; their stdout and stderr go to `output`."""
    cmds = [(topo.prefix("il"), ["input-logger", str(trace), "--listen", in_addr, "--queues", "2",
                                 "--workdir", str(tmp_path / "il")]),
            (topo.prefix("ol"), ["output-logger", str(out), "--listen", out_addr, "--log", str(tmp_path / "log"),
                                 "--workdir", str(tmp_path / "ol")])]
    return [subprocess.Popen([*pre, str(CLI), *args], stdout=output, stderr=output, text=True,
                             start_new_session=True) for pre, args in cmds]


def test_the_rate_counts_from_the_remote_masters_first_take(tmp_path):
    """Across hosts the input logger's --rate still counts from the master's first take, not from its
    attach: the input export keeps each queue's first entry in the logger's ring (sent, not consumed)
    until the master took one. A master that starts 1 s after attaching (a DPDK EAL's start) gets its
    second packet then, not 5 ms after the first (the export used to take entries at the attach,
    and 1 s of input waited for the master, so a kill timed from its first take came late)."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=3, flows=4, packets=100, duration_s=0.2)
    s = "hosts"
    with Topology(["il", "ol", "m"]) as topo:
        r = {h: roles.Role(h, s, tmp_path / h, topo.prefix(h), topo.shm(h)) for h in topo.hosts}
        try:
            in_addr, out_addr = f"{topo.addr('il')}:7001", f"{topo.addr('ol')}:7002"
            out = tmp_path / "out.pcap"
            roles.start_input_logger(r["il"], trace, in_addr, rate=200, arrivals=runlib.arrivals_path(out))
            roles.start_output_logger(r["ol"], out, tmp_path / "ftmb.log", out_addr)
            master = roles.start_master(r["m"], [str(FWD), "1"], in_addr, out_addr,
                                        env=dict(os.environ, FTMB_TEST_FWD_START_MS="1000"))
            assert master.wait(timeout=120) == 0, r["m"].err("program")
        finally:
            for role in r.values():
                role.stop()
    times = sorted(int(ln.split()[1]) for ln in runlib.arrivals_path(out).read_text().splitlines()[1:])
    assert len(times) == 100
    assert times[1] - times[0] >= 800_000_000, (times[1] - times[0]) / 1e9
    assert times[-1] - times[1] >= 400_000_000, (times[-1] - times[1]) / 1e9  # the rest at the rate


def test_each_role_as_its_own_command(tmp_path):
    """`ftmb-instrument input-logger|output-logger|master` on three hosts (ftmb-test-fwd, 2 queues):
    every packet released once; the master's exit status is the command's; a master whose input
    logger cannot be reached fails with one line naming the address, no traceback."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=3, flows=40, packets=2000, duration_s=0.5)
    with Topology(["il", "ol", "m"]) as topo:
        in_addr, out_addr = f"{topo.addr('il')}:7101", f"{topo.addr('ol')}:7102"
        out = tmp_path / "out.pcap"
        loggers = _logger_commands(topo, trace, out, in_addr, out_addr, tmp_path, subprocess.PIPE)
        try:
            m = subprocess.run([*topo.prefix("m"), str(CLI), "master", "--connect-in", in_addr, "--connect-out",
                                out_addr, "--workdir", str(tmp_path / "m"), "--", str(FWD), "2"],
                               capture_output=True, text=True, timeout=120)
            assert m.returncode == 0, m.stdout + m.stderr
            assert wait_released(out, 2000, 30) == 2000
            assert len(set(released(out))) == 2000
            bad = subprocess.run([*topo.prefix("m"), str(CLI), "master", "--connect-in", f"{topo.addr('il')}:7999",
                                  "--connect-out", out_addr, "--timeout-ms", "200", "--session", "other",
                                  "--workdir", str(tmp_path / "bad"), "--", str(FWD), "2"],
                                 capture_output=True, text=True, timeout=120, env=dict(os.environ))
            assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
            assert f"cannot connect to {topo.addr('il')}:7999" in bad.stderr, bad.stderr
        finally:
            for p in loggers:
                os.killpg(p.pid, signal.SIGTERM)
            for p in loggers:
                _, err = p.communicate(timeout=30)
        assert [p.returncode for p in loggers] == [0, 0], err


def test_a_master_idle_after_its_input_exits_once_its_loggers_are_gone(tmp_path):
    """`ftmb-instrument master` of a program that polls on after its input ended (as DPDK apps do;
    FTMB_TEST_FWD_FOREVER=1), without checkpoints: its receives check no peers after the end, so once
    both loggers' hosts fail (the master's relays lose their links and exit) the runtime's keeper
    thread must find the session gone and end the program (it used to poll forever: nothing outlives
    a session)."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=5, flows=20, packets=500, duration_s=0.2)
    with Topology(["il", "ol", "m"]) as topo:
        in_addr, out_addr = f"{topo.addr('il')}:7103", f"{topo.addr('ol')}:7104"
        out = tmp_path / "out.pcap"
        loggers = _logger_commands(topo, trace, out, in_addr, out_addr, tmp_path, subprocess.DEVNULL)
        m = subprocess.Popen([*topo.prefix("m"), str(CLI), "master", "--connect-in", in_addr, "--connect-out",
                              out_addr, "--workdir", str(tmp_path / "m"), "--", str(FWD), "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env=dict(os.environ, FTMB_TEST_FWD_FOREVER="1"))
        try:
            assert wait_released(out, 500, 60) == 500
            assert m.poll() is None, "the program polls on after its input ended"
            for host, p in zip(("il", "ol"), loggers):
                assert topo.fail(host) > 0
                p.wait(timeout=30)
            try:
                m.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("the master outlived its session's loggers by 60 s")
            err = (tmp_path / "m").glob("*.err")
            assert any("is gone" in e.read_text() for e in err), "the program never said its session was gone"
        finally:
            for p in [m, *loggers]:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=30)


def test_netns_run_command(tmp_path):
    """`ftmb-instrument netns-run --kill-master-at`: the whole story in one command (ftmb-test-fwd)."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=7, flows=40, packets=4000, duration_s=0.5)
    p = subprocess.run([str(CLI), "netns-run", str(trace), str(tmp_path / "out.pcap"), "--kill-master-at", "0.5",
                        "--queues", "2", "--rate", "4000", "--workdir", str(tmp_path / "w"), "--", str(FWD), "2"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "backup live: yes" in p.stdout and "released 4000 (4000 distinct), held 0" in p.stdout, p.stdout
    assert "replay check: 4000 regenerated, 0 mismatches" in p.stdout, p.stdout


def test_netns_run_kill_logger_command(tmp_path):
    """`netns-run --kill-logger ol --whole-host`: the output logger's host fails; one line per role,
    the master forwarding on without fault tolerance; a bad role is one line."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=7, flows=40, packets=20000, duration_s=0.5)
    p = subprocess.run([str(CLI), "netns-run", str(trace), str(tmp_path / "out.pcap"), "--kill-logger", "ol",
                        "--kill-at", "1.0", "--whole-host", "--queues", "2", "--rate", "2000", "--timeout-ms", "500",
                        "--workdir", str(tmp_path / "w"), "--", str(FWD), "2"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["il", "ol", "m"], p.stdout
    # forwarding on: still running, or finished its input (exit 0) while the loss was settling
    assert re.search(r"program (running|exit 0); ftmb: the output logger of session hosts", lines[2]), p.stdout
    m = re.match(r"output logger's host killed at 1 s; released (\d+) by then, (\d+) in the end; the master declared it gone \d+\.\d+ s after", lines[3])
    assert m and 0 < int(m[1]) == int(m[2]) < 20000, p.stdout  # nothing released after the death
    bad = subprocess.run([str(CLI), "netns-run", str(trace), str(tmp_path / "o2.pcap"), "--kill-logger", "master",
                          "--workdir", str(tmp_path / "w2"), "--", str(FWD), "2"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "master: expected il (input logger) or ol (output logger)" in bad.stderr, bad.stderr


def test_unmodified_dpdk_l2fwd_survives_the_loss_of_the_masters_host(tmp_path):
    """Debian's l2fwd (dpdk-doc sources copied at test time, built with ftmb-cc, 2 lcores on 2 ports)
    under `netns-run`: the master's host fails at 1.0 s, the cold backup replays the log and goes
    live, every released packet is regenerated by the verification replay with 0 mismatches."""
    l2fwd_netns_run(tmp_path, [], "1.0")


def l2fwd_netns_run(tmp_path: Path, extra: list[str], kill_at: str) -> subprocess.CompletedProcess:
    from dpdk_example import pkg_config, source
    src = source("l2fwd/main.c")
    shutil.copy(src, tmp_path / "main.c")
    subprocess.run([str(ROOT / ".venv" / "bin" / "ftmb-cc"), "-O2", *pkg_config("--cflags"), "main.c", "-o", "l2fwd",
                    *pkg_config("--libs")], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    traffic.generate(tmp_path / "in.pcap", seed=1, flows=100, packets=3000, duration_s=0.5)
    prefix = f"ftmbhl2_{os.getpid()}"
    p = subprocess.run([str(CLI), "netns-run", "in.pcap", "out.pcap", "--kill-master-at", kill_at, "--queues", "2",
                        "--rate", "2000", "--workdir", "w", *extra, "--",
                        str(tmp_path / "l2fwd"), "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                        f"--file-prefix={prefix}", "--vdev", "net_null0", "--vdev", "net_null1",
                        "--lcores", "(0-2)@(0,1)", "--", "-p", "0x3", "-T", "0"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"released (\d+) \((\d+) distinct\), held 0; replay check: (\d+) regenerated, 0 mismatches",
                  p.stdout)
    assert m and int(m[1]) == int(m[3]) > 0, p.stdout
    assert "backup live: yes" in p.stdout, p.stdout
    return p


@pytest.mark.parametrize("kill_at", ["0.6", "1.2"])
def test_unmodified_dpdk_l2fwd_follower_on_its_own_host_takes_over(tmp_path, kill_at):
    """The same l2fwd under `netns-run --backup follower`: the follower on its own host took over
    (its takeover line, no log fetched), then the verification replay checks every released packet."""
    p = l2fwd_netns_run(tmp_path, ["--backup", "follower"], kill_at)
    assert "follower backup); backup live: yes; took over" in p.stdout, p.stdout
    assert "follower lag_ms" in p.stdout, p.stdout
    assert "taking over at" in (tmp_path / "w" / "b" / "program.err").read_text()


def test_a_silent_link_is_reported_by_role(tmp_path):
    """The input logger's host goes silent (its interface down: no reset, no FIN): the master's input
    relay reports that host by role and address and exits 3, and the master sees its input logger
    gone; a relay given a bad address says so in one line."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    relay = ROOT / "runtime" / "build" / "ftmb-relay"
    bad = subprocess.run([str(relay), "import", "--session", "x", "--region", "in", "--connect", "10.0.0.1"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.strip() == "ftmb-relay import: --connect 10.0.0.1: expected IPV4:PORT"
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=3, flows=40, packets=20000, duration_s=0.5)
    with Topology(["il", "ol", "m"]) as topo:
        r = {h: roles.Role(h, "silent", tmp_path / h, topo.prefix(h), topo.shm(h)) for h in topo.hosts}
        try:
            in_addr, out_addr = f"{topo.addr('il')}:7301", f"{topo.addr('ol')}:7302"
            roles.start_input_logger(r["il"], trace, in_addr, queues=2, rate=2000, timeout_ms=500)
            roles.start_output_logger(r["ol"], tmp_path / "out.pcap", tmp_path / "log", out_addr, timeout_ms=500)
            m = roles.start_master(r["m"], [FWD, "2"], in_addr, out_addr, timeout_ms=500)
            assert wait_released(tmp_path / "out.pcap", 100, 60) >= 100
            subprocess.run(["ip", "-n", topo.hosts["il"][0], "link", "set", "eth0", "down"], check=True)
            relay_in = next(p for w, p in r["m"].procs if w == "relay-in")
            assert relay_in.wait(timeout=60) == 3
            assert r["m"].err("relay-in").strip() == (  # (its kernel's silence: TCP_USER_TIMEOUT)
                f"ftmb-relay import in: the input logger's host {in_addr}: no word within the timeout (its host "
                "acknowledged nothing: the host or the link is down)"), r["m"].err("relay-in")
            m.wait(timeout=60)  # ftmb-test-fwd ends when its input does
            assert "the input logger of session silent" in r["m"].err("program"), r["m"].err("program")
        finally:
            for role in r.values():
                role.stop()


# A logger (or its whole host) killed mid-run, each role on its own host: the master does what
# runtime/README.md documents (The loggers, Faults), reached through the relays, and OUT keeps what
# was released (it is written as released). A NAT run of 12,000 packets at 3,000/s (about 4 s).
@pytest.mark.parametrize("whole_host", [False, True], ids=["process", "host"])
@pytest.mark.parametrize("victim", ["ol", "il"])
def test_a_killed_logger_across_hosts(nat, tmp_path, victim, whole_host):
    trace = tmp_path / "trace.pcap"
    traffic.generate(trace, seed=7, flows=150, packets=12000, duration_s=0.5)
    out = tmp_path / "out.pcap"
    res = roles.logger_loss_on_hosts(nat_argv(nat, f"l{victim}"), trace, out, tmp_path, victim=victim,
                                     kill_at=1.5, whole_host=whole_host, rate=3000)
    logs = "\n".join(res.report)
    print(f"{victim} {whole_host}: released {res.released_at_kill} at the kill, {res.released} in the end, "
          f"declared gone {res.declared_after_s:.2f} s after the kill\n{logs}")
    assert res.ok, res.failure + "\n" + logs
    assert [line.split(":")[0] for line in res.report] == ["il", "ol", "m"]
    assert f"the {roles.LOGGERS[victim]} of session hosts" in res.master_said
    assert res.declared_after_s > 0
    assert res.released_at_kill > 0  # the output logger had been releasing
    assert res.released >= res.released_at_kill
    m_line = res.report[2]
    assert res.master_said in m_line
    if victim == "ol":
        assert res.master_rc is None and "program running" in m_line  # forwarding without fault tolerance
        assert "no fault tolerance" in res.master_said, res.master_said
    else:
        assert res.master_rc == 0 and "program exit 0" in m_line  # the input ended: a clean stop
        assert len(released(out)) == res.released


def test_netns_run_follower_options_are_checked(tmp_path):
    """A wrong --backup, or --kill-follower-at without a follower: one line, nonzero, no traceback,
    before any namespace is made."""
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=7, flows=4, packets=40, duration_s=0.1)
    for extra, said in ((["--backup", "warm"], "--backup warm: expected cold or follower"),
                        (["--kill-follower-at", "1"], "--kill-follower-at needs --backup follower"),
                        (["--backup", "follower", "--kill-follower-at", "1", "--kill-master-at", "1"],
                         "--kill-follower-at needs --backup follower, and no --kill-master-at"),
                        (["--follow-forget"], "--follow-forget needs --backup follower")):
        p = subprocess.run([str(CLI), "netns-run", str(trace), str(tmp_path / "out.pcap"), *extra, "--workdir",
                            str(tmp_path / "w"), "--", str(FWD), "2"], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        assert said in p.stderr, p.stderr
        assert not (tmp_path / "w").exists()


def test_the_follower_as_its_own_command(nat, trace, reference, tmp_path):
    """`ftmb-instrument input-logger|output-logger --follow-listen`, `master` and `follower`, each on its
    own host: the master's host fails at 1.0 s, the follower command's program takes over and goes
    live; OUT holds every packet of the one-host run once; SIGINT stops the follower command, exit 0."""
    s = "fcmd"
    with Topology(["il", "ol", "m", "b"]) as topo:
        ia, oa = f"{topo.addr('il')}:7301", f"{topo.addr('ol')}:7302"
        fi, fo = f"{topo.addr('il')}:7303", f"{topo.addr('ol')}:7304"
        out = tmp_path / "out.pcap"
        common = ["--session", s, "--timeout-ms", "2000"]
        cmds = {"il": ["input-logger", str(trace), "--listen", ia, "--rate", str(RATE), "--follow-listen", fi],
                "ol": ["output-logger", str(out), "--listen", oa, "--log", str(tmp_path / "log"), "--follow-listen", fo],
                "m": ["master", "--connect-in", ia, "--connect-out", oa, "--", *nat_argv(nat, "cm")],
                "b": ["follower", "--connect-in", ia, "--connect-out", oa, "--follow-in", fi, "--follow-out", fo,
                      "--", *nat_argv(nat, "cb")]}
        procs = {}

        def start(h: str) -> None:
            argv = cmds[h]
            cut = argv.index("--") if "--" in argv else len(argv)
            procs[h] = subprocess.Popen([*topo.prefix(h), str(CLI), *argv[:cut], *common, "--workdir",
                                         str(tmp_path / h), *argv[cut:]], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            for h in ("il", "ol", "m"):
                start(h)
            deadline = time.monotonic() + 60  # the master's links served: its imports made its regions
            while not all((topo.shm("m") / f"ftmb-{s}.{x}").exists() for x in ("in", "out")):
                assert time.monotonic() < deadline and procs["m"].poll() is None, procs["m"].communicate()
                time.sleep(0.05)
            start("b")
            time.sleep(1.0)
            assert procs["m"].poll() is None and procs["b"].poll() is None
            topo.fail("m")
            total = sum(reference.values())
            assert wait_released(out, total, 120) == total, (tmp_path / "b" / "program.err").read_text()[-2000:]
            os.killpg(procs["b"].pid, signal.SIGINT)
            _, err = procs["b"].communicate(timeout=60)
            assert procs["b"].returncode == 0, err
            prog = (tmp_path / "b" / "program.err").read_text()
            assert "taking over at" in prog and "live (recording)" in prog, prog[-2000:]
            assert Counter(tags(released(out))) == reference
        finally:
            for h, p in procs.items():
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            for p in procs.values():
                try:
                    p.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)


def _stop(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, sig)  # (an export's children are in its group)
        except ProcessLookupError:
            pass


def test_paused_relays_are_not_lost_links_and_a_stopped_one_is(tmp_path):
    """Relays judged by their silence while they watched, not by wall time (issue 13: at load ~20 a
    healthy follower's relays were declared dead). ftmb-test-fwd (2 queues) with a follower on its own
    host, --timeout-ms 1000 (a ping every 250 ms), the exports' --peer-timeout-ms 1500, about 9 s:
    - the whole machine pauses (every process of every host SIGSTOPped 2.5 s, longer than the link
      timeout and the master's 2 s peer timeout, then SIGCONT): nothing is declared dead;
    - the follower's out relay alone is stopped 0.6 s (past two pings, within the timeout): the same;
    - the whole run lasts past the exports' peer timeout: each logger's heartbeat (its follow region's
      too) keeps its exports serving;
    - the follower's in relay stopped (until its peer reports it): its host's kernel acknowledges on,
      but after two timeouts of watching without a word the input logger's follow export reports its
      process hung, naming
      the follower's host by role and address; the relay, continued, finds that
      link closed and names it (the follow link's address); the master forwards on to the end of its
      input."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=21, flows=60, packets=18000, duration_s=0.5)
    s = "pause"
    with Topology(["il", "ol", "m", "b"]) as topo:
        r = {h: roles.Role(h, s, tmp_path / h, topo.prefix(h), topo.shm(h)) for h in topo.hosts}
        try:
            ia, oa = f"{topo.addr('il')}:7401", f"{topo.addr('ol')}:7402"
            fi, fo = f"{topo.addr('il')}:7403", f"{topo.addr('ol')}:7404"
            roles.start_input_logger(r["il"], trace, ia, queues=2, rate=2000, timeout_ms=1000, follow_listen=fi,
                                     peer_timeout_ms=1500)
            roles.start_output_logger(r["ol"], tmp_path / "out.pcap", tmp_path / "log", oa, timeout_ms=1000,
                                      follow_listen=fo, peer_timeout_ms=1500)
            m = roles.start_master(r["m"], [FWD, "2"], ia, oa, timeout_ms=1000)
            fol = roles.start_follower(r["b"], [FWD, "2"], ia, oa, fi, fo, timeout_ms=1000)
            assert wait_released(tmp_path / "out.pcap", 200, 60) >= 200

            def quiet() -> dict[str, str]:
                """What every process said about a lost peer, and which ones ended."""
                said = {f"{h}/{w}": role.err(w) for h, role in r.items() for w, _ in role.procs}
                return {k: v for k, v in said.items() if "no word" in v or " is gone" in v or " died" in v} | {
                    f"{h}/{w}": f"exit {p.returncode}" for h, role in r.items() for w, p in role.procs
                    if p.poll() is not None}

            everything = [p for role in r.values() for _, p in role.procs]
            _stop(everything, signal.SIGSTOP)
            time.sleep(2.5)
            _stop(everything, signal.SIGCONT)
            time.sleep(1.5)
            assert quiet() == {}, quiet()
            relay_out_b = dict(r["b"].procs)["relay-out"]
            _stop([relay_out_b], signal.SIGSTOP)
            time.sleep(0.6)
            _stop([relay_out_b], signal.SIGCONT)
            time.sleep(1.0)
            assert quiet() == {}, quiet()
            assert m.poll() is None and fol.poll() is None  # (past the exports' 1.5 s peer timeout)
            relay_in_b = dict(r["b"].procs)["relay-in"]
            _stop([relay_in_b], signal.SIGSTOP)
            # Two timeouts of watching: 2 s at the least; more in wall time where the export itself
            # was not scheduled for a while (a gap between its looks counts a ping period at most).
            deadline = time.monotonic() + 20
            while "no word from its process" not in r["il"].err("relay-infol") and time.monotonic() < deadline:
                time.sleep(0.1)
            line = r["il"].err("relay-infol").strip().splitlines()[-1]  # (its child for that link exited 3)
            assert re.fullmatch(rf"ftmb-relay export infol: the follower's host {topo.addr('b')}: no word from its "
                                r"process \((\d+) ms watched; \d+ ms since the last word\)", line), line
            assert int(re.search(r"\((\d+) ms watched", line)[1]) >= 2000  # (two timeouts: its host acknowledged)
            _stop([relay_in_b], signal.SIGCONT)  # it finds its follow link closed, and names that link
            assert relay_in_b.wait(timeout=30) == 3, r["b"].err("relay-in")
            line = r["b"].err("relay-in").strip().splitlines()[-1]  # (closed, or reset: it had unread frames)
            assert re.fullmatch(rf"ftmb-relay import in: the input logger's host {fi}: the connection was (closed|lost)",
                                line), line
            assert f"did not look at its link to the input logger's host {fi} for " in r["b"].err("relay-in")
            assert m.wait(timeout=60) == 0, r["m"].err("program")  # its input ended: ftmb-test-fwd exits
            assert wait_released(tmp_path / "out.pcap", 18000, 60) == 18000  # every packet, forwarded on
        finally:
            for role in r.values():
                role.stop()


def test_an_import_waits_for_its_turn_longer_than_the_link_timeout(tmp_path):
    """An export serves one importer at a time: a second import (a verification replay's, a backup's)
    waits for the first link to end, which may take longer than --timeout-ms (the export may still be
    finding that link lost). That wait is bounded by --connect-wait-ms, not judged as silence: the
    second import, under --timeout-ms 500, is still waiting after 1.5 s and is served once the first
    link ends; one that is never served says so after its --connect-wait-ms."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    relay = ROOT / "runtime" / "build" / "ftmb-relay"
    trace = tmp_path / "in.pcap"
    traffic.generate(trace, seed=5, flows=10, packets=100, duration_s=0.5)
    with Topology(["il", "m", "v"]) as topo:
        r = {h: roles.Role(h, "turn", tmp_path / h, topo.prefix(h), topo.shm(h)) for h in topo.hosts}
        try:
            ia = f"{topo.addr('il')}:7501"
            roles.start_input_logger(r["il"], trace, ia, timeout_ms=500)
            common = ["import", "--session", "turn", "--region", "in", "--connect", ia, "--timeout-ms", "500"]
            first = r["m"].spawn("relay-in", [relay, *common])
            r["m"].wait_region("in", first, 30)
            second = r["v"].spawn("relay-in", [relay, *common, "--connect-wait-ms", "20000"])
            third = r["v"].spawn("relay-in-short", [relay, *common, "--connect-wait-ms", "1000"])
            time.sleep(1.5)
            assert second.poll() is None, r["v"].err("relay-in")
            assert third.wait(timeout=30) == 3
            assert r["v"].err("relay-in-short").strip() == (
                f"ftmb-relay import in: the input logger's host {ia}: not served within --connect-wait-ms "
                "(does another master's link still hold it?)")
            first.terminate()  # the first link ends: the second one's turn
            assert first.wait(timeout=30) == 4
            r["v"].wait_region("in", second, 30)
            assert second.poll() is None
        finally:
            for role in r.values():
                role.stop()


def test_a_host_failure_kills_what_its_processes_forked():
    """A host is a cgroup as well as a namespace where the machine has cgroup v2 (this test machine
    does): a command run there joins the host's cgroup before it starts, so do the processes it forks
    (an export relay's child per connection, a program's snapshots), and the failure kills them all
    with one write to cgroup.kill; the namespace, its /dev/shm and the cgroup are gone after it."""
    with Topology(["a", "b"]) as topo:
        assert "a" in topo.cgroups, "no cgroup v2 hierarchy with cgroup.kill: the fallback lists the namespace"
        p = subprocess.Popen([*topo.prefix("a"), "sh", "-c", "sleep 100 & sleep 100 & echo started; wait"],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "started\n"
        cg, shm = topo.cgroups["a"], topo.shm("a")
        members = (cg / "cgroup.procs").read_text().split()
        assert len(members) == 3 and str(p.pid) in members  # (the shell and its two children)
        other = subprocess.Popen([*topo.prefix("b"), "sleep", "100"])
        assert topo.fail("a") == 3
        assert p.wait(timeout=10) == -signal.SIGKILL
        assert not cg.exists() and not shm.exists()
        assert "a" not in topo.hosts and other.poll() is None  # (the other host lives on)
        topo.fail("b")
        assert other.wait(timeout=10) == -signal.SIGKILL
