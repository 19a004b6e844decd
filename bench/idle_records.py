"""Records and log bytes per input packet against the input rate, for unmodified busy-polling DPDK
examples (Debian's dpdk-doc l2fwd and packet_ordering, copied and built with `ftmb-cc` as
tests/dpdk_example.py and tests/test_failover_packet_ordering.py build them).

Each app runs once per rate under `ftmb-instrument run --json --log` (record mode, no failure) on the
same trace; the table gives the records the output logger stored and the log file's size, per input
packet, with the records split by kind (RX receives, ORD ordered accesses, ORDQ loud quiet-capable
ordered calls (non-empty ring dequeues), ND nondeterministic values and external reads, QUIET counts,
TX transmits after a run of ordered accesses that logged nothing;
runtime/src/ftmb_internal.h). `--rates 0` is "as fast as the input
logger serves" (no --rate). FTMB_RUNTIME_BUILD picks the runtime (to compare with another build).

    .venv/bin/python bench/idle_records.py [--rates 1000,3000,10000,0] [--packets 3000] [--apps l2fwd,packet_ordering] [--objects]
        [--quiet]  # two more columns: the quiet operations the log counts per packet (what a replay makes
                   # besides its records; runtime/README.md, Time model) and the hold p50 / p99 (µs)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
EXAMPLES = Path("/usr/share/dpdk/examples")
EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--vdev", "net_null0", "--vdev", "net_null1"]
APPS = {  # source, extra cflags, EAL lcores + app arguments, output-logger threads
    "l2fwd": ("l2fwd/main.c", [], ["--lcores", "(0-2)@(0,1)", "--", "-p", "0x3", "-T", "0"], 4),
    "packet_ordering": ("packet_ordering/main.c", ["-DALLOW_EXPERIMENTAL_API"],
                        ["--lcores", "(0-3)@(0,1)", "--", "-p", "0x3"], 6),
}
KINDS = {1: "LOCK", 2: "ORD", 3: "HELD", 4: "TRYFAIL", 5: "ND", 6: "RX", 7: "QUIET", 8: "ORDQ", 9: "TX"}
LOG_HDR = 32 + 16 * 32  # struct _ftmb_log_file_hdr (FTMBLOG4: with its hdr_check)


def pkg_config(flag: str) -> list[str]:
    return subprocess.run(["pkg-config", flag, "libdpdk"], capture_output=True, text=True, check=True).stdout.split()


def build(work: Path, name: str) -> Path:
    src, cflags, _, _ = APPS[name]
    d = work / name
    d.mkdir()
    shutil.copy(EXAMPLES / src, d / "main.c")
    subprocess.run([str(BIN / "ftmb-cc"), "-O2", *cflags, *pkg_config("--cflags"), "main.c", "-o", "app",
                    *pkg_config("--libs")], cwd=d, check=True, capture_output=True, timeout=600)
    return d / "app"


def kinds(log: Path) -> collections.Counter:
    """Records per kind in an output-logger log (FTMBLOG4)."""
    data = log.read_bytes()
    nthreads = struct.unpack_from("<I", data, 12)[0]
    count = struct.unpack_from("<32Q", data, 24)
    base = struct.unpack_from("<32Q", data, 24 + 256)
    c: collections.Counter = collections.Counter()
    off = LOG_HDR
    for t in range(nthreads):
        for i in range(count[t] - base[t]):
            c[KINDS.get(data[off + 16 * i], "?")] += 1
        off += 16 * (count[t] - base[t])
    return c


def quiet_ops(log: Path) -> int:
    """The quiet operations an output-logger log counts: every loud record carries the count since
    its thread's previous one (RX in value bits 40-63; ORD, ORDQ and the external-read and sleep ND
    records in the site bits; a QUIET record in its value; runtime/src/ftmb_internal.h)."""
    data = log.read_bytes()
    nthreads = struct.unpack_from("<I", data, 12)[0]
    count = struct.unpack_from("<32Q", data, 24)
    base = struct.unpack_from("<32Q", data, 24 + 256)
    total, off = 0, LOG_HDR
    for t in range(nthreads):
        n = count[t] - base[t]
        for head, value in struct.iter_unpack("<QQ", data[off: off + 16 * n]):
            kind, site, src = head & 0xFF, head >> 24 & 0xFFFF, head >> 40
            if kind == 6:
                total += value >> 40
            elif kind == 7:
                total += value
            elif kind in (2, 8) or (kind == 5 and src in (6, 8)):
                total += site
        off += 16 * n
    return total


def ordered_by_object(log: Path) -> dict[int, tuple[int, int]]:
    """Per object: its ORD/ORDQ records and how many of them change the object's thread (records
    sorted by the object's sequence; an ORD value holds the sequence in bits 0-47)."""
    data = log.read_bytes()
    nthreads = struct.unpack_from("<I", data, 12)[0]
    count = struct.unpack_from("<32Q", data, 24)
    base = struct.unpack_from("<32Q", data, 24 + 256)
    seqs: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    off = LOG_HDR
    for t in range(nthreads):
        for i in range(count[t] - base[t]):
            head, value = struct.unpack_from("<QQ", data, off + 16 * i)
            if head & 0xFF in (2, 8):
                seqs[head >> 40].append((value & ((1 << 48) - 1), t))
        off += 16 * (count[t] - base[t])
    out = {}
    for obj, s in seqs.items():
        s.sort()
        out[obj] = (len(s), sum(1 for a, b in zip(s, s[1:]) if a[1] != b[1]))
    return out


def run(app: Path, name: str, trace: Path, rate: int) -> dict:
    _, _, args, threads = APPS[name]
    log = app.parent / f"r{rate}.log"
    cmd = [str(BIN / "ftmb-instrument"), "run", "--json", "--in", str(trace), "--out", str(app.parent / "o.pcap"),
           "--queues", "2", "--threads", str(threads), "--timeout", "300", "--log", str(log)]
    if rate:
        cmd += ["--rate", str(rate)]
    cmd += ["--", str(app), *EAL, f"--file-prefix=idle{os.getpid()}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=app.parent)
    try:
        res = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"failure": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    res["log_bytes"] = log.stat().st_size if log.exists() else 0
    res["kinds"] = kinds(log) if log.exists() else {}
    res["objects"] = ordered_by_object(log) if log.exists() else {}
    res["quiet"] = quiet_ops(log) if log.exists() else 0
    log.unlink(missing_ok=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1000,3000,10000,0")
    ap.add_argument("--packets", type=int, default=3000)
    ap.add_argument("--apps", default="l2fwd,packet_ordering")
    ap.add_argument("--objects", action="store_true",
                    help="also print each object's ordered records and thread changes per run")
    ap.add_argument("--quiet", action="store_true",
                    help="also give the quiet operations per packet and the hold p50 / p99 (µs)")
    a = ap.parse_args(argv)
    print(f"runtime: {os.environ.get('FTMB_RUNTIME_BUILD', 'this checkout')}; {a.packets} packets, 2 queues, "
          f"{os.cpu_count()} CPUs")
    print("| app | rate (pps) | released / input | records | records per packet | log bytes per packet "
          "| RX / ORD / ORDQ / ND / QUIET / TX per packet |" + (" quiet ops per packet | hold µs p50 / p99 |"
                                                                  if a.quiet else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if a.quiet else ""))
    bad = 0
    with tempfile.TemporaryDirectory(prefix="ftmb-idle-") as tmp:
        work = Path(tmp)
        trace = work / "in.pcap"
        subprocess.run([str(BIN / "ftmb-instrument"), "traffic", str(trace), "--seed", "7", "--flows", "80",
                        "--packets", str(a.packets)], check=True, capture_output=True)
        for name in a.apps.split(","):
            app = build(work, name)
            for rate in (int(r) for r in a.rates.split(",")):
                res = run(app, name, trace, rate)
                if res.get("failure") or not res.get("input_packets"):
                    print(f"| {name} | {rate or 'max'} | failed: {res.get('failure')} | | | | |", flush=True)
                    bad += 1
                    continue
                n = res["input_packets"]
                k = res["kinds"]
                split = " / ".join(f"{k.get(x, 0) / n:.2f}" for x in ("RX", "ORD", "ORDQ", "ND", "QUIET", "TX"))
                print(f"| {name} | {rate or 'max'} | {res['released']} / {n} | {res['records']} | "
                      f"{res['records'] / n:.2f} | {res['log_bytes'] / n:.1f} | {split} |" +
                      (f" {res['quiet'] / n:.1f} | {res.get('hold_p50_us')} / {res.get('hold_p99_us')} |"
                       if a.quiet else ""), flush=True)
                if a.objects:
                    print("  objects (ordered records / thread changes): " + ", ".join(
                        f"{o}: {r} / {c}" for o, (r, c) in sorted(res["objects"].items())), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
