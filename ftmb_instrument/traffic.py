"""Seeded generator of realistic client/server traffic, and the RSS-style split by flow.

`generate` writes one pcap of many concurrent flows between clients (an internal prefix) and a few
servers: TCP connections with a three-way handshake, data in both directions with consistent
sequence numbers, and a teardown by FIN exchange, by RST, or none (left open, for idle timeouts);
UDP request/response exchanges. Flow sizes are heavy tailed (a few elephants, many mice), flows
arrive as a Poisson process, and packets of a flow come in bursts separated by think times.
The same arguments always give a byte-identical file.

Every packet carries a unique 32-bit tag, its index in the file (`pcap.packet_tag`): the TSval of a
TCP timestamp option, or the first four bytes of a UDP payload; the IPv4 ID is its low 16 bits.

`split_by_flow` stands in for a NIC's symmetric RSS: it writes one pcap per receive queue, both
directions of a connection on the same queue, order and timestamps preserved.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ftmb_instrument.errors import InputError
from ftmb_instrument.pcap import (PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST,
                                  TCP_SYN, Packet, build_tcp, build_udp, canonical, ip_int,
                                  iter_pcap, parse, write_pcap)

EPOCH_NS = 1_700_000_000 * 1_000_000_000
GATEWAY_MAC = bytes.fromhex("020000000001")
SERVER_SIDE_MAC = bytes.fromhex("020000000002")
DEFAULT_SERVERS = ("198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.13")
TCP_SERVER_PORTS = (80, 443, 8080)
UDP_SERVER_PORTS = (53, 123, 443)


@dataclass
class TrafficSummary:
    """What `generate` wrote."""

    path: str
    packets: int = 0
    flows: int = 0
    tcp_flows: int = 0
    udp_flows: int = 0
    fin_closed: int = 0
    rst_closed: int = 0
    left_open: int = 0
    largest_flow: int = 0
    duration_ns: int = 0


@dataclass
class _Flow:
    proto: int
    client_ip: int
    client_port: int
    server_ip: int
    server_port: int
    close: str  # "fin", "rst", "open" (TCP) or "udp"
    size: int = 0
    events: list = field(default_factory=list)  # (ts_ns, from_client, flags, payload_len)


def _parse_prefix(text: str) -> tuple[int, int]:
    try:
        addr, length = text.split("/")
        bits = int(length)
    except ValueError:
        raise InputError(f"{text!r}: not an IPv4 prefix such as 10.0.0.0/16") from None
    if not 8 <= bits <= 30:
        raise InputError(f"{text!r}: prefix length must be between 8 and 30")
    base = ip_int(addr) & ~((1 << (32 - bits)) - 1) & 0xFFFFFFFF
    return base, 1 << (32 - bits)


def _min_packets(flow: _Flow) -> int:
    if flow.proto == PROTO_UDP:
        return 1
    return 3 + 1 + {"fin": 4, "rst": 1, "open": 0}[flow.close]


def generate(path: str | Path, *, seed: int = 1, flows: int = 200, packets: int = 5000,
             duration_s: float = 1.0, udp_fraction: float = 0.2, rst_fraction: float = 0.2,
             open_fraction: float = 0.1, clients: str = "10.0.0.0/16",
             servers: Sequence[str] = DEFAULT_SERVERS, nanosecond: bool = True) -> TrafficSummary:
    """Write a deterministic trace of `flows` flows and exactly `packets` packets to `path`.

    `duration_s` is the span of flow start times (flows may run a little past it);
    `udp_fraction` of flows are UDP; of the TCP flows, `rst_fraction` end with a RST,
    `open_fraction` never close and the rest close with a FIN exchange.
    """
    if flows < 1:
        raise InputError(f"flows={flows}: need at least one flow")
    if duration_s <= 0:
        raise InputError(f"duration_s={duration_s}: must be positive")
    for name, value in (("udp_fraction", udp_fraction), ("rst_fraction", rst_fraction),
                        ("open_fraction", open_fraction)):
        if not 0 <= value <= 1:
            raise InputError(f"{name}={value}: must be between 0 and 1")
    if rst_fraction + open_fraction > 1:
        raise InputError("rst_fraction + open_fraction must not exceed 1")
    if not servers:
        raise InputError("servers: need at least one server address")
    client_base, client_count = _parse_prefix(clients)
    server_ips = [ip_int(s) for s in servers]
    # Checked before any flow is built: each flow needs at least one packet (a TCP flow four), and
    # distinct 5-tuples; a hopeless request must fail at once, not after filling memory.
    if packets < flows:
        raise InputError(f"packets={packets}: too few for flows={flows}; every flow needs at least one "
                         f"packet (a TCP flow at least four)")
    tuples = (client_count - 2) * (61000 - 32768) * len(set(server_ips)) * len(TCP_SERVER_PORTS)
    if flows > tuples // 2:
        raise InputError(f"flows={flows}: more than the {tuples // 2} distinct flows the client prefix "
                         f"{clients} and {len(set(server_ips))} server(s) allow here")
    rng = random.Random(seed)

    flow_list: list[_Flow] = []
    used: set[tuple] = set()
    for _ in range(flows):
        proto = PROTO_UDP if rng.random() < udp_fraction else PROTO_TCP
        if proto == PROTO_UDP:
            close = "udp"
        else:
            r = rng.random()
            close = "rst" if r < rst_fraction else "open" if r < rst_fraction + open_fraction \
                else "fin"
        while True:
            key = (proto, client_base + 1 + rng.randrange(client_count - 2),
                   rng.randrange(32768, 61000), rng.choice(server_ips),
                   rng.choice(TCP_SERVER_PORTS if proto == PROTO_TCP else UDP_SERVER_PORTS))
            if key not in used:
                used.add(key)
                break
        flow_list.append(_Flow(proto, key[1], key[2], key[3], key[4], close))

    minimum = sum(_min_packets(f) for f in flow_list)
    if packets < minimum:
        raise InputError(f"packets={packets}: too few for flows={flows}; this mix needs at "
                         f"least {minimum} (handshakes and teardowns)")
    _distribute(flow_list, packets - minimum, rng)
    duration_ns = int(duration_s * 1e9)
    for f in flow_list:
        _schedule(f, rng, duration_ns)

    events = []
    for fi, f in enumerate(flow_list):
        for ei, ev in enumerate(f.events):
            events.append((ev[0], fi, ei))
    events.sort()
    fill = random.Random(seed ^ 0x5EED).randbytes(2048)
    records = _build(flow_list, events, fill)

    path = Path(path)
    try:
        write_pcap(path, records, nanosecond=nanosecond)
    except OSError as exc:
        raise InputError(f"{path}: cannot write pcap: {exc.strerror}") from None
    summary = TrafficSummary(str(path), packets=len(records), flows=flows)
    for f in flow_list:
        summary.tcp_flows += f.proto == PROTO_TCP
        summary.udp_flows += f.proto == PROTO_UDP
        summary.fin_closed += f.close == "fin"
        summary.rst_closed += f.close == "rst"
        summary.left_open += f.close == "open"
        summary.largest_flow = max(summary.largest_flow, len(f.events))
    summary.duration_ns = records[-1].ts_ns - records[0].ts_ns if records else 0
    return summary


def _distribute(flow_list: list[_Flow], extra: int, rng: random.Random) -> None:
    """Give each flow its minimum plus a heavy-tailed (Pareto) share of `extra` packets."""
    weights = [min(rng.paretovariate(1.2), 100.0) for _ in flow_list]
    total = sum(weights)
    shares = [extra * w / total for w in weights]
    base = [math.floor(s) for s in shares]
    left = extra - sum(base)
    order = sorted(range(len(flow_list)), key=lambda i: shares[i] - base[i], reverse=True)
    for i in order[:left]:
        base[i] += 1
    for f, b in zip(flow_list, base):
        f.size = _min_packets(f) + b


def _schedule(f: _Flow, rng: random.Random, duration_ns: int) -> None:
    """Fill `f.events` with (ts, from_client, flags, payload_len), strictly increasing in time."""
    start = rng.randrange(duration_ns)
    rtt = int(rng.uniform(0.2e6, 20e6))
    t = EPOCH_NS + start
    events = f.events

    def add(from_client: bool, flags: int, length: int, gap: int) -> None:
        nonlocal t
        t += max(1000, gap)
        events.append((t, from_client, flags, length))

    if f.proto == PROTO_UDP:
        data = f.size
    else:
        add(True, TCP_SYN, 0, 0)
        add(False, TCP_SYN | TCP_ACK, 0, rtt // 2)
        add(True, TCP_ACK, 0, rtt // 2)
        data = f.size - _min_packets(f) + 1
    # Data in bursts: requests from the client, larger responses from the server.
    span = duration_ns * rng.uniform(0.02, 0.5)
    think = max(1000, int(span / (data / 4 + 1)))
    sent = 0
    while sent < data:
        burst = min(data - sent, 1 + int(rng.expovariate(1 / 4)))
        from_client = rng.random() < 0.4
        for k in range(burst):
            length = rng.randrange(20, 200) if from_client else rng.randrange(200, 1200)
            gap = rng.randrange(5_000, 60_000) if k else int(rng.expovariate(1.0) * think)
            add(from_client, TCP_ACK | TCP_PSH if f.proto == PROTO_TCP else 0, length, gap)
        sent += burst
    if f.close == "fin":
        client_first = rng.random() < 0.7
        add(client_first, TCP_FIN | TCP_ACK, 0, rtt)
        add(not client_first, TCP_ACK, 0, rtt // 2)
        add(not client_first, TCP_FIN | TCP_ACK, 0, rng.randrange(10_000, 200_000))
        add(client_first, TCP_ACK, 0, rtt // 2)
    elif f.close == "rst":
        add(rng.random() < 0.5, TCP_RST | TCP_ACK, 0, rtt)


def _build(flow_list: list[_Flow], events: list[tuple[int, int, int]],
           fill: bytes) -> list[Packet]:
    seqs = {}
    for fi, f in enumerate(flow_list):
        h = zlib.crc32(struct.pack("!IHIH", f.client_ip, f.client_port, f.server_ip,
                                   f.server_port))
        seqs[fi] = [h & 0xFFFFFF, (h >> 8) & 0xFFFFFF]  # client isn, server isn
    records = []
    for tag, (ts, fi, ei) in enumerate(events):
        f = flow_list[fi]
        _, from_client, flags, length = f.events[ei]
        client_mac = b"\x02\x00" + struct.pack("!I", f.client_ip)
        if from_client:
            src, dst = (f.client_ip, f.client_port), (f.server_ip, f.server_port)
            macs = dict(eth_src=client_mac, eth_dst=GATEWAY_MAC)
        else:
            src, dst = (f.server_ip, f.server_port), (f.client_ip, f.client_port)
            macs = dict(eth_src=SERVER_SIDE_MAC, eth_dst=client_mac)
        off = (tag * 131) % 1024
        payload = fill[off:off + length]
        if f.proto == PROTO_UDP:
            data = build_udp(**macs, ip_src=src[0], ip_dst=dst[0], sport=src[1], dport=dst[1],
                             tag=tag, payload=payload[4:])
        else:
            mine, theirs = (0, 1) if from_client else (1, 0)
            seq, ack = seqs[fi][mine], seqs[fi][theirs]
            data = build_tcp(**macs, ip_src=src[0], ip_dst=dst[0], sport=src[1], dport=dst[1],
                             seq=seq, ack=ack if flags & TCP_ACK else 0, flags=flags, tag=tag,
                             payload=payload)
            seqs[fi][mine] += length + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        records.append(Packet(ts, data))
    return records


# --- receive-side scaling --------------------------------------------------------------------


def queue_of(data: bytes, queues: int) -> int:
    """The receive queue of a frame: a symmetric hash of its connection, 0 for non-IP frames."""
    p = parse(data)
    if not p.is_ipv4:
        return 0
    key = struct.pack("!BIHIH", *canonical(p.five_tuple))
    return zlib.crc32(key) % queues


def split_by_flow(src: str | Path, dsts: Sequence[str | Path]) -> list[int]:
    """Write the packets of `src` to the pcaps `dsts` by `queue_of`; return packets per queue."""
    if not dsts:
        raise InputError("split_by_flow: need at least one output file")
    buckets: list[list[Packet]] = [[] for _ in dsts]
    for pkt in iter_pcap(src):
        buckets[queue_of(pkt.data, len(dsts))].append(pkt)
    for dst, bucket in zip(dsts, buckets):
        write_pcap(dst, bucket)
    return [len(b) for b in buckets]


def merge_by_time(srcs: Sequence[str | Path]) -> list[tuple[int, Packet]]:
    """Packets of several pcaps as (file index, packet), in timestamp order (stable per file)."""
    merged: list[tuple[int, int, int, Packet]] = []
    for qi, src in enumerate(srcs):
        for pi, pkt in enumerate(iter_pcap(src)):
            merged.append((pkt.ts_ns, qi, pi, pkt))
    merged.sort(key=lambda item: item[:3])
    return [(qi, pkt) for _, qi, _, pkt in merged]


__all__ = ["TrafficSummary", "generate", "queue_of", "split_by_flow", "merge_by_time"]
