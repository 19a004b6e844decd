"""The whole program: facts of all translation units merged, its call graph and thread roots."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..facts import (
    AccessFact,
    AllocSite,
    ArgFact,
    Branch,
    CallFact,
    FieldDecl,
    FunctionFacts,
    GlobalDecl,
    Loop,
    Ref,
    StackSite,
    Suppression,
    TuFacts,
)
from ..errors import ModelError
from ..semantics import Role, Semantics


def walk_events(events: tuple):
    """Every AccessFact and CallFact in an event tree, in order."""
    for e in events:
        if isinstance(e, Branch):
            for alt in e.alternatives:
                yield from walk_events(alt)
        elif isinstance(e, Loop):
            yield from walk_events(e.body)
        elif isinstance(e, (AccessFact, CallFact)):
            yield e


@dataclass
class Root:
    usr: str
    name: str
    how: str  # "main" | spawn function | "signal" | "entry"
    site: str
    several: bool
    per_thread_arg: bool  # each instance got its own argument (&args[i], an index)
    arg_refs: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class Registration:
    """A call that hands functions to a library which runs them later (a `callback` model)."""

    function: str  # usr of the registering function
    loc: str
    call: str  # the registering library function
    targets: tuple[str, ...]
    drivers: tuple[str, ...]  # library functions whose callers run the targets ("" for runs_in caller/exit)


@dataclass
class Program:
    sem: Semantics
    root: str = ""  # project root: report paths are relative to it
    functions: dict[str, FunctionFacts] = field(default_factory=dict)
    globals: dict[str, GlobalDecl] = field(default_factory=dict)
    allocs: dict[str, AllocSite] = field(default_factory=dict)
    stacks: dict[str, StackSite] = field(default_factory=dict)
    flows: list[tuple[Ref, Ref]] = field(default_factory=list)
    fn_flows: list[tuple[Ref, str]] = field(default_factory=list)
    file_address_taken: dict[str, str] = field(default_factory=dict)
    suppressions: dict[tuple[str, int], Suppression] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    fields: dict[tuple[str, str], FieldDecl] = field(default_factory=dict)  # (record, member) -> declaration
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    roots: list[Root] = field(default_factory=list)
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (function usr, call loc)
    unresolved_spawns: list[tuple[str, CallFact, int]] = field(default_factory=list)  # (usr, call, candidates)
    spawns: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (caller, spawn call id) -> roots
    registrations: list[Registration] = field(default_factory=list)
    callback_args: dict[str, list[tuple[int, tuple[Ref, ...]]]] = field(default_factory=dict)  # usr -> (param, refs)
    exit_callbacks: set[str] = field(default_factory=set)  # run by main when the program exits
    driver_calls: dict[str, set[str]] = field(default_factory=dict)  # driver name -> usrs that call it
    targets: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (caller, call id) -> callees
    call_sites: dict[str, list[tuple[str, CallFact]]] = field(default_factory=dict)  # callee -> (caller, call)

    @staticmethod
    def merge(units: list[TuFacts], sem: Semantics) -> Program:
        p = Program(sem)
        for u in units:
            for g in u.globals:
                old = p.globals.get(g.usr)
                if old is None or (g.is_definition and not old.is_definition):
                    p.globals[g.usr] = g
            for f in u.functions:
                p.functions.setdefault(f.usr, f)  # a header's inline function: the same in every unit
            for a in u.allocs:
                p.allocs.setdefault(a.key, a)
            for s in u.stacks:
                p.stacks.setdefault(s.key, s)
            p.flows.extend(u.flows)
            p.fn_flows.extend(u.fn_flows)
            p.file_address_taken.update(u.address_taken)
            for s in u.suppressions:
                p.suppressions[(s.file, s.line)] = s
            p.names.update(u.function_names)
            p.fields.update(u.fields)
        for f in p.functions.values():
            p.names[f.usr] = f.name
        return p

    # ---- call graph ------------------------------------------------------------------------
    def address_taken(self) -> dict[str, str]:
        """Functions used as values anywhere (function bodies and file-scope initializers)."""
        out = dict(self.file_address_taken)
        for f in self.functions.values():
            out.update(dict(f.fn_types))
        return out

    def build_call_graph(self) -> None:
        address_taken = self.address_taken()
        by_type: dict[str, list[str]] = {}
        for usr, typ in address_taken.items():
            if usr in self.functions:
                by_type.setdefault(typ, []).append(usr)
        self.graph.add_nodes_from(self.functions)
        for f in self.functions.values():
            for ev in walk_events(f.events):
                if not isinstance(ev, CallFact):
                    continue
                targets = self.call_targets(ev, by_type, address_taken)
                self.targets[(f.usr, ev.id)] = targets
                for target in targets:
                    self.graph.add_edge(f.usr, target)
                    self.call_sites.setdefault(target, []).append((f.usr, ev))
                if not ev.callee and not targets:
                    self.unresolved.append((f.usr, ev.loc))
        self._link_callbacks()

    def call_targets(self, ev: CallFact, by_type: dict[str, list[str]], address_taken: dict[str, str]) -> list[str]:
        """Project functions a call may enter: the callee, or for an indirect call every
        address-taken function of a compatible type (same canonical type, else same arity)."""
        if ev.callee:
            return [ev.callee_usr] if ev.callee_usr in self.functions else []
        exact = by_type.get(ev.callee_type)
        if exact:
            return list(exact)
        return [u for u, t in address_taken.items() if u in self.functions and _compatible(t, ev.callee_type)]

    def _link_callbacks(self) -> None:
        """Callback models as call edges: a `caller` callback is called by the registering call, a
        `driver` callback by every call to one of its drivers; its data argument flows into the
        parameter `arg_param`. An `exit` callback runs in main after everything else."""
        from .pointsto import PointsTo

        pts = PointsTo(self)
        by_driver: dict[str, set[str]] = {}
        for f in self.functions.values():
            for ev in walk_events(f.events):
                if not isinstance(ev, CallFact) or not ev.callee:
                    continue
                role = self.sem.role(ev.callee, "callback")
                if role is None:
                    continue
                _check_arity(role, "function_arg", ev)
                in_struct = role.get("function_in_struct")
                targets = self.function_values(ev.args[role.get("function_arg")], pts, in_struct)
                ai = role.get("arg_arg")
                if 0 <= ai < len(ev.args):
                    refs = ev.args[ai].refs
                    if in_struct:  # the data pointer is stored in the struct too
                        refs = tuple(Ref("load", inner=r) for r in refs)
                    for t in targets:
                        self.callback_args.setdefault(t, []).append((role.get("arg_param"), refs))
                runs_in = role.get("runs_in")
                if runs_in == "caller":
                    self._add_call_edges(f.usr, ev, targets)
                elif runs_in == "exit":
                    self.exit_callbacks.update(targets)
                else:
                    for d in role.get("driver"):
                        by_driver.setdefault(d, set()).update(targets)
                self.registrations.append(Registration(
                    f.usr, ev.loc, ev.callee, tuple(targets), role.get("driver")))
        for f in self.functions.values():
            for ev in walk_events(f.events):
                if isinstance(ev, CallFact) and ev.callee in by_driver:
                    self.driver_calls.setdefault(ev.callee, set()).add(f.usr)
                    self._add_call_edges(f.usr, ev, sorted(by_driver[ev.callee]))

    def _add_call_edges(self, caller: str, ev: CallFact, targets: list[str]) -> None:
        """Edges for a library call that calls back into the project (not a call site: the
        callback's parameters do not receive this call's arguments)."""
        have = self.targets.setdefault((caller, ev.id), [])
        for t in targets:
            if t not in have:
                have.append(t)
                self.graph.add_edge(caller, t)

    def function_values(self, arg: ArgFact, pts, in_struct: bool = False) -> list[str]:
        """Project functions an argument passes: those it names, else what was stored where it was
        loaded from (`in_struct`: what was stored into the struct it points to), keeping the ones
        of the argument's exact type when there are any (tables and structs are field-insensitive)."""
        if in_struct:
            found = {u for r in arg.refs for u in pts.functions(Ref("load", inner=r))}
        elif arg.funcs:
            return [u for u in arg.funcs if u in self.functions]
        else:
            found = {u for r in arg.refs for u in pts.functions(r)}
        return self._of_type(sorted(u for u in found if u in self.functions), arg.ptr_type)

    def candidates(self, ptr_type: str) -> list[str]:
        """Every address-taken project function a pointer of type `ptr_type` may hold ("": a
        `void *` or an untyped value, any of them)."""
        return self._of_type(sorted(u for u in self.address_taken() if u in self.functions), ptr_type)

    def _of_type(self, usrs: list[str], ptr_type: str) -> list[str]:
        if not ptr_type:
            return usrs
        exact = [u for u in usrs if self.functions[u].type == ptr_type]
        return exact or [u for u in usrs if _compatible(self.functions[u].type, ptr_type)]

    # ---- thread roots ----------------------------------------------------------------------
    def find_roots(self, entries: list[str]) -> None:
        seen: dict[str, Root] = {}
        mains = [f for f in self.functions.values() if f.name == "main"]
        for m in mains:
            seen[m.usr] = Root(m.usr, "main", "main", "", False, False)
        from .pointsto import PointsTo  # resolves function pointers passed to spawn calls

        pts = PointsTo(self)
        for f in self.functions.values():
            for usr, loc in f.signal_handlers:
                self._add_root(seen, usr, "signal", loc, several=False, per_thread=False, refs=())
            for ev in walk_events(f.events):
                if not isinstance(ev, CallFact) or not ev.callee:
                    continue
                spawn = self.sem.role(ev.callee, "spawn")
                if spawn is None:
                    continue
                fi = _check_arity(spawn, "function_arg", ev)
                farg = ev.args[fi]
                targets = self.function_values(farg, pts)
                if not targets:  # unknown: every compatible address-taken function
                    targets = self.candidates(farg.ptr_type)
                    self.unresolved_spawns.append((f.usr, ev, len(targets)))
                ai = spawn.get("arg_arg")
                arg = ev.args[ai] if 0 <= ai < len(ev.args) else None
                instances = spawn.get("instances")
                several = instances == "several" or (instances == "per_call" and ev.in_loop)
                per_thread = bool(arg) and instances != "several" and ev.in_loop and _per_thread_arg(arg.text)
                self.spawns[(f.usr, ev.id)] = [t for t in targets if t in self.functions]
                for t in targets:
                    self._add_root(seen, t, ev.callee, ev.loc, several, per_thread, arg.refs if arg else ())
        for name in entries:
            for f in self.functions.values():
                if f.name == name:
                    self._add_root(seen, f.usr, "entry", "", several=True, per_thread=False, refs=())
        self.roots = list(seen.values())

    def reachable(self) -> set[str]:
        """Functions some thread runs: the roots, exit callbacks, and everything they call."""
        start = {r.usr for r in self.roots} | self.exit_callbacks
        out = set(start)
        for usr in start:
            out |= nx.descendants(self.graph, usr)
        return out

    def _add_root(self, seen: dict[str, Root], usr: str, how: str, site: str, several: bool, per_thread: bool,
                  refs: tuple[Ref, ...]) -> None:
        if usr not in self.functions:
            return
        old = seen.get(usr)
        if old is None:
            seen[usr] = Root(usr, self.functions[usr].name, how, site, several, per_thread, tuple(refs))
        elif old.how != "main":
            old.several = True  # spawned at two sites: at least two instances
            old.per_thread_arg = old.per_thread_arg and per_thread
            old.arg_refs = tuple(set(old.arg_refs) | set(refs))


def _arity(fn_type: str) -> int | None:
    """Number of parameters of a canonical function type; None without a prototype (K&R `f()`)."""
    if "(" not in fn_type or ")" not in fn_type:
        return -1
    inner = fn_type[fn_type.index("(") + 1: fn_type.rindex(")")].strip()
    if not inner:
        return None
    if inner == "void":
        return 0
    depth, n = 0, 1
    for ch in inner:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            n += 1
    return n


def _compatible(fn_type: str, ptr_type: str) -> bool:
    """A function of `fn_type` may be called through a pointer to `ptr_type`: the same type, the
    same number of parameters, or either side declared without a prototype."""
    if fn_type == ptr_type:
        return True
    a, b = _arity(fn_type), _arity(ptr_type)
    return a is None or b is None or a == b


def _per_thread_arg(text: str) -> bool:
    """An argument that differs per spawned thread: `&args[i]`, `args + i`, `(void *)(intptr_t)i`."""
    if text in ("NULL", "0", "((void*)0)", "(void*)0"):
        return False
    return "[" in text or "+" in text or "intptr_t" in text or "long" in text


__all__ = ["AccessFact", "Program", "Root", "walk_events"]


def _check_arity(role: Role, key: str, ev: CallFact) -> int:
    """The argument index `role` gives at `key`; a ModelError naming the model entry if the call has
    no such argument (a silently skipped spawn would lose a thread and everything it shares)."""
    i = role.get(key)
    if i >= len(ev.args):
        raise ModelError(f"{role.source}: {key} = {i}, but the call to {ev.callee} at {ev.loc} passes "
                         f"{len(ev.args)} argument(s) (indexes count from 0)")
    return i
