"""The dwell (runtime/README.md, Time model): in record mode a receive that finds its queue empty
waits a little for input before it returns nothing, so an idle busy-polling thread makes about one
quiet operation per dwell instead of one per loop iteration, and a recovery has that few to replay.

ftmb-test-fwd (a worker per queue, polling without a pause between empty receives, as a DPDK lcore
does: FTMB_TEST_FWD_SPIN=1) records a trace served slowly (most of its time idle) through real
loggers; the output logger's log gives how many quiet operations each thread made (every loud record
carries the count since the previous one: runtime/src/ftmb_internal.h). After each loud record a
thread makes at most DWELL_AFTER quiet receives without a dwell, then at most one per dwell that ran
out, plus one per dwell that ended for another queue's entry, so the count is bounded by the run's
wall time over the dwell plus (DWELL_AFTER + 1) per record: an upper bound that a loaded machine
only makes easier to meet (a preempted dwell still ends on the clock), and that the runtime without
the dwell (FTMB_DWELL_US=0, the old behaviour) exceeds many times over. The log then replays to the
same observations (replay never dwells: it makes exactly the logged quiet operations)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from session_util import end_session

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
BUILD = RUNTIME / "build"
IL = BUILD / "ftmb-input-logger"
OL = BUILD / "ftmb-output-logger"
FWD = BUILD / "ftmb-test-fwd"
TIMEOUT = 120
DWELL_AFTER = 64  # _FTMB_DWELL_AFTER (runtime/src/rt.h): quiet operations in a row before polls dwell
LOG_HDR = 32 + 16 * 32  # struct _ftmb_log_file_hdr (FTMBLOG4): magic .. base[32], hdr_check
REC_ORDERED, REC_ND, REC_RX, REC_QUIET, REC_ORDQ = 2, 5, 6, 7, 8
ND_EXTERNAL, ND_SLEEP = 6, 8  # the nondeterminism sources whose records carry a quiet count


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "all"], check=True, capture_output=True, timeout=600)


def udp_packet(i: int) -> bytes:
    payload = struct.pack("!II", i % 8, i) + bytes(30)
    udp = struct.pack("!HHHH", 1024 + i % 8, 53, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, i % 8]),
                     bytes([10, 1, 0, 1]), ) + udp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def write_pcap(path: Path, packets: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(packets):
            f.write(struct.pack("<IIII", 1_700_000_000, i, len(p), len(p)) + p)


def quiet_counts(log: Path) -> tuple[dict[int, int], dict[int, int]]:
    """Per thread: the quiet operations its log counts, and its records."""
    data = log.read_bytes()
    nthreads = struct.unpack_from("<I", data, 12)[0]
    count = struct.unpack_from("<32Q", data, 24)
    base = struct.unpack_from("<32Q", data, 24 + 256)
    off, quiet, records = LOG_HDR, {}, {}
    for t in range(nthreads):
        n = count[t] - base[t]
        q = 0
        for head, value in struct.iter_unpack("<QQ", data[off: off + 16 * n]):
            kind, site, obj = head & 0xFF, head >> 24 & 0xFFFF, head >> 40
            if kind == REC_RX:
                q += value >> 40
            elif kind == REC_QUIET:
                q += value
            elif kind in (REC_ORDERED, REC_ORDQ) or (kind == REC_ND and obj in (ND_EXTERNAL, ND_SLEEP)):
                q += site
        off += 16 * n
        quiet[t], records[t] = q, n
    return quiet, records


def record_and_replay(tmp: Path, packets: int, rate: int, dwell_us: str | None, replay: bool = True):
    """One record run of ftmb-test-fwd (2 queues) on a trace served at `rate` packets/s, then (with
    `replay`) a replay of its log against the same loggers. Returns the record's wall time (the
    master's start to its exit), quiet operations and records per thread, and both runs' stdout (the
    packet count and each worker's digest of what it observed)."""
    write_pcap(tmp / "in.pcap", [udp_packet(i) for i in range(packets)])
    session = f"dw-{uuid.uuid4().hex[:12]}"
    log = tmp / "ftmb.log"
    log.unlink(missing_ok=True)
    ol = subprocess.Popen([OL, "--session", session, "--out", tmp / "out.pcap", "--threads", "3", "--log", log,
                           "--until-signal"], stderr=subprocess.PIPE, text=True)
    il = subprocess.Popen([IL, "--session", session, "--in", tmp / "in.pcap", "--queues", "2", "--rate", str(rate),
                           "--until-signal"], stderr=subprocess.PIPE, text=True)
    env = dict(os.environ, FTMB_SESSION=session, FTMB_PEER_TIMEOUT_MS="10000", FTMB_TEST_FWD_SPIN="1")
    env.pop("FTMB_DWELL_US", None)
    if dwell_us is not None:
        env["FTMB_DWELL_US"] = dwell_us
    try:
        start = time.monotonic()
        rec = subprocess.run(["timeout", str(TIMEOUT), FWD, "2"], env=dict(env, FTMB_MODE="record"),
                             capture_output=True, text=True)
        wall = time.monotonic() - start
        assert rec.returncode == 0, rec.stderr
        assert f"forwarded {packets} packets" in rec.stdout
        deadline = time.monotonic() + 30
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.exists(), "the output logger wrote no log after the master finished"
        quiet, records = quiet_counts(log)
        rep_out = None
        if replay:
            rep = subprocess.run(["timeout", str(TIMEOUT), FWD, "2"],
                                 env=dict(env, FTMB_MODE="replay", FTMB_REPLAY_LOG=str(log)),
                                 capture_output=True, text=True)
            assert rep.returncode == 0, rep.stderr
            rep_out = rep.stdout
        for p in (ol, il):
            p.send_signal(signal.SIGTERM)
        _, ol_err = ol.communicate(timeout=TIMEOUT)
        il.communicate(timeout=TIMEOUT)
        assert ol.returncode == 0, ol_err
    finally:
        end_session([ol, il], session)
    return wall, quiet, records, rec.stdout, rep_out


def test_an_idle_polling_thread_makes_one_quiet_receive_per_dwell(tmp_path):
    """500 packets at 500 packets/s: each worker idles most of a second. With a 1 ms dwell each
    makes at most wall-time / 1 ms quiet receives (plus one per record); without the dwell it makes
    one per loop iteration, which a spinning thread runs far more often than once a ms even when it
    gets a small share of a loaded machine's CPUs."""
    dwell_ms = 1
    wall, quiet, records, out, replayed = record_and_replay(tmp_path, 500, 500, str(dwell_ms * 1000))
    print(f"dwell {dwell_ms} ms: {wall:.2f} s, quiet {quiet}, records {records}")
    workers = [t for t in quiet if t != 0]  # thread 0 is main: it only starts and joins the workers
    assert len(workers) == 2
    for t in workers:
        bound = wall * 1000 / dwell_ms + (DWELL_AFTER + 1) * (records[t] + 1)
        assert 0 < quiet[t] <= bound, (f"thread {t}: {quiet[t]} quiet receives in {wall:.2f} s "
                                       f"(at most {bound:.0f} with a {dwell_ms} ms dwell)")
    assert replayed == out  # the same observations: replay made exactly the logged quiet receives

    # The same run without the dwell: the bound above is missed by far (this is what the test guards).
    wall0, quiet0, records0, _, _ = record_and_replay(tmp_path, 500, 500, "0", replay=False)
    print(f"no dwell: {wall0:.2f} s, quiet {quiet0}, records {records0}")
    over = [quiet0[t] / (wall0 * 1000 / dwell_ms + (DWELL_AFTER + 1) * (records0[t] + 1)) for t in workers]
    assert min(over) > 4, f"without the dwell the workers made only {over} times the bound's quiet receives"


def test_default_dwell_bounds_quiet_receives_and_replays(tmp_path):
    """The default dwell (20 us): at most one quiet receive per 20 us of the run per worker (plus
    DWELL_AFTER + 1 per record), and the log replays to the same observations."""
    wall, quiet, records, out, replayed = record_and_replay(tmp_path, 300, 1000, None)
    print(f"default dwell: {wall:.2f} s, quiet {quiet}, records {records}")
    for t in (1, 2):
        bound = wall * 1e6 / 20 + (DWELL_AFTER + 1) * (records[t] + 1)
        assert 0 < quiet[t] <= bound, f"thread {t}: {quiet[t]} quiet receives in {wall:.2f} s (bound {bound:.0f})"
    assert replayed == out


@pytest.mark.parametrize("value", ["-1", "1001", "fast"])
def test_bad_dwell_is_one_line(value):
    env = dict(os.environ, FTMB_MODE="record", FTMB_SESSION="dw-none", FTMB_DWELL_US=value,
               FTMB_ATTACH_TIMEOUT_MS="100")
    proc = subprocess.run([FWD, "1"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"ftmb: FTMB_DWELL_US={value}: expected an integer from 0 to 1000"]
