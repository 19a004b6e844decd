"""Wall time of `analyze` over the DPDK 22.11 examples against libclang parse-only of the same units.

Both sides get every translation unit of every example that compiles uninstrumented
(bench/dpdk_examples.py), with identical arguments (`load_database` sanitizes each database the way
`analyze -p` does), in a process pool of --jobs workers over all units at once:

  parse-only  `clang.cindex.Index.create().parse(file, args)` per unit, nothing else;
  analyze     what `analyze -p DB --project-root EXAMPLE -f json -o FILE` does once its arguments are
              read: per unit `parse_translation_unit` (parse, diagnostics, facts) in the pool, then per
              example the analysis (`build_report`) and the JSON report written to a file.

The two alternate, --repeat times each. Printed: machine, min/median/max of each, the ratio of the
medians and the range of the per-run ratios (run i of analyze over run i of parse-only). `--write`
puts the figures into bench/RESULTS.md (this script's section only). Target: ratio <= 1.5.

    .venv/bin/python bench/bench_analyze.py --jobs 2 --repeat 3 --write
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dpdk_examples  # noqa: E402

from ftmb_instrument.analysis import Options, build_report  # noqa: E402
from ftmb_instrument.frontend import TuJob, load_database, parse_translation_unit  # noqa: E402
from ftmb_instrument.report import render  # noqa: E402
from ftmb_instrument.semantics import Semantics, load_semantics  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## analyze vs libclang parse-only: DPDK 22.11 examples (bench/bench_analyze.py)"
TARGET = 1.5


def _parse_only(unit: tuple[str, tuple[str, ...]]) -> int:
    from clang import cindex as ci

    tu = ci.Index.create().parse(unit[0], args=list(unit[1]))
    return len(tu.diagnostics)


_sem: Semantics | None = None


def _init(sem: Semantics) -> None:
    global _sem
    _sem = sem


def _analyze_unit(job: TuJob):
    assert _sem is not None
    return parse_translation_unit(job, _sem)


def load_units(dbs: dict[str, Path], examples: dict[str, dpdk_examples.Example]) -> list[tuple[str, TuJob]]:
    """(example name, job) for every unit, with the arguments `analyze -p` would use."""
    units = []
    for name, db in dbs.items():
        root = os.path.realpath(examples[name].directory)
        for c in load_database(db):
            units.append((name, TuJob(c.file, c.args, root, root)))
    return units


def run_parse_only(units: list[tuple[str, TuJob]], jobs: int) -> float:
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_parse_only, [(j.file, j.args) for _, j in units]))
    return time.perf_counter() - t


def run_analyze(units: list[tuple[str, TuJob]], sem: Semantics, jobs: int, out: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init, initargs=(sem,)) as pool:
        results = list(pool.map(_analyze_unit, [j for _, j in units]))
    by_example: dict[str, list] = {}
    roots = {}
    for (name, job), r in zip(units, results):
        by_example.setdefault(name, []).append(r)
        roots[name] = job.project_root
    failed = 0
    for name, rs in by_example.items():
        report = build_report(rs, sem, Options(roots[name]))
        (out / (name.replace("/", "__") + ".json")).write_text(render(report, "json"))
        failed += report.coverage.tus_failed
    return time.perf_counter() - t, {"examples": len(by_example), "failed": failed}


def machine() -> dict[str, str]:
    from clang import cindex as ci

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor() or "unknown")
    version = ci.conf.lib.clang_getClangVersion
    version.restype = ci._CXString
    return {
        "cpu": model, "cores": str(os.cpu_count()), "python": platform.python_version(),
        "libclang": f"{ci._CXString.from_result(version())} (libclang-ng {importlib.metadata.version('libclang-ng')})",
        "os": platform.platform(),
    }


def spread(xs: list[float]) -> str:
    return f"min {min(xs):.2f} s, median {statistics.median(xs):.2f} s, max {max(xs):.2f} s"


def write_results(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nOne section per benchmark; each is rewritten only by its own script.\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[end + 1:] if end >= 0 else "")
    RESULTS.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help=f"put the figures into {RESULTS.name}")
    a = ap.parse_args(argv)
    info = machine()
    for k, v in info.items():
        print(f"{k}: {v}")
    with tempfile.TemporaryDirectory(prefix="ftmb-bench-") as tmp:
        result, dbs, examples = dpdk_examples.prepare(Path(tmp) / "db", a.jobs)
        print(dpdk_examples.summary(result))
        units = load_units(dbs, examples)
        sem = load_semantics([])
        out = Path(tmp) / "reports"
        out.mkdir()
        print(f"{len(units)} translation units in {len(dbs)} examples, --jobs {a.jobs}, {a.repeat} runs each")
        parse_t, analyze_t = [], []
        stats: dict = {}
        for i in range(a.repeat):
            parse_t.append(run_parse_only(units, a.jobs))
            t, stats = run_analyze(units, sem, a.jobs, out)
            analyze_t.append(t)
            print(f"run {i + 1}: parse-only {parse_t[-1]:.2f} s, analyze {analyze_t[-1]:.2f} s, "
                  f"ratio {analyze_t[-1] / parse_t[-1]:.2f} ({stats['failed']} units failed)")
    ratios = [x / y for x, y in zip(analyze_t, parse_t)]
    ratio = statistics.median(analyze_t) / statistics.median(parse_t)
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"parse-only: {spread(parse_t)}")
    print(f"analyze:    {spread(analyze_t)}")
    print(f"ratio of medians {ratio:.2f} (per run {min(ratios):.2f} to {max(ratios):.2f}); {verdict} the {TARGET}x target")
    if a.write:
        cmd = " ".join([".venv/bin/python", "bench/bench_analyze.py", *(argv if argv is not None else sys.argv[1:])])
        write_results("\n".join([
            SECTION, "",
            f"Command: `{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
            *(f"- {k}: {v}" for k, v in info.items()), "",
            f"{len(units)} translation units of {len(dbs)} examples, all ok in analyze ({stats['failed']} failed); "
            f"pool of {a.jobs} workers over all units; {a.repeat} alternating runs each.", "",
            "| | min | median | max |", "|---|---|---|---|",
            f"| libclang parse-only | {min(parse_t):.2f} s | {statistics.median(parse_t):.2f} s | {max(parse_t):.2f} s |",
            f"| analyze (facts, analysis, JSON report) | {min(analyze_t):.2f} s | {statistics.median(analyze_t):.2f} s | {max(analyze_t):.2f} s |",
            "",
            f"Ratio of medians: **{ratio:.2f}x** (per run {min(ratios):.2f}x to {max(ratios):.2f}x); "
            f"target <= {TARGET}x: {verdict}.", "",
        ]))
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
