#!/usr/bin/env python3
"""PAL cost against the floor loops, in instructions (load-independent) and in ns (min / median / max).

Instructions: each benchmark of `bench_pal` runs once more under valgrind's callgrind with
--toggle-collect on the function that runs it (`bench_pal --list`), ITERS operations, so the count
is that function's alone (the loop included, as in the floor loops), divided by ITERS. ns: one
`bench_pal ITERS REPS` run (each benchmark REPS times in a row, min / median / max). The two-thread
benchmarks get no instruction count (valgrind runs one thread at a time: the count would be the spin).

usage: .venv/bin/python bench/runtime/pal_cost.py [--iters N] [--reps R] [--cg-iters N] [--bench-pal PATH] [FILTER]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_PAL = ROOT / "runtime" / "build" / "bench_pal"


def instructions_per_op(bench_pal: Path, name: str, fn: str, iters: int) -> float:
    """Instructions callgrind counts inside `fn` for one run of `iters` operations, per operation."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes", f"--toggle-collect={fn}",
                        f"--callgrind-out-file={tmp}/cg.%p", str(bench_pal), str(iters), "1", name],
                       check=True, capture_output=True, text=True)
        total = 0
        for f in Path(tmp).glob("cg.*"):  # the parent and the benchmark's child; only the child counts
            for line in f.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    break
    return total / iters


def ns_figures(bench_pal: Path, iters: int, reps: int, only: str | None) -> dict[str, tuple[float, float, float]]:
    cmd = [str(bench_pal), str(iters), str(reps)] + ([only] if only else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    figures = {}
    for line in out.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, lo, med, hi = line.split()
        figures[name] = (float(lo), float(med), float(hi))
    return figures


def table(bench_pal: Path, iters: int, reps: int, cg_iters: int, only: str | None = None) -> str:
    """The table: instructions per operation and ns per operation, then each PAL against its floor."""
    if not shutil.which("valgrind"):
        raise SystemExit("pal_cost: valgrind is not installed (apt-get install valgrind): no instruction counts")
    listing = subprocess.run([str(bench_pal), "--list"], check=True, capture_output=True, text=True).stdout
    benches = [line.split() for line in listing.splitlines()]
    ns = ns_figures(bench_pal, iters, reps, only)
    insns = {name: instructions_per_op(bench_pal, name, fn, cg_iters)
             for name, fn in benches if name in ns and "_2t_" not in name}
    lines = [f"# benchmark                      insns/op   ns min  median     max   "
             f"(callgrind: {cg_iters} ops; ns: {iters} ops x {reps} reps, one run)"]
    for name, _ in benches:
        if name not in ns:
            continue
        i = f"{insns[name]:8.1f}" if name in insns else "       -"
        lo, med, hi = ns[name]
        lines.append(f"{name:30} {i} {lo:8.2f} {med:7.2f} {hi:7.2f}")
    against = [("held_pal_record", "floor_plain_seq"), ("ordered_record", "floor_atomic_seq"),
               ("atomic_add_record", "floor_atomic_seq")]
    lines.append("")
    lines.append("# against the floor                 insns/op   ns (median)")
    for pal, floor in against:
        if pal in insns and floor in insns:
            lines.append(f"{pal + ' - ' + floor:36} {insns[pal] - insns[floor]:+8.1f} "
                         f"{ns[pal][1] - ns[floor][1]:+8.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=2000000, help="operations per ns repetition")
    ap.add_argument("--reps", type=int, default=5, help="ns repetitions (min / median / max over them)")
    ap.add_argument("--cg-iters", type=int, default=102400, help="operations under callgrind")
    ap.add_argument("--bench-pal", type=Path, default=BENCH_PAL, help="the bench_pal binary")
    ap.add_argument("filter", nargs="?", help="a benchmark's name, or part of names")
    args = ap.parse_args()
    if not args.bench_pal.exists():
        print(f"pal_cost: {args.bench_pal} does not exist; build it with make -C runtime bench", file=sys.stderr)
        return 1
    print(table(args.bench_pal, args.iters, args.reps, args.cg_iters, args.filter))
    return 0


if __name__ == "__main__":
    sys.exit(main())
