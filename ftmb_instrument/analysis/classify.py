"""Who runs what, what each access touches, and the class of every variable and shared object.

Threads: `main`, every function passed to a spawn call, every signal handler, every `--entry`.
Main's code before its first spawn and after its last join runs alone; between them it runs
concurrently with the roots already started: those launched by a spawn call (or a call that spawns,
through its callees or the roots it starts) earlier in main, or in the same loop of main, and every
root main does not start itself. A launch is a happens-before edge: main's access of an object
that only roots launched later touch does not conflict with them. A function runs in the contexts
of all its callers (a callback: of the library call that runs it); an exit handler runs in main
after its last join.

Objects are field-sensitive: the members of a struct that the program accesses by name are
objects of their own (`app.pool`, `app_stats.rx.rx_pkts`), unless an access to the enclosing struct
as a whole runs concurrently with other threads (the struct is then one object, as is any part
that is seen through two struct types). A whole-struct access that runs alone (main before its
first spawn or after its last join) counts as an access to each of its fields.

Classes (exactly one per object; see the README and the report schema):
  shared_rw       written while another thread (or another instance of the same root) may access it
  shared_ro       more than one thread reads it, and it is only written while no other thread runs
  per_core        every access by a non-main thread selects its element by core id or per-thread
                  argument, or thread-local storage
  thread_private  one thread uses it
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..facts import AccessFact, CallFact, FunctionFacts, Ref
from .locksets import Locksets
from .pointsto import ObjKey, Path, PointsTo
from .program import Program, Root, walk_events

Ctx = tuple[str, bool]  # (thread name, runs concurrently with other threads)
NEVER_JOINED = 1 << 62  # the end of main's concurrent window when it never joins


@dataclass
class ResolvedAccess:
    fn: FunctionFacts
    fact: AccessFact | CallFact
    mode: str
    atomic: bool
    commutative_op: bool
    core_indexed: bool
    locks: frozenset
    contexts: frozenset  # of Ctx
    loc: str
    macro: str
    suppressed: str
    lock_op: bool = False  # a lock operation on a lock inside this object


@dataclass
class ObjectInfo:
    key: ObjKey
    accesses: list[ResolvedAccess] = field(default_factory=list)


class Classifier:
    def __init__(self, program: Program, locks: Locksets):
        self.p = program
        self.locks = locks
        self.roots: dict[str, Root] = {r.usr: r for r in program.roots}
        self.several = {r.name: r.several for r in program.roots}
        self.handlers = {r.name for r in program.roots if r.how == "signal"}
        self.contexts: dict[str, set[Ctx]] = {}
        self.window: tuple[int, int] | None = None
        self.all_roots = frozenset(r.name for r in program.roots if r.how not in ("main", "signal"))
        self.main_spawns: list[tuple[CallFact, frozenset]] = []  # main's calls that start roots, and which
        self.callee_running: dict[str, frozenset] = {}  # function run by main -> roots that may run meanwhile
        self.unordered = self.all_roots  # roots main does not start (set with the window)
        self.main_usr = next((r.usr for r in program.roots if r.how == "main"), None)
        self.pts = PointsTo(program)
        self.escaped = self.pts.escaped_stack_objects()
        self.tainted_params: set[tuple[str, int]] = set()
        self.objects: dict[ObjKey, ObjectInfo] = {}

    # ---- thread contexts -------------------------------------------------------------------
    def compute_contexts(self) -> None:
        self._main_window()
        work: list[str] = []
        for r in self.p.roots:
            if r.how == "main":
                continue
            self._add_ctx(r.usr, {(r.name, True)}, work)
        running_work: list[str] = []
        if self.main_usr:
            self._add_ctx(self.main_usr, {("main", False)}, [])
            fn = self.p.functions[self.main_usr]
            for ev in walk_events(fn.events):
                if isinstance(ev, CallFact):
                    launched = next((roots for call, roots in self.main_spawns if call is ev), frozenset())
                    for t in self.p.targets.get((fn.usr, ev.id), []):
                        if t not in self.roots:
                            self._add_ctx(t, {("main", self.main_concurrent(ev.span))}, work)
                            if self.main_concurrent(ev.span) or launched:
                                self._add_running(t, self.main_running(ev) | launched, running_work)
        at_exit_concurrent = self.window is not None and self.window[1] == NEVER_JOINED
        for usr in self.p.exit_callbacks - set(self.roots):  # main at exit: alone once it has joined
            self._add_ctx(usr, {("main", at_exit_concurrent)}, work)
            if at_exit_concurrent:
                self._add_running(usr, self.all_roots, running_work)
        while running_work:  # what main's callees run alongside: the union over their calls from main
            usr = running_work.pop()
            for t in self._reach(self.p.graph, usr) - set(self.roots):
                self._add_running(t, self.callee_running[usr], [])
        while work:
            usr = work.pop()
            ctx = self.contexts[usr]
            fn = self.p.functions[usr]
            for ev in walk_events(fn.events):
                if isinstance(ev, CallFact):
                    for t in self.p.targets.get((usr, ev.id), []):
                        if t not in self.roots:
                            self._add_ctx(t, ctx, work)

    def _add_ctx(self, usr: str, ctx: set[Ctx], work: list[str]) -> None:
        have = self.contexts.setdefault(usr, set())
        if not ctx <= have:
            have |= ctx
            work.append(usr)

    def _add_running(self, usr: str, running: frozenset, work: list[str]) -> None:
        have = self.callee_running.get(usr, frozenset())
        if not running <= have:
            self.callee_running[usr] = have | running
            work.append(usr)

    def _main_window(self) -> None:
        """Offsets in main between which other threads run: from the first call that (maybe
        indirectly) spawns to the last that joins; with handlers installed, the whole of main."""
        if not self.main_usr:
            return
        spawners = self._transitively(lambda name: self.p.sem.role(name, "spawn") is not None)
        joiners = self._transitively(lambda name: self.p.sem.role(name, "join") is not None)
        fn = self.p.functions[self.main_usr]
        start, end = None, None
        for ev in walk_events(fn.events):
            if not isinstance(ev, CallFact):
                continue
            targets = self.p.targets.get((fn.usr, ev.id), [])
            if (ev.callee and self.p.sem.role(ev.callee, "spawn")) or any(t in spawners for t in targets):
                start = ev.span[0] if start is None else min(start, ev.span[0])
            if (ev.callee and self.p.sem.role(ev.callee, "join")) or any(t in joiners for t in targets):
                end = ev.span[1] if end is None else max(end, ev.span[1])
        if start is not None:
            self.window = (start, end if end is not None and end >= start else NEVER_JOINED)
        self._main_launches(fn)

    def _main_launches(self, main: FunctionFacts) -> None:
        """The roots each call in main may start: a spawn call's own, those started by the functions
        it calls, and, transitively, those the started roots start."""
        spawners: dict[str, set[str]] = {}  # function -> root usrs its own spawn calls start
        for (usr, _), targets in self.p.spawns.items():
            spawners.setdefault(usr, set()).update(targets)
        memo: dict[str, set[str]] = {}

        def started_by(usr: str) -> set[str]:  # spawn targets of usr and everything it calls
            if usr not in memo:
                memo[usr] = {r for f in {usr} | self._reach(self.p.graph, usr) for r in spawners.get(f, ())}
            return memo[usr]

        from_main: set[str] = set()
        for ev in walk_events(main.events):
            if not isinstance(ev, CallFact):
                continue
            roots = set(self.p.spawns.get((main.usr, ev.id), ()))
            for t in self.p.targets.get((main.usr, ev.id), []):
                if t not in self.roots:
                    roots |= started_by(t)
            todo = list(roots)
            while todo:  # roots started by started roots
                for r in started_by(todo.pop()) - roots:
                    roots.add(r)
                    todo.append(r)
            names = frozenset(self.roots[r].name for r in roots
                              if r in self.roots and self.roots[r].how != "main")
            if names:
                self.main_spawns.append((ev, names))
                from_main |= names
        self.unordered = self.all_roots - from_main  # roots main does not start: running at any time

    def main_running(self, ev: AccessFact | CallFact) -> frozenset:
        """Roots that may run while main executes `ev`: none outside the window; inside it those started
        by an earlier call of main or by a call in the same outermost loop (a later iteration), and the
        roots main does not start itself."""
        if not self.main_concurrent(ev.span):
            return frozenset()
        out = set(self.unordered)
        for call, names in self.main_spawns:
            if call.offset <= ev.offset or (call.span == ev.span and call.span[0] != call.span[1]):
                out |= names
        return frozenset(out)

    def _transitively(self, pred) -> set[str]:
        direct = {usr for usr, f in self.p.functions.items()
                  if any(isinstance(e, CallFact) and e.callee and pred(e.callee) for e in walk_events(f.events))}
        out = set(direct)
        rev = self.p.graph.reverse(copy=False)
        for usr in direct:
            for anc in self._reach(rev, usr):
                out.add(anc)
        return out

    @staticmethod
    def _reach(g, start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            n = stack.pop()
            for m in g.successors(n):
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return seen

    def main_concurrent(self, span: tuple[int, int]) -> bool:
        return self.window is not None and span[1] >= self.window[0] and span[0] <= self.window[1]

    def event_contexts(self, fn: FunctionFacts, ev: AccessFact | CallFact) -> frozenset:
        if fn.usr == self.main_usr:
            return frozenset({("main", self.main_concurrent(ev.span))})
        return frozenset(self.contexts.get(fn.usr, ()))

    def compute_taint(self) -> None:
        """Parameters that carry a per-thread value: a per-thread root argument, or at every
        call a value derived from the core id or another such parameter."""
        for r in self.p.roots:
            if r.per_thread_arg:
                self.tainted_params.add((r.usr, 0))
        changed = True
        while changed:
            changed = False
            for usr, sites in self.p.call_sites.items():
                if usr in self.roots:
                    continue
                fn = self.p.functions[usr]
                for k in range(len(fn.params)):
                    if (usr, k) in self.tainted_params or not sites:
                        continue
                    if all(k < len(call.args) and self.tainted(caller, call.args[k].taint) for caller, call in sites):
                        self.tainted_params.add((usr, k))
                        changed = True

    def tainted(self, usr: str, taint: tuple[str, ...]) -> bool:
        for t in taint:
            if t == "core":
                return True
            if t.startswith("param:") and (usr, int(t[6:])) in self.tainted_params:
                return True
        return False

    # ---- accesses --------------------------------------------------------------------------
    def collect(self) -> None:
        for usr, fn in self.p.functions.items():
            for ev in walk_events(fn.events):
                if isinstance(ev, AccessFact):
                    self._access(fn, ev, ev.ref, ev.mode, ev.atomic, ev.commutative_op, ev.index_taint)
                elif isinstance(ev, CallFact):
                    self._call_effects(fn, ev)
        self._merge_overlapping_parts()
        self._order_main_by_launch()

    def _order_main_by_launch(self) -> None:
        """A concurrent access by main that no root already running at that point touches runs alone
        for this object: the roots that access it are launched after it (a happens-before edge)."""
        narrowed: dict[tuple[int, frozenset], tuple[ResolvedAccess, ResolvedAccess]] = {}
        for info in self.objects.values():
            contexts = {a.contexts for a in info.accesses}  # few distinct ones, in long lists
            if not any(("main", True) in c for c in contexts):
                continue  # nothing to narrow
            others = frozenset(t for c in contexts for (t, _) in c if t != "main")
            accesses = []
            for a in info.accesses:
                if ("main", True) not in a.contexts:
                    accesses.append(a)
                    continue
                # an access record is shared by the objects it touches: narrowed once per set of
                # other threads (keeping `a` with its result: an id is unique only while it lives)
                done = narrowed.get((id(a), others))
                if done is None or done[0] is not a:
                    done = narrowed[(id(a), others)] = (a, self._narrow_main(a, others))
                accesses.append(done[1])
            info.accesses = accesses

    def _narrow_main(self, a: ResolvedAccess, others: set[str]) -> ResolvedAccess:
        if ("main", True) not in a.contexts:
            return a
        if a.fn.usr == self.main_usr:
            running = self.main_running(a.fact)
        else:
            running = self.callee_running.get(a.fn.usr, self.all_roots)
        if running & others or others & self.handlers:  # a handler may interrupt any of main's code
            return a
        return replace(a, contexts=(a.contexts - {("main", True)}) | {("main", False)})

    def _merge_overlapping_parts(self) -> None:
        """Turn the locations accessed in each object into disjoint objects. A location accessed
        as a whole by a concurrent access while parts of it are accessed too, or seen through two
        struct types, becomes one object with everything inside it; a whole access that runs alone
        counts as an access to each part. Overlapping accesses therefore always meet in one object."""
        by_object: dict[tuple[str, str], list[ObjectInfo]] = {}
        for info in self.objects.values():
            by_object.setdefault(info.key[:2], []).append(info)
        merged: dict[ObjKey, ObjectInfo] = {}
        for (kind, key), infos in by_object.items():
            paths = [i.key[2] for i in infos]
            # each proper prefix of a path -> the struct types of the steps taken from it (linear in
            # the paths; comparing every pair was quadratic: thousands of members on HAProxy)
            steps: dict[Path, set[str]] = {}
            for q in paths:
                for n in range(len(q)):
                    steps.setdefault(q[:n], set()).add(q[n][0])
            whole: set[Path] = set()
            for info in infos:
                p = info.key[2]
                if p in steps and any(self._concurrent(a) for a in info.accesses):  # parts inside it
                    whole.add(p)
            # two paths that part through different struct types: the object seen through a cast
            whole.update(prefix for prefix, types in steps.items() if len(types) > 1)

            def owner(p: Path) -> Path:
                return next((p[:n] for n in range(len(p) + 1) if p[:n] in whole), p)

            owners = {p: owner(p) for p in paths}
            parts: dict[Path, set[Path]] = {p: set() for p in paths}  # the owners of the paths below each
            for q in paths:  # through each path's prefixes: comparing every pair was quadratic
                for n in range(len(q)):
                    if q[:n] in parts:
                        parts[q[:n]].add(owners[q])
            for p in paths:
                parts[p].discard(p)
            alone = {p for p in paths if owners[p] == p and parts[p]}  # whole accesses that run alone
            for info in infos:
                p = info.key[2]
                for target in parts[p] - alone if p in alone else {owners[p]}:
                    obj = (kind, key, target)
                    merged.setdefault(obj, ObjectInfo(obj)).accesses.extend(info.accesses)
        self.objects = merged

    def _concurrent(self, a: ResolvedAccess) -> bool:
        return any(c or t in self.handlers for (t, c) in a.contexts)

    def _call_effects(self, fn: FunctionFacts, call: CallFact) -> None:
        """What a call does to memory the frontend could not see: a lock operation touches the
        lock object (atomically); an external function may read or write through its pointer
        arguments, except the data it only hands to a callback (the callback's accesses count)."""
        if not call.callee or call.callee_usr in self.p.functions:
            return
        roles = {r.kind: r for r in self.p.sem.lookup(call.callee)}
        if "lock" in roles:
            li = roles["lock"].get("lock_arg")
            if li < len(call.args):
                for ref in call.args[li].refs:
                    self._access(fn, call, ref, "rmw", True, False, call.args[li].taint, lock_op=True)
            return
        if roles.keys() & {"atomic", "spawn", "join", "signal", "opaque_access", "alloc", "opaque_create", "core_identity"}:
            return
        passed_on = roles["callback"].get("arg_arg") if "callback" in roles else -1  # the callback's own data
        # a packet handle the runtime serves in a session (pcap_t): the call is packet I/O, not an
        # access of the library's state through it
        handle = roles["packet_io"].get("handle_arg") if "packet_io" in roles else -1
        for i, arg in enumerate(call.args):
            if i in (passed_on, handle):
                continue
            for ref in arg.refs:
                self._access(fn, call, ref, arg.mode, False, False, arg.taint)

    def _access(self, fn, ev, ref: Ref, mode: str, atomic: bool, commutative: bool, taint,
                lock_op: bool = False) -> None:
        contexts = self.event_contexts(fn, ev)
        locks = self.locks.held_at(fn.usr, ev.id)
        idx_core = self.tainted(fn.usr, taint)
        suppressed = getattr(ev, "suppressed", "")
        # One access record per core-indexed flag, shared by every object the access may touch
        # (never modified, only replaced): an access through a `struct list` pointer on HAProxy
        # touches thousands of objects.
        made: dict[bool, ResolvedAccess] = {}
        for key, per_thread in self.pts.resolve(ref).items():
            if key[0] == "stack" and key[1] not in self.escaped:
                continue
            core_indexed = idx_core or per_thread
            access = made.get(core_indexed)
            if access is None:
                access = made[core_indexed] = ResolvedAccess(
                    fn=fn, fact=ev, mode=mode, atomic=atomic, commutative_op=commutative,
                    core_indexed=core_indexed, locks=locks, contexts=contexts, loc=ev.loc,
                    macro=ev.macro, suppressed=suppressed, lock_op=lock_op,
                )
            self.objects.setdefault(key, ObjectInfo(key)).accesses.append(access)

    # ---- classes ---------------------------------------------------------------------------
    def classify(self, info: ObjectInfo, tls: bool, is_lock: bool) -> tuple[str, str | None, tuple[str, ...], bool]:
        """(class, protection, locks, commutative) of one object. A lock is shared through its
        lock operations; an object that merely contains a lock is shared through its data."""
        accs = info.accesses if is_lock else [a for a in info.accesses if not a.lock_op] or info.accesses
        threads = {t for a in accs for (t, _) in a.contexts}
        if threads & self.handlers:  # a signal handler may interrupt any code, main's included
            conc, conc_threads = accs, threads
        else:
            conc = [a for a in accs if any(c for (_, c) in a.contexts)]
            conc_threads = {t for a in conc for (t, c) in a.contexts if c}
        multi = any(self.several.get(t, False) for t in conc_threads)
        conc_writes = [a for a in conc if a.mode != "read"]
        workers = [a for a in conc if any(t != "main" for (t, _) in a.contexts)]
        if tls:
            return "per_core", None, (), False
        if len(threads) <= 1 and not any(self.several.get(t, False) for t in threads):
            return "thread_private", None, (), False
        if not conc_writes:
            return "shared_ro", None, (), False
        if len(conc_threads) < 2 and not multi:
            return "thread_private", None, (), False
        if workers and all(a.core_indexed for a in workers):
            return "per_core", None, (), False
        protection, locks = _protection(conc)
        commutative = all(
            a.mode == "rmw" and a.commutative_op for a in workers
        ) and bool(workers)
        return "shared_rw", protection, locks, commutative


def _protection(accs: list[ResolvedAccess]) -> tuple[str, tuple[str, ...]]:
    kinds = set()
    for a in accs:
        kinds.add("atomic" if a.atomic else "lock" if a.locks else "none")
    if kinds == {"atomic"}:
        return "atomic", ()
    if kinds == {"lock"}:
        common = frozenset.intersection(*[a.locks for a in accs])
        if common:
            return "lock", _preferred_names(common)
        return "mixed", ()
    if kinds == {"none"}:
        return "unprotected", ()
    return "mixed", ()


def _preferred_names(names: frozenset) -> tuple[str, ...]:
    """Precise lock names (`g_tbl->lock`) over the by-type fallback (`tbl::lock`) of the same field."""
    precise = {n for n in names if "::" not in n}
    fields = {n.rsplit("->", 1)[-1].rsplit(".", 1)[-1] for n in precise}
    kept = precise | {n for n in names if "::" in n and n.split("::", 1)[1] not in fields}
    return tuple(sorted(kept))
