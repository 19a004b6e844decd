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


class PointsTo:
    def __init__(self, program: Program):
        self.p = program
        self._memo: dict[Ref, dict[ObjKey, bool]] = {}
        self._active: set[Ref] = set()
        self._stored: dict[ObjKey, set[Ref]] | None = None
        self._stored_by_object: dict[tuple[str, str], list[tuple[Path, set[Ref]]]] = {}
        self._stored_fns: dict[tuple[str, str], list[tuple[Path, set[str]]]] | None = None
        self._contents: dict[ObjKey, dict[ObjKey, bool]] = {}
        self._active_objs: set[ObjKey] = set()
        self._fn_memo: dict[Ref, set[str]] = {}

    def resolve(self, ref: Ref) -> dict[ObjKey, bool]:
        """Objects `ref` may denote, each with whether it was selected per thread."""
        if self._stored is None:
            self.stored()
        if ref in self._memo:
            return self._memo[ref]
        if ref in self._active:
            return {}
        self._active.add(ref)
        out: dict[ObjKey, bool] = {}
        if ref.kind in ("global", "alloc", "stack"):
            out[(ref.kind, ref.key, ())] = False
        elif ref.kind == "field" and ref.inner is not None:
            for (kind, key, path), per_thread in self.resolve(ref.inner).items():
                if len(path) < MAX_PATH:
                    path += ((ref.key, ref.member),)
                _merge(out, {(kind, key, path): per_thread})
        elif ref.kind == "whole" and ref.inner is not None:
            for (kind, key, _), per_thread in self.resolve(ref.inner).items():
                _merge(out, {(kind, key, ()): per_thread})
        elif ref.kind == "load" and ref.inner is not None:
            for obj, per_thread in self.resolve(ref.inner).items():
                found = self.contents(obj)
                if not found:
                    g = self.p.globals.get(obj[1]) if obj[0] == "global" and not obj[2] else None
                    found = {("pointee", obj[1], ()): False} if g is not None and g.is_pointer else {obj: per_thread}
                _merge(out, found)
        elif ref.kind == "param":
            root = next((r for r in self.p.roots if r.usr == ref.key), None)
            if root is not None and ref.index == 0:
                for src in root.arg_refs:
                    _merge(out, {k: root.per_thread_arg for k in self.resolve(src)})
            for _, call in self.p.call_sites.get(ref.key, ()):
                if ref.index < len(call.args):
                    for src in call.args[ref.index].refs:
                        _merge(out, self.resolve(src))
            for index, refs in self.p.callback_args.get(ref.key, ()):  # registered with a library
                if index == ref.index:
                    for src in refs:
                        _merge(out, self.resolve(src))
        elif ref.kind == "ret":
            fn = self.p.functions.get(ref.key)
            for src in fn.returns if fn else ():
                _merge(out, self.resolve(src))
        self._active.discard(ref)
        self._memo[ref] = out
        return out

    def stored(self) -> dict[ObjKey, set[Ref]]:
        """Object -> pointer values stored into it anywhere. Where a store goes depends on what is
        stored elsewhere (`get_rsrc()->ops.loop = ...` stores into what a static pointer holds), so
        the map is recomputed from the previous round's until it is stable."""
        if self._stored is None:
            self._stored = {}
            for _ in range(STORE_ROUNDS):
                stored: dict[ObjKey, set[Ref]] = {}
                for dest, src in self.p.flows:
                    for obj in self.resolve(dest):
                        stored.setdefault(obj, set()).add(src)
                settled = stored == self._stored
                self._stored = stored
                self._stored_by_object = _by_object(stored)
                if settled:
                    break
                self._memo.clear()
                self._contents.clear()
                self._fn_memo.clear()
        return self._stored

    def contents(self, obj: ObjKey) -> dict[ObjKey, bool]:
        """What the pointers stored in `obj` may point to, computed once per object (large
        programs load through the same tables from thousands of places)."""
        if obj in self._contents:
            return self._contents[obj]
        if obj in self._active_objs:
            return {}
        self._active_objs.add(obj)
        found: dict[ObjKey, bool] = {}
        for src in self.stored_at(obj):
            _merge(found, self.resolve(src))
        self._active_objs.discard(obj)
        self._contents[obj] = found
        return found

    def stored_at(self, obj: ObjKey) -> set[Ref]:
        """Pointer values stored into any location overlapping `obj`."""
        self.stored()
        return _overlapping(self._stored_by_object, obj)

    def functions(self, ref: Ref) -> set[str]:
        """Functions a function-pointer value may hold: what was stored where it was loaded from,
        or for a parameter what the callers pass."""
        if self._stored_fns is None:
            fns: dict[ObjKey, set[str]] = {}
            for dest, fn in self.p.fn_flows:
                for obj in self.resolve(dest):
                    fns.setdefault(obj, set()).add(fn)
            self._stored_fns = _by_object(fns)
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
            for obj in self.resolve(ref.inner):
                out |= _overlapping(self._stored_fns, obj)
                for src in self.stored_at(obj):  # copied from another function-pointer slot
                    out |= self.functions(src)
        self._fn_memo[ref] = out
        return out

    def escaped_stack_objects(self) -> set[str]:
        """Stack objects whose address reaches another thread: passed to a spawn call or stored
        into a global or heap object. Any other local lives and dies with its own invocation."""
        out: set[str] = set()
        for root in self.p.roots:
            for src in root.arg_refs:
                out |= {obj[1] for obj in self.resolve(src) if obj[0] == "stack"}
        for dest, src in self.p.flows:
            if any(obj[0] != "stack" for obj in self.resolve(dest)):
                out |= {obj[1] for obj in self.resolve(src) if obj[0] == "stack"}
        return out


def _by_object(table: dict[ObjKey, set]) -> dict[tuple[str, str], list[tuple[Path, set]]]:
    out: dict[tuple[str, str], list[tuple[Path, set]]] = {}
    for (kind, key, path), values in table.items():
        out.setdefault((kind, key), []).append((path, values))
    return out


def _overlapping(table: dict[tuple[str, str], list[tuple[Path, set]]], obj: ObjKey) -> set:
    out: set = set()
    for path, values in table.get(obj[:2], ()):
        if overlaps(path, obj[2]):
            out |= values
    return out


def _merge(out: dict[ObjKey, bool], new: dict[ObjKey, bool]) -> None:
    """Union; an object is per thread only where every source says so. Most entries are not per
    thread: then the union is one dict update (the hot spot on HAProxy was this loop)."""
    if not any(new.values()):
        out.update(new)
        return
    for k, v in new.items():
        out[k] = out[k] and v if k in out else v
