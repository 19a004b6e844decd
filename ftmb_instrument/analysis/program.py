"""The whole program: facts of all translation units merged, its call graph and thread roots."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..facts import AccessFact, AllocSite, Branch, CallFact, FunctionFacts, GlobalDecl, Loop, Ref, StackSite, Suppression, TuFacts
from ..semantics import Semantics


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
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    roots: list[Root] = field(default_factory=list)
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (function usr, call loc)
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

    def call_targets(self, ev: CallFact, by_type: dict[str, list[str]], address_taken: dict[str, str]) -> list[str]:
        """Project functions a call may enter: the callee, or for an indirect call every
        address-taken function of a compatible type (same canonical type, else same arity)."""
        if ev.callee:
            return [ev.callee_usr] if ev.callee_usr in self.functions else []
        exact = by_type.get(ev.callee_type)
        if exact:
            return list(exact)
        arity = _arity(ev.callee_type)
        return [u for u, t in address_taken.items() if u in self.functions and _arity(t) == arity]

    # ---- thread roots ----------------------------------------------------------------------
    def find_roots(self, entries: list[str]) -> None:
        seen: dict[str, Root] = {}
        mains = [f for f in self.functions.values() if f.name == "main"]
        for m in mains:
            seen[m.usr] = Root(m.usr, "main", "main", "", False, False)
        from .pointsto import PointsTo  # resolves function pointers passed to spawn calls

        pts = PointsTo(self)
        address_taken = self.address_taken()
        for f in self.functions.values():
            for usr, loc in f.signal_handlers:
                self._add_root(seen, usr, "signal", loc, several=False, per_thread=False, refs=())
            for ev in walk_events(f.events):
                if not isinstance(ev, CallFact) or not ev.callee:
                    continue
                spawn = self.sem.role(ev.callee, "spawn")
                if spawn is None:
                    continue
                fi = spawn.get("function_arg")
                if fi >= len(ev.args):
                    continue
                farg = ev.args[fi]
                targets = [u for u in farg.funcs if u in self.functions]
                if not targets:  # a function pointer variable: what was stored into it
                    targets = sorted({u for r in farg.refs for u in pts.functions(r) if u in self.functions})
                if not targets:  # unknown: every compatible address-taken function
                    targets = [u for u, t in address_taken.items() if u in self.functions and (
                        t == farg.ptr_type or (farg.ptr_type and _arity(t) == _arity(farg.ptr_type)))]
                ai = spawn.get("arg_arg")
                arg = ev.args[ai] if 0 <= ai < len(ev.args) else None
                instances = spawn.get("instances")
                several = instances == "several" or (instances == "per_call" and ev.in_loop)
                per_thread = bool(arg) and instances != "several" and ev.in_loop and _per_thread_arg(arg.text)
                for t in targets:
                    self._add_root(seen, t, ev.callee, ev.loc, several, per_thread, arg.refs if arg else ())
        for name in entries:
            for f in self.functions.values():
                if f.name == name:
                    self._add_root(seen, f.usr, "entry", "", several=True, per_thread=False, refs=())
        self.roots = list(seen.values())

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


def _arity(fn_type: str) -> int:
    if "(" not in fn_type:
        return -1
    inner = fn_type[fn_type.index("(") + 1: fn_type.rindex(")")] if ")" in fn_type else ""
    inner = inner.strip()
    if not inner or inner == "void":
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


def _per_thread_arg(text: str) -> bool:
    """An argument that differs per spawned thread: `&args[i]`, `args + i`, `(void *)(intptr_t)i`."""
    if text in ("NULL", "0", "((void*)0)", "(void*)0"):
        return False
    return "[" in text or "+" in text or "intptr_t" in text or "long" in text


__all__ = ["AccessFact", "Program", "Root", "walk_events"]
