"""Fuzzing the readers of user files (issue 14): random bytes and random mutations of valid inputs fed
to `analyze` (a compilation database), `diff` (report JSON), the pcap reader and the runtime's
replay-log loader. Whatever the bytes, the answer is a result or a clean refusal: no Python exception
escapes the command line (which would be a traceback) and the C loader never dies of a signal other
than its own one-line fatal abort. A bounded number of examples, each a few seconds at most."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from bad_input_util import ROOT, THREADED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftmb_instrument import run as runlib, traffic
from ftmb_instrument.cli import main
from ftmb_instrument.errors import InputError
from ftmb_instrument.pcap import iter_pcap

RUNTIME = ROOT / "runtime"
FWD = RUNTIME / "build" / "ftmb-test-fwd"
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

WORK = Path(tempfile.mkdtemp(prefix="ftmb-fuzz-"))
VALID: dict[str, bytes] = {}  # the valid inputs the mutations start from, by name, read once


@pytest.fixture(scope="module", autouse=True)
def inputs():
    """Valid inputs to mutate: a program and its compilation database, its report, a trace, a log."""
    subprocess.run(["make", "-s", "-C", str(RUNTIME), "-j2", "all"], check=True, capture_output=True, timeout=600)
    (WORK / "prog.c").write_text(THREADED)
    (WORK / "build").mkdir()
    (WORK / "build" / "compile_commands.json").write_text(json.dumps(
        [{"directory": str(WORK), "file": "prog.c", "arguments": ["cc", "-O2", "-c", "prog.c", "-o", "prog.o"]}]))
    assert main(["analyze", str(WORK / "prog.c"), "-f", "json", "-o", str(WORK / "report.json"), "--"]) == 0
    traffic.generate(WORK / "trace.pcap", flows=6, packets=60)
    res = runlib.run([str(FWD), "2"], WORK / "trace.pcap", WORK / "out.pcap", queues=2, timeout_s=60,
                     log_file=WORK / "ftmb.log")
    assert res.ok, res.failure
    for name in ("build/compile_commands.json", "report.json", "trace.pcap", "ftmb.log"):
        VALID[name] = (WORK / name).read_bytes()
    yield
    subprocess.run(["rm", "-rf", str(WORK)], check=False)


@st.composite
def mutated(draw, name: str):
    """Random bytes, or the valid file `name` with a few bytes flipped, removed, inserted or cut."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=600))
    data = bytearray(VALID[name])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
    return bytes(data)


def json_leaf():
    return st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                     st.text(max_size=20), st.just([]), st.just({}), st.just([[[[[[[[]]]]]]]]))


@st.composite
def mutated_json(draw, name: str):
    """The valid JSON file `name` with one value somewhere in it replaced, or a key removed."""
    doc = json.loads(VALID[name])
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return json.dumps(doc).encode()
        k = draw(st.sampled_from(keys))
        child = node[k]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            del node[k]
        else:
            node[k] = draw(json_leaf())
        return json.dumps(doc).encode()


def _write(name: str, data: bytes) -> Path:
    p = WORK / name
    p.write_bytes(data)
    return p


@FUZZ
@given(st.one_of(mutated("build/compile_commands.json"), mutated_json("build/compile_commands.json")))
def test_analyze_survives_any_compilation_database(data):
    _write("build/compile_commands.json", data)
    rc = main(["analyze", "-p", str(WORK / "build"), "-j", "1", "-f", "json", "-o", str(WORK / "fuzz.json")])
    assert rc in (0, 1)


@FUZZ
@given(st.one_of(mutated("report.json"), mutated_json("report.json")))
def test_diff_survives_any_report(data):
    bad = _write("mutated.json", data)
    for old, new in ((WORK / "report.json", bad), (bad, WORK / "report.json")):
        assert main(["diff", str(old), str(new), "-o", str(WORK / "diff.txt")]) in (0, 1)


@FUZZ
@given(mutated("trace.pcap"))
def test_the_pcap_reader_survives_any_file(data):
    bad = _write("mutated.pcap", data)
    try:
        packets = list(iter_pcap(bad))
    except InputError as exc:
        assert str(exc).startswith(f"{bad}: ") and "\n" not in str(exc)
    else:
        assert all(isinstance(p.data, bytes) for p in packets)


@settings(FUZZ, max_examples=60)
@given(mutated("ftmb.log"))
def test_the_replay_log_loader_survives_any_file(data):
    bad = _write("mutated.log", data)
    env = dict(os.environ, FTMB_MODE="replay", FTMB_REPLAY_LOG=str(bad), FTMB_REPLAY_STOP_AT_END="1")
    env.pop("FTMB_SESSION", None)
    p = subprocess.run([str(FWD), "2"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1, -signal.SIGABRT), (p.returncode, p.stderr)
    if p.returncode != 0:
        assert p.stderr.startswith("ftmb: "), p.stderr
