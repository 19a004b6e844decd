#!/usr/bin/env python3
"""Runtime benchmarks, run on demand: ns per PAL and per transmit stamp, records/s through a ring
between two processes, and output-logger release latency of the multi-process pipeline in record
mode against passthrough. Prints machine information and the figures, and rewrites the
"Runtime" section of bench/RESULTS.md (between its markers; other sections are left alone).

usage: .venv/bin/python bench/runtime/run.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pal_cost  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
BUILD = RUNTIME / "build"
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- runtime-bench:begin -->", "<!-- runtime-bench:end -->"


def sh(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def machine_info() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gcc = sh(["gcc", "--version"]).splitlines()[0]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return [f"- CPU: {cpu}, {os.cpu_count()} logical CPUs (shared with other work; load average {load} at start)",
            f"- kernel {platform.release()}, {gcc}, runtime built with -O2",
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]


def udp_packet(flow: int, seq: int) -> bytes:
    payload = struct.pack("!II", flow, seq) + bytes(30)
    udp = struct.pack("!HHHH", 1024 + flow, 53, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([10, 0, flow >> 8, flow & 255]), bytes([10, 1, 0, 1])) + udp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def write_pcap(path: Path, n: int, flows: int) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            p = udp_packet(i % flows, i // flows)
            f.write(struct.pack("<IIII", 0, 0, len(p), len(p)) + p)


def pipeline_latency(mode: str, pcap: Path, out_dir: Path, rate: int, queues: int) -> tuple[float, float]:
    session = f"bench-{uuid.uuid4().hex[:10]}"
    ol = subprocess.Popen([BUILD / "ftmb-output-logger", "--session", session, "--out", out_dir / "out.pcap",
                           "--threads", str(queues + 1), "--stats"], stderr=subprocess.PIPE, text=True)
    il = subprocess.Popen([BUILD / "ftmb-input-logger", "--session", session, "--in", pcap, "--queues",
                           str(queues), "--rate", str(rate)], stderr=subprocess.PIPE, text=True)
    env = dict(os.environ, FTMB_MODE=mode, FTMB_SESSION=session)
    subprocess.run([BUILD / "ftmb-test-fwd", str(queues)], env=env, check=True, capture_output=True, timeout=300)
    _, err = ol.communicate(timeout=60)
    il.communicate(timeout=60)
    if ol.returncode != 0:
        raise SystemExit(f"output logger failed: {err}")
    words = err.split()
    return float(words[words.index("p50") + 1]), float(words[words.index("p99") + 1])


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = ap.parse_args()
    iters, reps, ring_n, runs, npkts = (200000, 3, 2000000, 1, 4000) if args.quick else \
        (2000000, 9, 20000000, 5, 20000)
    rate, queues = 20000, 2

    sh(["make", "-s", "-C", str(RUNTIME), "-j2", "all", "bench"])
    info = machine_info()
    print("\n".join(info))
    cg_iters = 20480 if args.quick else 102400
    pal = pal_cost.table(BUILD / "bench_pal", iters, reps, cg_iters)
    print(pal)
    ring = sh([str(BUILD / "bench_ring"), str(ring_n), "5" if not args.quick else "2"])
    print(ring)

    lat: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "in.pcap"
        write_pcap(pcap, npkts, 64)
        for _ in range(runs):
            for mode in ("passthrough", "record"):  # interleaved, so drift in load hits both alike
                p50, p99 = pipeline_latency(mode, pcap, Path(tmp), rate, queues)
                lat.setdefault(mode, {"p50": [], "p99": []})
                lat[mode]["p50"].append(p50)
                lat[mode]["p99"].append(p99)
    lat_lines = ["| mode | p50 µs (min / median / max) | p99 µs (min / median / max) |", "|---|---|---|"]
    for mode in ("passthrough", "record"):
        p50, p99 = spread(lat[mode]["p50"]), spread(lat[mode]["p99"])
        lat_lines.append(f"| {mode} | {p50[0]:.1f} / {p50[1]:.1f} / {p50[2]:.1f} | "
                         f"{p99[0]:.1f} / {p99[1]:.1f} / {p99[2]:.1f} |")
    added50 = statistics.median(lat["record"]["p50"]) - statistics.median(lat["passthrough"]["p50"])
    added99 = statistics.median(lat["record"]["p99"]) - statistics.median(lat["passthrough"]["p99"])
    lat_lines.append("")
    lat_lines.append(f"Added by record mode (median of runs): p50 {added50:+.1f} µs, p99 {added99:+.1f} µs.")
    print("\n".join(lat_lines))

    cmd = "`.venv/bin/python bench/runtime/run.py" + (" --quick" if args.quick else "") + "`"
    section = "\n".join([
        BEGIN,
        "## Runtime (PALs, ring, release latency)",
        "",
        f"Produced by {cmd} (builds `make -C runtime bench`, then runs `bench/runtime/pal_cost.py --iters "
        f"{iters} --reps {reps} --cg-iters {cg_iters}` (`runtime/build/bench_pal {iters} {reps}`, and each "
        f"benchmark under callgrind), `runtime/build/bench_ring {ring_n} 5`, and the pipeline {runs}x per mode).",
        "",
        *info,
        "",
        "### Instructions and ns per operation (`pal_cost.py`: callgrind's count inside the benchmark's "
        "function, loop included, per operation; ns min / median / max over the repetitions of one run)",
        "",
        "floor_*: the bare loops of the issue (16-byte record into a thread-local 4096-slot ring and a",
        "release store of the thread's counter; sequence by plain increment or by atomic fetch-add).",
        "held_pal: a PAL inside a lock the program already holds; ordered: begin/end around an",
        "increment; atomic_add: ftmb_atomic_fetch_add_8; mutex: lock+increment+unlock through the",
        "wrappers; *_raw: the same without the runtime; tx_stamp: the vector read of a transmit;",
        "tx_packet64: stamp and copy of one 64-byte packet into the output ring; *_2t: two threads on",
        "one object (wall time per operation per thread).",
        "",
        "```",
        pal.rstrip(),
        "```",
        "",
        "### Records through a ring between two processes (`bench_ring`, million records/s)",
        "",
        "```",
        ring.rstrip(),
        "```",
        "",
        f"### Release latency of the pipeline (input logger --rate {rate} pps, {npkts} packets, 64 flows, "
        f"{queues} queues, ftmb-test-fwd with {queues} workers, output logger --stats)",
        "",
        "Latency = output logger release time - input logger serve time of the packet.",
        "",
        *lat_lines,
        END,
    ])
    if not args.no_write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + section + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        RESULTS.write_text(text)
        print(f"wrote the runtime section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
