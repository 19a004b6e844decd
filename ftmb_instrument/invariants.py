"""Invariant checkers for the example middleboxes, from their input and output pcaps alone.

Each checker takes the per-queue input pcaps (what receive queue i read) and the per-queue output
pcaps (what transmit queue i wrote; the examples send on the queue they received on) plus the
example's parameters, and returns a list of `Violation`s (empty: the run kept its invariants).
A single path stands for a single queue. Input packets must carry the generator's tags
(`pcap.packet_tag`), which is how an output packet is traced back to the packet it came from.

What the pcaps cannot show is the order in which different cores touched shared state: inside one
queue the order is exact (a core handles its packets in order); across queues only transmit
timestamps are known, and a core sends a packet some time after deciding on it. The examples'
worker loop (receive at most 32 packets, decide, send, receive again) bounds that time from
below by earlier packets' transmit times (`_Run.decided_after`), so cross-queue judgements use
only what surely happened: a violation is a real one.

Checked for every example: each output packet comes from an input packet of the same queue
(`trace`), at most once (`duplicate`), in input order (`order`).
"""

from __future__ import annotations

import bisect
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ftmb_instrument.errors import InputError
from ftmb_instrument.pcap import (PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
                                  Packet, Parsed, canonical, checksum_errors, flow_str, ip_int,
                                  ip_str, iter_pcap, packet_tag, parse)

IDS_REPORT_ETHERTYPE = 0x88B5
IDS_REPORT_MAGIC = b"IDSREPT1"
IDS_ALERT, IDS_SAMPLE = 1, 2


@dataclass(frozen=True)
class Violation:
    """One broken invariant: its name, what happened, and where in the output."""

    invariant: str
    message: str
    queue: int | None = None
    index: int | None = None  # packet index in that queue's output pcap

    def __str__(self) -> str:
        where = "" if self.queue is None else f" [out queue {self.queue}" + (
            "]" if self.index is None else f" packet {self.index}]")
        return f"{self.invariant}: {self.message}{where}"


@dataclass(frozen=True)
class InPacket:
    queue: int
    index: int
    packet: Packet
    parsed: Parsed
    tag: int


@dataclass(frozen=True)
class OutPacket:
    queue: int
    index: int
    packet: Packet
    parsed: Parsed
    source: InPacket | None  # None: a frame the middlebox made itself, or untraceable


PathsArg = str | Path | Sequence[str | Path]


def _paths(arg: PathsArg) -> list[Path]:
    if isinstance(arg, (str, Path)):
        return [Path(arg)]
    return [Path(p) for p in arg]


class _Run:
    """Inputs and outputs of one run, traced to each other by packet tag."""

    def __init__(self, inputs: PathsArg, outputs: PathsArg, *, own_frames=lambda p: False):
        in_paths, out_paths = _paths(inputs), _paths(outputs)
        if len(in_paths) != len(out_paths):
            raise InputError(f"{len(in_paths)} input pcaps but {len(out_paths)} output pcaps; "
                             "give one of each per queue")
        self.violations: list[Violation] = []
        self.inputs: list[list[InPacket]] = []
        self.by_tag: dict[int, InPacket] = {}
        for q, path in enumerate(in_paths):
            queue = []
            for i, pkt in enumerate(iter_pcap(path)):
                parsed = parse(pkt.data)
                tag = packet_tag(pkt.data, parsed)
                if tag is None:
                    raise InputError(f"{path}: packet {i} carries no generator tag; the checkers "
                                     "need inputs made by ftmb_instrument.traffic")
                if tag in self.by_tag:
                    raise InputError(f"{path}: packet {i} repeats tag {tag}")
                rec = InPacket(q, i, pkt, parsed, tag)
                self.by_tag[tag] = rec
                queue.append(rec)
            self.inputs.append(queue)
        self.outputs: list[list[OutPacket]] = []
        seen: dict[int, tuple[int, int]] = {}
        for q, path in enumerate(out_paths):
            queue = []
            last_input_index = -1
            for i, pkt in enumerate(iter_pcap(path)):
                parsed = parse(pkt.data)
                if own_frames(parsed):
                    queue.append(OutPacket(q, i, pkt, parsed, None))
                    continue
                tag = packet_tag(pkt.data, parsed)
                src = self.by_tag.get(tag) if tag is not None else None
                if src is None:
                    self.add("trace", "output packet matches no input packet", q, i)
                elif src.queue != q:
                    self.add("trace", f"packet {src.index} of input queue {src.queue} was sent "
                             f"on queue {q}", q, i)
                else:
                    if tag in seen:
                        self.add("duplicate", f"input packet {src.index} sent twice (first as "
                                 f"packet {seen[tag][1]})", q, i)
                    elif src.index < last_input_index:
                        self.add("order", f"input packet {src.index} sent after input packet "
                                 f"{last_input_index}", q, i)
                    seen[tag] = (q, i)
                    last_input_index = max(last_input_index, src.index)
                queue.append(OutPacket(q, i, pkt, parsed, src))
            self.outputs.append(queue)
        # Per queue: input indices of the forwarded packets (ascending) and the running maximum
        # of their transmit times, for `decided_after`.
        self._sent: list[tuple[list[int], list[int]]] = []
        for queue in self.outputs:
            indices, max_ts = [], []
            for out in queue:
                if out.source is not None and out.source.queue == out.queue and \
                        (not indices or out.source.index > indices[-1]):
                    indices.append(out.source.index)
                    max_ts.append(max(out.packet.ts_ns, max_ts[-1]) if max_ts else
                                  out.packet.ts_ns)
            self._sent.append((indices, max_ts))

    def decided_after(self, queue: int, input_index: int, burst: int) -> int | None:
        """A time before which input packet `input_index` of `queue` was surely not decided on.

        A worker receives at most `burst` packets, decides on them, sends them, and only then
        receives again: any packet received `burst` or more packets earlier was sent (and
        timestamped) before this one was received. None when no such packet was sent.
        """
        indices, max_ts = self._sent[queue]
        n = bisect.bisect_right(indices, input_index - burst)
        return max_ts[n - 1] if n else None

    def add(self, invariant: str, message: str, queue: int | None = None,
            index: int | None = None) -> None:
        self.violations.append(Violation(invariant, message, queue, index))

    def traced(self) -> Iterable[OutPacket]:
        for queue in self.outputs:
            for out in queue:
                if out.source is not None:
                    yield out

    def check_checksums(self, prefix: str) -> None:
        for out in self.traced():
            errors = checksum_errors(out.packet.data)
            if errors:
                self.add(f"{prefix}.checksum", "bad " + ", ".join(errors), out.queue, out.index)


def _parse_prefix(text: str) -> tuple[int, int]:
    try:
        addr, length = text.split("/")
        bits = int(length)
    except ValueError:
        raise InputError(f"{text!r}: not an IPv4 prefix such as 10.0.0.0/8") from None
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF if bits else 0
    return ip_int(addr) & mask, mask


# --- NAT -------------------------------------------------------------------------------------


NAT_BURST = 32  # examples/nat's BURST_SIZE: the most packets one receive of a worker takes


def check_nat(inputs: PathsArg, outputs: PathsArg, *, external_ip: str = "203.0.113.1",
              internal_net: str = "10.0.0.0/8", port_min: int = 1024, port_max: int = 65535,
              rebinding_allowed: bool = False, burst: int | None = 32,
              arrivals: dict[int, int] | None = None, clock_start_ns: int | None = None,
              timeout_ms: int = 10000, closing_timeout_ms: int = 2000) -> list[Violation]:
    """Invariants of examples/nat.

    - `nat.rewrite`: an outbound packet leaves with source `external_ip` and a port from the
      pool, everything else but checksums unchanged; an inbound one is sent to the internal
      endpoint bound to its destination port; nothing else is forwarded.
    - `nat.checksum`: IPv4 and TCP/UDP checksums of every forwarded packet are valid.
    - `nat.mapping`: all outbound packets of a flow use the same external port, unless
      `rebinding_allowed` (a binding may expire and the flow get a new port), or the binding
      surely could have expired: with `arrivals` (each input packet's arrival time by tag, the
      session's clock a worker reads: `run.read_arrivals`), a flow may change its port between two
      of its outbound packets p and q when q arrived more than the NAT's timeout (`timeout_ms`, or
      `closing_timeout_ms` once the binding saw a FIN or RST) after the packet NAT_BURST packets
      before p in its queue (the worker stamps the binding with its clock before the receive that
      took p, which is at least that packet's arrival; the expiry scan that freed it ran before the
      receive that took q). Where p is among the first NAT_BURST packets of its queue the bound is
      `clock_start_ns`, the session's clock when it started (`run.Arrivals.start_ns`: no worker
      reads an earlier time); without it (an ftmb-arrivals/1 file) such a flow may change its port.
      A failover whose backup goes live seconds after the master's death moves the clock that far (nothing is served meanwhile), and the NAT rightly expires
      bindings then (bench/RESULTS.md, crash trials).
    - `nat.port-unique`: no external port is bound to two flows at once. Within a queue the
      packet order decides. Across queues a flow surely held its port from the transmit time of
      its first packet with it until the time its last one was surely not yet decided on
      (see `check_firewall` for the `burst` argument; None skips the cross-queue check), and
      two flows' surely-held times must not overlap. A flow's bindings are separate holdings.
    """
    ext = ip_int(external_ip)
    net, mask = _parse_prefix(internal_net)
    run = _Run(inputs, outputs)
    run.check_checksums("nat")
    outbound: dict[tuple, list[OutPacket]] = defaultdict(list)
    inbound: list[OutPacket] = []
    for out in run.traced():
        src, p = out.source.parsed, out.parsed
        if src.has_ports and src.ip_src & mask == net:
            if p.ip_src != ext or not port_min <= p.sport <= port_max:
                run.add("nat.rewrite", f"outbound {flow_str(src.five_tuple)} left as "
                        f"{ip_str(p.ip_src)}:{p.sport}, not {external_ip} with a pool port",
                        out.queue, out.index)
                continue
            if (p.proto, p.ip_dst, p.dport, len(out.packet.data)) != \
                    (src.proto, src.ip_dst, src.dport, len(out.source.packet.data)):
                run.add("nat.rewrite", f"outbound {flow_str(src.five_tuple)} changed beyond its "
                        "source", out.queue, out.index)
            outbound[src.five_tuple].append(out)
        elif src.has_ports and src.ip_dst == ext:
            inbound.append(out)
        else:
            run.add("nat.rewrite", f"forwarded {flow_str(src.five_tuple)}, which is neither "
                    "outbound nor addressed to the external IP", out.queue, out.index)
    closed_in = {out.source.parsed.dport for out in inbound
                 if out.source.parsed.flag(TCP_FIN | TCP_RST)}  # ports an inbound FIN/RST closed

    def expired(prev: OutPacket, nxt: OutPacket, closing: bool) -> bool:
        if rebinding_allowed:
            return True
        if arrivals is None:
            return False
        before = prev.source.index - NAT_BURST
        if before < 0:  # the worker's clock before its first packets: at least the session's start
            if clock_start_ns is None:
                return True
            t0 = clock_start_ns
        else:
            t0 = arrivals.get(run.inputs[prev.source.queue][before].tag)
        t1 = arrivals.get(nxt.source.tag)
        limit = (closing_timeout_ms if closing else timeout_ms) * 1_000_000 - 1_000_000  # (TSC rounding)
        return t0 is not None and t1 is not None and t1 - t0 > limit

    # per flow, its bindings: (external port, [(queue, output index, transmit time, input index)])
    bindings: dict[int, list[tuple[tuple, list]]] = defaultdict(list)
    for flow, outs in outbound.items():
        outs.sort(key=lambda o: o.source.index)
        held: list[tuple[int, list]] = []  # the flow's bindings in order: (port, uses)
        closing = reported = False  # the newest binding saw a FIN or RST; a violation was reported
        for prev, out in zip([None, *outs], outs):
            port = out.parsed.sport
            if held and held[-1][0] != port:
                if not reported and not expired(prev, out, closing or held[-1][0] in closed_in):
                    first = held[0][1][0]
                    run.add("nat.mapping", f"{flow_str(flow)} used external ports "
                            f"{sorted({o.parsed.sport for o in outs})}", first[0], first[1])
                    reported = True
            if not held or held[-1][0] != port:
                held.append((port, []))
                closing = False
            held[-1][1].append((out.queue, out.index, out.packet.ts_ns, out.source.index))
            closing = closing or out.source.parsed.flag(TCP_FIN | TCP_RST)
        for port, where in held:
            bindings[port].append((flow, where))
    for port, holders in bindings.items():
        for i in range(len(holders)):
            for j in range(i + 1, len(holders)):
                (fa, wa), (fb, wb) = holders[i], holders[j]
                if fa != fb and _overlap(run, wa, wb, burst):
                    run.add("nat.port-unique", f"external port {port} held by "
                            f"{flow_str(fa)} and {flow_str(fb)} at once", wb[0][0], wb[0][1])
    for out in inbound:
        src, p = out.source.parsed, out.parsed
        owners = {(f[1], f[2], f[0]) for f, _ in bindings.get(src.dport, [])}
        if (p.ip_dst, p.dport, p.proto) not in owners:
            run.add("nat.rewrite", f"inbound packet to external port {src.dport} sent to "
                    f"{ip_str(p.ip_dst)}:{p.dport}, which never held that port",
                    out.queue, out.index)
    return run.violations


def _overlap(run: _Run, a: list[tuple[int, int, int, int]], b: list[tuple[int, int, int, int]],
             burst: int | None) -> bool:
    """Did two flows surely hold one port at the same time? Each use is a list of
    (queue, output index, transmit time, input index) of the packets sent with the port."""
    if a[0][0] == b[0][0]:  # same queue: packet order is exact
        a_lo, a_hi = a[0][1], a[-1][1]
        b_lo, b_hi = b[0][1], b[-1][1]
        return a_lo <= b_hi and b_lo <= a_hi
    if burst is None:
        return False
    a_hi = run.decided_after(a[-1][0], a[-1][3], burst)
    b_hi = run.decided_after(b[-1][0], b[-1][3], burst)
    return (a_hi is not None and b_hi is not None and a[0][2] < a_hi and b[0][2] < b_hi
            and a[0][2] < b_hi and b[0][2] < a_hi)


# --- firewall --------------------------------------------------------------------------------


def check_firewall(inputs: PathsArg, outputs: PathsArg, *, max_conns: int = 5,
                   burst: int | None = 32) -> list[Violation]:
    """Invariants of examples/firewall.

    - `firewall.unchanged`: forwarded packets are not modified.
    - `firewall.admission`: a TCP connection's first forwarded packet is its SYN (packets of
      connections whose SYN was dropped are never forwarded), and nothing but a new SYN is
      forwarded after the RST or the second FIN that closed it.
    - `firewall.limit`: never more than `max_conns` connections live at once. A connection counts
      from its first forwarded packet up to the RST or second FIN that closed it, or else up to
      its last forwarded packet (idle timeouts are invisible in the output, so the firewall may
      have held it longer). Within a queue the packet order decides.

      Across queues only transmit timestamps exist, and a core sends a packet some time after
      deciding on it. What bounds that time is the worker loop: receive at most `burst`
      packets, decide, send them, receive again. So a packet was decided no later than its own
      transmit time and no earlier than the transmit time of any packet of its queue that was
      received `burst` or more packets before it. A connection is surely live from its first
      packet's transmit time to that lower bound for its last packet; more than `max_conns`
      surely-live connections at one instant is a violation. `burst=None` skips the cross-queue
      check (for outputs whose timestamps are not the middlebox's own send times, e.g. after an
      output logger released them).
    """
    run = _Run(inputs, outputs)
    for out in run.traced():
        if out.packet.data != out.source.packet.data:
            run.add("firewall.unchanged", "forwarded packet was modified", out.queue, out.index)
    surely_live: list[tuple[int, int]] = []
    per_queue_ok = True
    for q, queue in enumerate(run.outputs):
        open_sessions: dict[tuple, dict] = {}
        sessions: list[dict] = []
        for out in queue:
            p = out.parsed
            if out.source is None or not p.has_ports:
                continue
            key = canonical(p.five_tuple)
            s = open_sessions.get(key)
            if s is None or s["closed"]:
                opening = p.proto == PROTO_UDP or \
                    p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN
                if not opening:
                    what = "after its connection closed" if s else \
                        "without an admitted connection (its SYN was not forwarded)"
                    run.add("firewall.admission", f"{flow_str(p.five_tuple)} forwarded {what}",
                            q, out.index)
                    continue
                s = open_sessions[key] = {"first": out.index, "first_ts": out.packet.ts_ns,
                                          "closed": False, "fins": set()}
                sessions.append(s)
            s["last"] = out.index
            s["last_input"] = out.source.index
            if p.flag(TCP_RST):
                s["closed"] = True
            elif p.flag(TCP_FIN):
                s["fins"].add((p.ip_src, p.sport))
                s["closed"] = len(s["fins"]) == 2
        # A session opens just before its first forwarded packet and, the most lenient
        # reading, closes just after its last one.
        steps = sorted([(s["first"], 0, +1) for s in sessions] +
                       [(s["last"], 1, -1) for s in sessions])
        alone = _max_prefix([d for _, _, d in steps])
        if alone > max_conns:
            per_queue_ok = False
            run.add("firewall.limit", f"{alone} connections live at once on this queue alone "
                    f"(limit {max_conns})", q)
        if burst is not None:
            for s in sessions:
                end = run.decided_after(q, s["last_input"], burst)
                if end is not None and end > s["first_ts"]:
                    surely_live.append((s["first_ts"], end))
    if len(run.outputs) > 1 and per_queue_ok and burst is not None:
        # Ends before starts at equal times: the reading most favourable to the firewall.
        steps2 = sorted([(lo, +1) for lo, _ in surely_live] + [(hi, -1) for _, hi in surely_live])
        peak = _max_prefix([d for _, d in steps2])
        if peak > max_conns:
            run.add("firewall.limit", f"{peak} connections surely live at once across queues "
                    f"(limit {max_conns}; by transmit times and receive bursts of at most "
                    f"{burst})")
    return run.violations


def _max_prefix(chain: Sequence[int]) -> int:
    level = peak = 0
    for d in chain:
        level += d
        peak = max(peak, level)
    return peak


# --- load balancer ---------------------------------------------------------------------------


def backend_mac(ip: int) -> bytes:
    """The MAC examples/lb gives a backend: 02:be followed by its IPv4 address."""
    return b"\x02\xbe" + struct.pack("!I", ip)


def check_lb(inputs: PathsArg, outputs: PathsArg, *, vip: str = "198.51.100.10",
             backends: Sequence[str] = ("10.10.0.1", "10.10.0.2", "10.10.0.3", "10.10.0.4"),
             rebinding_allowed: bool = False) -> list[Violation]:
    """Invariants of examples/lb.

    - `lb.rewrite`: a packet to the VIP leaves with destination IP and MAC of a backend, all
      else but checksums unchanged; other packets leave unchanged.
    - `lb.checksum`: checksums of every forwarded packet are valid.
    - `lb.affinity`: all packets of a flow go to the same backend (unless `rebinding_allowed`,
      for runs long enough that idle flows expire).
    """
    vip_ip = ip_int(vip)
    backend_ips = {ip_int(b) for b in backends}
    run = _Run(inputs, outputs)
    run.check_checksums("lb")
    chosen: dict[tuple, dict[int, tuple[int, int]]] = defaultdict(dict)
    for out in run.traced():
        src, p = out.source.parsed, out.parsed
        if not (src.has_ports and src.ip_dst == vip_ip):
            if out.packet.data != out.source.packet.data:
                run.add("lb.rewrite", f"{flow_str(src.five_tuple)} is not to the VIP but was "
                        "modified", out.queue, out.index)
            continue
        if p.ip_dst not in backend_ips:
            run.add("lb.rewrite", f"{flow_str(src.five_tuple)} sent to {ip_str(p.ip_dst)}, "
                    "not a backend", out.queue, out.index)
            continue
        if p.eth_dst != backend_mac(p.ip_dst):
            run.add("lb.rewrite", f"{flow_str(src.five_tuple)} sent to backend "
                    f"{ip_str(p.ip_dst)} with MAC {p.eth_dst.hex(':')}", out.queue, out.index)
        if (p.proto, p.ip_src, p.sport, p.dport, len(out.packet.data)) != \
                (src.proto, src.ip_src, src.sport, src.dport, len(out.source.packet.data)):
            run.add("lb.rewrite", f"{flow_str(src.five_tuple)} changed beyond its destination",
                    out.queue, out.index)
        chosen[src.five_tuple].setdefault(p.ip_dst, (out.queue, out.index))
    if not rebinding_allowed:
        for flow, used in chosen.items():
            if len(used) > 1:
                q, i = sorted(used.values())[1]
                run.add("lb.affinity", f"{flow_str(flow)} went to backends "
                        f"{', '.join(ip_str(b) for b in sorted(used))}", q, i)
    return run.violations


# --- IDS -------------------------------------------------------------------------------------


def ids_hash(key: bytes, row: int) -> int:
    """Row `row`'s 32-bit FNV-1a hash of a 13-byte flow key, as examples/ids computes it."""
    h = 2166136261 ^ (((row + 1) * 0x9E3779B1) & 0xFFFFFFFF)
    for b in key:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def ids_key(p: Parsed) -> bytes:
    return struct.pack("!BIIHH", p.proto, p.ip_src, p.ip_dst, p.sport, p.dport)


@dataclass(frozen=True)
class IdsReport:
    kind: int
    lcore: int
    estimate: int
    threshold: int
    orig_len: int
    snap: bytes


def parse_ids_report(data: bytes) -> IdsReport | None:
    """The report examples/ids emits (see its header comment), or None for any other frame."""
    if len(data) < 14 + 24 or struct.unpack_from("!H", data, 12)[0] != IDS_REPORT_ETHERTYPE:
        return None
    if data[14:22] != IDS_REPORT_MAGIC:
        return None
    kind, _, lcore, estimate, threshold, orig_len = struct.unpack_from("!BBHIII", data, 22)
    return IdsReport(kind, lcore, estimate, threshold, orig_len, data[38:])


def check_ids(inputs: PathsArg, outputs: PathsArg, *, threshold: int = 1000, rows: int = 4,
              cols: int = 4096) -> list[Violation]:
    """Invariants of examples/ids.

    - `ids.forward`: every input packet is forwarded once, unchanged, in order.
    - `ids.report`: a report (alert or sample) carries the start of the packet sent just before
      it, and only alerts and samples exist.
    - `ids.alert`: an alert claims an estimate of at least `threshold`, and the input seen so
      far can explain it: for every sketch row, the packets hashing to the flow's counter (those
      of its own queue up to the alerting packet, all of the other queues' - their order is
      unknown) reach the claimed estimate. At most one alert per flow.
    """
    run = _Run(inputs, outputs,
               own_frames=lambda p: p.ethertype == IDS_REPORT_ETHERTYPE)
    in_counts = [len(q) for q in run.inputs]
    for q, queue in enumerate(run.outputs):
        forwarded = [o for o in queue if o.source is not None]
        for o in forwarded:
            if o.packet.data != o.source.packet.data:
                run.add("ids.forward", "forwarded packet was modified", q, o.index)
        if len(forwarded) != in_counts[q]:
            run.add("ids.forward", f"{in_counts[q]} packets in, {len(forwarded)} forwarded", q)

    # cells[r][col] per queue: list of input indices hashing there, to count prefixes.
    def cells_of(p: Parsed) -> list[int]:
        k = ids_key(p)
        return [ids_hash(k, r) % cols for r in range(rows)]

    per_queue_cells: list[list[dict[int, list[int]]]] = []
    for queue in run.inputs:
        table = [defaultdict(list) for _ in range(rows)]
        for rec in queue:
            if rec.parsed.has_ports:
                for r, c in enumerate(cells_of(rec.parsed)):
                    table[r][c].append(rec.index)
        per_queue_cells.append(table)

    alerted: dict[bytes, tuple[int, int]] = {}
    for q, queue in enumerate(run.outputs):
        last_forwarded: OutPacket | None = None
        for out in queue:
            if out.source is not None:
                last_forwarded = out
                continue
            report = parse_ids_report(out.packet.data)
            if report is None or report.kind not in (IDS_ALERT, IDS_SAMPLE):
                run.add("ids.report", "unknown frame from the monitor", q, out.index)
                continue
            if last_forwarded is None or not last_forwarded.packet.data.startswith(report.snap) \
                    or not report.snap:
                run.add("ids.report", "report does not carry the packet sent before it",
                        q, out.index)
                continue
            if report.kind != IDS_ALERT:
                continue
            trigger = last_forwarded.source
            p = trigger.parsed
            if not p.has_ports:
                run.add("ids.alert", "alert for a packet that is not TCP/UDP", q, out.index)
                continue
            key = ids_key(p)
            if key in alerted:
                run.add("ids.alert", f"second alert for {flow_str(p.five_tuple)} (first at "
                        f"queue {alerted[key][0]} packet {alerted[key][1]})", q, out.index)
            alerted.setdefault(key, (q, out.index))
            bound = _estimate_bound(per_queue_cells, cells_of(p), q, trigger.index)
            if report.estimate < threshold:
                run.add("ids.alert", f"alert for {flow_str(p.five_tuple)} with estimate "
                        f"{report.estimate} below threshold {threshold}", q, out.index)
            elif report.estimate > bound:
                run.add("ids.alert", f"alert for {flow_str(p.five_tuple)} claims estimate "
                        f"{report.estimate}, but the input seen so far gives at most {bound} "
                        f"(threshold {threshold})", q, out.index)
    return run.violations


def _estimate_bound(per_queue_cells, cells: list[int], queue: int, index: int) -> int:
    best = None
    for r, c in enumerate(cells):
        count = 0
        for q, table in enumerate(per_queue_cells):
            hits = table[r].get(c, [])
            count += bisect.bisect_right(hits, index) if q == queue else len(hits)
        best = count if best is None else min(best, count)
    return best or 0


FLOWMON_ETHERTYPE = 0x88B6
FLOWMON_MAGIC = b"FLOWEXP1"
FLOWMON_RECORD = struct.Struct("!4s4sHHBQQB")  # src, dst, sport, dport, proto, packets, bytes, reason


def flowmon_key(p: Parsed) -> tuple[int, int, int, int, int] | None:
    """examples/flowmon's flow of a frame: (src, dst, sport, dport, proto) of IPv4, directional;
    ports only for TCP and UDP. None for anything else (forwarded, not accounted)."""
    if p.ip_off < 0 or p.ethertype != 0x0800:
        return None
    ports = (p.sport, p.dport) if p.has_ports else (0, 0)
    return (p.ip_src, p.ip_dst, ports[0], ports[1], p.proto)


def check_flowmon(inputs: PathsArg, outputs: PathsArg) -> list[Violation]:
    """Invariants of examples/flowmon (all queues taken together: it has one capture handle).

    - `flowmon.forward`: every output frame that is not an export record is an input frame,
      unchanged, sent once (`flowmon.duplicate`), and every input frame is forwarded
      (`flowmon.lost`; the run must have ended cleanly).
    - `flowmon.order`: the frames of one flow leave in the order they came (a flow has one worker).
    - `flowmon.export`: export records are well formed, name flows that were seen, and per flow
      their packet and byte counts add up to exactly what was forwarded of it (idle exports plus
      the final one; the flow table holds every flow of the test traces).
    """
    violations: list[Violation] = []

    def add(name: str, message: str, queue: int | None = None, index: int | None = None) -> None:
        violations.append(Violation(name, message, queue, index))

    by_tag: dict[int, tuple[int, Packet]] = {}
    for path in _paths(inputs):
        for pkt in iter_pcap(path):
            tag = packet_tag(pkt.data)
            if tag is None:
                raise InputError(f"{path}: a packet carries no generator tag; the checkers need inputs "
                                 "made by ftmb_instrument.traffic")
            by_tag[tag] = (len(by_tag), pkt)
    forwarded: dict[tuple, list[int]] = defaultdict(list)   # flow -> input indexes, in output order
    fwd_bytes: dict[tuple, int] = defaultdict(int)
    exported: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    seen: set[int] = set()
    for q, path in enumerate(_paths(outputs)):
        for i, pkt in enumerate(iter_pcap(path)):
            p = parse(pkt.data)
            if p.ethertype == FLOWMON_ETHERTYPE:
                body = pkt.data[14:]
                if len(body) < 8 + FLOWMON_RECORD.size or body[:8] != FLOWMON_MAGIC:
                    add("flowmon.export", "malformed export record", q, i)
                    continue
                src, dst, sport, dport, proto, pkts, nbytes, reason = FLOWMON_RECORD.unpack_from(body, 8)
                if pkts == 0 or reason not in (1, 2):
                    add("flowmon.export", f"export record with {pkts} packets, reason {reason}", q, i)
                key = (int.from_bytes(src, "big"), int.from_bytes(dst, "big"), sport, dport, proto)
                exported[key][0] += pkts
                exported[key][1] += nbytes
                continue
            tag = packet_tag(pkt.data, p)
            src_pkt = by_tag.get(tag) if tag is not None else None
            if src_pkt is None or src_pkt[1].data != pkt.data:
                add("flowmon.forward", "output frame is no input frame (or was modified)", q, i)
                continue
            if tag in seen:
                add("flowmon.duplicate", f"input packet {src_pkt[0]} forwarded twice", q, i)
                continue
            seen.add(tag)
            key = flowmon_key(p)
            if key is not None:
                if forwarded[key] and forwarded[key][-1] > src_pkt[0]:
                    add("flowmon.order", f"{flow_str((key[4], key[0], key[2], key[1], key[3]))}: input packet "
                        f"{src_pkt[0]} forwarded after input packet {forwarded[key][-1]}", q, i)
                forwarded[key].append(src_pkt[0])
                fwd_bytes[key] += len(pkt.data)
    missing = len(by_tag) - len(seen)
    if missing:
        add("flowmon.lost", f"{missing} of {len(by_tag)} input packets never forwarded")
    for key in sorted(set(forwarded) | set(exported)):
        want = (len(forwarded.get(key, [])), fwd_bytes.get(key, 0))
        got = tuple(exported.get(key, (0, 0)))
        if got != want:
            add("flowmon.export", f"{flow_str((key[4], key[0], key[2], key[1], key[3]))}: exported "
                f"{got[0]} packets / {got[1]} bytes, forwarded {want[0]} / {want[1]}")
    return violations


CHECKERS = {"nat": check_nat, "firewall": check_firewall, "lb": check_lb, "ids": check_ids,
            "flowmon": check_flowmon}
