"""Unmodified DPDK l2fwd (Debian's dpdk-doc sources, copied at test time), built with `ftmb-cc`, fails
over on net_null ports, and the verification replay regenerates every released packet byte for byte.

l2fwd writes each port's MAC address (`rte_eth_macaddr_get`; net_null makes one up at random in each
process) into every packet it forwards: a backup or a replay that read its own MAC address would send
different bytes. Five kill instants recover from checkpoints, two from the warm standby (which takes
over at the first per-process value of its initialization).

l2fwd forwards every packet it receives, through a TX buffer that a timer on `rte_rdtsc` (virtual
time in a session) drains: every input packet must come out, in record mode and after a failover,
which needs virtual time to go on after the input ends, with the number of empty polls after the end
in the log (runtime/README.md, Time model: quiet operations).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kill_util import assert_killed_mid_run

pytestmark = pytest.mark.slow

SOURCE = Path("/usr/share/dpdk/examples/l2fwd/main.c")
BIN = Path(sys.executable).parent


def _pkg_config(*args: str) -> list[str]:
    return subprocess.run(["pkg-config", *args, "libdpdk"], capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture(scope="module")
def l2fwd(tmp_path_factory):
    if not SOURCE.is_file():
        pytest.fail(f"{SOURCE} missing: install dpdk-doc and libdpdk-dev (./dev.sh does)")
    d = tmp_path_factory.mktemp("l2fwd")
    shutil.copy(SOURCE, d / "main.c")
    subprocess.run([str(BIN / "ftmb-cc"), "-O2", *_pkg_config("--cflags"), "main.c", "-o", "l2fwd",
                    *_pkg_config("--libs")], cwd=d, check=True, capture_output=True, timeout=300)
    subprocess.run([str(BIN / "ftmb-instrument"), "traffic", "in.pcap", "--seed", "1", "--flows", "100",
                    "--packets", "3000"], cwd=d, check=True, capture_output=True, timeout=60)
    return d


L2FWD_ARGS = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--vdev", "net_null0", "--vdev", "net_null1",
              "--lcores", "(0-2)@(0,1)", "--", "-p", "0x3", "-T", "0"]


def test_l2fwd_releases_every_packet_and_idle_polls_log_nothing(l2fwd):
    # (the last packets of each port sat in its TX buffer: the drain timer never fired once time
    # stopped with the input; 4960 of 5000 were released. And every idle iteration logged its
    # force_quit read: 45 to 680 records per packet, bench/RESULTS.md)
    cmd = [str(BIN / "ftmb-instrument"), "run", "--json", "--in", "in.pcap", "--out", f"rec{os.getpid()}.pcap",
           "--queues", "2", "--rate", "3000", "--", "./l2fwd", f"--file-prefix=ftmbl2rec{os.getpid()}", *L2FWD_ARGS]
    proc = subprocess.run(cmd, cwd=l2fwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["output_packets"] == res["released"] == res["input_packets"] == 3000, res
    # the receives, l2fwd's ordered accesses per burst and the idle ticks' receives and drains: a
    # few per packet, whatever the machine's load (a quiet machine serves more ticks)
    assert res["records"] < 20 * res["input_packets"], res


# kills in seconds after the master took its first input (a loaded machine's slow start-up moves them
# along). The input (3000 packets at 2000/s) is paced from that first take too: 1.5 s of it.
@pytest.mark.parametrize("kill_at,checkpoint_ms", [(0.1, 50), (0.175, 50), (0.25, 50), (0.325, 50), (0.4, 50),
                                                    (0.2, None), (0.35, None)])
def test_l2fwd_failover_replays_every_released_packet(l2fwd, kill_at, checkpoint_ms):
    prefix = f"ftmbl2_{os.getpid()}_{int(kill_at * 1000)}"
    cmd = [str(BIN / "ftmb-instrument"), "run", "--json", "--in", "in.pcap", "--out", f"{prefix}.pcap",
           "--queues", "2", "--rate", "2000", "--kill-master-at", str(kill_at),
           "--kill-from-input"]
    if checkpoint_ms:
        cmd += ["--checkpoint-ms", str(checkpoint_ms)]
    cmd += ["--", "./l2fwd", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", f"--file-prefix={prefix}",
            "--vdev", "net_null0", "--vdev", "net_null1", "--lcores", "(0-2)@(0,1)", "--", "-p", "0x3", "-T", "0"]
    proc = subprocess.run(cmd, cwd=l2fwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["failover"] is not None, "the master finished before the kill"
    assert res["failover"]["from_snapshot"] == bool(checkpoint_ms), res["failover"]
    assert_killed_mid_run(l2fwd / f"{prefix}.pcap", res["failover"]["killed_wall_ns"], f"killed at {kill_at} s")
    check = res["replay_check"]
    assert check["failure"] is None, check
    assert check["compared"] == res["released"] > 0 and check["mismatches"] == 0, check
    assert res["output_packets"] == res["released"] == res["input_packets"], res  # the tail too
