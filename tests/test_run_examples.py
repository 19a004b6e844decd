"""Output equivalence of the example middleboxes under `run` (record mode) and run directly.

For each example and 1 or 2 workers, one generated trace goes (a) to the uninstrumented example
on net_pcap vdevs, split over its receive queues with the input logger's own flow hash
(`run.logger_queue`), and (b) to the example built with `ftmb-cc`, run by `run.run` in record
mode between the loggers (net_null0 vdev: the adapter serves its queues from the session). Both
see the same packets on the same queue in the same order. Outputs are compared per flow (the
input flow of each output packet, found by the packet tags) as sequences of bytes. All examples
use one port, so per output port means port 0; the output logger writes one pcap and does not say
which transmit queue a packet left on, so per-queue outputs of (b) are reconstructed from the input
queue of each packet's flow (worker i serves queue i).

Byte for byte: every example on 1 worker (one core decides in arrival order); the firewall without
limit pressure and the IDS's forwarded packets on 2 workers. Where the output depends on how two
cores interleave, the comparison masks exactly the fields that depend on it and the example's
invariants are checked on the released output instead: NAT on 2 workers (which external port a
flow gets depends on the order the cores take ports from the shared pool: port and L4 checksum
masked), LB on 2 workers (least-conn backend choice depends on the other core's counts: backend
MAC, IP and checksums masked), the firewall with its limit on 2 workers (which connections are
admitted depends on the other core's live count: invariants only), IDS reports on 2 workers (the
shared sketch's estimate at each packet depends on the other core: invariants only). Sampling is
off (--sample-rate 0) in the byte comparison since `rte_rand` differs between two executions.
Idle timeouts stay at their 10 s defaults, so no time-dependent expiry happens in these short runs.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from ftmb_instrument import invariants as inv
from ftmb_instrument import pcap, run as runlib, traffic

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FTMB_CC = ROOT / ".venv" / "bin" / "ftmb-cc"
VIP = "198.51.100.10"
EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]
_ids = itertools.count()

pytestmark = pytest.mark.skipif(
    shutil.which("pkg-config") is None or subprocess.run(
        ["pkg-config", "--exists", "libdpdk"]).returncode != 0,
    reason="libdpdk-dev is not installed")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The examples built plainly and with ftmb-cc (the rewriter's compiler wrapper)."""
    plain, instr = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("instrumented")
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True,
                   timeout=600)
    # ftmb-cc runs `make -C runtime` itself when the runtime changed: one compile at a time then.
    for build, extra in ((plain, ["-j2"]), (instr, [f"CC={FTMB_CC}", "-j1"])):
        proc = subprocess.run(["make", "-C", str(EXAMPLES), f"BUILD={build}", *extra], capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return plain, instr


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "trace.pcap"
    traffic.generate(path, seed=5, flows=150, packets=6000, duration_s=0.5)
    return path


@pytest.fixture(scope="module")
def vip_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("vip") / "vip.pcap"
    traffic.generate(path, seed=9, flows=150, packets=6000, duration_s=0.5, servers=[VIP, "198.51.100.99"])
    return path


def split_like_the_logger(trace_path: Path, ins: list[Path]) -> None:
    buckets = [[] for _ in ins]
    for p in pcap.read_pcap(trace_path):
        buckets[runlib.logger_queue(p.data, len(ins))].append(p)
    for path, bucket in zip(ins, buckets):
        pcap.write_pcap(path, bucket)


def direct(plain: Path, name: str, trace_path: Path, workers: int, workdir: Path, args: list[str]):
    """The uninstrumented example on net_pcap: per-queue inputs and outputs."""
    workdir.mkdir(parents=True, exist_ok=True)
    ins = [workdir / f"in{q}.pcap" for q in range(workers)]
    outs = [workdir / f"out{q}.pcap" for q in range(workers)]
    split_like_the_logger(trace_path, ins)
    vdev = "net_pcap0," + ",".join(f"rx_pcap={i},tx_pcap={o}" for i, o in zip(ins, outs))
    cmd = ["timeout", "-s", "KILL", "60", str(plain / name), *EAL, f"--file-prefix=ftmbrd{os.getpid()}_{next(_ids)}",
           "--lcores", f"(0-{workers})@(0,1)", "--vdev", vdev, "--", "--idle-exit-ms", "300", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return ins, outs


def under_run(instr: Path, name: str, trace_path: Path, workers: int, workdir: Path, args: list[str],
              mode: str = "record"):
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "released.pcap"
    argv = [str(instr / name), *EAL, f"--file-prefix=ftmbrr{os.getpid()}_{next(_ids)}",
            "--lcores", f"(0-{workers})@(0,1)", "--vdev", "net_null0", "--", *args]
    res = runlib.run(argv, trace_path, out, mode=mode, queues=workers, timeout_s=60)
    assert res.ok, f"{res.failure}\n{res.nf_stdout}\n{res.nf_stderr}"
    assert res.drained and res.held == 0
    assert re.search(rf"^{name}: rx={res.input_packets} ", res.nf_stdout, re.M), res.nf_stdout
    if mode == "record":
        assert res.records > 0
    return res, out


class Tags:
    """Which input flow and queue each tagged input packet belongs to."""

    def __init__(self, ins: list[Path]):
        self.flow, self.queue = {}, {}
        for q, path in enumerate(ins):
            for p in pcap.read_pcap(path):
                tag = pcap.packet_tag(p.data)
                self.flow[tag] = pcap.canonical(pcap.parse(p.data).five_tuple)
                self.queue[tag] = q

    def of(self, frame: bytes) -> int:
        report = inv.parse_ids_report(frame)
        return pcap.packet_tag(report.snap if report else frame)

    def group(self, frames, mask=None) -> dict:
        """Output frames by (input flow, report or packet), in order; `mask` blanks fields."""
        groups = defaultdict(list)
        for f in frames:
            kind = "report" if inv.parse_ids_report(f) else "packet"
            groups[(self.flow[self.of(f)], kind)].append(mask(f) if mask and kind == "packet" else f)
        return dict(groups)

    def per_queue(self, released: Path, workdir: Path, n: int) -> list[Path]:
        """The released output split into the queues its packets came in on (what worker i sent)."""
        buckets = [[] for _ in range(n)]
        for p in pcap.read_pcap(released):
            buckets[self.queue[self.of(p.data)]].append(p)
        paths = [workdir / f"released{q}.pcap" for q in range(n)]
        for path, bucket in zip(paths, buckets):
            pcap.write_pcap(path, bucket)
        return paths


def frames(paths) -> list[bytes]:
    return [p.data for path in ([paths] if isinstance(paths, Path) else paths) for p in pcap.read_pcap(path)]


def blank(*ranges_from_l3):
    """A mask that zeroes byte ranges given relative to the IPv4 header, plus the L4 checksum."""

    def mask(frame: bytes) -> bytes:
        p = pcap.parse(frame)
        b = bytearray(frame)
        for lo, hi in ranges_from_l3:
            b[14 + lo:14 + hi] = bytes(hi - lo)
        if p.l4_off >= 0:
            ck = p.l4_off + (16 if p.proto == pcap.PROTO_TCP else 6)
            b[ck:ck + 2] = b"\0\0"
        return bytes(b)

    return mask


def sport_masked(frame: bytes) -> bytes:
    p = pcap.parse(frame)
    b = bytearray(blank()(frame))
    if p.l4_off >= 0 and p.ip_src == pcap.ip_int("203.0.113.1"):
        b[p.l4_off:p.l4_off + 2] = b"\0\0"
    return bytes(b)


def backend_masked(frame: bytes) -> bytes:
    return bytes(6) + blank((10, 12), (16, 20))(frame)[6:]  # dst MAC, IP checksum, dst IP


def assert_same(direct_groups: dict, run_groups: dict) -> None:
    assert direct_groups.keys() == run_groups.keys()
    differing = [k for k in direct_groups if direct_groups[k] != run_groups[k]]
    assert not differing, f"{len(differing)} flows differ, e.g. {pcap.flow_str(differing[0][0])}"


def assert_clean(violations) -> None:
    assert violations == [], "\n".join(str(v) for v in violations[:20])


CASES = {
    # name: (trace fixture, example args, masks or None (byte for byte) per worker count, invariant check)
    "nat": ("trace", [], {1: None, 2: sport_masked}, lambda i, o: inv.check_nat(i, o, burst=None)),
    "firewall": ("trace", ["--max-conns", "1000"], {1: None, 2: None},
                 lambda i, o: inv.check_firewall(i, o, max_conns=1000, burst=None)),
    "lb": ("vip_trace", [], {1: None, 2: backend_masked}, lambda i, o: inv.check_lb(i, o, vip=VIP)),
    "ids": ("trace", ["--sample-rate", "0", "--threshold", "150"], {1: None, 2: None},
            lambda i, o: inv.check_ids(i, o, threshold=150)),
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_released_output_equals_the_uninstrumented_output(builds, request, tmp_path, name, workers):
    plain, instr = builds
    trace_name, args, masks, check = CASES[name]
    trace_path = request.getfixturevalue(trace_name)
    ins, outs = direct(plain, name, trace_path, workers, tmp_path / "direct", args)
    res, released = under_run(instr, name, trace_path, workers, tmp_path / "run", args)
    tags = Tags(ins)
    mask = masks[workers]
    direct_groups, run_groups = tags.group(frames(outs), mask), tags.group(frames(released), mask)
    if name == "ids" and workers > 1:  # reports: invariants below; forwarded packets byte for byte
        direct_groups = {k: v for k, v in direct_groups.items() if k[1] == "packet"}
        run_groups = {k: v for k, v in run_groups.items() if k[1] == "packet"}
    assert_same(direct_groups, run_groups)
    assert res.output_packets == len(frames(outs)) or (name == "ids" and workers > 1)
    assert_clean(check(ins, tags.per_queue(released, tmp_path / "run", workers)))
    if name == "ids" and workers == 1:
        assert any(k[1] == "report" for k in run_groups)  # the threshold is crossed: alerts compared too


@pytest.mark.parametrize("workers", [1, 2])
def test_firewall_limit_holds_on_the_released_output(builds, trace, tmp_path, workers):
    plain, instr = builds
    ins, outs = direct(plain, "firewall", trace, workers, tmp_path / "direct", ["--max-conns", "5"])
    res, released = under_run(instr, "firewall", trace, workers, tmp_path / "run", ["--max-conns", "5"])
    tags = Tags(ins)
    assert_clean(inv.check_firewall(ins, tags.per_queue(released, tmp_path / "run", workers), max_conns=5,
                                    burst=None))
    assert "peak=5" in res.nf_stdout and 0 < res.output_packets < 6000
    if workers == 1:  # one core: admission in arrival order, the same as the direct run
        assert tags.group(frames(outs)) == tags.group(frames(released))


def test_ids_with_sampling_keeps_its_invariants(builds, trace, tmp_path):
    _, instr = builds
    args = ["--sample-rate", "0.05", "--threshold", "150"]
    res, released = under_run(instr, "ids", trace, 2, tmp_path / "run", args)
    ins = [tmp_path / f"in{q}.pcap" for q in range(2)]
    split_like_the_logger(trace, ins)
    reports = [inv.parse_ids_report(f) for f in frames(released)]
    assert sum(1 for r in reports if r and r.kind == 2) > 0  # samples were sent
    assert_clean(inv.check_ids(ins, Tags(ins).per_queue(released, tmp_path, 2), threshold=150))


@pytest.mark.parametrize("name", ["nat", "lb"])
def test_passthrough_through_the_loggers_equals_record(builds, request, tmp_path, name):
    # One worker: both modes are deterministic, so the released outputs are identical.
    _, instr = builds
    trace_path = request.getfixturevalue(CASES[name][0])
    _, rec = under_run(instr, name, trace_path, 1, tmp_path / "rec", [])
    res, pas = under_run(instr, name, trace_path, 1, tmp_path / "pass", [], mode="passthrough")
    assert res.records == 0
    assert frames(rec) == frames(pas)


def test_the_comparison_notices_a_different_output(builds, trace, tmp_path):
    # The same NAT with another port pool under run: every outbound packet differs in its port.
    plain, instr = builds
    ins, outs = direct(plain, "nat", trace, 1, tmp_path / "direct", [])
    _, released = under_run(instr, "nat", trace, 1, tmp_path / "run", ["--port-min", "2000"])
    tags = Tags(ins)
    with pytest.raises(AssertionError, match="flows differ"):
        assert_same(tags.group(frames(outs)), tags.group(frames(released)))
    assert_same(tags.group(frames(outs), sport_masked), tags.group(frames(released), sport_masked))
