"""The oracle's comparisons on hand-made outputs: each check must be able to fail."""

from __future__ import annotations

from pathlib import Path

from ftmb_instrument import pcap, traffic, verify


def _trace(tmp_path: Path) -> list[pcap.Packet]:
    path = tmp_path / "trace.pcap"
    traffic.generate(path, seed=3, flows=20, packets=300, duration_s=0.1)
    return pcap.read_pcap(path)


def test_exactly_once_holds_for_the_same_stream(tmp_path):
    pkts = _trace(tmp_path)
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    pcap.write_pcap(a, pkts)
    pcap.write_pcap(b, pkts)
    assert verify.exactly_once(a, b) == []


def test_exactly_once_reports_a_duplicate_and_a_loss(tmp_path):
    pkts = _trace(tmp_path)
    ref, dup, lost = tmp_path / "ref.pcap", tmp_path / "dup.pcap", tmp_path / "lost.pcap"
    pcap.write_pcap(ref, pkts)
    pcap.write_pcap(dup, pkts + pkts[5:6])
    pcap.write_pcap(lost, pkts[:-1])
    assert [v.invariant for v in verify.exactly_once(dup, ref)] == ["oracle.exactly-once"]
    assert "never released" in verify.exactly_once(lost, ref)[0].message


def test_compare_finds_a_changed_byte_in_its_queue(tmp_path):
    pkts = _trace(tmp_path)
    _, queue_of = verify.split_input(tmp_path / "trace.pcap", 2, tmp_path)
    ref, got = tmp_path / "ref.pcap", tmp_path / "got.pcap"
    pcap.write_pcap(ref, pkts)
    changed = bytearray(pkts[10].data)
    changed[-1] ^= 0xFF  # payload byte: the tag (TCP option or UDP payload start) survives
    pcap.write_pcap(got, pkts[:10] + [pcap.Packet(pkts[10].ts_ns, bytes(changed))] + pkts[11:])
    assert verify.compare(ref, ref, queue_of, 2) == []
    bad = verify.compare(got, ref, queue_of, 2)
    assert len(bad) == 1 and bad[0].invariant == "oracle.replay"


def test_at_most_once_reports_a_duplicate_and_a_packet_not_in_the_input(tmp_path):
    pkts = _trace(tmp_path)
    trace = tmp_path / "trace.pcap"
    fewer, dup = tmp_path / "fewer.pcap", tmp_path / "dup.pcap"
    pcap.write_pcap(fewer, pkts[::2])  # losses are allowed: a timing-dependent program drops some
    pcap.write_pcap(dup, pkts[:50] + pkts[7:8])
    assert verify.at_most_once(fewer, trace) == []
    assert [v.invariant for v in verify.at_most_once(dup, trace)] == ["oracle.at-most-once"]
    other = tmp_path / "other.pcap"
    traffic.generate(other, seed=3, flows=20, packets=400, duration_s=0.1)  # tags are packet indexes
    extra = tmp_path / "extra.pcap"
    pcap.write_pcap(extra, pkts[:10] + pcap.read_pcap(other)[-1:])
    assert "not in the input" in verify.at_most_once(extra, trace)[0].message


def test_verify_at_most_once_needs_no_reference_run(tmp_path):
    """delivery="at-most-once" runs no reference (the program is never started: a path that does not
    exist) and reports a duplicate as oracle 2's violation."""
    pkts = _trace(tmp_path)
    dup = tmp_path / "dup.pcap"
    pcap.write_pcap(dup, pkts + pkts[3:4])
    v = verify.verify([str(tmp_path / "no-such-program")], tmp_path / "trace.pcap", dup, queues=2,
                      delivery="at-most-once")
    assert v.replay_failure is None
    assert [x.invariant for x in v.violations] == ["oracle.at-most-once"]
    ok = tmp_path / "ok.pcap"
    pcap.write_pcap(ok, pkts)
    assert verify.verify([str(tmp_path / "no-such-program")], tmp_path / "trace.pcap", ok, queues=2,
                         delivery="at-most-once").ok


def test_verify_refuses_an_unknown_delivery(tmp_path):
    import pytest
    from ftmb_instrument.errors import InputError
    with pytest.raises(InputError, match="delivery 'twice'"):
        verify.verify(["x"], tmp_path / "t.pcap", tmp_path / "r.pcap", queues=1, delivery="twice")


def test_arrivals_are_read_for_their_own_session_only(tmp_path):
    import pytest

    from ftmb_instrument import run as runlib
    from ftmb_instrument.errors import InputError
    out = tmp_path / "out.pcap"
    path = runlib.arrivals_path(out)
    path.write_text("ftmb-arrivals/1 run-1-abc\n0 100\n2 300\n")
    assert runlib.read_arrivals(out, "run-1-abc") == runlib.Arrivals({0: 100, 2: 300}, None)  # (no start)
    assert runlib.read_arrivals(out, "run-2-def") is None  # another run's: not these packets' times
    assert runlib.read_arrivals(tmp_path / "none.pcap", "run-1-abc") is None
    path.write_text("ftmb-arrivals/1 run-1-abc\n0 100\n2 x\n")
    with pytest.raises(InputError, match=r"out.pcap.arrivals: line 3: '2 x'"):
        runlib.read_arrivals(out, "run-1-abc")
    path.write_text("ftmb-arrivals/2 run-1-abc 50\n0 100\n2 300\n")
    assert runlib.read_arrivals(out, "run-1-abc") == runlib.Arrivals({0: 100, 2: 300}, 50)
    path.write_text("ftmb-arrivals/2 run-1-abc\n0 100\n")
    with pytest.raises(InputError, match="line 1: .* is not 'ftmb-arrivals/2 SESSION START_NS'"):
        runlib.read_arrivals(out, "run-1-abc")
    path.write_text("something else\n")
    with pytest.raises(InputError, match="line 1: not an ftmb-arrivals/1 or /2 file"):
        runlib.read_arrivals(out, "run-1-abc")
