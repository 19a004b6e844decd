"""Library objects at run time, one family at a time: two busy-polling lcores race on one DPDK
library handle (tests/data/libfam/libfam.c: rte_ring, rte_reorder, rte_stack, rte_timer, rte_hash
written after launch, rte_mempool_get, rte_pktmbuf_alloc, an event device: event_sw0 with its
scheduler run by the lcores) and write what each call returned (a
dequeue count and who dequeued, a drained count, which token or object, whether the timer was
pending, a hash position, an empty pool) into the packets they transmit. The program is built with
`ftmb-cc`, run in record mode and SIGKILLed mid-run; the backup (the warm standby replaying from the
start, or the newest checkpoint) must take over, and `run`'s verification replay of the complete log
must regenerate every released packet with the same bytes.

The tests can fail: built with a model whose family entries are wrong, the calls are not ordered and
the replay's outcomes differ from the record's (mismatches, or packets the backup regenerated
differently released a second time). For rte_hash and event devices the mutant is the entries
removed: the hash API takes `const struct rte_hash *` even to add and delete, so an unmodelled call
only reads the handle, and an event device is an integer id, no handle at all (test_unmodelled_calls). For the others removal is no mutant: an unmodelled external call that takes
a non-const handle may write what it points to, so the calls are ordered anyway; their mutant says
the calls only read the handle. rte_reorder is not MT-safe, so its two lcores take a spinlock around
it, and that lock's order alone reproduces the outcome: it has no mutant.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from kill_util import assert_killed_mid_run

from ftmb_instrument import pcap, traffic
from ftmb_instrument.semantics import BUNDLED_DIR

from dpdk_example import BIN, build, pkg_config

pytestmark = pytest.mark.slow

SOURCE = Path(__file__).parent / "data" / "libfam" / "libfam.c"
CFLAGS = ("-DALLOW_EXPERIMENTAL_API",)
EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--vdev", "net_null0", "--lcores", "(0-2)@(0,1)"]
MODES = ["ring", "reorder", "stack", "timer", "hash", "mempool", "pktmbuf", "event"]
# the names of each family's calls in dpdk.toml (the mutant's entries)
FAMILY = {"ring": "rte_ring_", "stack": "rte_stack_", "timer": "rte_timer_", "hash": "rte_hash_",
          "mempool": "rte_mempool_", "pktmbuf": "rte_mempool_", "event": "rte_event_"}
# families whose unmodelled calls are not ordered: a const handle (rte_hash), an integer one (events)
UNORDERED_WITHOUT_MODEL = {"hash", "event"}
# ftmb-cc with another bundled model directory: the tool takes extra model files (--model), which
# only extend the bundled ones, so a mutant needs the bundled directory itself replaced
CC_WITH_MODELS = ("import sys; from pathlib import Path; import ftmb_instrument.semantics as s; "
                  "s.BUNDLED_DIR = Path(sys.argv.pop(1)); from ftmb_instrument.cc import main; "
                  "sys.exit(main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("libfam")
    shutil.copy(SOURCE, d / "libfam.c")
    build(d, "libfam.c", "libfam", *CFLAGS)
    traffic.generate(d / "in.pcap", seed=3, flows=60, packets=6000)
    return d


def _models(directory: Path, family: str, transform) -> Path:
    """A copy of the bundled models whose [[opaque_access]] entries naming `family` calls are
    transformed (None: removed)."""
    directory.mkdir()
    for f in BUNDLED_DIR.glob("*.toml"):
        shutil.copy(f, directory / f.name)
    text = (directory / "dpdk.toml").read_text()
    blocks = text.split("\n[[")
    kept = [blocks[0]]
    for b in blocks[1:]:
        if b.startswith("opaque_access]]") and family in b.split("\n", 2)[1]:
            b = transform(b)
            if b is None:
                continue
        kept.append(b)
    assert len(kept) != len(blocks) or kept != blocks, f"no [[opaque_access]] entry names {family}"
    (directory / "dpdk.toml").write_text("\n[[".join(kept))
    return directory


def _run(app: Path, binary: str, mode: str, out: Path, *extra: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [str(BIN / "ftmb-instrument"), "run", "--json", "--in", str(app / "in.pcap"), "--out", str(out),
         "--queues", "2", "--rate", "3000", "--timeout", "120", *extra, "--", f"./{binary}", *EAL,
         *(["--vdev", "event_sw0"] if mode == "event" else []), "--", mode],
        cwd=app, capture_output=True, text=True, timeout=200)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _observations(out: Path) -> Counter:
    """What the lcores wrote into the released packets: (mode, lcore, 4 bytes of outcome)."""
    return Counter(bytes(p.data[6:12]) for p in pcap.read_pcap(out))


@pytest.mark.parametrize("mode", MODES)
# (kills in seconds after the first input, a loaded machine's slow EAL start-up aside; the input lasts 2 s)
@pytest.mark.parametrize("checkpoint_ms,kill_at", [(None, 0.3), (50, 0.9)], ids=["standby", "checkpoint"])
def test_replay_reproduces_each_call(app, tmp_path, mode, checkpoint_ms, kill_at):
    out = tmp_path / "out.pcap"
    extra = ["--kill-master-at", str(kill_at), "--kill-from-input"] + (["--checkpoint-ms", str(checkpoint_ms)] if checkpoint_ms else [])
    rc, res, err = _run(app, "libfam", mode, out, *extra)
    assert rc == 0, err[-3000:]
    fo = res["failover"]
    assert fo is not None and fo["live_ms"] is not None, f"the backup never went live: {fo}"
    assert fo["from_snapshot"] == bool(checkpoint_ms), f"kill at {kill_at} s: {fo}"
    assert_killed_mid_run(out, fo["killed_wall_ns"], f"kill at {kill_at} s")
    check = res["replay_check"]
    assert check["failure"] is None and check["compared"] == res["released"] > 0 and check["mismatches"] == 0, check
    tags = Counter(pcap.packet_tag(p.data) for p in pcap.read_pcap(out))
    twice = [t for t, n in tags.items() if t is not None and n > 1]
    assert not twice, f"packets released twice: {twice[:10]}"
    seen = _observations(out)
    assert {o[0] for o in seen} == {MODES.index(mode) + 1} and {o[1] for o in seen} == {1, 2}, \
        f"both lcores stamp their packets: {sorted(seen)[:5]}"
    assert len(seen) > 2, f"the outcomes never varied: {seen}"


def _read_only(block: str) -> str:
    return re.sub(r'mode = "\w+"', 'mode = "read"', block)


@pytest.mark.parametrize("mode", [m for m in MODES if m in FAMILY])
def test_a_model_without_the_order_makes_replay_differ(app, tmp_path, mode):
    models = _models(tmp_path / "models", FAMILY[mode], (lambda b: None) if mode in UNORDERED_WITHOUT_MODEL else _read_only)
    subprocess.run([sys.executable, "-c", CC_WITH_MODELS, str(models), "-O2", *CFLAGS, *pkg_config("--cflags"),
                    "libfam.c", "-o", f"libfam_{mode}_read", *pkg_config("--libs")],
                   cwd=app, check=True, capture_output=True, timeout=300)
    rc, res, err = _run(app, f"libfam_{mode}_read", mode, tmp_path / "out.pcap", "--kill-master-at", "0.3",
                      "--kill-from-input")
    check = res["replay_check"]
    # Either the backup's own replay finds its log does not fit (it diverges and aborts the failover), or
    # it goes live and the verification replay regenerates other bytes, or the library's state, built
    # in another order than the master's, brought the backup down in its replay (once in event mode:
    # SIGABRT with no runtime line after "taking over").
    diverged = check is None and "replay diverged" in err
    crashed = check is None and re.search(r"backup was gone when the master died \(killed by SIG\w+\): "
                                          r"ftmb: standby: the master \(pid \d+\) died; taking over", err)
    assert rc == 1 and (diverged or crashed or check is not None and (check["mismatches"] > 0 or check["compared"] < check["released"])), \
        f"the replay reproduced calls that nothing ordered: {check}; {err[-1000:]}"
    assert "replay check:" in err or "replay diverged" in err or crashed, err[-2000:]


@pytest.mark.parametrize("mode", [m for m in MODES if m in FAMILY])
def test_unmodelled_calls(app, tmp_path, mode):
    """Without the family's entries the calls are unknown external calls on the handle: ordered when
    they take it as a non-const pointer (they may write through it), not when it is const (rte_hash)
    or an integer (an event device id)."""
    models = _models(tmp_path / "models", FAMILY[mode], lambda b: None)
    proc = subprocess.run([sys.executable, "-c", CC_WITH_MODELS.replace("cc import main", "cli import main")
                           .replace("main(sys.argv[1:])", "main()"), str(models), "instrument",
                           "libfam.c", "--", *CFLAGS, *pkg_config("--cflags")],
                          cwd=app, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = re.findall(r"ftmb_ordered_begin\(\d+, \d+\)(?:, \d+\))?; [^;]*?\b(rte_\w+)\(", proc.stdout)
    family = {c for c in calls if c.startswith(FAMILY[mode]) or (mode == "pktmbuf" and c == "rte_pktmbuf_alloc")}
    if mode in UNORDERED_WITHOUT_MODEL:
        assert not family, f"const or integer handles are no access: {sorted(family)}"
    else:
        assert family, f"no {FAMILY[mode]}* call ordered: {sorted(set(calls))}"
