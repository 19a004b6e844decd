"""The invariant checkers flag hand-made violations and accept hand-made correct runs."""

import struct

import pytest

from ftmb_instrument import invariants as inv
from ftmb_instrument import pcap
from ftmb_instrument.errors import InputError

GW = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000010")
SERVER = pcap.ip_int("198.51.100.10")
EXT = pcap.ip_int("203.0.113.1")
T0 = 1_700_000_000 * 10**9


def client(n):
    return pcap.ip_int(f"10.0.0.{n}")


def tcp(tag, src, sport, dst, dport, flags=pcap.TCP_ACK, eth_dst=GW):
    return pcap.build_tcp(eth_src=CLIENT_MAC, eth_dst=eth_dst, ip_src=src, ip_dst=dst,
                          sport=sport, dport=dport, seq=tag * 10, ack=1, flags=flags, tag=tag)


def write(path, frames, ts_step=1000, t0=T0):
    pcap.write_pcap(path, [pcap.Packet(t0 + i * ts_step, f) for i, f in enumerate(frames)])
    return path


def names(violations):
    return sorted({v.invariant for v in violations})


# --- common tracing ---------------------------------------------------------------------------


def test_untraceable_duplicate_and_reordered_outputs_are_flagged(tmp_path):
    frames = [tcp(i, client(1), 1000, SERVER, 80) for i in range(3)]
    inp = write(tmp_path / "in.pcap", frames)
    out = write(tmp_path / "out.pcap", [frames[1], frames[0], frames[0],
                                         tcp(77, client(1), 1000, SERVER, 80)])
    found = inv.check_firewall(inp, out, max_conns=10)
    assert {"trace", "duplicate", "order"} <= set(names(found))


def test_inputs_without_tags_and_mismatched_queue_counts_are_input_errors(tmp_path):
    arp = GW + CLIENT_MAC + b"\x08\x06" + b"\0" * 28
    inp = write(tmp_path / "in.pcap", [arp])
    with pytest.raises(InputError, match="carries no generator tag"):
        inv.check_ids(inp, inp)
    with pytest.raises(InputError, match="1 input pcaps but 2 output pcaps"):
        inv.check_ids([inp], [inp, inp])


# --- NAT --------------------------------------------------------------------------------------


def nat_out(frame, ext_port):
    """What a correct NAT makes of an outbound frame (recomputed, so checksums are valid)."""
    p = pcap.parse(frame)
    tag = pcap.packet_tag(frame)
    return pcap.build_tcp(eth_src=CLIENT_MAC, eth_dst=GW, ip_src=EXT, ip_dst=p.ip_dst,
                          sport=ext_port, dport=p.dport, seq=tag * 10, ack=1, flags=p.tcp_flags,
                          tag=tag)


@pytest.fixture
def nat_input(tmp_path):
    frames = [tcp(0, client(1), 1000, SERVER, 80), tcp(1, client(2), 2000, SERVER, 80),
              tcp(2, client(1), 1000, SERVER, 80)]
    return frames, write(tmp_path / "in.pcap", frames)


def test_nat_accepts_a_correct_translation(tmp_path, nat_input):
    frames, inp = nat_input
    out = write(tmp_path / "out.pcap", [nat_out(frames[0], 1024), nat_out(frames[1], 1025),
                                         nat_out(frames[2], 1024)])
    assert inv.check_nat(inp, out) == []


def test_nat_flags_a_port_held_by_two_flows_at_once(tmp_path, nat_input):
    frames, inp = nat_input
    out = write(tmp_path / "out.pcap", [nat_out(frames[0], 1024), nat_out(frames[1], 1024),
                                         nat_out(frames[2], 1024)])
    found = inv.check_nat(inp, out)
    assert names(found) == ["nat.port-unique"]
    assert "external port 1024" in str(found[0])


def test_nat_flags_a_port_surely_shared_across_queues(tmp_path):
    a = [tcp(k, client(1), 1000, SERVER, 80) for k in (0, 2, 4)]
    b = [tcp(k, client(2), 2000, SERVER, 80) for k in (1, 3, 5)]
    ins = [write(tmp_path / "i0.pcap", a), write(tmp_path / "i1.pcap", b)]
    ms = 10**6
    outs = [write(tmp_path / "o0.pcap", [nat_out(f, 1024) for f in a], ts_step=100 * ms),
            write(tmp_path / "o1.pcap", [nat_out(f, 1024) for f in b], ts_step=100 * ms,
                  t0=T0 + 10 * ms)]
    # One packet per receive burst: both flows surely held port 1024 from 10 ms to 100 ms.
    assert names(inv.check_nat(ins, outs, burst=1)) == ["nat.port-unique"]
    # Three per burst: each core may have decided on all of its packets at once.
    assert inv.check_nat(ins, outs, burst=3) == []


def test_nat_flags_a_changed_mapping_and_bad_checksums(tmp_path, nat_input):
    frames, inp = nat_input
    stale = bytearray(frames[1])
    stale[14 + 12:14 + 16] = struct.pack("!I", EXT)  # source rewritten, checksums not
    out = write(tmp_path / "out.pcap", [nat_out(frames[0], 1024), bytes(stale),
                                         nat_out(frames[2], 1030)])
    found = names(inv.check_nat(inp, out))
    assert "nat.mapping" in found and "nat.checksum" in found
    assert "nat.mapping" not in names(inv.check_nat(inp, out, rebinding_allowed=True))


def test_nat_rebinding_only_where_the_binding_surely_could_have_expired(tmp_path):
    """With the run's arrival times a flow may change its port only when its next packet arrived
    more than the timeout after the packet NAT_BURST packets before its last one with the old
    port (the clock the worker stamped the binding with is at least that packet's arrival): a
    failover's outage moves the NAT's clock that far, and it rightly expires bindings then."""
    burst = inv.NAT_BURST
    flow = [tcp(burst + 1 + k, client(1), 1000, SERVER, 80) for k in range(3)]
    fin = tcp(burst + 1, client(1), 1000, SERVER, 80, flags=pcap.TCP_FIN | pcap.TCP_ACK)
    others = [tcp(k, client(2), 2000 + k, SERVER, 80) for k in range(burst + 1)]
    frames = others + flow
    inp = write(tmp_path / "in.pcap", frames)
    out = write(tmp_path / "out.pcap", [nat_out(f, 1100 + k) for k, f in enumerate(others)] +
                [nat_out(flow[0], 1024), nat_out(flow[1], 1024), nat_out(flow[2], 1030)])
    s = 10**9
    # others[1] is the packet NAT_BURST before flow[1], the last one with port 1024
    arrivals = {pcap.packet_tag(f): T0 + i * 1000 for i, f in enumerate(frames)}
    assert "nat.mapping" in names(inv.check_nat(inp, out, arrivals=arrivals))  # a ms: no expiry
    arrivals[pcap.packet_tag(flow[2])] = T0 + 10 * s + 2000  # just over the 10 s timeout after others[1]
    assert inv.check_nat(inp, out, arrivals=arrivals) == []
    arrivals[pcap.packet_tag(flow[2])] = T0 + 3 * s  # 3 s: only a closing binding expires
    assert "nat.mapping" in names(inv.check_nat(inp, out, arrivals=arrivals))
    assert inv.check_nat(inp, out, arrivals=arrivals, timeout_ms=2500) == []
    closing = [fin if f is flow[0] else f for f in frames]
    inp_fin = write(tmp_path / "in_fin.pcap", closing)
    out_fin = write(tmp_path / "out_fin.pcap", [nat_out(f, 1100 + k) for k, f in enumerate(others)] +
                    [nat_out(fin, 1024), nat_out(flow[1], 1024), nat_out(flow[2], 1030)])
    assert inv.check_nat(inp_fin, out_fin, arrivals=arrivals) == []  # after a FIN: 2 s
    assert "nat.mapping" in names(inv.check_nat(inp_fin, out_fin, arrivals=arrivals, closing_timeout_ms=4000))
    # a packet whose arrival the run did not keep justifies nothing
    del arrivals[pcap.packet_tag(flow[2])]
    assert "nat.mapping" in names(inv.check_nat(inp_fin, out_fin, arrivals=arrivals))


def test_nat_rebinding_of_an_early_flow_is_bounded_by_the_sessions_start(tmp_path):
    """A flow whose last packet with the old port is among the first NAT_BURST of its queue has no
    earlier arrival to bound its binding's stamp: the session's clock start does (no worker reads an
    earlier time). A new port a second into the session is reported; one more than the timeout after
    the start is not; without the start (an ftmb-arrivals/1 file) the check cannot tell."""
    flow = [tcp(k, client(1), 1000, SERVER, 80) for k in range(3)]
    inp = write(tmp_path / "in.pcap", flow)
    out = write(tmp_path / "out.pcap", [nat_out(flow[0], 1024), nat_out(flow[1], 1024), nat_out(flow[2], 1030)])
    s = 10**9
    arrivals = {pcap.packet_tag(f): T0 + k * 1000 for k, f in enumerate(flow)}
    arrivals[pcap.packet_tag(flow[2])] = T0 + 1 * s
    assert "nat.mapping" in names(inv.check_nat(inp, out, arrivals=arrivals, clock_start_ns=T0 - 1000))
    assert inv.check_nat(inp, out, arrivals=arrivals) == []  # (the loophole without the start)
    arrivals[pcap.packet_tag(flow[2])] = T0 + 10 * s + 2000  # over the 10 s timeout after the start
    assert inv.check_nat(inp, out, arrivals=arrivals, clock_start_ns=T0 - 1000) == []
    assert "nat.mapping" in names(inv.check_nat(inp, out, arrivals=arrivals, clock_start_ns=T0 + 1 * s))


def test_nat_flags_untranslated_and_misrouted_inbound_packets(tmp_path, nat_input):
    frames, _ = nat_input
    reply = pcap.build_tcp(eth_src=GW, eth_dst=CLIENT_MAC, ip_src=SERVER, ip_dst=EXT, sport=80,
                           dport=1024, seq=5, ack=1, flags=pcap.TCP_ACK, tag=3)
    inp = write(tmp_path / "in.pcap", frames[:1] + [reply])
    wrong = pcap.build_tcp(eth_src=GW, eth_dst=CLIENT_MAC, ip_src=SERVER, ip_dst=client(9),
                           sport=80, dport=1000, seq=5, ack=1, flags=pcap.TCP_ACK, tag=3)
    right = pcap.build_tcp(eth_src=GW, eth_dst=CLIENT_MAC, ip_src=SERVER, ip_dst=client(1),
                           sport=80, dport=1000, seq=5, ack=1, flags=pcap.TCP_ACK, tag=3)
    out_ok = write(tmp_path / "ok.pcap", [nat_out(frames[0], 1024), right])
    out_bad = write(tmp_path / "bad.pcap", [frames[0], wrong])
    assert inv.check_nat(inp, out_ok) == []
    found = inv.check_nat(inp, out_bad)
    assert names(found) == ["nat.rewrite"] and len(found) == 2


# --- firewall ---------------------------------------------------------------------------------


def syn(tag, n):
    return tcp(tag, client(n), 1000 + n, SERVER, 80, flags=pcap.TCP_SYN)


def test_firewall_accepts_admissions_within_the_limit(tmp_path):
    frames = [syn(0, 1), syn(1, 2), tcp(2, client(1), 1001, SERVER, 80, pcap.TCP_RST),
              syn(3, 3), tcp(4, client(2), 1002, SERVER, 80)]
    inp = write(tmp_path / "in.pcap", frames)
    assert inv.check_firewall(inp, inp, max_conns=2) == []


def test_firewall_flags_more_live_connections_than_the_limit(tmp_path):
    frames = [syn(0, 1), syn(1, 2), syn(2, 3)] + [tcp(3 + n, client(n), 1000 + n, SERVER, 80)
                                                   for n in (1, 2, 3)]
    inp = write(tmp_path / "in.pcap", frames)
    # A connection whose last forwarded packet is its SYN may have closed right after it.
    assert inv.check_firewall(inp, write(tmp_path / "short.pcap", frames[:4]), max_conns=2) == []
    found = inv.check_firewall(inp, inp, max_conns=2)
    assert names(found) == ["firewall.limit"]
    assert "3 connections live at once" in str(found[0])


def test_firewall_flags_the_limit_broken_across_queues(tmp_path):
    q0 = [syn(0, 1)] + [tcp(2 + k, client(1), 1001, SERVER, 80) for k in (0, 2)]
    q1 = [syn(1, 2)] + [tcp(3 + k, client(2), 1002, SERVER, 80) for k in (0, 2)]
    ins = [write(tmp_path / "i0.pcap", q0), write(tmp_path / "i1.pcap", q1)]
    ms = 10**6
    outs = [write(tmp_path / "o0.pcap", q0, ts_step=100 * ms),
            write(tmp_path / "o1.pcap", q1, ts_step=100 * ms, t0=T0 + 10 * ms)]
    # Receiving one packet at a time, each core decided on its third packet after sending its
    # second: both connections were live from 10 ms to 100 ms.
    found = inv.check_firewall(ins, outs, max_conns=1, burst=1)
    assert names(found) == ["firewall.limit"]
    assert "2 connections surely live at once across queues" in str(found[0])
    # With bursts of three, a core may have decided on all its packets before sending any.
    assert inv.check_firewall(ins, outs, max_conns=1, burst=3) == []
    assert inv.check_firewall(ins, outs, max_conns=1, burst=None) == []


def test_firewall_flags_packets_of_rejected_or_closed_connections(tmp_path):
    frames = [syn(0, 1), tcp(1, client(1), 1001, SERVER, 80),
              syn(2, 2), tcp(3, client(2), 1002, SERVER, 80, pcap.TCP_RST),
              tcp(4, client(2), 1002, SERVER, 80)]
    inp = write(tmp_path / "in.pcap", frames)
    out = write(tmp_path / "out.pcap", [frames[1]] + frames[2:])  # SYN of 1 dropped
    found = inv.check_firewall(inp, out, max_conns=5)
    assert names(found) == ["firewall.admission"] and len(found) == 2
    assert "its SYN was not forwarded" in str(found[0])
    assert "after its connection closed" in str(found[1])


def test_firewall_flags_modified_packets(tmp_path):
    frames = [syn(0, 1)]
    inp = write(tmp_path / "in.pcap", frames)
    out = write(tmp_path / "out.pcap", [frames[0][:-1] + bytes([frames[0][-1] ^ 1])])
    assert names(inv.check_firewall(inp, out)) == ["firewall.unchanged"]


# --- load balancer ----------------------------------------------------------------------------


def to_backend(frame, backend):
    p = pcap.parse(frame)
    tag = pcap.packet_tag(frame)
    ip = pcap.ip_int(backend)
    return pcap.build_tcp(eth_src=CLIENT_MAC, eth_dst=inv.backend_mac(ip), ip_src=p.ip_src,
                          ip_dst=ip, sport=p.sport, dport=p.dport, seq=tag * 10, ack=1,
                          flags=p.tcp_flags, tag=tag)


def test_lb_accepts_affinity_and_flags_a_flow_moved_between_backends(tmp_path):
    frames = [tcp(i, client(1 + i % 2), 1000, SERVER, 80) for i in range(4)]
    inp = write(tmp_path / "in.pcap", frames)
    good = write(tmp_path / "good.pcap", [to_backend(frames[0], "10.10.0.1"),
                                           to_backend(frames[1], "10.10.0.2"),
                                           to_backend(frames[2], "10.10.0.1"),
                                           to_backend(frames[3], "10.10.0.2")])
    assert inv.check_lb(inp, good) == []
    bad = write(tmp_path / "bad.pcap", [to_backend(frames[0], "10.10.0.1"),
                                         to_backend(frames[2], "10.10.0.3")])
    found = inv.check_lb(inp, bad)
    assert names(found) == ["lb.affinity"]
    assert "10.10.0.1, 10.10.0.3" in str(found[0])


def test_lb_flags_wrong_rewrites(tmp_path):
    other = tcp(1, client(1), 1000, pcap.ip_int("192.0.2.1"), 80)
    frames = [tcp(0, client(1), 1000, SERVER, 80), other]
    inp = write(tmp_path / "in.pcap", frames)
    wrong_mac = bytearray(to_backend(frames[0], "10.10.0.1"))
    wrong_mac[0:6] = GW
    out = write(tmp_path / "out.pcap", [bytes(wrong_mac), to_backend(other, "10.10.0.2")])
    found = inv.check_lb(inp, out)
    assert names(found) == ["lb.rewrite"] and len(found) == 2
    not_backend = write(tmp_path / "nb.pcap", [to_backend(frames[0], "10.99.0.1")])
    assert "not a backend" in str(inv.check_lb(inp, not_backend)[0])


# --- IDS --------------------------------------------------------------------------------------


def ids_report(trigger, estimate, threshold, kind=inv.IDS_ALERT):
    body = inv.IDS_REPORT_MAGIC + struct.pack("!BBHIII", kind, 0, 1, estimate, threshold,
                                              len(trigger))
    return (bytes.fromhex("021d50000001021d50000000") + struct.pack("!H", 0x88B5) + body
            + trigger[:128])


@pytest.fixture
def ids_input(tmp_path):
    frames = [tcp(i, client(1), 1000, SERVER, 80) for i in range(5)]
    return frames, write(tmp_path / "in.pcap", frames)


def test_ids_accepts_an_alert_at_the_threshold(tmp_path, ids_input):
    frames, inp = ids_input
    out = write(tmp_path / "out.pcap", frames[:3] + [ids_report(frames[2], 3, 3)] + frames[3:]
                + [ids_report(frames[4], 5, 3, kind=inv.IDS_SAMPLE)])
    assert inv.check_ids(inp, out, threshold=3) == []


def test_ids_flags_an_alert_before_the_threshold_was_crossed(tmp_path, ids_input):
    frames, inp = ids_input
    out = write(tmp_path / "out.pcap", frames[:2] + [ids_report(frames[1], 3, 3)] + frames[2:])
    found = inv.check_ids(inp, out, threshold=3)
    assert names(found) == ["ids.alert"]
    assert "gives at most 2" in str(found[0])
    low = write(tmp_path / "low.pcap", frames[:2] + [ids_report(frames[1], 2, 2)] + frames[2:])
    assert "below threshold 3" in str(inv.check_ids(inp, low, threshold=3)[0])


def test_ids_counts_other_queues_in_its_favour(tmp_path):
    a = [tcp(i, client(1), 1000, SERVER, 80) for i in range(2)]
    b = [tcp(2, client(1), 1000, SERVER, 80)]  # same flow seen on another queue
    ins = [write(tmp_path / "i0.pcap", a), write(tmp_path / "i1.pcap", b)]
    outs = [write(tmp_path / "o0.pcap", a[:1] + [ids_report(a[0], 2, 2)] + a[1:]),
            write(tmp_path / "o1.pcap", b)]
    assert inv.check_ids(ins, outs, threshold=2) == []
    assert names(inv.check_ids(ins, outs, threshold=2, rows=1, cols=1)) == []


def test_ids_flags_lost_packets_duplicate_alerts_and_detached_reports(tmp_path, ids_input):
    frames, inp = ids_input
    out = write(tmp_path / "out.pcap", frames[:3] + [ids_report(frames[2], 3, 3)]
                + [ids_report(frames[2], 3, 3)] + [ids_report(frames[0], 1, 3, inv.IDS_SAMPLE)]
                + frames[3:4])
    found = inv.check_ids(inp, out, threshold=3)
    assert names(found) == ["ids.alert", "ids.forward", "ids.report"]
    assert any("second alert" in str(v) for v in found)


def test_ids_hash_matches_fnv1a():
    # FNV-1a of the empty key is the offset basis; row 0 starts from basis ^ 0x9e3779b1.
    assert inv.ids_hash(b"", 0) == 2166136261 ^ 0x9E3779B1
    assert inv.ids_hash(b"a", 0) == ((2166136261 ^ 0x9E3779B1 ^ 0x61) * 16777619) & 0xFFFFFFFF
