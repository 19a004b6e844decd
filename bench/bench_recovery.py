"""Failover and checkpoint benchmarks; writes its section of bench/RESULTS.md and a PNG.

    .venv/bin/python bench/bench_recovery.py [--repeat 3] [--build DIR]

1. Recovery time of examples/nat (2 workers) against the checkpoint interval (10, 50, 200 ms)
   and the offered load: SIGKILL of the master 0.8 s after its start -> the newest checkpoint
   sees the death (`detected`) -> it is live (replayed the log since the checkpoint, records).
2. Checkpoint pause against state size (1, 64, 512 MiB) with runtime/build/ftmb-test-fwd
   (pthreads, 2 workers, FTMB_TEST_FWD_STATE_MIB), and for the NAT (DPDK) at its own size.
3. bench/failover_released_per_ms.png: released packets per millisecond across a master failure.
Timings only here (never asserted in tests), min/median/max over --repeat runs, machine named.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ftmb_instrument import pcap, run as runlib, traffic  # noqa: E402

import crash_trials  # noqa: E402

EAL = crash_trials.EAL
CKPT = re.compile(r"checkpoints (\d+) skipped (\d+) pause_us p50 ([\d.]+) max ([\d.]+) fork_us p50 ([\d.]+) "
                  r"max ([\d.]+) state_bytes (\d+)")


def nat_argv(build: Path, workers: int) -> list[str]:
    return [str(build / "nat"), *EAL, f"--file-prefix=ftbr{os.getpid()}", "--lcores", f"(0-{workers})@(0,1)",
            "--vdev", "net_null0", "--"]


def mmm(xs):
    xs = sorted(x for x in xs if x is not None)
    return "-" if not xs else f"{xs[0]:.1f} / {statistics.median(xs):.1f} / {xs[-1]:.1f}"


def png(path: Path, width: int, height: int, pixels: list[bytearray]) -> None:
    """A truecolor PNG from rows of RGB bytes (zlib + struct, no dependencies)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + bytes(row) for row in pixels)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def plot_released(released: Path, kill_ns: int, live_ns: int | None, out: Path) -> str:
    ts = sorted(p.ts_ns for p in pcap.iter_pcap(released))
    t0 = ts[0] // 1_000_000
    n = ts[-1] // 1_000_000 - t0 + 1
    bins = [0] * n
    for t in ts:
        bins[t // 1_000_000 - t0] += 1
    W, H, pad = max(400, min(1600, n)), 240, 20
    per = n / (W - 2 * pad)
    cols = [max(bins[int(i * per):max(int(i * per) + 1, int((i + 1) * per))] or [0]) for i in range(W - 2 * pad)]
    top = max(cols) or 1
    rows = [bytearray(b"\xff" * (3 * W)) for _ in range(H)]

    def put(x, y, rgb):
        if 0 <= x < W and 0 <= y < H:
            rows[y][3 * x:3 * x + 3] = bytes(rgb)
    for i, c in enumerate(cols):
        for y in range(int((H - 2 * pad) * c / top)):
            put(pad + i, H - pad - 1 - y, (40, 90, 200))
    for x in range(pad, W - pad):
        put(x, H - pad, (0, 0, 0))
    for ns, rgb in ((kill_ns, (220, 30, 30)), (live_ns, (30, 160, 60))):
        if ns:
            x = pad + int((ns // 1_000_000 - t0) / per)
            for y in range(pad, H - pad):
                put(x, y, rgb)
    png(out, W, H, rows)
    return (f"{out.name}: released packets per ms (blue; {len(ts)} packets over {n} ms, peak {max(bins)}/ms), "
            f"master SIGKILL (red), backup live (green)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", type=Path, default=Path("/tmp/ftmb-bench-recovery/build"))
    a = ap.parse_args()
    crash_trials.build(a.build)  # make: rebuilt when the examples or the runtime changed
    work = a.build.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    trace = work / "trace.pcap"
    traffic.generate(trace, seed=5, flows=150, packets=6000, duration_s=0.5)
    lines = ["<!-- failover-bench:begin -->", "## Failover and checkpoints (bench/bench_recovery.py)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, "
             f"{platform.platform()}. min / median / max over {a.repeat} runs. The backup is the master's "
             "newest checkpoint (a forked snapshot); times from the SIGKILL.", "",
             "| interval ms | load pps | from a checkpoint | detected ms | backup live ms (recovery) | "
             "records replayed |",
             "|---|---|---|---|---|---|"]
    plot_src = None
    for interval in (10, 50, 200):
        for rate in (2000, 5000):
            det, live, rec, snap = [], [], [], 0
            for _ in range(a.repeat):
                out = work / "released.pcap"
                res = runlib.run(nat_argv(a.build, 2), trace, out, queues=2, rate=rate, kill_master_at=0.8,
                                 timeout_s=120, checkpoint_ms=interval, verify_replay=False)
                fo = res.failover
                if res.ok and fo:
                    snap += fo.from_snapshot
                    det.append(fo.detected_ms)
                    live.append(fo.live_ms)
                    rec.append(fo.replayed_records)
                    if plot_src is None and fo.live_ms is not None:
                        plot_src = (out.with_name("plot.pcap"), res)
                        out.replace(plot_src[0])
                print(interval, rate, res.ok, fo, flush=True)
            lines.append(f"| {interval} | {rate} | {snap} of {a.repeat} | {mmm(det)} | {mmm(live)} | "
                         f"{mmm([float(r) for r in rec]) if rec else '-'} |")
    lines += ["", "Checkpoint pause (request -> resume: parking every thread + fork) against state size; "
              "a checkpoint every 50 ms, no failure; the program's state is in the arena (transparent huge "
              "pages where the kernel gives them). One run each: p50 and max over its checkpoints.", "",
              "| program | state | checkpoints (skipped) | pause µs p50 | pause µs max | fork µs p50 |",
              "|---|---|---|---|---|---|"]
    fwd = ROOT / "runtime" / "build" / "ftmb-test-fwd"
    for mib in (1, 64, 512):
        for _ in range(1):
            res = runlib.run([str(fwd), "2"], trace, work / "fwd.pcap", queues=2, rate=5000, timeout_s=120,
                             failover=True, checkpoint_ms=50, verify_replay=False,
                             env=dict(os.environ, FTMB_TEST_FWD_STATE_MIB=str(mib),
                                      FTMB_ARENA_SIZE=str(64 << 30)))  # a thread heap holds 512 MiB
            m = CKPT.search(res.nf_stderr)
            print(mib, res.ok, m and m.group(0), flush=True)
            if m:
                lines.append(f"| ftmb-test-fwd (pthreads, 2 workers) | {int(m.group(7)) / 2**20:.0f} MiB | "
                             f"{m.group(1)} ({m.group(2)}) | {m.group(3)} | {m.group(4)} | {m.group(5)} |")
    res = runlib.run(nat_argv(a.build, 2), trace, work / "natc.pcap", queues=2, rate=5000, timeout_s=120,
                     failover=True, checkpoint_ms=50, verify_replay=False)
    m = CKPT.search(res.nf_stderr)
    if m:
        lines.append(f"| examples/nat (DPDK, 2 workers) | {int(m.group(7)) / 2**20:.1f} MiB | {m.group(1)} "
                     f"({m.group(2)}) | {m.group(3)} | {m.group(4)} | {m.group(5)} |")
    if plot_src:
        path, res = plot_src
        fo = res.failover
        kill_ns = None
        # the run's kill instant is not in the result as wall time: detected_ms is relative to it
        blob = next((p.stderr_tail for p in res.processes if p.pid == fo.backup_pid), "")
        t = runlib._TAKEOVER.search(blob)
        live = runlib._LIVE.search(blob)
        if t and fo.detected_ms is not None:
            kill_ns = int(int(t.group(1)) - fo.detected_ms * 1e6)
        desc = plot_released(path, kill_ns or 0, int(live.group(2)) if live else None,
                             ROOT / "bench" / "failover_released_per_ms.png")
        lines += ["", desc]
    lines.append("<!-- failover-bench:end -->")
    results = ROOT / "bench" / "RESULTS.md"
    text = results.read_text() if results.exists() else ""
    section = "\n".join(lines)
    if "<!-- failover-bench:begin -->" in text:
        text = re.sub(r"<!-- failover-bench:begin -->.*?<!-- failover-bench:end -->", lambda _: section, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
