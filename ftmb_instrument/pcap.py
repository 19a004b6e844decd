"""Classic pcap files and the packet fields the examples' checkers need.

Reads and writes the classic libpcap format (not pcapng): microsecond (0xa1b2c3d4) and nanosecond
(0xa1b23c4d) magic numbers in either byte order. Timestamps are kept as integer nanoseconds so a
nanosecond file round-trips exactly. Only Ethernet (link type 1) files are written; any link type
is read, but the parsing helpers assume Ethernet.

Parsing covers what the example middleboxes touch: Ethernet, IPv4 (with options), TCP (flags, the
timestamp option) and UDP. Anything else parses as "not IPv4" rather than raising: middleboxes see
odd packets and so do the checkers.

Every generated packet carries a 32-bit *tag* (see `packet_tag`), so a checker can tell which
input packet an output packet came from even after a NAT or load balancer rewrote its addresses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ftmb_instrument.errors import InputError

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 65535

ETHERTYPE_IPV4 = 0x0800
PROTO_TCP = 6
PROTO_UDP = 17

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

_GLOBAL_HEADER = struct.Struct("IHHiIII")  # byte order prefix added per file
_RECORD_HEADER = struct.Struct("IIII")


@dataclass(frozen=True)
class Packet:
    """One pcap record: capture time in nanoseconds since the epoch and the captured bytes."""

    ts_ns: int
    data: bytes
    orig_len: int = -1  # -1: same as len(data)

    @property
    def wire_len(self) -> int:
        return len(self.data) if self.orig_len < 0 else self.orig_len


@dataclass(frozen=True)
class PcapFile:
    packets: list[Packet]
    nanosecond: bool
    linktype: int
    snaplen: int


def _open_for_read(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such pcap file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a pcap file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read pcap file: {exc.strerror}") from None


def iter_pcap(path: str | Path) -> Iterator[Packet]:
    """Yield the records of a classic pcap file; raise `InputError` naming the file on bad input."""
    path = Path(path)
    with _open_for_read(path) as f:
        header = f.read(_GLOBAL_HEADER.size)
        if len(header) < 4:
            raise InputError(f"{path}: not a pcap file (too short for a pcap header)")
        order, nanosecond = _byte_order(header[:4], path)
        if len(header) < _GLOBAL_HEADER.size:
            raise InputError(f"{path}: truncated pcap header")
        record = struct.Struct(order + "IIII")
        scale = 1 if nanosecond else 1000
        index = 0
        while True:
            rec = f.read(record.size)
            if not rec:
                return
            if len(rec) < record.size:
                raise InputError(f"{path}: truncated record header for packet {index}")
            sec, frac, incl_len, orig_len = record.unpack(rec)
            if incl_len > 0x4000000:
                raise InputError(f"{path}: packet {index} claims {incl_len} bytes; file is corrupt")
            data = f.read(incl_len)
            if len(data) < incl_len:
                raise InputError(f"{path}: truncated data of packet {index}")
            yield Packet(sec * 1_000_000_000 + frac * scale, data,
                         -1 if orig_len == incl_len else orig_len)
            index += 1


def _byte_order(magic: bytes, path: Path) -> tuple[str, bool]:
    for order in ("<", ">"):
        (value,) = struct.unpack(order + "I", magic)
        if value == MAGIC_USEC:
            return order, False
        if value == MAGIC_NSEC:
            return order, True
    if magic == b"\x0a\x0d\x0d\x0a":
        raise InputError(f"{path}: is pcapng, expected classic pcap (convert with editcap -F pcap)")
    raise InputError(f"{path}: not a pcap file (bad magic {magic.hex()})")


def read_pcap_file(path: str | Path) -> PcapFile:
    """Read a whole pcap file including its header fields."""
    path = Path(path)
    with _open_for_read(path) as f:
        header = f.read(_GLOBAL_HEADER.size)
    if len(header) < 4:
        raise InputError(f"{path}: not a pcap file (too short for a pcap header)")
    order, nanosecond = _byte_order(header[:4], path)
    if len(header) < _GLOBAL_HEADER.size:
        raise InputError(f"{path}: truncated pcap header")
    _, _, _, _, _, snaplen, linktype = struct.unpack(order + "IHHiIII", header)
    return PcapFile(list(iter_pcap(path)), nanosecond, linktype, snaplen)


def read_pcap(path: str | Path) -> list[Packet]:
    """All records of a classic pcap file."""
    return list(iter_pcap(path))


def write_pcap(path: str | Path, packets: Iterable[Packet], *, nanosecond: bool = True,
               big_endian: bool = False, snaplen: int = DEFAULT_SNAPLEN,
               linktype: int = LINKTYPE_ETHERNET) -> int:
    """Write `packets` as a classic pcap file; return the number of records written."""
    order = ">" if big_endian else "<"
    magic = MAGIC_NSEC if nanosecond else MAGIC_USEC
    record = struct.Struct(order + "IIII")
    count = 0
    with open(path, "wb") as f:
        f.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        for pkt in packets:
            sec, rem = divmod(pkt.ts_ns, 1_000_000_000)
            frac = rem if nanosecond else rem // 1000
            f.write(record.pack(sec, frac, len(pkt.data), pkt.wire_len))
            f.write(pkt.data)
            count += 1
    return count


# --- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    """Header fields of an Ethernet frame; `ip_off` is -1 when it is not a complete IPv4 packet."""

    eth_dst: bytes
    eth_src: bytes
    ethertype: int
    ip_off: int = -1
    ip_src: int = 0
    ip_dst: int = 0
    proto: int = 0
    ip_id: int = 0
    l4_off: int = -1
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    payload_off: int = -1

    @property
    def is_ipv4(self) -> bool:
        return self.ip_off >= 0

    @property
    def has_ports(self) -> bool:
        return self.l4_off >= 0 and self.proto in (PROTO_TCP, PROTO_UDP)

    @property
    def five_tuple(self) -> tuple[int, int, int, int, int]:
        """(proto, src ip, src port, dst ip, dst port); ports 0 when not TCP/UDP."""
        return (self.proto, self.ip_src, self.sport, self.ip_dst, self.dport)

    def flag(self, mask: int) -> bool:
        return self.proto == PROTO_TCP and bool(self.tcp_flags & mask)


def parse(data: bytes) -> Parsed:
    """Parse Ethernet / IPv4 / TCP|UDP headers; never raises on short or foreign frames."""
    if len(data) < 14:
        return Parsed(b"", b"", 0)
    dst, src = data[0:6], data[6:12]
    (ethertype,) = struct.unpack_from("!H", data, 12)
    off = 14
    if ethertype == 0x8100 and len(data) >= 18:  # one VLAN tag
        (ethertype,) = struct.unpack_from("!H", data, 16)
        off = 18
    if ethertype != ETHERTYPE_IPV4 or len(data) < off + 20:
        return Parsed(dst, src, ethertype)
    ver_ihl = data[off]
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20 or len(data) < off + ihl:
        return Parsed(dst, src, ethertype)
    ip_id, frag = struct.unpack_from("!HH", data, off + 4)
    proto = data[off + 9]
    ip_src, ip_dst = struct.unpack_from("!II", data, off + 12)
    l4 = off + ihl
    base = dict(eth_dst=dst, eth_src=src, ethertype=ethertype, ip_off=off, ip_src=ip_src,
                ip_dst=ip_dst, proto=proto, ip_id=ip_id)
    if frag & 0x1FFF:  # non-first fragment: no L4 header
        return Parsed(**base)
    if proto == PROTO_TCP and len(data) >= l4 + 20:
        sport, dport = struct.unpack_from("!HH", data, l4)
        doff = (data[l4 + 12] >> 4) * 4
        return Parsed(**base, l4_off=l4, sport=sport, dport=dport, tcp_flags=data[l4 + 13],
                      payload_off=min(l4 + max(doff, 20), len(data)))
    if proto == PROTO_UDP and len(data) >= l4 + 8:
        sport, dport = struct.unpack_from("!HH", data, l4)
        return Parsed(**base, l4_off=l4, sport=sport, dport=dport, payload_off=l4 + 8)
    return Parsed(**base)


def ip_str(addr: int) -> str:
    return ".".join(str((addr >> s) & 0xFF) for s in (24, 16, 8, 0))


def ip_int(text: str) -> int:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise InputError(f"{text!r}: not an IPv4 address")
    value = 0
    for p in parts:
        value = value << 8 | int(p)
    return value


def flow_str(ft: tuple[int, int, int, int, int]) -> str:
    proto, s, sp, d, dp = ft
    name = {PROTO_TCP: "tcp", PROTO_UDP: "udp"}.get(proto, str(proto))
    return f"{name} {ip_str(s)}:{sp} > {ip_str(d)}:{dp}"


def canonical(ft: tuple[int, int, int, int, int]) -> tuple[int, int, int, int, int]:
    """The same key for both directions of a connection."""
    proto, s, sp, d, dp = ft
    return ft if (s, sp) <= (d, dp) else (proto, d, dp, s, sp)


# --- checksums -------------------------------------------------------------------------------


def inet_checksum(data: bytes, initial: int = 0) -> int:
    """Internet checksum (RFC 1071) of `data`, folded and complemented."""
    if len(data) % 2:
        data += b"\0"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_sum(p: Parsed, l4_len: int) -> int:
    return ((p.ip_src >> 16) + (p.ip_src & 0xFFFF) + (p.ip_dst >> 16) + (p.ip_dst & 0xFFFF)
            + p.proto + l4_len)


def checksum_errors(data: bytes) -> list[str]:
    """Which of the IPv4 header and TCP/UDP checksums of a frame are wrong (empty: all valid)."""
    p = parse(data)
    if not p.is_ipv4:
        return []
    errors = []
    ihl = (data[p.ip_off] & 0x0F) * 4
    if inet_checksum(data[p.ip_off:p.ip_off + ihl]) != 0:
        errors.append("ipv4 header checksum")
    if p.has_ports:
        (total_len,) = struct.unpack_from("!H", data, p.ip_off + 2)
        end = p.ip_off + total_len
        if end > len(data):
            return errors + ["truncated (cannot verify l4 checksum)"]
        segment = data[p.l4_off:end]
        if p.proto == PROTO_UDP and struct.unpack_from("!H", segment, 6)[0] == 0:
            return errors  # UDP checksum not used
        if inet_checksum(segment, _pseudo_sum(p, len(segment))) != 0:
            errors.append("tcp checksum" if p.proto == PROTO_TCP else "udp checksum")
    return errors


# --- building --------------------------------------------------------------------------------


def mac_bytes(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise InputError(f"{text!r}: not a MAC address")
    return bytes(int(p, 16) for p in parts)


def build_ipv4(*, eth_src: bytes, eth_dst: bytes, ip_src: int, ip_dst: int, proto: int,
               l4: bytes, ip_id: int = 0, ttl: int = 64) -> bytes:
    """An Ethernet/IPv4 frame around a finished L4 segment; IP checksum computed."""
    total = 20 + len(l4)
    hdr = struct.pack("!BBHHHBBHII", 0x45, 0, total, ip_id & 0xFFFF, 0x4000, ttl, proto, 0,
                      ip_src, ip_dst)
    hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
    return eth_dst + eth_src + struct.pack("!H", ETHERTYPE_IPV4) + hdr + l4


def _l4_checksum(ip_src: int, ip_dst: int, proto: int, segment: bytes) -> int:
    pseudo = ((ip_src >> 16) + (ip_src & 0xFFFF) + (ip_dst >> 16) + (ip_dst & 0xFFFF) + proto
              + len(segment))
    return inet_checksum(segment, pseudo)


def build_tcp(*, eth_src: bytes, eth_dst: bytes, ip_src: int, ip_dst: int, sport: int,
              dport: int, seq: int, ack: int, flags: int, tag: int, tsecr: int = 0,
              payload: bytes = b"", window: int = 64240, ip_id: int | None = None) -> bytes:
    """A TCP frame carrying `tag` as the TSval of a timestamp option (checksums valid)."""
    options = b"\x01\x01" + struct.pack("!BBII", 8, 10, tag & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (20 + len(options)) // 4 << 4, flags, window, 0, 0) + options
    segment = hdr + payload
    csum = _l4_checksum(ip_src, ip_dst, PROTO_TCP, segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    return build_ipv4(eth_src=eth_src, eth_dst=eth_dst, ip_src=ip_src, ip_dst=ip_dst,
                      proto=PROTO_TCP, l4=segment, ip_id=tag if ip_id is None else ip_id)


def build_udp(*, eth_src: bytes, eth_dst: bytes, ip_src: int, ip_dst: int, sport: int,
              dport: int, tag: int, payload: bytes = b"", ip_id: int | None = None) -> bytes:
    """A UDP frame whose payload starts with the 32-bit `tag` (checksums valid)."""
    body = struct.pack("!I", tag & 0xFFFFFFFF) + payload
    segment = struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body
    csum = _l4_checksum(ip_src, ip_dst, PROTO_UDP, segment) or 0xFFFF
    segment = segment[:6] + struct.pack("!H", csum) + segment[8:]
    return build_ipv4(eth_src=eth_src, eth_dst=eth_dst, ip_src=ip_src, ip_dst=ip_dst,
                      proto=PROTO_UDP, l4=segment, ip_id=tag if ip_id is None else ip_id)


def packet_tag(data: bytes, parsed: Parsed | None = None) -> int | None:
    """The generator's 32-bit packet tag: TCP timestamp option TSval, or a UDP payload's first
    four bytes. None when the frame carries none."""
    p = parsed or parse(data)
    if p.proto == PROTO_TCP and p.l4_off >= 0:
        i, end = p.l4_off + 20, p.payload_off
        while i < end:
            kind = data[i]
            if kind == 0:
                return None
            if kind == 1:
                i += 1
                continue
            if i + 1 >= end:
                return None
            length = data[i + 1]
            if kind == 8 and length == 10 and i + 10 <= end:
                return struct.unpack_from("!I", data, i + 2)[0]
            if length < 2:
                return None
            i += length
        return None
    if p.proto == PROTO_UDP and p.payload_off >= 0 and len(data) >= p.payload_off + 4:
        return struct.unpack_from("!I", data, p.payload_off)[0]
    return None
