"""What a `Ref` may denote: a flow-insensitive, field-sensitive points-to resolution.

Objects are globals, allocation sites, address-taken locals (stack) and, for a global pointer
whose stored values are unknown, a synthetic object `*NAME` ("pointee"). A location is an object
and a path of struct members inside it (`app.rx.rx_pkts`: the path of rx, then rx_pkts; an array
element is its array, a union member its union). A pointer loaded from a location points to
whatever was stored into an overlapping location of the same object anywhere in the program (or,
when nothing is known, into the location itself). Parameters point to what their callers pass; a thread root's
argument to what its spawn calls pass, marked per thread when each instance got its own; a
callback's data parameter to what its registration passes.

It is solved as a whole (`PointsTo`: a worklist over every Ref, cycles included) and bounded where
large programs would make it explode: an object with more than LOCATIONS_PER_OBJECT locations is
one location (its whole), and a load through a pointer to more than GROUPS_PER_LOAD store groups
takes every stored value. Both make a set larger or coarser (a whole overlaps each of its
locations), never lose what it denotes.
"""

from __future__ import annotations

import heapq
import re

from ..facts import Ref
from .program import Program

Path = tuple[tuple[str, str], ...]  # (record USR, member) steps from the start of an object
ObjKey = tuple[str, str, Path]  # ("global" | "alloc" | "stack" | "pointee", key, path inside it)


def overlaps(a: Path, b: Path) -> bool:
    """Two locations of one object share memory: one contains the other, or where their paths part
    they go through different struct types (one object seen through a cast)."""
    for x, y in zip(a, b):
        if x != y:
            return x[0] != y[0]
    return True
# Locations deeper than this many members are their prefix (which contains them): recursive
# structures (lists, trees reached through their own fields) would otherwise make paths without end.
MAX_PATH = 2
# An object with more locations than this is one location from then on (its whole): where a cycle
# of the program's pointers passes through fields of many struct types, every object it carries
# would otherwise get a location for every pair of them (HAProxy: 1,173 objects, 300,000 locations).
LOCATIONS_PER_OBJECT = 64
# A load that takes values from more store groups than this takes them from every group: such a
# load reads through a pointer to nearly everything (a `struct list *`), and an edge from each of
# thousands of groups to each of thousands of such loads was most of the solver's work.
GROUPS_PER_LOAD = 256
STORE_ROUNDS = 4  # stores whose destination is itself loaded settle in two or three rounds in practice


# A points-to set as two bit sets over the resolution's interned object ids: the objects, and those
# of them selected per thread. Large programs have thousands of objects behind one pointer (every
# `struct list` reaches every object that holds one): dicts of them per Ref did not fit in memory.
PtSet = tuple[int, int]
EMPTY: PtSet = (0, 0)
Values = dict[int, None]  # ids of stored values, in program order
Groups = dict[int, None]  # ids of store groups (PointsTo.stored), in program order

# How a value reaches a node of the solver (an edge's operation). Inside the solver a node holds
# its objects and, of them, the *shared* ones (selected per thread in no source): an object is per
# thread only where every source that gives it says so, and with that representation the union of
# two sets is the union of each half, which propagating only what is new needs.
_COPY, _SHARED, _PER_THREAD, _RELOCATE, _LOAD = range(5)


class PointsTo:
    """An inclusion-based (Andersen-style) resolution, solved with a worklist: every Ref is a node,
    every way a value flows into another an edge, and a node passes on only what it gained since
    it last did, so each flow carries each object once, cycles included.

    Where a store goes depends on what is stored elsewhere (`get_rsrc()->ops.loop = ...` stores
    into what a static pointer holds), and a location with nothing stored into it denotes itself
    (not monotone: a store found later takes that back). So stores are solved in rounds: a round
    fixes the stores (by the destinations the previous round resolved), solves every node, and the
    next round starts again from the stores it found, until they no longer change."""

    def __init__(self, program: Program):
        self.p = program
        self._ids: dict[ObjKey, int] = {}
        self._keys: list[ObjKey] = []
        self._stack_objs = 0  # bit set of the stack objects
        # Objects and their locations: the whole object of each location, the locations of each
        # object, the wholes (a `whole` step keeps them), the locations a field step keeps (at
        # MAX_PATH, or the whole of a collapsed object), and the locations of collapsed objects
        # other than their whole (sets hold the whole instead).
        self._whole_of: list[int] = []
        self._locations: dict[tuple[str, str], list[int]] = {}
        self._wholes = 0
        self._field_keeps = 0
        self._collapsed = 0
        # Stored values by id: a Ref's hash walks its whole chain (`a->b->c` is loads of fields of
        # loads), and the values stored into one object are looked up from every object it overlaps.
        self._values: list[Ref] = []
        self._value_ids: dict[Ref, int] = {}
        self._flows = [(dest, self._value_id(src)) for dest, src in program.flows]
        self._roots: dict[str, list] = {}
        for r in program.roots:
            self._roots.setdefault(r.usr, []).append(r)
        self._stored: dict[int, Values] | None = None
        self._groups: list[Values] = []
        self._stored_by_object = _Locations({})
        self._stored_fns: _Locations | None = None
        self._relocated: dict[tuple[int, tuple[str, str] | None], int] = {}
        self._fn_memo: dict[Ref, set[str]] = {}
        self._slots: dict[int, tuple[set[str], Values]] = {}
        self._reset()

    def _reset(self) -> None:
        """A solver for the current stores, with no nodes yet."""
        self._node: dict[Ref, int] = {}
        self._objs: list[int] = []  # per node: objects
        self._shared: list[int] = []  # per node: those not selected per thread
        self._sent: list[tuple[int, int]] = []  # per node: what its edges have carried
        self._edges: list[list[tuple[int, int, object]]] = []  # per node: (operation, target, step)
        self._queued: list[bool] = []
        # Nodes are taken in sweeps, each in the order of a depth-first search's reverse postorder
        # (a topological order where the graph has no cycle), so a node passes on, in one go, what
        # every node before it gained in the sweep; what reaches a node already passed waits for
        # the next sweep. Taken one at a time, a large cycle carried objects around one by one.
        self._rank: list[int] = []
        self._queue: list[tuple[int, int]] = []  # (rank, node) of this sweep
        self._next: list[int] = []
        self._at = -1  # rank of the node being taken
        self._edge_count = 0
        self._ranked = (0, 0)  # nodes and edges when ranked
        self._new_edges: list[tuple[int, int, int, object]] = []  # to carry what their source sent
        self._group_node: dict[int, int] = {}
        self._subscribed: dict[int, set[int] | None] = {}  # load node -> its groups (None: all)
        self._all_groups: int | None = None  # node of every group's values
        self._groups_at: dict[int, tuple[int, ...]] = {}  # object id -> groups stored into it
        # Objects loaded through stores not yet known to carry anything: object -> (load, inner)
        self._maybe_empty: dict[int, dict[tuple[int, int], None]] = {}
        self._defaulted: set[tuple[int, int]] = set()  # (object, load) given the object itself

    def resolve(self, ref: Ref) -> dict[ObjKey, bool]:
        """Objects `ref` may denote, each with whether it was selected per thread."""
        objs, per_thread = self.resolve_set(ref)
        return {self._keys[i]: bool(per_thread >> i & 1) for i in _ids(objs)}

    def resolve_set(self, ref: Ref) -> PtSet:
        if self._stored is None:
            self.stored()
        n = self._node.get(ref)
        if n is None:
            n = self._add_nodes(ref)
            self._solve()
        objs = self._objs[n]
        return objs, objs & ~self._shared[n]

    # ---- the solver --------------------------------------------------------------------------
    def _add_nodes(self, ref: Ref) -> int:
        """The node of `ref`, made with the nodes it depends on and their edges (no recursion: a
        parameter depends on its callers' arguments, and those chains are as long as the program)."""
        first = self._new_node(ref)
        todo = [(ref, first)]
        while todo:
            r, n = todo.pop()

            def source(src: Ref) -> int:
                m = self._node.get(src)
                if m is None:
                    m = self._new_node(src)
                    todo.append((src, m))
                return m

            if r.kind in ("global", "alloc", "stack"):
                i = 1 << self._id((r.kind, r.key, ()))
                self._add(n, i, i)
            elif r.kind == "field" and r.inner is not None:
                self._edge(source(r.inner), _RELOCATE, n, (r.key, r.member))
            elif r.kind == "whole" and r.inner is not None:
                self._edge(source(r.inner), _RELOCATE, n, None)
            elif r.kind == "load" and r.inner is not None:
                self._edge(source(r.inner), _LOAD, n, None)
            elif r.kind == "param":
                if r.index == 0:  # a thread root's argument: what its spawn calls pass
                    for root in self._roots.get(r.key, ()):
                        for src in root.arg_refs:
                            self._edge(source(src), _PER_THREAD if root.per_thread_arg else _SHARED, n, None)
                for _, call in self.p.call_sites.get(r.key, ()):
                    if r.index < len(call.args):
                        for src in call.args[r.index].refs:
                            self._edge(source(src), _COPY, n, None)
                for index, refs in self.p.callback_args.get(r.key, ()):  # registered with a library
                    if index == r.index:
                        for src in refs:
                            self._edge(source(src), _COPY, n, None)
            elif r.kind == "ret":
                fn = self.p.functions.get(r.key)
                for src in fn.returns if fn else ():
                    self._edge(source(src), _COPY, n, None)
        return first

    def _new_node(self, ref: Ref | None) -> int:
        n = len(self._objs)
        if ref is not None:
            self._node[ref] = n
        self._objs.append(0)
        self._shared.append(0)
        self._sent.append(EMPTY)
        self._edges.append([])
        self._queued.append(False)
        self._rank.append(n)
        return n

    def _edge(self, src: int, op: int, dst: int, step) -> None:
        """An edge from `src`; what `src` has passed on already crosses it in `_solve` (the rest
        follows when `src` is next taken from the queue)."""
        self._edges[src].append((op, dst, step))
        self._edge_count += 1
        if self._sent[src][0]:
            self._new_edges.append((src, op, dst, step))

    def _add(self, n: int, objs: int, shared: int) -> None:
        if objs & self._collapsed:  # the whole instead
            objs, shared = self._to_wholes(objs), self._to_wholes(shared)
        have, have_shared = self._objs[n], self._shared[n]
        if objs & ~have or shared & ~have_shared:
            self._objs[n] = have | objs
            self._shared[n] = have_shared | shared
            if not self._queued[n]:
                self._queued[n] = True
                if self._rank[n] > self._at:
                    heapq.heappush(self._queue, (self._rank[n], n))
                else:
                    self._next.append(n)

    def _solve(self) -> None:
        self._next.extend(n for _, n in self._queue)  # new nodes: ranked before the first sweep
        self._queue = []
        while True:
            new_edges = self._new_edges
            while self._queue or self._next or new_edges:
                if new_edges:
                    src, op, dst, step = new_edges.pop()
                    self._carry(src, op, dst, step, *self._sent[src])
                    continue
                if not self._queue:
                    self._next_sweep()
                self._at, n = heapq.heappop(self._queue)
                self._queued[n] = False
                objs, shared = self._objs[n], self._shared[n]
                sent_objs, sent_shared = self._sent[n]
                if objs & self._collapsed:  # what it holds of collapsed objects: their wholes
                    objs, shared = self._objs[n], self._shared[n] = self._to_wholes(objs), self._to_wholes(shared)
                    sent_objs, sent_shared = self._to_wholes(sent_objs), self._to_wholes(sent_shared)
                new_objs, new_shared = objs & ~sent_objs, shared & ~sent_shared
                self._sent[n] = (objs, shared)
                for op, dst, step in self._edges[n]:
                    self._carry(n, op, dst, step, new_objs, new_shared)
            self._at = -1
            if not self._default_empty_contents():
                return

    def _next_sweep(self) -> None:
        """Queue the nodes left for the next sweep, ranked again if the graph grew by a tenth."""
        nodes, edges = self._ranked
        if len(self._rank) > nodes * 1.1 + 100 or self._edge_count > edges * 1.1 + 100:
            self._rerank()
        self._queue = [(self._rank[n], n) for n in self._next]
        heapq.heapify(self._queue)
        self._next = []

    def _rerank(self) -> None:
        """Rank the nodes by a depth-first search's reverse postorder."""
        count = len(self._rank)
        seen = bytearray(count)
        order = []
        for start in range(count):
            if seen[start]:
                continue
            seen[start] = 1
            stack = [(start, iter(self._edges[start]))]
            while stack:
                node, edges = stack[-1]
                for _, dst, _ in edges:
                    if not seen[dst]:
                        seen[dst] = 1
                        stack.append((dst, iter(self._edges[dst])))
                        break
                else:
                    stack.pop()
                    order.append(node)
        for pos, node in enumerate(reversed(order)):
            self._rank[node] = pos
        self._ranked = (count, self._edge_count)

    def _carry(self, src: int, op: int, dst: int, step, objs: int, shared: int) -> None:
        """Pass `objs` (of which `shared` are shared; or objects only newly shared) from `src` over
        one edge."""
        if op == _COPY:
            self._add(dst, objs, shared)
        elif op == _SHARED:
            self._add(dst, objs, objs)
        elif op == _PER_THREAD:
            self._add(dst, objs, 0)
        elif op == _RELOCATE:
            self._add(dst, self._relocate_set(objs, step), self._relocate_set(shared, step))
        else:
            self._load(src, dst, objs, shared)

    def _to_wholes(self, objs: int) -> int:
        """`objs` with the locations of collapsed objects replaced by their wholes."""
        moved = objs & self._collapsed
        return objs & ~moved | _bits([self._whole_of[i] for i in _ids(moved)])

    def _relocate_set(self, objs: int, step: tuple[str, str] | None) -> int:
        keep = objs & (self._wholes if step is None else self._field_keeps)
        return keep | _bits([self._relocate(i, step) for i in _ids(objs & ~keep)])

    def _relocate(self, i: int, step: tuple[str, str] | None) -> int:
        """Object `i`'s location moved into member `step` (None: the whole object)."""
        j = self._relocated.get((i, step))
        if j is None:
            kind, key, path = self._keys[i]
            if step is None:
                path = ()
            elif len(path) < MAX_PATH:
                path = path + (step,)
            j = self._relocated[(i, step)] = self._id((kind, key, path))
        return j

    def _load(self, src: int, dst: int, objs: int, shared: int) -> None:
        """What the pointers stored in objects `objs` point to, into `dst`: the values of every
        store into a location that overlaps one; an object with nothing stored into it denotes
        itself (a global pointer: its pointee), per thread as `src` has it."""
        subscribed = self._subscribed.setdefault(dst, set())
        defaults = []
        for i in _ids(objs | shared):
            groups = self._groups_at.get(i)
            if groups is None:
                groups = self._groups_at[i] = tuple(self._stored_by_object.overlapping(self._keys[i]))
            if not groups or (i, dst) in self._defaulted:
                defaults.append(i)
            elif objs >> i & 1:
                self._maybe_empty.setdefault(i, {})[(dst, src)] = None
                if subscribed is None:
                    continue
                for g in groups:
                    if g not in subscribed:
                        subscribed.add(g)
                        self._edge(self._group(g), _COPY, dst, None)
                if len(subscribed) > GROUPS_PER_LOAD:
                    subscribed = self._subscribed[dst] = None
                    self._edge(self._every_group(), _COPY, dst, None)
        if defaults:
            self._add_defaults(defaults, dst, src)

    def _add_defaults(self, ids: list[int], dst: int, src: int) -> None:
        """Objects `ids`, loaded from by `src` with nothing stored into them, into `dst`."""
        selves, pointees = [], []
        for i in ids:
            obj = self._keys[i]
            g = self.p.globals.get(obj[1]) if obj[0] == "global" and not obj[2] else None
            if g is not None and g.is_pointer:
                pointees.append(self._id(("pointee", obj[1], ())))
            else:
                selves.append(i)
        own = _bits(selves)
        pointee = _bits(pointees)
        self._add(dst, own | pointee, (own & self._shared[src]) | pointee)

    def _every_group(self) -> int:
        if self._all_groups is None:
            self._all_groups = self._new_node(None)
            for g in range(len(self._groups)):
                self._edge(self._group(g), _COPY, self._all_groups, None)
        return self._all_groups

    def _group(self, g: int) -> int:
        n = self._group_node.get(g)
        if n is None:
            n = self._group_node[g] = self._new_node(None)
            for v in self._groups[g]:
                value = self._values[v]
                m = self._node.get(value)
                if m is None:
                    m = self._add_nodes(value)
                self._edge(m, _COPY, n, None)
        return n

    def _default_empty_contents(self) -> bool:
        """Objects whose stores, solved, carry no objects at all denote themselves, as those with
        no store do (kept if a later query's stores reach them); True if that left work to solve."""
        for i, loads in self._maybe_empty.items():
            if any(self._objs[self._group_node[g]] for g in self._groups_at[i]):
                continue
            for dst, src in loads:
                self._defaulted.add((i, dst))
                self._add_defaults([i], dst, src)
        self._maybe_empty.clear()
        return bool(self._queue or self._next)

    def _id(self, obj: ObjKey) -> int:
        i = self._ids.get(obj)
        if i is not None:
            return i
        base = obj[:2]
        locations = self._locations.get(base)
        if locations is None:  # the whole object first
            whole = self._new_id((obj[0], obj[1], ()), None)
            locations = self._locations[base] = [whole]
            self._wholes |= 1 << whole
            if not obj[2]:
                return whole
        whole = locations[0]
        if self._field_keeps >> whole & 1:  # collapsed
            return whole
        if len(locations) == LOCATIONS_PER_OBJECT:
            self._field_keeps |= 1 << whole
            self._collapsed |= _bits(locations[1:])
            return whole
        i = self._new_id(obj, whole)
        locations.append(i)
        if len(obj[2]) >= MAX_PATH:
            self._field_keeps |= 1 << i
        return i

    def _new_id(self, obj: ObjKey, whole: int | None) -> int:
        i = self._ids[obj] = len(self._keys)
        self._keys.append(obj)
        self._whole_of.append(i if whole is None else whole)
        if obj[0] == "stack":
            self._stack_objs |= 1 << i
        return i

    # ---- stores --------------------------------------------------------------------------------
    def stored(self) -> dict[int, Values]:
        """Pointer values stored anywhere, grouped by the set of objects their destination
        resolves to (one group per set: a `struct list` member written through a pointer to any of
        thousands of objects is one group, not a copy of its values in each object), in rounds
        until they are stable (the class's comment)."""
        if self._stored is None:
            self._stored = {}
            for _ in range(STORE_ROUNDS):
                stored = self._by_destination(self._flows)
                if stored == self._stored:
                    break
                self._set_stored(stored)
            else:
                self._by_destination(self._flows)
        return self._stored

    def _set_stored(self, stored: dict[int, Values]) -> None:
        self._stored = stored
        self._groups = list(stored.values())
        members: dict[ObjKey, Groups] = {}
        for g, objs in enumerate(stored):
            for i in _ids(objs):
                members.setdefault(self._keys[i], {})[g] = None
        self._stored_by_object = _Locations(members)
        self._reset()

    def _by_destination(self, flows) -> dict[int, dict]:
        """Set of destination objects -> the values of `flows` ((destination Ref, value) pairs)
        that go into it, in program order."""
        nodes = [self._node[dest] if dest in self._node else self._add_nodes(dest) for dest, _ in flows]
        if flows is self._flows:  # the values too, solved together: which stores carry nothing
            for value in self._values:  # (and so denote themselves) does not depend on query order
                if value not in self._node:
                    self._add_nodes(value)
        self._solve()
        by_set: dict[int, dict] = {}
        for n, (_, value) in zip(nodes, flows):
            by_set.setdefault(self._objs[n], {})[value] = None
        return by_set

    def _value_id(self, ref: Ref) -> int:
        i = self._value_ids.get(ref)
        if i is None:
            i = self._value_ids[ref] = len(self._values)
            self._values.append(ref)
        return i

    def stored_at(self, obj: ObjKey) -> Groups:
        """The store groups that write a location overlapping `obj`."""
        self.stored()
        return self._stored_by_object.overlapping(obj)

    def functions(self, ref: Ref) -> set[str]:
        """Functions a function-pointer value may hold: what was stored where it was loaded from,
        or for a parameter what the callers pass."""
        if self._stored_fns is None:
            self.stored()
            fns: dict[ObjKey, dict[str, None]] = {}
            for objs, stored in self._by_destination(self.p.fn_flows).items():
                for i in _ids(objs):
                    fns.setdefault(self._keys[i], {}).update(stored)
            self._stored_fns = _Locations(fns)
        if ref.kind not in ("load", "param") or (ref.kind == "load" and ref.inner is None):
            return set()
        if ref in self._fn_memo:
            return self._fn_memo[ref]
        self._fn_memo[ref] = set()  # a cycle through copies contributes nothing new
        out: set[str] = set()
        if ref.kind == "param":  # a function passed by the callers (a spawn wrapper)
            for _, call in self.p.call_sites.get(ref.key, ()):
                if ref.index < len(call.args):
                    out |= set(call.args[ref.index].funcs)
                    for src in call.args[ref.index].refs:
                        out |= self.functions(src)
        else:
            fns, copied = self._function_slots(self.resolve_set(ref.inner)[0])
            out |= fns
            for v in copied:  # copied from another function-pointer slot
                out |= self.functions(self._values[v])
        self._fn_memo[ref] = out
        return out

    def _function_slots(self, objs: int) -> tuple[set[str], Values]:
        """Functions stored into the objects `objs`, and the values stored into them."""
        found = self._slots.get(objs)
        if found is None:
            fns: set[str] = set()
            values: Values = {}
            groups: Groups = {}
            for i in _ids(objs):
                fns.update(self._stored_fns.overlapping(self._keys[i]))
                groups.update(self.stored_at(self._keys[i]))
            for g in groups:
                values.update(self._groups[g])
            found = self._slots[objs] = (fns, values)
        return found

    def escaped_stack_objects(self) -> set[str]:
        """Stack objects whose address reaches another thread: passed to a spawn call or stored
        into a global or heap object. Any other local lives and dies with its own invocation."""
        escaped = 0
        for root in self.p.roots:
            for src in root.arg_refs:
                escaped |= self.resolve_set(src)[0]
        for dest, src in self.p.flows:
            if self.resolve_set(dest)[0] & ~self._stack_objs:
                escaped |= self.resolve_set(src)[0]
        return {self._keys[i][1] for i in _ids(escaped & self._stack_objs)}


_NONZERO = re.compile(rb"[^\x00]")


def _ids(bits: int) -> list[int]:
    """The members of a bit set, in the order the objects were first seen: its nonzero bytes found
    by a scan in C (the sets are large, and what the solver passes on is a few members of them)."""
    if not bits:
        return []
    buf = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    out = []
    for m in _NONZERO.finditer(buf):
        base = m.start() * 8
        byte = buf[m.start()]
        while byte:
            low = byte & -byte
            out.append(base + low.bit_length() - 1)
            byte ^= low
    return out


def _bits(ids: list[int]) -> int:
    """The bit set of `ids`, built as bytes (adding 1 << i one at a time copies the set each time)."""
    if not ids:
        return 0
    buf = bytearray(max(ids) // 8 + 1)
    for i in ids:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


class _Locations:
    """What was stored into the locations of each object, found for a location by walking its path
    in a tree of the stored paths: the locations that overlap it are its prefixes, everything below
    it, and everything below a step through another struct type where their paths part (`overlaps`).
    Comparing it with every stored path of the object was quadratic in the object's members
    (thousands in HAProxy's objects)."""

    def __init__(self, table: dict[ObjKey, dict]):
        self._objects: dict[tuple[str, str], _Node] = {}
        for (kind, key, path), values in table.items():
            node = self._objects.setdefault((kind, key), _Node())
            for record, member in path:
                node = node.children.setdefault(record, {}).setdefault(member, _Node())
            node.values.update(values)

    def overlapping(self, obj: ObjKey) -> dict:
        node = self._objects.get(obj[:2])
        out: dict = {}
        for record, member in obj[2]:
            if node is None:
                return out
            out.update(node.values)
            for other in node.children:
                if other != record:  # the object seen through another struct type
                    out.update(node.below(other))
            node = node.children.get(record, {}).get(member)
        if node is not None:
            out.update(node.below())
        return out


class _Node:
    def __init__(self) -> None:
        self.values: dict = {}
        self.children: dict[str, dict[str, _Node]] = {}  # record USR -> member -> location
        self._below: dict[str | None, dict] = {}

    def below(self, record: str | None = None) -> dict:
        """Values stored here and at every location below (`record`: only below its members)."""
        found = self._below.get(record)
        if found is None:
            found = {} if record is not None else dict(self.values)
            for r, members in self.children.items():
                if record is None or r == record:
                    for child in members.values():
                        found.update(child.below())
            self._below[record] = found
        return found
