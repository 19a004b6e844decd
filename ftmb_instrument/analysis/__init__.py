"""The shared-state analysis: compile commands in, an `ftmb-report/1` Report out.

Stages: parse every translation unit (frontend, in a process pool) -> merge facts into a Program
-> call graph and thread roots -> locksets -> thread contexts, points-to and per-thread taint ->
class and protection of every object -> Report.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import __version__
from ..deep import call_deep
from ..facts import CallFact
from ..frontend import CompileCommand, TuJob, TuResult, parse_translation_unit
from ..model import Access, Coverage, Finding, Report, Site, Thread, Variable
from ..semantics import Semantics
from .classify import Classifier, ObjectInfo
from .identity import variable_id
from .locksets import Locksets
from .program import Program, walk_events

PROGRESS_THRESHOLD = 4  # show a progress bar from this many translation units on


@dataclass(frozen=True)
class Options:
    project_root: str
    entries: tuple[str, ...] = ()
    jobs: int = 0  # 0: number of cores
    progress: bool = True


_worker_sem: Semantics | None = None


def _init_worker(sem: Semantics, pooled: bool = False) -> None:
    global _worker_sem
    _worker_sem = sem
    if pooled:  # Ctrl-C reaches the whole process group: the parent alone handles it, and ends the pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parse(job: TuJob) -> TuResult:
    assert _worker_sem is not None
    return parse_translation_unit(job, _worker_sem)


def parse_all(commands: list[CompileCommand], sem: Semantics, opts: Options, console: Console | None,
              sites: Callable[[object], None] | None = None) -> list[TuResult]:
    """Parse and walk every unit. With `sites`, also scan the rewriter's sites from the same parse
    and hand each parsed unit's scan (a frontend.sites.TuSites) to `sites` as it arrives, in the
    order of `commands`; the results then carry none (they would hold every header once per unit)."""
    root = os.path.realpath(opts.project_root)
    jobs = [TuJob(c.file, c.args, root, root, sites is not None) for c in commands]

    def done(r: TuResult) -> None:
        if sites is not None:
            if r.unit.status == "ok" and r.sites is not None:
                sites(r.sites)
            r.sites = None
        results.append(r)

    n = opts.jobs or os.cpu_count() or 1
    show = opts.progress and console is not None and len(jobs) >= PROGRESS_THRESHOLD
    results: list[TuResult] = []
    with Progress(TextColumn("parsing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not show) as bar:
        task = bar.add_task("parse", total=len(jobs))
        if n == 1 or len(jobs) == 1:
            _init_worker(sem)
            for j in jobs:
                done(_parse(j))
                bar.advance(task)
        else:
            # Leaving the block terminates the workers: on SIGINT (or an error) the parses under way
            # stop at once instead of running to the end of the biggest translation unit. While the
            # pool runs, SIGINT only sets a flag, checked between results: a KeyboardInterrupt raised
            # inside the pool's own queues and conditions could leave one of their locks held, and
            # terminating the pool then waits forever (seen on a loaded machine).
            interrupted: list[int] = []
            main = threading.current_thread() is threading.main_thread()  # where Python runs signal handlers
            previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum)) if main else None
            try:
                with multiprocessing.Pool(min(n, len(jobs)), initializer=_init_worker, initargs=(sem, True)) as pool:
                    results_of = pool.imap(_parse, jobs)
                    while len(results) < len(jobs):
                        if interrupted:
                            raise KeyboardInterrupt
                        try:
                            done(results_of.next(timeout=0.1))
                        except multiprocessing.TimeoutError:
                            continue
                        bar.advance(task)
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
            if interrupted:  # after the last result
                raise KeyboardInterrupt
    return results


def analyze(commands: list[CompileCommand], sem: Semantics, opts: Options, console: Console | None = None) -> Report:
    results = parse_all(commands, sem, opts, console)
    return build_report(results, sem, opts)


def build_report(results: list[TuResult], sem: Semantics, opts: Options) -> Report:
    """The Report of parsed units (its walks recurse along the program's pointer chains: see deep.py)."""
    return call_deep(_build_report, results, sem, opts)


def _build_report(results: list[TuResult], sem: Semantics, opts: Options) -> Report:
    facts = [r.facts for r in results if r.facts is not None]
    program = Program.merge(facts, sem)
    program.root = os.path.realpath(opts.project_root)
    program.build_call_graph()
    program.find_roots(list(opts.entries))
    locks = Locksets(program)
    locks.compute()
    cls = Classifier(program, locks)
    cls.compute_contexts()
    cls.compute_taint()
    cls.collect()
    units = tuple(r.unit for r in results)
    objects = _objects(program, cls)
    return Report(
        tool_version=__version__,
        translation_units=units,
        threads=tuple(_threads(program)),
        variables=tuple(_variables(objects)),
        nondeterminism=tuple(_sites(program, cls, "nondeterminism")),
        packet_io=tuple(_sites(program, cls, "packet_io")),
        warnings=tuple(_warnings(program, objects)),
        coverage=Coverage(
            sum(u.status == "ok" for u in units), sum(u.status != "ok" for u in units), len(program.functions)),
    )


def _threads(p: Program) -> list[Thread]:
    out = []
    for r in sorted(p.roots, key=lambda r: (r.how != "main", r.name)):
        out.append(Thread(r.name, r.how, r.site.rsplit(":", 1)[0] if r.site.count(":") >= 2 else r.site,
                          "several" if r.several else "one"))
    return out


@dataclass(frozen=True)
class _Object:
    """One object of the program, described and classified once."""

    info: ObjectInfo
    name: str
    decl: str  # "path:line"
    scope: str
    type: str
    id: str
    cls: str
    protection: str | None
    locks: tuple[str, ...]
    commutative: bool
    suppression: str  # "race" | "variable" | "" (an inline suppression on the declaration)
    reason: str


def _objects(p: Program, cls: Classifier) -> list[_Object]:
    out = []
    for key, info in _all_objects(p, cls):
        desc = _describe(p, key)
        if desc is None:
            continue
        name, file, line, scope, typ, function, tls, id_name = desc
        c, protection, locks, commutative = cls.classify(info, tls, _is_lock(p, key))
        if key[0] != "global" and c == "thread_private":
            continue  # heap and stack objects are reported only when they become shared
        sup = p.suppressions.get((file, line))
        what = sup.what if sup and sup.what in ("race", "variable") else ""
        out.append(_Object(info, name, f"{file}:{line}", scope, typ, variable_id(file, function, id_name, scope),
                           c, protection, locks, commutative, what, sup.reason if what else ""))
    return out


def _variables(objects: list[_Object]) -> list[Variable]:
    order = {"shared_rw": 0, "shared_ro": 1, "per_core": 2, "thread_private": 3}
    made: dict[int, tuple] = {}
    out = [Variable(
        id=o.id, name=o.name, decl=o.decl, scope=o.scope, cls=o.cls, protection=o.protection, locks=o.locks,
        commutative=o.commutative, accesses=tuple(_accesses(o.info, made)), type=o.type, suppressed=o.reason,
    ) for o in objects]
    out.sort(key=lambda v: (order[v.cls], _loc_key(v.decl + ":0"), v.name))
    return out


def _all_objects(p: Program, cls: Classifier):
    """Every accessed object, and every global nothing accesses (as a whole)."""
    yield from cls.objects.items()
    accessed = {key[:2] for key in cls.objects}
    for usr in p.globals:
        if ("global", usr) not in accessed:
            key = ("global", usr, ())
            yield key, ObjectInfo(key)


def _describe(p: Program, key):
    """(name, file, line, scope, type, function, tls, identity name) of an object, or None. A part of
    an object (`app.pool`) is described by the object with its path: the name and identity name get
    `.member` for each step (`->member` for the first step into a heap object), the type is the
    member's."""
    kind, k, path = key
    desc = _describe_object(p, kind, k)
    if desc is None or not path:
        return desc
    name, file, line, scope, typ, function, tls, id_name = desc
    members = [m for (_, m) in path]
    first = "->" if scope == "heap" else "."
    name = name.removeprefix("*")  # a member of what global pointer `g` points to: `g->member`
    if kind == "global" and typ.rstrip().endswith("]"):
        name += "[]"  # a member of every element of a global array
    decl = p.fields.get(path[-1])
    return (f"{name}{first}{'.'.join(members)}", file, line, scope, decl.type if decl else "", function, tls,
            f"{id_name}.{'.'.join(members)}")


def _describe_object(p: Program, kind: str, k: str):
    if kind in ("global", "pointee"):
        g = p.globals.get(k)
        if g is None:
            return None
        file = _rel(p, g.file)
        if kind == "pointee":  # what a global pointer points to, when nothing stored into it is known
            return f"*{g.name}", file, g.line, "heap", g.type, "", False, f"*{g.name}"
        return g.name, file, g.line, g.scope, g.type, g.function, g.tls, g.name
    if kind == "alloc":
        a = p.allocs.get(k)
        if a is None:
            return None
        return (a.assigned_to or f"{a.call}()", a.file, a.line, "heap", f"{a.call}() result", a.function, False,
                f"{a.call}->{a.assigned_to}")
    if kind == "stack":
        s = p.stacks.get(k)
        if s is None:
            return None
        return s.name, s.file, s.line, "stack", "", s.function, False, s.name
    return None


def _is_lock(p: Program, key) -> bool:
    if key[2]:
        decl = p.fields.get(key[2][-1])
        return bool(decl and decl.is_lock)
    g = p.globals.get(key[1]) if key[0] == "global" else None
    return bool(g and g.is_lock)


def _rel(p: Program, path: str) -> str:
    root = p.root.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path


def _accesses(info: ObjectInfo, made: dict[int, tuple]) -> list[Access]:
    """The reported accesses of one object. `made`: id of an access record -> its report entry and
    sort key, made once: one record is shared by every object the access touches (thousands, for an
    access through a `struct list *` on HAProxy), and so is its entry."""
    out = {}
    for a in info.accesses:
        if (a.loc, a.mode) in out:
            continue  # the first access at a place is the one reported
        entry = made.get(id(a))
        if entry is None:
            threads = tuple(sorted({t for (t, _) in a.contexts}))
            entry = made[id(a)] = (_loc_key(a.loc), Access(
                loc=a.loc, function=a.fn.name, mode=a.mode, atomic=a.atomic, locks_held=tuple(sorted(a.locks)),
                threads=threads, concurrent=any(c for (_, c) in a.contexts), core_indexed=a.core_indexed,
                macro=a.macro, suppressed=a.suppressed,
            ))
        out[(a.loc, a.mode)] = entry
    return [acc for _, acc in sorted(out.values(), key=lambda e: e[0])]


def _loc_key(loc: str):
    parts = loc.rsplit(":", 2)
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return loc, 0, 0


def _sites(p: Program, cls: Classifier, kind: str) -> list[Site]:
    out = []
    for usr, fn in p.functions.items():
        for ev in walk_events(fn.events):
            if not isinstance(ev, CallFact) or not ev.callee:
                continue
            role = p.sem.role(ev.callee, kind)
            if role is None:
                continue
            category = role.get("category") if kind == "nondeterminism" else role.get("direction")
            threads = tuple(sorted({t for (t, _) in cls.event_contexts(fn, ev)}))
            out.append(Site(ev.loc, fn.name, ev.callee, category, threads))
    return sorted(out, key=lambda s: _loc_key(s.loc))


def _warnings(p: Program, objects: list[_Object]) -> list[Finding]:
    out: list[Finding] = []
    racy: dict[int, tuple | None] = {}  # id of an access record (shared by objects) -> its sort key if racy
    for o in objects:
        if o.cls != "shared_rw" or o.protection not in ("unprotected", "mixed") or o.suppression:
            continue
        first, first_key = None, None
        for a in o.info.accesses:
            key = racy.get(id(a), 0)
            if key == 0:
                key = racy[id(a)] = _loc_key(a.loc) if not a.atomic and not a.locks and not a.suppressed and \
                    any(c for (_, c) in a.contexts) else None
            if key is not None and (first_key is None or key < first_key):
                first, first_key = a, key
        if first is None:
            continue
        out.append(Finding("race", first.loc,
                           f"{o.name} ({o.decl}) is written concurrently and {o.protection}: "
                           f"{first.mode} in {first.fn.name} holds no lock and is not atomic", o.id))
    for r in p.roots:
        if r.how == "main":
            continue  # main's locals live through the whole run; its worker role is checked as a root
        fn = p.functions[r.usr]
        for st in fn.loop_state:
            out.append(Finding("invisible_state", st.loc,
                               f"local '{st.name}' of thread root {fn.name} is {st.reason}: a checkpoint (a fork "
                               f"of the whole process) keeps it only with its thread's stack, restored where the "
                               f"thread parked; a thread the runtime did not start is not restored, and its state "
                               f"with it"))
    for a in p.allocs.values():
        if a.opaque:
            what = (f"{a.call}() in {a.function} uses state inside a library object ({a.assigned_to}, what "
                    f"the model names for its integer handles)" if a.key.startswith("library:") else
                    f"{a.call}() in {a.function} creates state inside a library object ({a.assigned_to or 'unnamed'})")
            out.append(Finding("opaque_state", f"{a.file}:{a.line}:1",
                               f"{what}: a checkpoint (a fork of the whole process) keeps it only while the "
                               f"library holds it in the process's private memory (DPDK's memory is remapped "
                               f"private for that), not state in the kernel or a device"))
    for usr, loc in p.unresolved:
        out.append(Finding("unresolved_call", loc,
                           f"indirect call in {p.functions[usr].name} matches no address-taken function"))
    for usr, call, n in p.unresolved_spawns:
        out.append(Finding("unresolved_spawn", call.loc,
                           f"{call.callee} in {p.functions[usr].name} starts a thread whose function is not known: "
                           f"all {n} address-taken functions of a compatible type are taken as thread roots"))
    out.extend(_unreached(p))
    for fn in p.functions.values():
        for ev in walk_events(fn.events):
            role = p.sem.role(ev.callee, "unreplayable") if isinstance(ev, CallFact) and ev.callee else None
            if role is not None:
                out.append(Finding("unreplayable_call", ev.loc,
                                   f"{ev.callee}() in {fn.name} {role.get('reason')}: a replay would diverge"))
    return sorted(out, key=lambda f: (f.kind, _loc_key(f.loc)))


def _unreached(p: Program) -> list[Finding]:
    """Address-taken functions that no thread runs and nothing calls: a library the models do not
    know may call them, and what they access is then attributed to no thread."""
    reached = p.reachable()
    registered: dict[str, list] = {}
    for reg in p.registrations:
        for t in reg.targets:
            registered.setdefault(t, []).append(reg)
    out = []
    for usr in sorted(set(p.address_taken()) & set(p.functions) - reached):
        if p.graph.in_degree(usr):
            continue
        fn = p.functions[usr]
        regs = [r for r in registered.get(usr, ()) if r.drivers]
        if regs:
            r = regs[0]
            why = f"registered with {r.call} at {r.loc}, but no thread calls {' or '.join(r.drivers)}"
        else:
            why = "its address is taken but no thread root reaches it (a library may call it: add a callback model)"
        out.append(Finding("unreached_function", f"{fn.file}:{fn.line}:1", f"{fn.name} runs in no thread: {why}"))
    return out
