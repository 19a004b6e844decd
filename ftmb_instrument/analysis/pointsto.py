"""What a `Ref` may denote: a flow-insensitive, field-sensitive points-to resolution.

Objects are globals, allocation sites, address-taken locals (stack) and, for a global pointer
whose stored values are unknown, a synthetic object `*NAME` ("pointee"). A location is an object
and a path of struct members inside it (`app.rx.rx_pkts`: the path of rx, then rx_pkts; an array
element is its array, a union member its union). A pointer loaded from a location points to
whatever was stored into an overlapping location of the same object anywhere in the program (or,
when nothing is known, into the location itself). Parameters point to what their callers pass; a thread root's
argument to what its spawn calls pass, marked per thread when each instance got its own; a
callback's data parameter to what its registration passes.
"""

from __future__ import annotations

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
STORE_ROUNDS = 4  # stores whose destination is itself loaded settle in two or three rounds in practice


# A points-to set as two bit sets over the resolution's interned object ids: the objects, and those
# of them selected per thread. Large programs have thousands of objects behind one pointer (every
# `struct list` reaches every object that holds one): dicts of them per Ref did not fit in memory.
PtSet = tuple[int, int]
EMPTY: PtSet = (0, 0)
Values = dict[int, None]  # ids of stored values, in program order
Groups = dict[int, None]  # ids of store groups (PointsTo.stored), in program order


class _Union:
    """The union of points-to sets; an object is per thread only where every set that holds it says
    so (per thread in some set and in none not)."""

    def __init__(self) -> None:
        self.objs = self.per_thread = self.shared = 0

    def add(self, s: PtSet) -> None:
        objs, per_thread = s
        self.objs |= objs
        if per_thread:
            self.per_thread |= per_thread
            self.shared |= objs & ~per_thread
        else:
            self.shared |= objs

    def value(self) -> PtSet:
        return self.objs, self.per_thread & ~self.shared


class PointsTo:
    def __init__(self, program: Program):
        self.p = program
        self._ids: dict[ObjKey, int] = {}
        self._keys: list[ObjKey] = []
        self._stack_objs = 0  # bit set of the stack objects
        self._sets: dict[PtSet, PtSet] = {}  # equal sets share one pair of ints
        # Stored values by id: a Ref's hash walks its whole chain (`a->b->c` is loads of fields of
        # loads), and the values stored into one object are looked up from every object it overlaps.
        self._values: list[Ref] = []
        self._value_ids: dict[Ref, int] = {}
        self._flows = [(dest, self._value_id(src)) for dest, src in program.flows]
        self._value_sets: dict[int, PtSet] = {}
        self._groups: list[Values] = []
        self._group_sets: dict[int, PtSet] = {}
        self._group_partial: dict[int, tuple[_Union, list[int]]] = {}  # the union so far, values left
        self._active_values: set[int] = set()  # stored values being resolved
        self._memo: dict[Ref, PtSet] = {}
        self._active: set[Ref] = set()
        # Values stored into objects are kept in dicts (sets in program order): where a cycle is cut
        # depends on the order they are resolved in, which a set of Refs takes from string hashes
        # that differ from run to run.
        self._stored: dict[int, Values] | None = None
        self._stored_by_object = _Locations({})
        self._stored_fns: _Locations | None = None
        self._contents: dict[int, PtSet] = {}
        self._active_objs: set[int] = set()
        self._fn_memo: dict[Ref, set[str]] = {}
        # What a set of objects becomes through a member, `whole`, a load, or what it holds of
        # function pointers: thousands of Refs resolve to the same large sets.
        self._fields: dict[tuple[PtSet, str, str], PtSet] = {}
        self._wholes: dict[PtSet, PtSet] = {}
        self._loads: dict[PtSet, PtSet] = {}
        self._slots: dict[int, tuple[set[str], Values]] = {}

    def resolve(self, ref: Ref) -> dict[ObjKey, bool]:
        """Objects `ref` may denote, each with whether it was selected per thread."""
        objs, per_thread = self.resolve_set(ref)
        return {self._keys[i]: bool(per_thread >> i & 1) for i in _ids(objs)}

    def resolve_set(self, ref: Ref) -> PtSet:
        if self._stored is None:
            self.stored()
        found = self._memo.get(ref)
        if found is not None:
            return found
        if ref in self._active:
            return EMPTY
        self._active.add(ref)
        value = self._value_ids.get(ref)
        if value is not None:
            self._active_values.add(value)
        out = EMPTY
        if ref.kind in ("global", "alloc", "stack"):
            i = self._id((ref.kind, ref.key, ()))
            out = (1 << i, 0)
        elif ref.kind == "field" and ref.inner is not None:
            out = self._field(self.resolve_set(ref.inner), ref.key, ref.member)
        elif ref.kind == "whole" and ref.inner is not None:
            out = self._whole(self.resolve_set(ref.inner))
        elif ref.kind == "load" and ref.inner is not None:
            out = self._load(self.resolve_set(ref.inner))
        elif ref.kind == "param":
            union = _Union()
            root = next((r for r in self.p.roots if r.usr == ref.key), None)
            if root is not None and ref.index == 0:
                for src in root.arg_refs:
                    objs = self.resolve_set(src)[0]
                    union.add((objs, objs if root.per_thread_arg else 0))
            for _, call in self.p.call_sites.get(ref.key, ()):
                if ref.index < len(call.args):
                    for src in call.args[ref.index].refs:
                        union.add(self.resolve_set(src))
            for index, refs in self.p.callback_args.get(ref.key, ()):  # registered with a library
                if index == ref.index:
                    for src in refs:
                        union.add(self.resolve_set(src))
            out = union.value()
        elif ref.kind == "ret":
            union = _Union()
            fn = self.p.functions.get(ref.key)
            for src in fn.returns if fn else ():
                union.add(self.resolve_set(src))
            out = union.value()
        out = self._sets.setdefault(out, out)
        self._active.discard(ref)
        self._active_values.discard(value)
        self._memo[ref] = out
        return out

    def _id(self, obj: ObjKey) -> int:
        i = self._ids.get(obj)
        if i is None:
            i = self._ids[obj] = len(self._keys)
            self._keys.append(obj)
            if obj[0] == "stack":
                self._stack_objs |= 1 << i
        return i

    def _field(self, s: PtSet, record: str, member: str) -> PtSet:
        """Member `member` (of struct `record`) of every object in `s`."""
        found = self._fields.get((s, record, member))
        if found is None:
            found = self._fields[(s, record, member)] = self._relocate(
                s, lambda path: path + ((record, member),) if len(path) < MAX_PATH else path)
        return found

    def _whole(self, s: PtSet) -> PtSet:
        found = self._wholes.get(s)
        if found is None:
            found = self._wholes[s] = self._relocate(s, lambda path: ())
        return found

    def _relocate(self, s: PtSet, new_path) -> PtSet:
        """The locations `new_path` makes of each object's path, in the same objects; two that
        become one are per thread only where both were."""
        objs, per_thread = s
        union = _Union()
        targets: list[int] = []
        selected: list[int] = []
        for i in _ids(objs):
            kind, key, path = self._keys[i]
            j = self._id((kind, key, new_path(path)))
            (selected if per_thread >> i & 1 else targets).append(j)
        union.add((_bits(targets), 0))
        union.add((_bits(selected), _bits(selected)))
        return union.value()

    def _load(self, s: PtSet) -> PtSet:
        """What the pointers stored in the objects of `s` point to; an object with nothing known
        stored into it denotes itself (a global pointer: its pointee). Kept for the set only where
        no object's contents were cut short by a cycle (those are not memoized either)."""
        found = self._loads.get(s)
        if found is not None:
            return found
        objs, per_thread = s
        union = _Union()
        complete = True
        for i in _ids(objs):
            contents = self.contents_set(i)
            if contents is None:
                complete = False
            if contents is None or not contents[0]:
                obj = self._keys[i]
                g = self.p.globals.get(obj[1]) if obj[0] == "global" and not obj[2] else None
                if g is not None and g.is_pointer:
                    contents = (1 << self._id(("pointee", obj[1], ())), 0)
                else:
                    contents = (1 << i, per_thread & (1 << i))
            union.add(contents)
        out = union.value()
        if complete:
            self._loads[s] = out
        return out

    def stored(self) -> dict[int, Values]:
        """Pointer values stored anywhere, grouped by the set of objects their destination
        resolves to (one group per set: a `struct list` member written through a pointer to any of
        thousands of objects is one group, not a copy of its values in each object). Where a store
        goes depends on what is stored elsewhere (`get_rsrc()->ops.loop = ...` stores into what a
        static pointer holds), so the groups are recomputed from the previous round's until they
        are stable."""
        if self._stored is None:
            self._stored = {}
            for _ in range(STORE_ROUNDS):
                stored = self._by_destination(self._flows)
                settled = stored == self._stored
                self._stored = stored
                self._groups = list(stored.values())
                members: dict[ObjKey, Groups] = {}
                for g, objs in enumerate(stored):
                    for i in _ids(objs):
                        members.setdefault(self._keys[i], {})[g] = None
                self._stored_by_object = _Locations(members)
                if settled:
                    break
                self._memo.clear()
                self._value_sets.clear()
                self._group_sets.clear()
                self._group_partial.clear()
                self._contents.clear()
                self._fn_memo.clear()
                self._loads.clear()
        return self._stored

    def _by_destination(self, flows) -> dict[int, dict]:
        """Set of destination objects -> the values of `flows` ((destination Ref, value) pairs)
        that go into it, in program order."""
        by_set: dict[int, dict] = {}
        for dest, value in flows:
            by_set.setdefault(self.resolve_set(dest)[0], {})[value] = None
        return by_set

    def contents_set(self, i: int) -> PtSet | None:
        """What the pointers stored in object `i` may point to, computed once per object (large
        programs load through the same tables from thousands of places); None while it is being
        computed (a cycle)."""
        found = self._contents.get(i)
        if found is not None:
            return found
        if i in self._active_objs:
            return None
        self._active_objs.add(i)
        union = _Union()
        for g in self.stored_at(self._keys[i]):
            union.add(self._group_set(g))
        found = union.value()
        found = self._sets.setdefault(found, found)
        self._active_objs.discard(i)
        self._contents[i] = found
        return found

    def _group_set(self, g: int) -> PtSet:
        """What the values of store group `g` point to together. A value being resolved (a cycle)
        counts as nothing for now: the union of the others is kept with it, to be completed
        later (a value's set, once resolved, stays for the round)."""
        found = self._group_sets.get(g)
        if found is not None:
            return found
        union, pending = self._group_partial.pop(g, None) or (_Union(), list(self._groups[g]))
        left = []
        for v in pending:
            s = self._value_sets.get(v)
            if s is None:
                if v in self._active_values:
                    left.append(v)
                    continue
                s = self._value_sets[v] = self.resolve_set(self._values[v])
            union.add(s)
        found = union.value()
        found = self._sets.setdefault(found, found)
        if left:
            self._group_partial[g] = (union, left)
        else:
            self._group_sets[g] = found
        return found

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


def _ids(bits: int) -> list[int]:
    """The members of a bit set (its text in binary, searched: the sets are large and sparse)."""
    text = bin(bits)
    top = len(text) - 1
    out = []
    at = text.find("1", 2)
    while at != -1:
        out.append(top - at)
        at = text.find("1", at + 1)
    out.reverse()  # in the order the objects were first seen
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
