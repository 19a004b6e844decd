"""Instructions per packet under valgrind, records and log bytes per packet: figures that do not depend
on the machine's load (issue 11, item 6).

Per app (the four examples, flowmon, and DPDK's unmodified l2fwd and packet_ordering copied from
/usr/share/dpdk/examples and built as bench/idle_records.py builds them) and per build:

- plain: the app built with gcc, outside a session, reading the trace itself (DPDK apps: a net_pcap
  vdev; flowmon: `-r FILE`);
- passthrough and record: the app built with ftmb-cc under `ftmb-instrument run` (both loggers,
  input as fast as the input logger serves, the master under valgrind), in passthrough mode
  (nothing logged: the session's input and output path without FTMB's logging) and in record mode.
  record / passthrough is what logging adds; record / plain also counts the different input path
  (a net_pcap vdev or libpcap reading a file against the session's shared-memory rings).

Each runs under `valgrind --tool=callgrind` (an instruction counter) on N packets (generator seed
7), which counts only the app's per-packet work: `--toggle-collect` on the functions that handle
received packets (PER_PACKET: the examples' per-packet function and their transmit of a burst,
l2fwd's forward of one packet with its transmit, packet_ordering's reorder insert and drain and
its transmit, flowmon's capture callback and its worker thread), with everything they call (the
PALs, the transmit path). Idle polls, timers (flow-table scans, l2fwd's drain and statistics,
flowmon's exporter), start-up and the receive itself (which an empty poll also runs) are left out:
those depend on how long the run waits, i.e. on the machine's load. Instructions per packet =
that count / N. All builds add NO_INLINE (gcc inlines no function that is not declared inline) so
that the functions stay functions (each is checked in the binary's symbols); the app's own helpers
are calls there too, which a default -O2 build would inline. The plain build reads the trace from a net_pcap vdev (flowmon: `-r`)
and writes pcap files; passthrough and record use the session's rings, so record / plain also
counts the different transmit path. Every figure is given over REPS repetitions (min / median /
max): two runs that agree show it holds. Records and log bytes per packet come from each record
run (the output logger's count and the log file's size; they include the receives' records).

    .venv/bin/python bench/instructions.py [--packets 2000] [--reps 2] [--apps nat,firewall,...]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ftmb_instrument import pcap, run as runlib, traffic  # noqa: E402

BIN = ROOT / ".venv" / "bin"
DPDK_EXAMPLES = Path("/usr/share/dpdk/examples")
EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]
# name: (source, extra cflags, is DPDK, lcores, app arguments, session queues, output-logger threads)
APPS = {
    "nat": (ROOT / "examples/nat/nat.c", [], True, "(0-1)@(0,1)", [], 1, 4),
    "firewall": (ROOT / "examples/firewall/firewall.c", [], True, "(0-1)@(0,1)", ["--max-conns", "60000"], 1, 4),
    "lb": (ROOT / "examples/lb/lb.c", [], True, "(0-1)@(0,1)", [], 1, 4),
    "ids": (ROOT / "examples/ids/ids.c", [], True, "(0-1)@(0,1)", [], 1, 4),
    "flowmon": (ROOT / "examples/flowmon/flowmon.c", ["-pthread"], False, "", ["--workers", "1"], 1, 8),
    "l2fwd": (DPDK_EXAMPLES / "l2fwd/main.c", [], True, "(0-2)@(0,1)", ["-p", "0x3", "-T", "0"], 2, 4),
    "packet_ordering": (DPDK_EXAMPLES / "packet_ordering/main.c", ["-DALLOW_EXPERIMENTAL_API"], True,
                        "(0-3)@(0,1)", ["-p", "0x3"], 2, 6),
}
VIP_SERVERS = ["198.51.100.10", "198.51.100.99"]  # lb balances connections to the first (bench/bench_run.py)
EXAMPLE_APPS = ("nat", "firewall", "lb", "ids")
# The functions whose instructions are counted (callgrind toggles collection on entry and exit, so
# none of an app's may call another of its list).
PER_PACKET = {
    "nat": ["nat_packet", "send_burst"],
    "firewall": ["filter_packet", "send_burst"],
    "lb": ["balance_packet", "send_burst"],
    "ids": ["inspect_packet", "send_burst"],
    "flowmon": ["on_packet", "worker"],
    "l2fwd": ["l2fwd_simple_forward"],
    # its transmit is inline in the plain build, into net_pcap's stripped PMD: not countable by name
    "packet_ordering": ["rte_reorder_insert", "rte_reorder_drain"],
}
# gcc -O2 inlines functions not declared inline too; these keep them (DPDK's inline ones still inline).
NO_INLINE = ["-fno-inline-functions", "-fno-inline-small-functions", "-fno-inline-functions-called-once"]


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    return (f"{model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; kernel {platform.release()}; "
            f"{sh(['gcc', '--version']).splitlines()[0]}; DPDK {sh(['pkg-config', '--modversion', 'libdpdk'])}; "
            f"{sh(['valgrind', '--version'])}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def pkg_config(flag: str) -> list[str]:
    return subprocess.run(["pkg-config", flag, "libdpdk"], capture_output=True, text=True, check=True).stdout.split()


def build(work: Path, name: str) -> tuple[Path, Path]:
    """The plain (gcc) and the ftmb-cc build of app `name`, in work/name/."""
    src, cflags, dpdk, *_ = APPS[name]
    d = work / name
    d.mkdir()
    shutil.copy(src, d / "main.c")
    flags = [*cflags, *(pkg_config("--cflags") if dpdk else [])]
    libs = pkg_config("--libs") + ["-lpthread", "-lm"] if dpdk else ["-lpcap"]
    for cc, out in (("gcc", "plain"), (str(BIN / "ftmb-cc"), "record")):
        subprocess.run([cc, "-O2", "-g", *NO_INLINE, *flags, "main.c", "-o", out, *libs], cwd=d, check=True,
                       capture_output=True, timeout=900)
        syms = subprocess.run(["nm", str(d / out)], capture_output=True, text=True, check=True).stdout
        own = [f for f in PER_PACKET[name] if not f.startswith(("rte_", "eth_", "ftmb_"))]
        missing = [f for f in own if not re.search(rf" {f}(\.\w+\.\d+)?$", syms, re.M)]
        if missing:
            raise SystemExit(f"instructions: {name} {out}: no function {', '.join(missing)} in the binary (inlined?)")
    return d / "plain", d / "record"


def counted(out_file: Path) -> int:
    """Instructions in a callgrind output file (only those collected: inside the PER_PACKET functions)."""
    total = next((int(line.split()[1]) for line in out_file.read_text().splitlines()
                  if line.startswith(("summary:", "totals:"))), None)
    if total is None:
        raise SystemExit(f"instructions: {out_file}: no summary line (valgrind did not finish)")
    return total


_ids = iter(range(10**9))


def valgrind(out_file: Path, name: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--collect-atstart=no",
            # f*: also gcc's clones of f (f.isra.0, f.constprop.0), which replace it
            *(f"--toggle-collect={f}*" for f in PER_PACKET[name]), f"--callgrind-out-file={out_file}"]


def plain_run(name: str, binary: Path, trace: Path, work: Path) -> int:
    """Instructions of one plain run on `trace`."""
    _, _, dpdk, lcores, args, queues, _ = APPS[name]
    cg = work / f"cg-plain-{next(_ids)}"
    if not dpdk:  # flowmon reads the savefile and exits at its end
        cmd = [*valgrind(cg, name), str(binary), "-r", str(trace), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=1200)
        return counted(cg)
    outs = [work / f"out{p}.pcap" for p in range(queues)]
    for o in outs:  # an earlier run's: the stop below watches these grow
        o.unlink(missing_ok=True)
    if name in EXAMPLE_APPS:  # one port, one worker; stops 1 ms after its input ends
        vdevs = ["--vdev", f"net_pcap0,rx_pcap={trace},tx_pcap={outs[0]}"]
        tail = ["--idle-exit-ms", "1"]
    else:  # two ports (-p 0x3), the trace on port 0; runs until SIGINT
        empty = work / "empty.pcap"
        pcap.write_pcap(empty, [])
        vdevs = ["--vdev", f"net_pcap0,rx_pcap={trace},tx_pcap={outs[0]}",
                 "--vdev", f"net_pcap1,rx_pcap={empty},tx_pcap={outs[1]}"]
        tail = []
    cmd = [*valgrind(cg, name), str(binary), *EAL, f"--file-prefix=ftmbin{os.getpid()}_{next(_ids)}", "--lcores", lcores,
           *vdevs, "--", *args, *tail]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if tail:
        _, err = proc.communicate(timeout=1200)
    else:  # SIGINT once the outputs hold packets and have not grown for 2 s (the input is all forwarded)
        last, since, start = -1, time.monotonic(), time.monotonic()
        while proc.poll() is None and time.monotonic() - start < 1200:
            time.sleep(0.2)
            size = sum(o.stat().st_size for o in outs if o.exists())
            if size != last:
                last, since = size, time.monotonic()
            elif size > 24 * len(outs) and time.monotonic() - since >= 2.0:  # more than the files' headers
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"instructions: {name} plain failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return counted(cg)


def session_run(name: str, binary: Path, trace: Path, work: Path, mode: str) -> tuple[int, runlib.RunResult, int]:
    """Instructions, the run's result and the log's size (0 in passthrough) of one run on `trace`."""
    _, _, dpdk, lcores, args, queues, threads = APPS[name]
    cg = work / f"cg-{mode}-{next(_ids)}"
    log = work / "record.log"
    if dpdk:
        argv = [str(binary), *EAL, f"--file-prefix=ftmbis{os.getpid()}_{next(_ids)}", "--lcores", lcores,
                "--vdev", "net_null0", *(["--vdev", "net_null1"] if queues > 1 else []), "--", *args,
                *(["--idle-exit-ms", "1"] if name in EXAMPLE_APPS else [])]
    else:
        argv = [str(binary), "-r", str(trace), *args]
    res = runlib.run([*valgrind(cg, name), *argv], trace, work / "released.pcap", mode=mode, queues=queues,
                     threads=threads, timeout_s=1200, attach_timeout_s=600, grace_s=600, settle_s=0.05,
                     log_file=log if mode == "record" else None, peer_timeout_ms=600000)
    if not res.ok:
        raise SystemExit(f"instructions: {name} {mode} failed: {res.failure}")
    size = log.stat().st_size if mode == "record" else 0
    log.unlink(missing_ok=True)
    return counted(cg), res, size


def mmm(xs: list[float]) -> str:
    return " / ".join(f"{x:,.0f}" for x in (min(xs), statistics.median(xs), max(xs)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=2000, help="N: runs on N and 2N packets")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each pair of runs")
    ap.add_argument("--apps", default=",".join(APPS))
    a = ap.parse_args(argv)
    apps = a.apps.split(",")
    for name in apps:
        if name not in APPS:
            print(f"instructions: --apps: unknown app {name!r} (one of {', '.join(APPS)})", file=sys.stderr)
            return 2
    if not shutil.which("valgrind"):
        print("instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    print(f"machine: {machine()}")
    print(f"command: .venv/bin/python bench/instructions.py --packets {a.packets} --reps {a.reps} --apps {a.apps}")
    n = a.packets
    with tempfile.TemporaryDirectory(prefix="ftmb-insns-") as tmp:
        work = Path(tmp)
        traces = {}
        for vip in (False, True):
            p = work / f"in-{int(vip)}.pcap"
            traffic.generate(p, seed=7, flows=40, packets=n, **({"servers": VIP_SERVERS} if vip else {}))
            traces[vip] = p
        failed = 0
        for name in apps:
            try:
                print(f"\n### {name}\n\n" + table(name, n, a.reps, work, traces), flush=True)
            except SystemExit as e:  # one line naming the app and the run that failed; the others go on
                print(f"\n### {name}\n\nfailed: {e}", flush=True)
                failed = 1
    return failed


def table(name: str, n: int, reps: int, work: Path, traces: dict) -> str:
    """The app's table: instructions per packet per build, records and log bytes per packet."""
    plain, record = build(work, name)
    trace = traces[name == "lb"]
    per = {"plain": [], "passthrough": [], "record": []}
    recs, logb = [], []
    for _ in range(reps):
        for mode in per:
            if mode == "plain":
                count = plain_run(name, plain, trace, work)
            else:
                count, res, size = session_run(name, record, trace, work, mode)
                if mode == "record":
                    recs.append(res.records / res.input_packets)
                    logb.append(size / res.input_packets)
            per[mode].append(count / n)
    med = {m: statistics.median(v) for m, v in per.items()}
    return "\n".join([
        f"Counted: {', '.join(PER_PACKET[name])}.",
        "",
        "| build | instructions per packet (min / median / max) | record / this | records per packet "
        "| log bytes per packet |",
        "|---|---|---|---|---|",
        f"| plain (gcc, outside a session) | {mmm(per['plain'])} | {med['record'] / med['plain']:.2f} | | |",
        f"| passthrough (ftmb-cc, `run`) | {mmm(per['passthrough'])} | "
        f"{med['record'] / med['passthrough']:.2f} | | |",
        f"| record (ftmb-cc, `run`) | {mmm(per['record'])} | | {mmm2(recs)} | {mmm2(logb, 1)} |"])


def mmm2(xs: list[float], digits: int = 2) -> str:
    return " / ".join(f"{x:.{digits}f}" for x in (min(xs), statistics.median(xs), max(xs)))


if __name__ == "__main__":
    sys.exit(main())
