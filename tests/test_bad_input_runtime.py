"""Bad input to the runtime's loaders and a user's interrupt (issue 14): a record longer than the pcap's
snaplen is named by its real length; a replay log whose header was edited (tsc_hz) is refused by its
header check; SIGINT to `analyze` stops its parse workers and says "interrupted" in one line.
Real binaries, real processes and signals."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
from bad_input_util import CLI, ROOT, snapshot

from ftmb_instrument import replaylog, run as runlib, traffic

RUNTIME = ROOT / "runtime"
BUILD = RUNTIME / "build"
FWD = BUILD / "ftmb-test-fwd"


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "all"], check=True, capture_output=True, timeout=600)


def test_a_record_longer_than_the_snaplen_is_named_by_its_length(tmp_path):
    frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + bytes(70_000 - 14)
    f = tmp_path / "big.pcap"
    f.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                  + struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame)
    p = subprocess.run([str(BUILD / "ftmb-input-logger"), "--session", f"bi{os.getpid()}", "--in", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"ftmb-input-logger: {f}: packet 1 is 70000 bytes on the wire (65535 captured); the limit is 2048"]


@pytest.fixture(scope="module")
def recorded_log(tmp_path_factory):
    d = tmp_path_factory.mktemp("log")
    traffic.generate(d / "t.pcap", flows=20, packets=300)
    res = runlib.run([str(FWD), "2"], d / "t.pcap", d / "out.pcap", queues=2, timeout_s=60, log_file=d / "ftmb.log")
    assert res.ok, res.failure
    return d / "ftmb.log"


def replay(log: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FTMB_MODE="replay", FTMB_REPLAY_LOG=str(log), FTMB_REPLAY_STOP_AT_END="1")
    env.pop("FTMB_SESSION", None)
    return subprocess.run(["timeout", "60", str(FWD), "2"], env=env, capture_output=True, text=True)


def test_an_edited_log_header_is_refused(recorded_log, tmp_path):
    raw = recorded_log.read_bytes()
    _magic, abi, nthreads, hz = struct.unpack_from("<QIIQ", raw, 0)
    count, base = list(struct.unpack_from("<32Q", raw, 24)), list(struct.unpack_from("<32Q", raw, 280))
    assert raw[:replaylog.HEADER.size + 8] == replaylog.pack_header(nthreads, hz, count, base, abi)  # one format
    assert replay(recorded_log).returncode == 0
    for offset, what in ((16, "tsc_hz"), (24, "count[0]"), (280, "base[0]")):
        edited = bytearray(raw)
        value, = struct.unpack_from("<Q", edited, offset)
        struct.pack_into("<Q", edited, offset, value * 2 + 1)
        bad = tmp_path / f"{what}.log"
        bad.write_bytes(bytes(edited))
        p = replay(bad)
        assert p.returncode == 1, (what, p.returncode, p.stderr)
        assert p.stderr.strip().splitlines() == [
            f"ftmb: FTMB_REPLAY_LOG={bad}: the header fails its check (tsc_hz, a thread count or base was "
            "changed or corrupted); the log is not replayed"], (what, p.stderr)
    old = bytearray(raw)
    struct.pack_into("<Q", old, 0, 0x33474F4C424D5446)
    (tmp_path / "old.log").write_bytes(bytes(old))
    p = replay(tmp_path / "old.log")
    assert p.returncode == 1 and "an FTMBLOG3 log of an older runtime" in p.stderr, p.stderr


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("after_s", [0.0, 1.5])  # as the pool starts, and while it parses
def test_sigint_to_analyze_says_interrupted_and_stops_the_workers(tmp_path, after_s):
    terms = " + ".join(["g"] * 20000)
    files = []
    for i in range(8):
        f = tmp_path / f"big{i}.c"
        f.write_text(f"int g;\nint f{i}(void) {{ return {terms}; }}\n")
        files.append(f)
    before = snapshot(tmp_path)
    proc = subprocess.Popen([*CLI, "analyze", *map(str, files), "-j", "2", "-f", "json", "-o",
                             str(tmp_path / "r.json"), "--"], stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    while not workers and proc.poll() is None:  # the parse pool has started
        time.sleep(0.05)
        workers = _children(proc.pid)
    assert workers, "analyze finished before its workers were seen"
    time.sleep(after_s)
    workers = _children(proc.pid) or workers
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "ftmb-instrument: interrupted" and "Traceback" not in err, err
    for w in workers:
        assert not Path(f"/proc/{w}").exists() or "Z" in Path(f"/proc/{w}/stat").read_text().split()[2]
    assert snapshot(tmp_path) == before  # no report, no temporary file
