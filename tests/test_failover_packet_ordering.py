"""Real code fails over: DPDK's unmodified packet_ordering example (an RX lcore feeding worker lcores
over an rte_ring, the workers feeding a TX lcore over another, then rte_reorder), built with
`ftmb-cc` from Debian's dpdk-doc sources at test time, killed mid-run with SIGKILL.

The lcores share only through library objects: the rings' calls are ordered on their handles (the
plan's library-object strategy), so the backup's replay reproduces every dequeue count. Each run's
own replay check re-executes the complete log and compares every regenerated packet with the one
released, and no packet leaves twice. The app
busy-polls on 4 lcores over 2 CPUs, exactly as written; checkpoints must still park every lcore.

Every packet the app transmits is released exactly once: the release count equals the app's own
count of what it sent (its TX stats, printed by the process that finished: the master, or the
backup that replayed and went live). How many that is depends on the schedule, in the plain app
too: rte_reorder starts its window at the first sequence number inserted, so a worker that is
slower with the first burst than another is with the second makes the first burst "early" (sent
through the app's `rte_eth_tx_burst(outp, 0, (void *)mbufs[i], 1)`, which passes the mbuf itself
as the array: a zero-length packet), and the send loop drains at most 32 packets per non-empty
dequeue, so reordered bursts leave a backlog that stays in the buffer once the input ends. Record
mode makes both far more frequent (its ordered ring calls wait for each other and for record-ring
space on 2 CPUs, so a worker often waits tens of ms between its dequeue and its enqueue); a plain
run with one worker delayed 50 ms at one burst shows the same. Hence the oracle is the app's own
count, not `verify`'s comparison with an uninterrupted run.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ftmb_instrument import pcap, traffic
from kill_util import assert_killed_mid_run

SOURCE = Path("/usr/share/dpdk/examples/packet_ordering/main.c")
BIN = Path(sys.executable).parent
APP_ARGS = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--vdev", "net_null0", "--vdev", "net_null1",
            "--lcores", "(0-3)@(0,1)", "--", "-p", "0x3"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if not SOURCE.is_file():
        pytest.fail(f"{SOURCE} missing: install dpdk-doc (./dev.sh does)")
    d = tmp_path_factory.mktemp("packet_ordering")
    shutil.copy(SOURCE, d / "main.c")
    cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True,
                            check=True).stdout.split()
    libs = subprocess.run(["pkg-config", "--libs", "libdpdk"], capture_output=True, text=True,
                          check=True).stdout.split()
    subprocess.run([str(BIN / "ftmb-cc"), "-O2", "-DALLOW_EXPERIMENTAL_API", *cflags, "main.c", "-o", "po", *libs],
                   cwd=d, check=True, timeout=300)
    trace = d / "in.pcap"
    traffic.generate(trace, seed=3, flows=60, packets=6000)
    return d


def _run(app: Path, out: Path, *extra: str, app_args: list[str] = APP_ARGS) -> dict:
    proc = subprocess.run(
        [str(BIN / "ftmb-instrument"), "run", "--json", "--in", str(app / "in.pcap"), "--out", str(out),
         "--queues", "2", "--rate", "3000", "--timeout", "120", *extra, "--", "./po", *app_args],
        cwd=app, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return json.loads(proc.stdout)


def _app_stat(res: dict, name: str) -> int:
    m = re.search(rf"^ - {re.escape(name)}:\s*(\d+)$", res["nf_stdout"], re.M)
    assert m, f"the app printed no '{name}': {res['nf_stdout'][-2000:]}"
    return int(m.group(1))


def _released_what_the_app_sent(app: Path, res: dict, out: Path) -> None:
    """Each packet the app transmitted (its reordered ones and its "early" ones) left exactly once,
    and each released packet with a tag is one of the input's."""
    sent = _app_stat(res, "Ro Pkts transmitted") + _app_stat(res, "Pkts transmitted w/o reorder")
    assert _app_stat(res, "Pkts rxd") == res["input_packets"] == 6000
    assert res["released"] == sent > 0 and res["held"] == 0, (res["released"], sent, res["held"])
    tags = Counter(pcap.packet_tag(p.data) for p in pcap.read_pcap(out))
    assert sum(tags.values()) == res["released"]
    twice = [t for t, n in tags.items() if t is not None and n > 1]
    assert not twice, f"packets released twice: {twice[:10]}"
    known = {pcap.packet_tag(p.data) for p in pcap.read_pcap(app / "in.pcap")}
    foreign = [t for t in tags if t is not None and t not in known]
    assert not foreign, f"released packets that are not in the input: {foreign[:10]}"


def _recovered_exactly(app: Path, res: dict, out: Path) -> None:
    fo = res["failover"]
    assert fo is not None and fo["live_ms"] is not None, f"the backup never went live: {fo}"
    assert_killed_mid_run(out, fo["killed_wall_ns"], f"killed at {fo['killed_at_s']} s")
    check = res["replay_check"]
    assert check is not None and check["failure"] is None, check
    assert check["compared"] == res["released"] > 0 and check["mismatches"] == 0, check
    _released_what_the_app_sent(app, res, out)


@pytest.mark.parametrize("run", range(3))
def test_record_releases_every_packet_sent_once(app, tmp_path, run):
    """Record mode with 6 lcores on 1 CPU (the RX lcore, 4 workers, the send lcore): reordering
    between the workers is frequent, and whatever the app makes of it, what it sends leaves once."""
    out = tmp_path / "out.pcap"
    args = [*APP_ARGS[:APP_ARGS.index("--lcores") + 1], "(0-5)@(0)", *APP_ARGS[APP_ARGS.index("--lcores") + 2:]]
    res = _run(app, out, app_args=args)
    assert res["failure"] is None and res["duplicates"] == 0, res
    _released_what_the_app_sent(app, res, out)


def test_record_mode_needs_no_thread_count(app, tmp_path):
    # 4 lcores on 2 queues: more threads than queues + 2, the output logger's old guess (the master
    # aborted with "thread index 3 but the output logger ... has rings for 3 threads")
    res = _run(app, tmp_path / "out.pcap")
    assert res["failure"] is None and res["released"] > 0 and res["held"] == 0, res


# Kills in seconds after the master took its first input (a loaded machine's slow EAL start-up moves
# them along): within the 2 s the input lasts (6000 packets at 3000/s).
@pytest.mark.parametrize("kill_at", [0.4, 0.55, 0.7, 0.85, 1.0])
def test_newest_checkpoint_takes_over(app, tmp_path, kill_at):
    out = tmp_path / "out.pcap"
    res = _run(app, out, "--checkpoint-ms", "50", "--kill-master-at", str(kill_at), "--kill-from-input")
    assert res["failover"]["from_snapshot"], f"no checkpoint before the kill at {kill_at} s: {res['failover']}"
    _recovered_exactly(app, res, out)


@pytest.mark.parametrize("kill_at", [0.3, 0.6])
def test_warm_standby_replays_from_the_start(app, tmp_path, kill_at):
    out = tmp_path / "out.pcap"
    res = _run(app, out, "--kill-master-at", str(kill_at), "--kill-from-input")
    assert not res["failover"]["from_snapshot"]
    _recovered_exactly(app, res, out)



def _records_by_thread(log: Path) -> dict[int, Counter]:
    """(kind, object) counts per thread of an output-logger log (FTMBLOG4, layout 5: runtime/src/ftmb_internal.h)."""
    data = log.read_bytes()
    nthreads = struct.unpack_from("<I", data, 12)[0]
    count = struct.unpack_from("<32Q", data, 24)
    base = struct.unpack_from("<32Q", data, 24 + 256)
    off, out = 32 + 16 * 32, {}
    for t in range(nthreads):
        c: Counter = Counter()
        for i in range(count[t] - base[t]):
            head = struct.unpack_from("<Q", data, off + 16 * i)[0]
            c[(head & 0xff, head >> 40)] += 1
        off += 16 * (count[t] - base[t])
        out[t] = c
    return out


ORD, ORDQ = 2, 8


def test_empty_ring_dequeues_log_nothing(app, tmp_path):
    """The workers poll rx_to_workers thousands of times a second and find it empty nearly always:
    only the dequeues that got packets are logged (ORDQ records), each followed by the worker's
    enqueue on workers_to_tx, an ORD record when the worker takes the ring from another thread (the
    send lcore dequeued since, or the other worker enqueued), none when its previous enqueue was the
    ring's latest access (a claim, runtime/README.md), so a worker logs at most as many enqueues as
    dequeues. Before empty dequeues were quiet a worker logged one record per poll
    (bench/RESULTS.md). The run's own failover (warm standby, from the start) and replay check still
    reproduce every released packet."""
    out, log = tmp_path / "out.pcap", tmp_path / "r.log"
    res = _run(app, out, "--log", str(log), "--kill-master-at", "0.6", "--kill-from-input")
    _recovered_exactly(app, res, out)
    by_thread = _records_by_thread(log)
    workers = [t for t, c in by_thread.items() if any(k == ORDQ for k, _ in c) and t != max(by_thread)]
    assert workers, by_thread
    for t in workers:
        c = by_thread[t]
        dequeues = sum(n for (k, _), n in c.items() if k == ORDQ)
        enqueues = sum(n for (k, _), n in c.items() if k == ORD)
        assert 0 < enqueues <= dequeues, (t, c)
