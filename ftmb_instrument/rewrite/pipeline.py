"""From compile commands to a plan: analysis, exact extents, planning."""

from __future__ import annotations

import os

from ..analysis import Options, build_report, parse_all
from ..errors import RewriteError
from ..frontend import CompileCommand
from ..frontend.sites import FileSites, TuSites
from ..model import Report
from ..plan import Plan, PlanOptions, build_plan, is_instrumented


def merge_sites(results: list[TuSites]) -> dict[str, FileSites]:
    """One FileSites per file: a header seen by several translation units is merged, not repeated."""
    out: dict[str, FileSites] = {}
    for r in results:
        for path, fs in r.files.items():
            m = out.setdefault(path, FileSites(path))
            for name in ("stmts", "calls", "functions", "macros", "address_only", "reads"):
                have = set(getattr(m, name))
                getattr(m, name).extend(x for x in getattr(fs, name) if x not in have)
    return out


def make_plan(commands: list[CompileCommand], sem, root: str, options: PlanOptions = PlanOptions(),
              jobs: int = 0, console=None, entries: tuple[str, ...] = ()) -> tuple[Report, Plan]:
    for c in commands:
        with open(c.file, "rb") as fh:
            if is_instrumented(fh.read(256)):
                raise RewriteError(f"{c.file}:1: already instrumented (it carries the FTMB-INSTRUMENTED marker); "
                                   f"instrument the original sources")
    opts = Options(root, entries, jobs, console is not None)
    results = parse_all(commands, sem, opts, console, sites=True)  # one parse per unit for both
    report = build_report(results, sem, opts)
    scanned = [r.sites for r in results if r.unit.status == "ok"]
    for s in scanned:
        if not s.ok:
            raise RewriteError(f"{s.error} (translation unit {s.file} not rewritten)")
    rootr = os.path.realpath(root)
    plan = build_plan(report, merge_sites(scanned), rootr, sem, options)
    return report, plan
