"""Classic pcap reading/writing and the packet helpers in ftmb_instrument.pcap."""

import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftmb_instrument import pcap
from ftmb_instrument.errors import InputError

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def tcp_frame(tag=7, flags=pcap.TCP_SYN, payload=b""):
    return pcap.build_tcp(eth_src=MAC_A, eth_dst=MAC_B, ip_src=pcap.ip_int("10.0.0.1"),
                          ip_dst=pcap.ip_int("192.0.2.9"), sport=40000, dport=80, seq=1000,
                          ack=0, flags=flags, tag=tag, payload=payload)


@pytest.mark.parametrize("nanosecond", [True, False])
@pytest.mark.parametrize("big_endian", [True, False])
def test_round_trip_keeps_every_field(tmp_path, nanosecond, big_endian):
    packets = [pcap.Packet(1_700_000_000_123_456_000 + i * 1000, tcp_frame(i)) for i in range(5)]
    packets.append(pcap.Packet(1_700_000_001_000_000_000, b"\x01" * 20, orig_len=1500))
    path = tmp_path / "x.pcap"
    assert pcap.write_pcap(path, packets, nanosecond=nanosecond, big_endian=big_endian) == 6
    f = pcap.read_pcap_file(path)
    assert f.packets == packets
    assert f.nanosecond is nanosecond
    assert f.linktype == pcap.LINKTYPE_ETHERNET


def test_microsecond_files_drop_sub_microsecond_digits(tmp_path):
    path = tmp_path / "us.pcap"
    pcap.write_pcap(path, [pcap.Packet(5_000_000_123_456_789, b"abc")], nanosecond=False)
    assert pcap.read_pcap(path)[0].ts_ns == 5_000_000_123_456_000


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999_999),
                          st.binary(max_size=200)), max_size=8),
       st.booleans(), st.booleans())
def test_round_trip_of_arbitrary_records(tmp_path_factory, records, nanosecond, big_endian):
    path = tmp_path_factory.mktemp("rt") / "r.pcap"
    packets = [pcap.Packet(sec * 10**9 + (ns if nanosecond else ns // 1000 * 1000), data)
               for sec, ns, data in records]
    pcap.write_pcap(path, packets, nanosecond=nanosecond, big_endian=big_endian)
    assert pcap.read_pcap(path) == packets


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_tcpdump_reads_what_we_write(tmp_path):
    path = tmp_path / "t.pcap"
    pcap.write_pcap(path, [pcap.Packet(10**18, tcp_frame(42, payload=b"hello"))])
    out = subprocess.run(["tcpdump", "-nn", "-v", "-r", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "10.0.0.1.40000 > 192.0.2.9.80" in out.stdout
    assert "TS val 42" in out.stdout
    assert "incorrect" not in out.stdout


@pytest.mark.parametrize("content, message", [
    (None, "no such pcap file"),
    (b"", "not a pcap file"),
    (b"hello world, this is text and not a capture", "bad magic"),
    (b"\x0a\x0d\x0d\x0a" + b"\0" * 40, "is pcapng"),
    (struct.pack("<I", pcap.MAGIC_USEC) + b"\0" * 4, "truncated pcap header"),
])
def test_bad_files_raise_input_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.pcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as exc:
        pcap.read_pcap(path)
    assert str(path) in str(exc.value)
    assert message in str(exc.value)


def test_truncated_records_are_reported_with_their_index(tmp_path):
    path = tmp_path / "cut.pcap"
    pcap.write_pcap(path, [pcap.Packet(0, tcp_frame(1)), pcap.Packet(1, tcp_frame(2))])
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(InputError, match=r"truncated data of packet 1"):
        pcap.read_pcap(path)
    path.write_bytes(data[:24 + 16 + len(tcp_frame(1)) + 7])
    with pytest.raises(InputError, match=r"truncated record header for packet 1"):
        pcap.read_pcap(path)


def test_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        pcap.read_pcap(tmp_path)


def test_parse_tcp_fields_tag_and_checksums():
    data = tcp_frame(tag=0xDEADBEEF, flags=pcap.TCP_SYN | pcap.TCP_ACK, payload=b"xyz")
    p = pcap.parse(data)
    assert p.is_ipv4 and p.has_ports
    assert p.five_tuple == (pcap.PROTO_TCP, pcap.ip_int("10.0.0.1"), 40000,
                            pcap.ip_int("192.0.2.9"), 80)
    assert p.flag(pcap.TCP_SYN) and p.flag(pcap.TCP_ACK) and not p.flag(pcap.TCP_FIN)
    assert data[p.payload_off:] == b"xyz"
    assert pcap.packet_tag(data) == 0xDEADBEEF
    assert pcap.checksum_errors(data) == []
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    assert pcap.checksum_errors(bytes(corrupt)) == ["tcp checksum"]
    corrupt = bytearray(data)
    corrupt[14 + 8] ^= 0x01  # TTL
    assert pcap.checksum_errors(bytes(corrupt)) == ["ipv4 header checksum"]


def test_parse_udp_and_foreign_frames():
    data = pcap.build_udp(eth_src=MAC_A, eth_dst=MAC_B, ip_src=1, ip_dst=2, sport=53, dport=9,
                          tag=99, payload=b"q")
    p = pcap.parse(data)
    assert (p.proto, p.sport, p.dport) == (pcap.PROTO_UDP, 53, 9)
    assert pcap.packet_tag(data) == 99 and pcap.checksum_errors(data) == []
    assert not pcap.parse(b"\x00" * 10).is_ipv4
    arp = MAC_B + MAC_A + b"\x08\x06" + b"\0" * 28
    assert pcap.parse(arp).ethertype == 0x0806 and not pcap.parse(arp).is_ipv4
    assert pcap.packet_tag(arp) is None
    assert pcap.canonical((6, 5, 1, 3, 2)) == pcap.canonical((6, 3, 2, 5, 1))


def test_address_helpers_reject_garbage():
    assert pcap.ip_str(pcap.ip_int("203.0.113.1")) == "203.0.113.1"
    with pytest.raises(InputError, match="not an IPv4 address"):
        pcap.ip_int("10.0.0.256")
    with pytest.raises(InputError, match="not a MAC address"):
        pcap.mac_bytes("02:00")
