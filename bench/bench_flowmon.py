"""examples/flowmon (pthreads + libpcap) under `ftmb-instrument run`: throughput, records per packet,
recovery time. Writes its section of bench/RESULTS.md (between the flowmon-bench markers).

- Throughput: a 20000-packet trace (200 flows, seed 11) at full speed; input packets / span of the
  released frames' timestamps (as bench_run.py), passthrough (through both loggers, nothing
  logged) and record; records per input packet from the output logger; plain (gcc) and instr
  (ftmb-cc) read the trace outside a session (libpcap itself; a savefile cannot send, so nothing
  is injected): input packets / the process's wall time; REPS repetitions, interleaved;
  min / median / max.
- Recovery: a 4000-packet trace paced at 5000 packets/s, the master SIGKILLed 0.3-0.6 s after its first input (seeded),
  from the warm standby and from the newest checkpoint (every 20 ms); recovery = the backup live
  (ms after the SIGKILL), records replayed, and the verification replay's check (every released
  frame regenerated, byte for byte).

    .venv/bin/python bench/bench_flowmon.py [--reps 3] [--kills 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ftmb_instrument import pcap, run as runlib, traffic  # noqa: E402

FTMB_CC = ROOT / ".venv" / "bin" / "ftmb-cc"
SRC = ROOT / "examples" / "flowmon" / "flowmon.c"
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- flowmon-bench:begin -->", "<!-- flowmon-bench:end -->"


def span_rate(out: Path, n_input: int) -> float:
    ts = [p.ts_ns for p in pcap.iter_pcap(out)]
    return n_input / ((max(ts) - min(ts)) / 1e9) if len(ts) > 1 and max(ts) > min(ts) else 0.0


def mmm(xs: list[float], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs))) if xs else "-"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kills", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-flowmon-"))
    binary = tmp / "flowmon"
    subprocess.run([str(FTMB_CC), "-O2", "-pthread", str(SRC), "-o", str(binary), "-lpcap"], check=True)
    plain = tmp / "flowmon-plain"
    subprocess.run(["gcc", "-O2", "-pthread", str(SRC), "-o", str(plain), "-lpcap"], check=True)
    bare_env = {k: v for k, v in os.environ.items() if not k.startswith("FTMB_")}
    big, paced = tmp / "big.pcap", tmp / "paced.pcap"
    traffic.generate(big, seed=11, flows=200, packets=20000, duration_s=1.0)
    traffic.generate(paced, seed=12, flows=100, packets=4000, duration_s=0.8)
    load0 = os.getloadavg()
    rows = []
    for workers in (1, 3):
        argv = [str(binary), "-r", None, "--workers", str(workers), "--export-ms", "50", "--idle-ms", "200"]
        rate = {"plain": [], "instr": [], "passthrough": [], "record": []}
        recs = []
        for _ in range(args.reps):
            for mode, b in (("plain", plain), ("instr", binary)):
                t0 = time.monotonic()
                subprocess.run([str(b), "-r", str(big), *argv[3:]], check=True, env=bare_env, capture_output=True,
                               timeout=120)
                rate[mode].append(20000 / (time.monotonic() - t0))
            for mode in ("passthrough", "record"):
                out = tmp / f"{mode}.pcap"
                res = runlib.run([*argv[:2], str(big), *argv[3:]], big, out, mode=mode, threads=8, timeout_s=120)
                if not res.ok:
                    print(f"{mode} {workers}: {res.failure}", file=sys.stderr)
                    return 1
                rate[mode].append(span_rate(out, res.input_packets))
                if mode == "record":
                    recs.append(res.records / res.input_packets)
        fo = {}
        for kind, ck in (("standby", None), ("checkpoint 20 ms", 20)):
            live, replayed, checks = [], [], []
            for k in range(args.kills):
                kill_at = random.Random(1000 * workers + k).uniform(0.3, 0.6)
                res = runlib.run([*argv[:2], str(paced), *argv[3:]], paced, tmp / "fo.pcap", threads=8, rate=5000,
                                 kill_master_at=kill_at, kill_from_input=True, checkpoint_ms=ck, timeout_s=120)
                if res.failover and res.failover.live_ms is not None:
                    live.append(res.failover.live_ms)
                    replayed.append(res.failover.replayed_records)
                checks.append(bool(res.ok and res.replay_check and res.replay_check.ok))
            fo[kind] = (live, replayed, checks)
        rows.append((workers, rate, recs, fo))
        print(workers, {m: statistics.median(v) for m, v in rate.items()}, fo, flush=True)
    load1 = os.getloadavg()
    lines = [BEGIN, "## flowmon (pthreads + libpcap) under `ftmb-instrument run` (bench/bench_flowmon.py)", "",
             f"`.venv/bin/python bench/bench_flowmon.py --reps {args.reps} --kills {args.kills}`; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} CPUs "
             f"shared with other work (load average {load0[0]:.2f} at start, {load1[0]:.2f} at the end); "
             "`--export-ms 50 --idle-ms 200`, `--threads 8`.", "",
             "Throughput: a 20000-packet trace (200 flows) at full speed, min / median / max. passthrough and "
             "record: under `run` (both loggers), input packets/s over the span of the released frames' "
             "timestamps; plain (gcc) and instr (the ftmb-cc build) outside a session, reading the trace with "
             "libpcap itself (a savefile cannot send: nothing is injected), input packets / the process's wall "
             "time. Ratios of medians; records per input packet in record mode (median).", "",
             "| workers | plain pkt/s | instr pkt/s | passthrough pkt/s | record pkt/s | instr/plain | "
             "record/passthrough | records per packet |",
             "|---|---|---|---|---|---|---|---|"]
    for workers, rate, recs, _ in rows:
        med = {m: statistics.median(v) for m, v in rate.items()}
        lines.append(f"| {workers} | {mmm(rate['plain'])} | {mmm(rate['instr'])} | {mmm(rate['passthrough'])} | "
                     f"{mmm(rate['record'])} | {med['instr'] / med['plain']:.2f} | "
                     f"{med['record'] / med['passthrough']:.2f} | {statistics.median(recs):.1f} |")
    lines += ["", "Recovery: a 4000-packet trace at 5000 packets/s, SIGKILL 0.3-0.6 s after the first input; "
              "backup live (ms after the SIGKILL) and records replayed, min / median / max; replay check: "
              "runs whose verification replay regenerated every released frame with the same bytes.", "",
              "| workers | backup | recovered | backup live ms | records replayed | replay check ok |",
              "|---|---|---|---|---|---|"]
    for workers, _, _, fo in rows:
        for kind, (live, replayed, checks) in fo.items():
            lines.append(f"| {workers} | {kind} | {len(live)} of {len(checks)} | {mmm(live, '{:.1f}')} | "
                         f"{mmm(replayed)} | {sum(checks)} of {len(checks)} |")
    lines += ["", "How to read these: on a shared 2-CPU machine the spread between repetitions (min to max) is as "
              "large as the difference between modes. Records per packet: about 4 per forwarded frame (the queue "
              "lock on push and pop, the bucket lock, `tx_lock`) plus the receives, the exporter's and idle "
              "waiters' wake-ups. A standby replays the whole log so far; a checkpoint's backup only the log "
              "since its checkpoint."]
    lines.append(END)
    text = RESULTS.read_text()
    block = "\n".join(lines) + "\n"
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
