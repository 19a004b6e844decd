#!/usr/bin/env python3
"""Throughput and added latency of the example middleboxes under `ftmb-instrument run`.

For each example (nat, firewall, lb, ids) with 1 and 2 workers, in one invocation:

- throughput, four ways, on the same trace:
  `plain`       the uninstrumented example on net_pcap vdevs (queues split by the input logger's hash);
  `instr`       the ftmb-cc build, same net_pcap set-up, no session (the wrappers alone);
  `passthrough` the ftmb-cc build under `run --mode passthrough` (through both loggers, no logging);
  `record`      the ftmb-cc build under `run --mode record` (PALs, records, output held until stable).
  Throughput = input packets / (last output timestamp - first output timestamp): the span the
  middlebox was forwarding, without EAL start-up, attach or the idle wait at the end (net_pcap
  stamps packets when it transmits them, the output logger when it releases them).
- latency added by record mode: the output logger's release latency (release time minus the
  input's arrival time at the input logger), p50 and p99, record vs passthrough, with the input
  paced (--rate) so that queueing does not dominate.

Each measurement is repeated (--reps) and reported as min / median / max; the ratios use the
medians of the same invocation. Writes its section of bench/RESULTS.md between its markers
(other sections are left alone) unless --no-write.

    .venv/bin/python bench/bench_run.py [--reps 3] [--packets 40000] [--latency-packets 20000]
        [--rate 10000] [--examples nat,firewall,lb,ids] [--workers 1,2] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ftmb_instrument import pcap, run as runlib, traffic  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- run-bench:begin -->", "<!-- run-bench:end -->"
EAL = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--log-level=lib.eal:error"]
VIP = "198.51.100.10"
EXAMPLES = {  # name: (uses the VIP trace, arguments)
    "nat": (False, []),
    "firewall": (False, ["--max-conns", "60000"]),
    "lb": (True, []),
    "ids": (False, []),
}
_ids = iter(range(10**9))


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine() -> list[str]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    return [f"CPU: {model}, {os.cpu_count()} logical CPUs (shared with other work; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at start)",
            f"kernel {platform.release()}, {sh(['gcc', '--version']).splitlines()[0]}, "
            f"DPDK {sh(['pkg-config', '--modversion', 'libdpdk'])}",
            f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]


def build(dest: Path, cc: str | None) -> None:
    # ftmb-cc runs `make -C runtime` itself when the runtime changed: one compile at a time then.
    extra = [f"CC={cc}", "-j1"] if cc else ["-j2"]
    proc = subprocess.run(["make", "-s", "-C", str(ROOT / "examples"), f"BUILD={dest}", *extra],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"bench_run: building the examples{' with ' + cc if cc else ''} failed:\n{proc.stderr[-2000:]}")


def span_rate(out_paths: list[Path], n_input: int) -> float:
    ts = [p.ts_ns for path in out_paths for p in pcap.read_pcap(path)]
    if len(ts) < 2 or max(ts) == min(ts):
        return float("nan")
    return n_input / ((max(ts) - min(ts)) / 1e9)


def direct(binary: Path, trace_path: Path, workers: int, work: Path, args: list[str]) -> float:
    ins = [work / f"in{q}.pcap" for q in range(workers)]
    outs = [work / f"out{q}.pcap" for q in range(workers)]
    if not ins[0].exists():
        buckets = [[] for _ in ins]
        for p in pcap.read_pcap(trace_path):
            buckets[runlib.logger_queue(p.data, workers)].append(p)
        for path, bucket in zip(ins, buckets):
            pcap.write_pcap(path, bucket)
    vdev = "net_pcap0," + ",".join(f"rx_pcap={i},tx_pcap={o}" for i, o in zip(ins, outs))
    cmd = ["timeout", "-s", "KILL", "120", str(binary), *EAL, f"--file-prefix=ftmbbr{os.getpid()}_{next(_ids)}",
           "--lcores", f"(0-{workers})@(0,1)", "--vdev", vdev, "--", "--idle-exit-ms", "200", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        sys.exit(f"bench_run: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return span_rate(outs, sum(len(pcap.read_pcap(i)) for i in ins))


FAILURES: list[str] = []


def session(binary: Path, trace_path: Path, workers: int, work: Path, args: list[str], mode: str,
            runtime: Path, rate: int | None = None) -> runlib.RunResult | None:
    """One run under `run`; a failed one is noted (FAILURES) and left out of the figures."""
    out = work / f"released-{mode}.pcap"
    argv = [str(binary), *EAL, f"--file-prefix=ftmbbs{os.getpid()}_{next(_ids)}",
            "--lcores", f"(0-{workers})@(0,1)", "--vdev", "net_null0", "--", *args]
    res = runlib.run(argv, trace_path, out, mode=mode, queues=workers, timeout_s=120, rate=rate,
                     runtime_dir=runtime)
    if not res.ok:
        FAILURES.append(f"{binary.name}, {workers} worker(s), {mode}{' paced' if rate else ''}: {res.failure}")
        print(f"bench_run: {FAILURES[-1]}", file=sys.stderr, flush=True)
        return None
    res.rate = span_rate([out], res.input_packets)  # type: ignore[attr-defined]
    return res


def mmm(values: list[float], fmt: str = "{:.0f}") -> str:
    vs = sorted(values)
    if not vs:
        return "failed"
    return " / ".join(fmt.format(v) for v in (vs[0], statistics.median(vs), vs[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--packets", type=int, default=40000, help="packets of the throughput trace")
    ap.add_argument("--latency-packets", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=10000, help="input pacing of the latency runs (packets/s)")
    ap.add_argument("--examples", default=",".join(EXAMPLES))
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    opts = ap.parse_args()
    info = machine()
    print("\n".join(info), flush=True)
    subprocess.run(["make", "-s", "-C", str(ROOT / "runtime"), "-j2", "all"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="ftmb-bench-run-") as tmpdir:
        tmp = Path(tmpdir)
        plain, instr = tmp / "plain", tmp / "instr"
        # A snapshot of the loggers, taken with the instrumented build: the runtime may be rebuilt
        # (by someone else) while the benchmark runs, and both sides of a session must match.
        runtime = tmp / "runtime"
        (runtime / "build").mkdir(parents=True)
        for tool in ("ftmb-input-logger", "ftmb-output-logger"):
            shutil.copy2(ROOT / "runtime" / "build" / tool, runtime / "build" / tool)
        build(plain, None)
        build(instr, str(ROOT / ".venv" / "bin" / "ftmb-cc"))
        traces = {}
        for vip in (False, True):
            servers = dict(servers=[VIP, "198.51.100.99"]) if vip else {}
            traces[vip] = tmp / f"thr{int(vip)}.pcap"
            traffic.generate(traces[vip], seed=11, flows=400, packets=opts.packets, duration_s=1.0, **servers)
            traces[(vip, "lat")] = tmp / f"lat{int(vip)}.pcap"
            traffic.generate(traces[(vip, "lat")], seed=12, flows=100, packets=opts.latency_packets,
                             duration_s=0.5, **servers)
        rows, lat_rows = [], []
        for name in opts.examples.split(","):
            vip, args = EXAMPLES[name]
            for workers in (int(w) for w in opts.workers.split(",")):
                work = tmp / f"{name}-{workers}"
                work.mkdir()
                thr = {k: [] for k in ("plain", "instr", "passthrough", "record")}
                recs, p50 = [], {"passthrough": [], "record": []}
                p99 = {"passthrough": [], "record": []}
                for _ in range(opts.reps):  # interleaved, so drifting load hits every variant alike
                    thr["plain"].append(direct(plain / name, traces[vip], workers, work, args))
                    thr["instr"].append(direct(instr / name, traces[vip], workers, work, args))
                    for mode in ("passthrough", "record"):
                        res = session(instr / name, traces[vip], workers, work, args, mode, runtime)
                        if res:
                            thr[mode].append(res.rate)
                            if mode == "record":
                                recs.append(res.records / res.input_packets)
                        lat = session(instr / name, traces[(vip, "lat")], workers, work, args, mode, runtime,
                                      rate=opts.rate)
                        if lat:
                            p50[mode].append(lat.hold_p50_us)
                            p99[mode].append(lat.hold_p99_us)
                med = {k: statistics.median(v) if v else float("nan") for k, v in thr.items()}
                rows.append((name, workers, *(mmm(thr[k]) for k in thr), f"{med['instr'] / med['plain']:.2f}",
                             f"{med['passthrough'] / med['plain']:.2f}", f"{med['record'] / med['passthrough']:.2f}",
                             f"{statistics.median(recs):.1f}" if recs else "failed"))
                m50 = {k: statistics.median(v) if v else float("nan") for k, v in p50.items()}
                m99 = {k: statistics.median(v) if v else float("nan") for k, v in p99.items()}
                added50, added99 = m50["record"] - m50["passthrough"], m99["record"] - m99["passthrough"]
                lat_rows.append((name, workers, mmm(p50["passthrough"], "{:.1f}"), mmm(p50["record"], "{:.1f}"),
                                 f"{added50:+.1f}", mmm(p99["passthrough"], "{:.1f}"), mmm(p99["record"], "{:.1f}"),
                                 f"{added99:+.1f}"))
                print(rows[-1], lat_rows[-1], flush=True)
    section = render(opts, info, rows, lat_rows)
    print(section)
    if not opts.no_write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        block = f"{BEGIN}\n{section}{END}\n"
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END) + 1:]
        else:
            text = text.rstrip("\n") + "\n\n" + block
        RESULTS.write_text(text)
        print(f"wrote the run section of {RESULTS}")
    return 0


def render(opts, info, rows, lat_rows) -> str:
    cmd = "`.venv/bin/python bench/bench_run.py" + (f" --reps {opts.reps}" if opts.reps != 3 else "") + "`"
    out = [
        "## Examples under `ftmb-instrument run` (throughput, added latency)", "",
        f"Produced by {cmd}: each example built plainly and with `ftmb-cc`; a {opts.packets}-packet "
        f"trace (400 flows, seed 11; the lb trace sends half its flows to the VIP) for throughput, a "
        f"{opts.latency_packets}-packet trace paced at {opts.rate} packets/s by the input logger for "
        f"latency; {opts.reps} repetitions, interleaved; firewall with `--max-conns 60000` (no "
        f"rejections, so it forwards everything).", "",
        *[f"- {ln}" for ln in info], "",
        "### Throughput (input packets/s over the span of the output timestamps; min / median / max)", "",
        "plain: uninstrumented on net_pcap; instr: the ftmb-cc build on net_pcap, no session; passthrough and "
        "record: the ftmb-cc build under `run`, through both loggers (net_null0 vdev). Ratios of medians. "
        "Target: record/passthrough >= 0.9.", "",
        "| example | workers | plain | instr | passthrough | record | instr/plain | passthrough/plain "
        "| record/passthrough | records per packet |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *["| " + " | ".join(str(c) for c in r) + " |" for r in rows], "",
        "### Latency added by record mode (output logger: release time - arrival at the input logger, µs; "
        "min / median / max of the per-run p50 and p99)", "",
        "Target: added p50 <= 10 µs.", "",
        "| example | workers | p50 passthrough | p50 record | added p50 | p99 passthrough | p99 record | added p99 |",
        "|---|---|---|---|---|---|---|---|",
        *["| " + " | ".join(str(c) for c in r) + " |" for r in lat_rows], "",
        *(["Failed runs (left out of the figures):", "", *[f"- {f}" for f in FAILURES], ""] if FAILURES else []),
        f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.", "",
        "How to read these: every session run puts at least four busy processes (input logger, the "
        "example's main lcore and workers, output logger) on the machine's CPUs; on a shared 2-CPU "
        "machine the spread between repetitions (min to max) is as large as the differences between "
        "modes, so only a ratio well outside that spread means something. Hold times are measured by "
        "the output logger from the input's arrival at the input logger, so they include the time the "
        "packet waited in the input ring and the example's start-up: the input logger starts serving "
        "when the master attaches (in `ftmb_init`, before EAL and port set-up), and the packets served "
        "meanwhile wait for the workers; that start-up backlog is what the p99 shows.", "",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
