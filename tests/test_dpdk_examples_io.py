"""Packet I/O keeps the program's semantics on unmodified DPDK example apps (Debian's dpdk-doc
sources, copied at test time and built with `ftmb-cc`), both single-lcore: main polls the ports
itself and launches no worker, and neither installs a handler for the stop signal.

rxtx_callbacks registers an RX callback that stamps each packet with rte_rdtsc() and a TX callback
that adds up the latency and prints its average every 100 million packets; the copy prints it
every 1000 (the one edit), so a few thousand packets show whether both callbacks ran on the bursts
the session delivers. Inside a session time is virtual and a receive and the transmit right after
it read the same clock: a packet the RX callback stamped has latency 0, one it missed would show its
mbuf's stale stamp, and without the TX callback nothing is printed.

skeleton (basicfwd) fails over from the warm standby (which replays main's log from the start) and
from a checkpoint (main is a receiving thread, parked at its next receive). The standby waits for
the master's death at skeleton's first per-process value (its MAC address); a copy without that
call shows it also waits at main's first receive.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kill_util import assert_killed_mid_run

pytestmark = pytest.mark.slow

EXAMPLES = Path("/usr/share/dpdk/examples")
BIN = Path(sys.executable).parent
PACKETS = 3000


def _pkg_config(*args: str) -> list[str]:
    return subprocess.run(["pkg-config", *args, "libdpdk"], capture_output=True, text=True, check=True).stdout.split()


def _build(d: Path, source: Path) -> None:
    subprocess.run([str(BIN / "ftmb-cc"), "-O2", *_pkg_config("--cflags"), source.name, "-o", "app",
                    *_pkg_config("--libs")], cwd=d, check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    sources = {"rxtx": EXAMPLES / "rxtx_callbacks/main.c", "skeleton": EXAMPLES / "skeleton/basicfwd.c",
               "skeleton_nomac": EXAMPLES / "skeleton/basicfwd.c"}
    missing = [str(s) for s in sources.values() if not s.is_file()]
    if missing:
        pytest.fail(f"{missing[0]} missing: install dpdk-doc and libdpdk-dev (./dev.sh does)")
    root = tmp_path_factory.mktemp("dpdk_io")
    dirs = {}
    for name, src in sources.items():
        d = root / name
        d.mkdir()
        text = src.read_text()
        if name == "rxtx":
            every = "if (latency_numbers.total_pkts > (100 * 1000 * 1000ULL)) {"
            assert every in text, f"{src}: the latency print changed"
            text = text.replace(every, "if (latency_numbers.total_pkts > (1000ULL)) {")
        if name == "skeleton_nomac":
            mac = "retval = rte_eth_macaddr_get(port, &addr);"
            assert mac in text, f"{src}: the MAC address read changed"
            text = text.replace(mac, "memset(&addr, 0, sizeof addr); retval = 0;")
        (d / src.name).write_text(text)
        _build(d, d / src.name)
        dirs[name] = d
    subprocess.run([str(BIN / "ftmb-instrument"), "traffic", str(root / "in.pcap"), "--seed", "1", "--flows", "50",
                    "--packets", str(PACKETS)], check=True, capture_output=True, timeout=60)
    dirs["in"] = root / "in.pcap"
    return dirs


def _out(apps, name: str, tag: str) -> Path:
    """Where `_run(apps, name, tag, ...)` writes the released packets."""
    return apps[name] / f"ftmbio_{os.getpid()}_{tag}.pcap"


def _run(apps, name: str, tag: str, *options: str) -> dict:
    prefix = f"ftmbio_{os.getpid()}_{tag}"
    # stdbuf: the app dies of the stop signal, which would lose a fully buffered stdout
    cmd = [str(BIN / "ftmb-instrument"), "run", "--json", "--in", str(apps["in"]), "--out", str(_out(apps, name, tag)),
           "--queues", "2", "--rate", "2000", *options, "--", shutil.which("stdbuf"), "-oL", "./app",
           "--no-huge", "-m", "512", "--no-pci", "--no-shconf", f"--file-prefix={prefix}",
           "--vdev", "net_null0", "--vdev", "net_null1", "--lcores", "(0)@(0,1)"]
    proc = subprocess.run(cmd, cwd=apps[name], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["input_packets"] == res["released"] == PACKETS and res["held"] == 0, res
    return res


def _latencies(stdout: str) -> list[int]:
    return [int(x) for x in re.findall(r"^Latency = (\d+) cycles$", stdout, re.M)]


def _assert_failover(res: dict, from_snapshot: bool, out: Path) -> None:
    assert res["failover"] is not None, "the master finished before the kill"
    assert_killed_mid_run(out, res["failover"]["killed_wall_ns"], f"killed at {res['failover']['killed_at_s']} s")
    assert res["failover"]["from_snapshot"] == from_snapshot, res["failover"]
    check = res["replay_check"]
    assert check["failure"] is None, check
    assert check["compared"] == res["released"] and check["mismatches"] == 0, check


def test_rxtx_callbacks_run_on_session_bursts_and_the_stop_signal_is_a_clean_stop(apps):
    res = _run(apps, "rxtx", "rec")
    assert _latencies(res["nf_stdout"]) == [0, 0], res["nf_stdout"][-2000:]
    # no SIGINT handler: the run's stop signal killed it after its input was drained, a clean stop
    app = next(p for p in res["processes"] if p["name"] == "stdbuf")
    assert (app["returncode"], app["stopped_by"]) == (-2, "SIGINT") and res["drained"], app


def test_rxtx_callbacks_fail_over_from_the_standby(apps):
    # (the kill in seconds after the first input: a loaded machine's slow start-up moves it along;
    # of 3000 packets at 2000/s up to 2048 may wait in the input logger's rings then: 0.48 s are left)
    res = _run(apps, "rxtx", "sb", "--kill-master-at", "0.3", "--kill-from-input")
    _assert_failover(res, from_snapshot=False, out=_out(apps, "rxtx", "sb"))
    assert _latencies(res["nf_stdout"]) == [0, 0], res["nf_stdout"][-2000:]  # the standby's own output


@pytest.mark.parametrize("app,checkpoint_ms", [("skeleton", None), ("skeleton", 50), ("skeleton_nomac", None)])
def test_skeleton_fails_over(apps, app, checkpoint_ms):
    options = ["--kill-master-at", "0.3", "--kill-from-input"] + \
        (["--checkpoint-ms", str(checkpoint_ms)] if checkpoint_ms else [])
    res = _run(apps, app, f"{app}{checkpoint_ms or 0}", *options)
    _assert_failover(res, from_snapshot=bool(checkpoint_ms), out=_out(apps, app, f"{app}{checkpoint_ms or 0}"))
