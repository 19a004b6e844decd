"""Build the example middleboxes and run them, uninstrumented, on generated traffic.

Each run: split a generated trace over one receive queue per worker (symmetric RSS), run the
example under `timeout` with 1, 2 or 3 workers on a net_pcap vdev (one rx_pcap/tx_pcap pair per
queue), then check its invariants on the output pcaps and that it forwarded what it should.
"""

import itertools
import os
import re
import signal
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from ftmb_instrument import invariants as inv
from ftmb_instrument import pcap, traffic

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
VIP = "198.51.100.10"
_run_ids = itertools.count()



@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A fresh build (so that the no-warnings check always sees the compiler run)."""
    build = tmp_path_factory.mktemp("examples-build")
    proc = subprocess.run(["make", "-C", str(EXAMPLES), f"BUILD={build}", "-j2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in build.iterdir()) == ["firewall", "flowmon", "ids", "lb", "nat"]
    return build


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "trace.pcap"
    traffic.generate(path, seed=5, flows=150, packets=6000, duration_s=0.5)
    return path


def run_example(build, name, trace_path, workers, workdir, *args, idle_exit_ms=300):
    """Run one example on `trace_path`; return (per-queue inputs, outputs, stats, stdout)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ins = [workdir / f"in{q}.pcap" for q in range(workers)]
    outs = [workdir / f"out{q}.pcap" for q in range(workers)]
    traffic.split_by_flow(trace_path, ins)
    vdev = "net_pcap0," + ",".join(f"rx_pcap={i},tx_pcap={o}" for i, o in zip(ins, outs))
    cmd = ["timeout", "-s", "KILL", "60", str(build / name), "--no-huge", "-m", "512",
           "--no-pci", "--no-shconf", f"--file-prefix=ftmbex{os.getpid()}_{next(_run_ids)}",
           "--log-level=lib.eal:error", "--lcores", f"(0-{workers})@(0,1)", "--vdev", vdev,
           "--", "--idle-exit-ms", str(idle_exit_ms), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    line = next(ln for ln in proc.stdout.splitlines() if re.match(rf"{name}: rx=", ln))
    stats = {k: v for k, v in re.findall(r"(\w+)=([\d,]+)", line)}
    return ins, outs, stats, proc.stdout


def count(paths):
    return sum(len(pcap.read_pcap(p)) for p in paths)


def assert_clean(violations):
    assert violations == [], "\n".join(str(v) for v in violations[:20])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_nat(built, trace, tmp_path, workers):
    ins, outs, stats, _ = run_example(built, "nat", trace, workers, tmp_path)
    assert_clean(inv.check_nat(ins, outs))
    outbound = sum(1 for p in pcap.read_pcap(trace)
                   if pcap.parse(p.data).ip_src >> 24 == 10)
    assert int(stats["rx"]) == 6000
    assert count(outs) == int(stats["tx"]) == outbound  # every outbound packet translated


def test_nat_small_pool_runs_out_and_stays_correct(built, trace, tmp_path):
    ins, outs, stats, _ = run_example(built, "nat", trace, 2, tmp_path, "--port-min", "2000",
                                      "--port-max", "2007")
    assert_clean(inv.check_nat(ins, outs, port_min=2000, port_max=2007))
    assert int(stats["bindings"]) == 8 and int(stats["pool_exhausted"]) > 0
    ports = {pcap.parse(p.data).sport for o in outs for p in pcap.read_pcap(o)}
    assert ports == set(range(2000, 2008))


def test_nat_bindings_expire_and_return_their_ports(built, trace, tmp_path):
    # With a 1 ms idle timeout every binding expires (at the latest while the worker waits for
    # more input before exiting) and its port goes back to the pool. Whether a port is also
    # reused while the trace is still being read depends on how fast the core reads it, so
    # the checker runs with rebinding allowed and the test asserts only what must happen.
    ins, outs, stats, _ = run_example(built, "nat", trace, 1, tmp_path, "--port-min", "3000",
                                      "--port-max", "3031", "--timeout-ms", "1",
                                      "--closing-timeout-ms", "1")
    assert_clean(inv.check_nat(ins, outs, port_min=3000, port_max=3031, rebinding_allowed=True))
    assert int(stats["expired"]) == int(stats["bindings"]) >= 32


def test_nat_with_short_timeouts_on_three_workers_stays_correct(built, tmp_path):
    # Bindings expire and ports move between cores while traffic flows (on this machine a
    # 20000-packet trace takes long enough); how often depends on speed, so only the
    # invariants and the bookkeeping are asserted.
    trace_path = tmp_path / "long.pcap"
    traffic.generate(trace_path, seed=21, flows=300, packets=20000, duration_s=1.0)
    ins, outs, stats, _ = run_example(built, "nat", trace_path, 3, tmp_path / "run",
                                      "--port-min", "5000", "--port-max", "5063",
                                      "--timeout-ms", "2", "--closing-timeout-ms", "1")
    assert_clean(inv.check_nat(ins, outs, port_min=5000, port_max=5063, rebinding_allowed=True))
    assert int(stats["expired"]) == int(stats["bindings"]) >= 64
    assert int(stats["pool_exhausted"]) > 0


def test_nat_translates_replies_back(built, tmp_path):
    mac = bytes.fromhex("020000000001")
    server = pcap.ip_int("198.51.100.20")
    frames = [pcap.build_tcp(eth_src=mac, eth_dst=mac, ip_src=pcap.ip_int(f"10.1.0.{n}"),
                             ip_dst=server, sport=5000 + n, dport=443, seq=1, ack=0,
                             flags=pcap.TCP_SYN, tag=n) for n in range(3)]
    # One worker hands out ports from the bottom of the pool in arrival order.
    frames += [pcap.build_tcp(eth_src=mac, eth_dst=mac, ip_src=server,
                              ip_dst=pcap.ip_int("203.0.113.1"), sport=443, dport=1024 + n,
                              seq=9, ack=2, flags=pcap.TCP_SYN | pcap.TCP_ACK, tag=3 + n)
               for n in range(3)]
    frames.append(pcap.build_tcp(eth_src=mac, eth_dst=mac, ip_src=server,
                                 ip_dst=pcap.ip_int("203.0.113.1"), sport=443, dport=1099,
                                 seq=9, ack=2, flags=pcap.TCP_ACK, tag=6))  # no binding
    trace_path = tmp_path / "replies.pcap"
    pcap.write_pcap(trace_path, [pcap.Packet(10**18 + i, f) for i, f in enumerate(frames)])
    ins, outs, stats, _ = run_example(built, "nat", trace_path, 1, tmp_path / "run")
    assert_clean(inv.check_nat(ins, outs))
    replies = [pcap.parse(p.data) for p in pcap.read_pcap(outs[0])][3:]
    assert [(pcap.ip_str(p.ip_dst), p.dport) for p in replies] == \
        [(f"10.1.0.{n}", 5000 + n) for n in range(3)]
    assert stats["in"] == "3" and stats["dropped"] == "1"


def firewall_unlimited_model(ins):
    """Tags a firewall without a limit forwards: each connection from its SYN to its close."""
    forwarded = set()
    for path in ins:
        state = {}
        for p in pcap.read_pcap(path):
            parsed = pcap.parse(p.data)
            key = pcap.canonical(parsed.five_tuple)
            if parsed.proto == pcap.PROTO_UDP:
                forwarded.add(pcap.packet_tag(p.data))
                continue
            s = state.get(key)
            if s is None:
                if parsed.tcp_flags != pcap.TCP_SYN:
                    continue
                s = state[key] = set()
            elif s == "closed":
                continue
            forwarded.add(pcap.packet_tag(p.data))
            if parsed.flag(pcap.TCP_RST):
                state[key] = "closed"
            elif parsed.flag(pcap.TCP_FIN):
                s.add((parsed.ip_src, parsed.sport))
                if len(s) == 2:
                    state[key] = "closed"
    return forwarded


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_firewall_connection_limit(built, trace, tmp_path, workers):
    ins, outs, stats, _ = run_example(built, "firewall", trace, workers, tmp_path,
                                      "--max-conns", "5")
    assert_clean(inv.check_firewall(ins, outs, max_conns=5))
    assert int(stats["peak"]) == 5 and int(stats["admitted"]) >= 5
    assert int(stats["rejected"]) > 0
    assert 0 < count(outs) == int(stats["tx"]) < 6000


def test_firewall_without_pressure_forwards_every_connection(built, trace, tmp_path):
    ins, outs, stats, _ = run_example(built, "firewall", trace, 2, tmp_path,
                                      "--max-conns", "1000")
    assert_clean(inv.check_firewall(ins, outs, max_conns=1000))
    got = {pcap.packet_tag(p.data) for o in outs for p in pcap.read_pcap(o)}
    assert got == firewall_unlimited_model(ins)
    assert stats["rejected"] == "0"


@pytest.fixture(scope="module")
def vip_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("vip") / "vip.pcap"
    traffic.generate(path, seed=9, flows=150, packets=6000, duration_s=0.5,
                     servers=[VIP, "198.51.100.99"])
    return path


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("policy", ["least-conn", "round-robin"])
def test_lb(built, vip_trace, tmp_path, workers, policy):
    ins, outs, stats, _ = run_example(built, "lb", vip_trace, workers, tmp_path,
                                      "--policy", policy)
    assert_clean(inv.check_lb(ins, outs))
    to_vip = sum(1 for p in pcap.read_pcap(vip_trace)
                 if pcap.parse(p.data).ip_dst == pcap.ip_int(VIP))
    assert count(outs) == int(stats["tx"]) == 6000
    assert int(stats["to_backend"]) == to_vip
    assigned = [int(x) for x in stats["assigned"].split(",")]
    assert len(assigned) == 4 and all(assigned)
    if policy == "round-robin":
        assert max(assigned) - min(assigned) <= 1


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ids(built, trace, tmp_path, workers):
    ins, outs, stats, stdout = run_example(built, "ids", trace, workers, tmp_path,
                                           "--threshold", "100", "--sample-rate", "0.02")
    assert_clean(inv.check_ids(ins, outs, threshold=100))
    sizes = defaultdict(int)
    for p in pcap.read_pcap(trace):
        sizes[inv.ids_key(pcap.parse(p.data))] += 1
    heavy = sum(1 for n in sizes.values() if n >= 100)
    alerts = int(stats["alerts"])
    assert alerts >= heavy > 0  # the sketch never undercounts: every heavy flow is reported
    assert int(stats["samples"]) > 0
    assert count(outs) == int(stats["tx"]) == 6000 + alerts + int(stats["samples"])
    assert stdout.count("ids: alert ") == min(alerts, 64)


@pytest.mark.parametrize("name, args, message", [
    ("nat", ["--timeout-ms", "soon"], "--timeout-ms: 'soon' is not a number"),
    ("nat", ["--external-ip", "1.2.3"], "--external-ip: '1.2.3' is not an IPv4 address"),
    ("firewall", ["--max-conns", "-1"], "--max-conns: '-1' is not a number"),
    ("lb", ["--policy", "random"], "--policy: 'random' is not least-conn or round-robin"),
    ("lb", ["--backends", "10.0.0.1,x"], "--backends: 'x' is not an IPv4 address"),
    ("ids", ["--sample-rate", "2"], "--sample-rate: '2' is not a probability"),
    ("ids", ["--bogus"], "unknown or incomplete option '--bogus'"),
])
def test_bad_arguments_give_one_clear_line(built, trace, tmp_path, name, args, message):
    cmd = ["timeout", "-s", "KILL", "60", str(built / name), "--no-huge", "-m", "256",
           "--no-pci", "--no-shconf", f"--file-prefix=ftmbex{os.getpid()}_{next(_run_ids)}",
           "--log-level=lib.eal:error", "--lcores", "(0-1)@(0,1)", "--vdev",
           f"net_pcap0,rx_pcap={trace},tx_pcap={tmp_path / 'o.pcap'}", "--", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 2
    assert f"{name}: {message}" in proc.stderr


def test_missing_input_file_is_named(built, tmp_path):
    missing = tmp_path / "nope.pcap"
    cmd = ["timeout", "-s", "KILL", "60", str(built / "nat"), "--no-huge", "-m", "256",
           "--no-pci", "--no-shconf", f"--file-prefix=ftmbex{os.getpid()}_{next(_run_ids)}",
           "--lcores", "(0-1)@(0,1)", "--vdev",
           f"net_pcap0,rx_pcap={missing},tx_pcap={tmp_path / 'o.pcap'}", "--"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr
    assert "nat: found 0 ports" in proc.stderr


def test_two_ports_forward_from_port_0_to_port_1(built, vip_trace, tmp_path):
    inp, empty = tmp_path / "in.pcap", tmp_path / "empty.pcap"
    traffic.split_by_flow(vip_trace, [inp])
    pcap.write_pcap(empty, [])
    out0, out1 = tmp_path / "out0.pcap", tmp_path / "out1.pcap"
    cmd = ["timeout", "-s", "KILL", "60", str(built / "lb"), "--no-huge", "-m", "512",
           "--no-pci", "--no-shconf", f"--file-prefix=ftmbex{os.getpid()}_{next(_run_ids)}",
           "--log-level=lib.eal:error", "--lcores", "(0-1)@(0,1)",
           "--vdev", f"net_pcap0,rx_pcap={inp},tx_pcap={out0}",
           "--vdev", f"net_pcap1,rx_pcap={empty},tx_pcap={out1}", "--", "--idle-exit-ms", "300"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert count([out0]) == 0 and count([out1]) == 6000
    assert_clean(inv.check_lb(inp, out1))


def test_fewer_queues_than_workers_is_explained(built, trace, tmp_path):
    cmd = ["timeout", "-s", "KILL", "60", str(built / "firewall"), "--no-huge", "-m", "256",
           "--no-pci", "--no-shconf", f"--file-prefix=ftmbex{os.getpid()}_{next(_run_ids)}",
           "--log-level=lib.eal:error", "--lcores", "(0-2)@(0,1)", "--vdev",
           f"net_pcap0,rx_pcap={trace},tx_pcap={tmp_path / 'o.pcap'}", "--"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 1
    assert "firewall: port 0 has 1 rx / 1 tx queues but 2 workers need one each" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_workers_and_flushes_output(built, trace, tmp_path, sig):
    out = tmp_path / "o.pcap"
    # stdbuf: line-buffered stdout, so the worker's start line arrives while it runs.
    cmd = ["timeout", "-s", "KILL", "60", "stdbuf", "-oL", str(built / "ids"), "--no-huge",
           "-m", "256", "--no-pci", "--no-shconf",
           f"--file-prefix=ftmbex{os.getpid()}_{next(_run_ids)}", "--log-level=lib.eal:error",
           "--lcores", "(0-1)@(0,1)", "--vdev", f"net_pcap0,rx_pcap={trace},tx_pcap={out}",
           "--", "--sample-rate", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Without --idle-exit-ms the worker polls until signalled; its start line comes after
        # the handlers are installed. `timeout` passes the signal on to the example.
        assert proc.stdout.readline().startswith("ids: lcore 1 polls queue 0")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert re.search(r"ids: rx=\d+ tx=\d+", stdout)
    assert len(pcap.read_pcap(out)) <= 6000
