"""Instrument the DPDK 22.11 example applications and build them: how many of those that build
uninstrumented also build instrumented.

For every application whose translation units all compile uninstrumented (bench/dpdk_examples.py
decides, with the flags its meson.build gives), the whole application is planned as one program
(`make_plan` over its compile commands, project root = its directory), the plan's edits are
applied to a copy of /usr/share/dpdk/examples, and every translation unit of the copy is compiled
with the original flags plus the runtime's include directory, then linked with libftmb_dpdk,
libftmb and `pkg-config --libs libdpdk`.

An application counts as built instrumented when its plan has no unsuppressed problem and every
unit compiles and the program links. One line per application says what happened:

    .venv/bin/python bench/instrument_dpdk_examples.py [--jobs 2] [--only NAME ...] [--keep DIR]

Last full run (2026-11-26, Debian 12, DPDK 22.11, 2 jobs, ~13 minutes): 48 applications build
uninstrumented, 48 build instrumented (45 of them link; bond, ethtool and l2fwd-crypto do not link
even uninstrumented and are compile-checked only). 45 are instrumented with no site left out;
ip_pipeline, multi_process/client_server_mp/mp_server and server_node_efd/server build with their
reported problems left uninstrumented: accesses inside TAILQ_FOREACH headers whose loop body jumps,
and printf() reading a buffer that get_printable_mac_addr() (which orders it too) returns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dpdk_examples import EXAMPLES_DIR, Example, compile_check, enumerate_examples  # noqa: E402

from ftmb_instrument.bundle import ensure_runtime  # noqa: E402
from ftmb_instrument.cc import dpdk_static_libs  # noqa: E402
from ftmb_instrument.errors import FtmbError  # noqa: E402
from ftmb_instrument.frontend import sanitize  # noqa: E402
from ftmb_instrument.frontend.compdb import CompileCommand  # noqa: E402
from ftmb_instrument.rewrite import apply_plan  # noqa: E402
from ftmb_instrument.rewrite.pipeline import make_plan  # noqa: E402
from ftmb_instrument.semantics import load_semantics  # noqa: E402


@dataclass
class Outcome:
    name: str
    status: str  # "built" | "problems" | "plan-failed" | "compile-failed" | "link-failed"
    detail: str
    sites: int
    files: int
    seconds: float
    linked_uninstrumented: bool


def dpdk_libs(static: bool = False) -> list[str]:
    """How the apps link DPDK: its shared libraries (drivers loaded from its plugin directory at
    rte_eal_init), or with `static` its static archives, drivers included, as ftmb-cc links them
    (ftmb_instrument.cc.dpdk_static_libs)."""
    if static:
        libs = dpdk_static_libs()
        if libs is None:
            raise SystemExit("pkg-config libdpdk: not found")
        return libs
    cmd = ["pkg-config", "--libs", "libdpdk"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()


def _link(objs: list[Path], out: Path, extra: list[str], static_dpdk: bool) -> str | None:
    proc = subprocess.run(["gcc", *map(str, objs), *extra, *dpdk_libs(static_dpdk), "-lm", "-pthread", "-o", str(out)],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln or "undefined" in ln]
    return (lines or proc.stderr.splitlines() or ["link failed"])[0]


def _compile(flags: list[str], src: Path, obj: Path, cwd: Path) -> str | None:
    proc = subprocess.run(["gcc", *flags, "-c", str(src), "-o", str(obj)], capture_output=True, text=True, cwd=cwd)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    return (lines or proc.stderr.splitlines() or ["compile failed"])[0]


def run_one(e: Example, sem, work: Path, rt: dict, static_dpdk: bool = False) -> Outcome:
    t0 = time.monotonic()
    d = work / e.name.replace("/", "__")
    (d / "orig").mkdir(parents=True)
    (d / "inst").mkdir()
    orig_objs = []
    for s in e.sources:
        o = d / "orig" / (s.stem + ".o")
        if _compile(list(e.flags), s, o, e.directory) is None:
            orig_objs.append(o)
    linked0 = len(orig_objs) == len(e.sources) and _link(orig_objs, d / "orig" / "app", [], static_dpdk) is None
    commands = [CompileCommand(str(s.resolve()), sanitize(["gcc", *e.flags, "-c", str(s)], str(e.directory), str(s)))
                for s in e.sources]
    try:
        _, plan = make_plan(commands, sem, str(e.directory), jobs=1)
    except FtmbError as exc:
        return Outcome(e.name, "plan-failed", str(exc), 0, 0, time.monotonic() - t0, linked0)
    tree = d / "tree"
    shutil.copytree(EXAMPLES_DIR, tree, symlinks=True)
    rewritten = apply_plan(plan)
    for r in rewritten:
        rel = os.path.relpath(os.path.realpath(r.path), EXAMPLES_DIR)
        (tree / rel).write_bytes(r.text)
    flags = [f.replace(str(EXAMPLES_DIR), str(tree)) for f in e.flags] + ["-I", str(rt["include"])]
    objs = []
    for s in e.sources:
        src = tree / s.relative_to(EXAMPLES_DIR)
        o = d / "inst" / (s.stem + ".o")
        err = _compile(flags, src, o, tree / e.directory.relative_to(EXAMPLES_DIR))
        if err is not None:
            return Outcome(e.name, "compile-failed", err.replace(str(tree) + "/", ""), len(plan.sites),
                           len(rewritten), time.monotonic() - t0, linked0)
        objs.append(o)
    problems = plan.errors
    if linked0:
        err = _link(objs, d / "inst" / "app", [str(rt["dpdk"]), str(rt["core"])], static_dpdk)
        if err is not None:
            return Outcome(e.name, "link-failed", err, len(plan.sites), len(rewritten), time.monotonic() - t0, linked0)
    status = "problems" if problems else "built"
    detail = "; ".join(f"{p.where}: {p.message}" for p in problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    return Outcome(e.name, status, detail, len(plan.sites), len(rewritten), time.monotonic() - t0, linked0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--keep", type=Path, help="keep the instrumented trees and objects under DIR")
    a = ap.parse_args(argv)
    rt = ensure_runtime(dpdk=True)
    examples, _ = enumerate_examples()
    if a.only:
        examples = [e for e in examples if e.name in a.only]
    result = compile_check(examples, a.jobs)
    ok = result.examples_ok()
    sem = load_semantics()
    work = a.keep or Path(tempfile.mkdtemp(prefix="ftmb-dpdk-ex."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            outcomes = list(pool.map(lambda e: run_one(e, sem, work, rt), ok))
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for o in sorted(outcomes, key=lambda o: o.name):
        print(f"{o.status:15} {o.name:32} sites={o.sites:<4} files={o.files:<3} {o.seconds:5.1f}s"
              f"{'' if o.linked_uninstrumented else ' (compile only: it does not link uninstrumented)'}"
              f"{'  ' + o.detail if o.detail else ''}")
    built = sum(o.status == "built" for o in outcomes)
    clean_or_problems = sum(o.status in ("built", "problems") for o in outcomes)
    print(f"{len(ok)} applications build uninstrumented; {clean_or_problems} build instrumented "
          f"({built} with no site left uninstrumented, {clean_or_problems - built} with reported problems); "
          f"{len(ok) - clean_or_problems} fail")
    return 0


if __name__ == "__main__":
    sys.exit(main())
