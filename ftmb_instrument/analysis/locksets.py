"""Must-locksets: which locks are certainly held at each access and call.

Each function is walked over its event tree (branches meet by intersection, loops run until
stable). Lock wrappers are handled by summaries computed bottom-up over the call graph: what a
function leaves acquired and what it releases, with locks reached through a parameter
(`$K->field`) renamed at each call to the argument passed. The locks held on entry to a function
are those held at every call to it (top-down); a thread root starts with none.

A lock token from the frontend is `name` or `precise|fallback` (`g_tbl->lock|tbl::lock`): holding
it means holding both names, so the same lock reached through different pointers still meets.
"""

from __future__ import annotations

import networkx as nx

from ..facts import AccessFact, Branch, CallFact, Exit, Loop
from .program import Program

State = tuple[frozenset, frozenset]  # (held, released since entry)
EMPTY: State = (frozenset(), frozenset())


def expand(token: str) -> frozenset:
    return frozenset(t for t in token.split("|") if t)


def substitute(names: frozenset, call: CallFact) -> frozenset:
    """Rename `$K...` lock names of a callee's summary to the caller's argument K."""
    out = set()
    for n in names:
        if not n.startswith("$"):
            out.add(n)
            continue
        k = ""
        i = 1
        while i < len(n) and n[i].isdigit():
            k += n[i]
            i += 1
        idx = int(k) if k else -1
        if 0 <= idx < len(call.args):
            base = call.args[idx].lock.split("|")[0]
            if base and not base.startswith(("local:", "?")):
                out.add(base + n[i:])
    return frozenset(out)


def resolved(names: frozenset) -> frozenset:
    """Names meaningful outside their function: parameters that were never renamed are dropped
    (the fallback `tag::field` of the same token remains)."""
    return frozenset(n for n in names if not n.startswith(("$", "local:")))


class Locksets:
    def __init__(self, program: Program):
        self.p = program
        self.summary: dict[str, State] = {}
        self.at: dict[tuple[str, int], State] = {}  # (function usr, event id) -> state before it
        self.entry: dict[str, frozenset] = {}

    def compute(self) -> None:
        g = self.p.graph
        cond = nx.condensation(g)
        for scc in reversed(list(nx.topological_sort(cond))):
            members = cond.nodes[scc]["members"]
            for _ in range(2 if len(members) > 1 or any(g.has_edge(m, m) for m in members) else 1):
                for usr in members:
                    self.summary[usr] = self._function(usr, record=False)
        for usr in self.p.functions:
            self._function(usr, record=True)
        self._entries()

    def _entries(self) -> None:
        roots = {r.usr for r in self.p.roots}
        g = self.p.graph
        entry: dict[str, frozenset | None] = {u: (frozenset() if u in roots or g.in_degree(u) == 0 else None) for u in g}
        cond = nx.condensation(g)
        order = list(nx.topological_sort(cond))
        by_caller: dict[str, list[tuple[int, list[str]]]] = {}
        for (caller, call_id), callees in self.p.targets.items():
            by_caller.setdefault(caller, []).append((call_id, callees))
        for _ in range(2):
            for scc in order:
                for usr in cond.nodes[scc]["members"]:
                    here = entry[usr]
                    if here is None:
                        continue
                    for call_id, callees in by_caller.get(usr, ()):
                        held, released = self.at.get((usr, call_id), EMPTY)
                        at_call = resolved((here - released) | held)
                        for callee in callees:
                            if callee not in roots:
                                entry[callee] = at_call if entry[callee] is None else entry[callee] & at_call
        self.entry = {u: (e if e is not None else frozenset()) for u, e in entry.items()}

    def held_at(self, usr: str, event_id: int) -> frozenset:
        held, released = self.at.get((usr, event_id), EMPTY)
        return resolved((self.entry.get(usr, frozenset()) - released) | held)

    # ---- the walk --------------------------------------------------------------------------
    def _function(self, usr: str, record: bool) -> State:
        """Walk a whole function; its summary is the join of the states at every return."""
        self._returns: list[State] = []
        self._jumps: list[list[State]] = [[]]
        self._loops: dict[tuple[int, State], tuple[State, tuple[State, ...]]] = {}
        end = self._walk(usr, self.p.functions[usr].events, EMPTY, record)
        ends = self._returns + ([end] if end is not None else [])
        return _join(ends) if ends else EMPTY

    def _walk(self, usr: str, events: tuple, state: State, record: bool) -> State | None:
        """The state after `events`, or None when every path through them has left (Exit)."""
        for e in events:
            if isinstance(e, Exit):
                if e.kind == "return":
                    self._returns.append(state)
                else:
                    self._jumps[-1].append(state)
                return None
            if isinstance(e, Branch):
                outs = [self._walk(usr, alt, state, record) for alt in e.alternatives]
                live = [o for o in outs if o is not None]
                if not live:
                    return None
                state = _join(live)
            elif isinstance(e, Loop):
                state = self._loop(usr, e, state, record)
            elif isinstance(e, AccessFact):
                if record:
                    self.at[(usr, e.id)] = state
            elif isinstance(e, CallFact):
                if record:
                    self.at[(usr, e.id)] = state
                state = self._apply_call(usr, e, state)
        return state

    def _loop(self, usr: str, loop: Loop, state: State, record: bool) -> State:
        """The state after `loop`: its body walked once to find the state at its head, then again
        from there. A walk that records nothing is remembered by (loop, state), with the returns it
        met (its only effect outside the loop): each body walks twice, and nested loops would
        otherwise walk their innermost body 2**depth times."""
        key = (id(loop), state)
        if not record and key in self._loops:
            after, returns = self._loops[key]
            self._returns.extend(returns)
            return after
        first_return = len(self._returns)
        self._jumps.append([])
        once = self._walk(usr, loop.body, state, record=False)
        start = _join([state] + ([once] if once is not None else []) + self._jumps[-1])
        self._jumps[-1] = []
        again = self._walk(usr, loop.body, start, record)
        exits = self._jumps.pop()
        after = _join([state] + ([again] if again is not None else []) + exits)
        if not record:
            self._loops[key] = (after, tuple(self._returns[first_return:]))
        return after

    def _apply_call(self, usr: str, call: CallFact, state: State) -> State:
        held, released = state
        if call.callee:
            role = self.p.sem.role(call.callee, "lock")
            if role is not None and not role.get("protects"):
                return state  # ordered by the runtime, but holds nothing (a semaphore)
            if role is not None:
                li = role.get("lock_arg")
                if li < len(call.args):
                    names = expand(call.args[li].lock)
                    if role.get("op") == "release":
                        return held - names, released | names
                    return held | names, released - names
                return state
            if call.callee_usr not in self.p.functions:
                return state  # a library call that runs callbacks: they leave no locks behind
        targets = self.p.targets.get((usr, call.id), [])
        sums = [self.summary[t] for t in targets if t in self.summary]
        if not sums:
            return state
        acq = frozenset.intersection(*[substitute(s[0], call) for s in sums])
        rel = frozenset.union(*[substitute(s[1], call) for s in sums])
        return (held - rel) | acq, (released | rel) - acq


def _join(states: list[State]) -> State:
    held = frozenset.intersection(*[s[0] for s in states])
    released = frozenset.union(*[s[1] for s in states])
    return held, released
