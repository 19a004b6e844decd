"""Writes flows.pcap, the deterministic input of the pcap-reading corpus programs.

256 Ethernet/IPv4 packets (UDP and TCP) spread over 16 flows, no extra dependencies:
    python3 corpus/data/make_pcap.py   # rewrites corpus/data/flows.pcap
"""

import pathlib
import struct


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packet(i: int) -> bytes:
    flow = i % 16
    proto = 6 if flow % 4 == 0 else 17
    src = bytes([10, 0, 0, 1 + flow])
    dst = bytes([192, 168, 1, 1 + flow % 3])
    sport, dport = 1024 + flow, 53 if proto == 17 else 80
    payload = bytes((i + k) & 0xFF for k in range(18 + flow))
    if proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    else:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, i, 0, 5 << 4, 0x18, 8192, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i & 0xFFFF, 0, 64, proto, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    return eth + ip + l4


def main() -> None:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(256):
        frame = packet(i)
        out += struct.pack("<IIII", 1700000000 + i // 100, (i % 100) * 10000, len(frame), len(frame))
        out += frame
    path = pathlib.Path(__file__).with_name("flows.pcap")
    path.write_bytes(bytes(out))


if __name__ == "__main__":
    main()
