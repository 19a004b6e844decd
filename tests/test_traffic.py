"""The seeded traffic generator and the RSS-style split (ftmb_instrument.traffic)."""

from collections import defaultdict

import pytest

from ftmb_instrument import pcap, traffic
from ftmb_instrument.errors import InputError


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("traffic") / "t.pcap"
    summary = traffic.generate(path, seed=11, flows=120, packets=4000, duration_s=0.5)
    return path, summary


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, trace):
    path, _ = trace
    again = tmp_path / "again.pcap"
    traffic.generate(again, seed=11, flows=120, packets=4000, duration_s=0.5)
    assert again.read_bytes() == path.read_bytes()
    other = tmp_path / "other.pcap"
    traffic.generate(other, seed=12, flows=120, packets=4000, duration_s=0.5)
    assert other.read_bytes() != path.read_bytes()


def test_counts_tags_checksums_and_time_order(trace):
    path, summary = trace
    packets = pcap.read_pcap(path)
    assert len(packets) == summary.packets == 4000
    assert summary.flows == 120 == summary.tcp_flows + summary.udp_flows
    assert summary.fin_closed + summary.rst_closed + summary.left_open == summary.tcp_flows
    assert [pcap.packet_tag(p.data) for p in packets] == list(range(4000))
    assert all(pcap.checksum_errors(p.data) == [] for p in packets)
    assert all(a.ts_ns <= b.ts_ns for a, b in zip(packets, packets[1:]))
    flows = {pcap.canonical(pcap.parse(p.data).five_tuple) for p in packets}
    assert len(flows) == 120


def test_tcp_connections_open_with_a_handshake_and_close_as_summarized(trace):
    path, summary = trace
    by_conn = defaultdict(list)
    for p in pcap.read_pcap(path):
        parsed = pcap.parse(p.data)
        if parsed.proto == pcap.PROTO_TCP:
            by_conn[pcap.canonical(parsed.five_tuple)].append(parsed)
    fin = rst = 0
    for conn in by_conn.values():
        assert conn[0].tcp_flags == pcap.TCP_SYN
        assert conn[1].tcp_flags == pcap.TCP_SYN | pcap.TCP_ACK
        assert conn[1].ip_src == conn[0].ip_dst
        fin += sum(1 for p in conn if p.flag(pcap.TCP_FIN)) == 2
        rst += any(p.flag(pcap.TCP_RST) for p in conn)
    assert (fin, rst) == (summary.fin_closed, summary.rst_closed)


def test_flow_sizes_are_heavy_tailed(trace):
    path, summary = trace
    sizes = defaultdict(int)
    for p in pcap.read_pcap(path):
        sizes[pcap.canonical(pcap.parse(p.data).five_tuple)] += 1
    ordered = sorted(sizes.values())
    assert ordered[-1] == summary.largest_flow
    assert ordered[-1] > 10 * ordered[len(ordered) // 2]


def test_split_keeps_connections_together_and_order(tmp_path, trace):
    path, _ = trace
    outs = [tmp_path / f"q{i}.pcap" for i in range(3)]
    counts = traffic.split_by_flow(path, outs)
    assert sum(counts) == 4000 and all(counts)
    owner = {}
    for q, out in enumerate(outs):
        tags = []
        for p in pcap.read_pcap(out):
            key = pcap.canonical(pcap.parse(p.data).five_tuple)
            assert owner.setdefault(key, q) == q
            tags.append(pcap.packet_tag(p.data))
        assert tags == sorted(tags)


@pytest.mark.parametrize("kwargs, message", [
    (dict(flows=0), "flows=0"),
    (dict(flows=100, packets=50), "packets=50: too few"),
    (dict(udp_fraction=1.5), "udp_fraction=1.5"),
    (dict(clients="10.0.0.0"), "not an IPv4 prefix"),
    (dict(servers=["300.1.1.1"]), "not an IPv4 address"),
])
def test_bad_parameters_are_input_errors(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        traffic.generate(tmp_path / "x.pcap", **kwargs)


def test_unwritable_destination_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot write pcap"):
        traffic.generate(tmp_path / "missing-dir" / "x.pcap", flows=2, packets=20)
