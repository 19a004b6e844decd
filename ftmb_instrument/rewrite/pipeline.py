"""From compile commands to a plan: analysis, exact extents, planning."""

from __future__ import annotations

import os

from ..analysis import Options, build_report, parse_all
from ..errors import RewriteError
from ..frontend import CompileCommand
from ..frontend.sites import FileSites, TuSites
from ..model import Report
from ..plan import Plan, PlanOptions, build_plan, is_instrumented


SITE_LISTS = ("stmts", "calls", "functions", "macros", "address_only", "reads", "invocations", "tails")


class SitesMerger:
    """One FileSites per file, merged as each unit's scan arrives: a header seen by many units is
    kept once (each unit's copy is dropped as soon as it is merged, so memory holds one copy of
    the project's headers, not one per unit), and what is already there is looked up in a set kept
    per file and list (not rebuilt per unit: that grew with units x header sites)."""

    def __init__(self) -> None:
        self.files: dict[str, FileSites] = {}
        self._seen: dict[str, dict[str, set]] = {}
        self.failed: TuSites | None = None  # the first unit whose scan failed

    def add(self, sites: TuSites) -> None:
        if not sites.ok:
            self.failed = self.failed or sites
            return
        for path, fs in sites.files.items():
            m = self.files.get(path)
            if m is None:
                m = self.files[path] = FileSites(path)
                self._seen[path] = {name: set() for name in SITE_LISTS}
            seen = self._seen[path]
            for name in SITE_LISTS:
                have = seen[name]
                new = [x for x in getattr(fs, name) if x not in have]
                getattr(m, name).extend(new)
                have.update(new)


def merge_sites(results: list[TuSites]) -> dict[str, FileSites]:
    """One FileSites per file: a header seen by several translation units is merged, not repeated."""
    merger = SitesMerger()
    for r in results:
        merger.add(r)
    return merger.files


def make_plan(commands: list[CompileCommand], sem, root: str, options: PlanOptions = PlanOptions(),
              jobs: int = 0, console=None, entries: tuple[str, ...] = ()) -> tuple[Report, Plan]:
    for c in commands:
        with open(c.file, "rb") as fh:
            if is_instrumented(fh.read(256)):
                raise RewriteError(f"{c.file}:1: already instrumented (it carries the FTMB-INSTRUMENTED marker); "
                                   f"instrument the original sources")
    opts = Options(root, entries, jobs, console is not None)
    merger = SitesMerger()
    results = parse_all(commands, sem, opts, console, sites=merger.add)  # one parse per unit for both
    if merger.failed is not None:
        s = merger.failed
        raise RewriteError(f"{s.error} (translation unit {s.file} not rewritten)")
    report = build_report(results, sem, opts)
    rootr = os.path.realpath(root)
    plan = build_plan(report, merger.files, rootr, sem, options)
    return report, plan
