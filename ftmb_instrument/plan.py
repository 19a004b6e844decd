"""The instrumentation plan: which source site gets which runtime ABI call, and why.

A plan is built from an analysis `Report` plus the exact extents of the source (frontend/sites.py)
and is plain data (`ftmb-plan/1`, written as `ftmb_plan.json`), so that `ftmb-cc` can apply a plan
made once for the whole program. It holds:

- `objects`: every shared object that gets an id (obj), with its strategy: `ordered` (regions
  around its unsynchronized accesses), `lock` (a lock: its acquisitions are recorded by the ftmb_
  lock wrappers), `atomic` (every access is an atomic call replaced by an ftmb_ atomic wrapper),
  `external` (a scalar only signal handlers write, such as a stop flag: an input from outside, whose
  reads become `ftmb_external_read` and log the value per thread, so replay waits on no other
  thread; nothing replays a signal, so the handlers' writes stay as they are; its obj id only names
  it in the plan, the runtime never sees it);
- `sites`: every place that is edited: the file, the byte range, the ABI entry, obj and site ids,
  the reason, and the edits themselves (byte offsets into the original file);
- `skipped`: everything left uninstrumented with its reason (shared_ro, per_core, thread_private,
  protected by a lock, before threads start, suppressed, ...);
- `problems`: sites that cannot be instrumented safely, with file:line; any problem that the user
  did not suppress (inline `/* ftmb: ignore(access) reason */`) makes `instrument` fail;
- `reductions`: optional, not provably safe savings the user asked for by flag;
- `files`: the SHA-256 of every file the plan edits, so a stale plan is refused;
- `units`: the translation units it was made from (a unit it does not know is refused by ftmb-cc);
- `roots`: the analysis's thread roots (entry function, how it starts, where, and where the entry
  is defined). Each file that defines a root other than `main` registers the root's address with
  the runtime from the constructor at its end (with its site names, `ftmb_register_file`); outside
  passthrough the runtime's spawn wrappers start no other function.

Sound by default: every concurrent access to a shared_rw object is covered by the acquisition
record of the lock that protects it, by an atomic wrapper, or by an ordered region.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .abi.emit_table import TABLE
from .errors import RewriteError
from .frontend.sites import JUMP_ENTERS, FileSites, skip_blank
from .model import Report, Variable

SCHEMA = "ftmb-plan/2"
OLD_SCHEMAS = ("ftmb-plan/1",)  # refused: made before plans listed the thread roots
MARKER = f"/* FTMB-INSTRUMENTED by ftmb-instrument {__version__}; edit the original source, not this file */"
MARKER_PREFIX = "/* FTMB-INSTRUMENTED"
INCLUDE = "#include <ftmb/ftmb.h>"

# Edit order at one offset (ascending): what closes a region comes before plain edits, which come
# before what opens the next region. Nested wraps that share an offset must nest: `opening(n)` puts
# the longer (outer) wrap first, `closing(n)` the shorter (inner) one first.
CLOSE, PLAIN, OPEN = 0, 1, 2
_NEST = 10 ** 9
FIRST = -2 * _NEST  # the marker and include line, before anything at offset 0


def opening(length: int) -> int:
    return _NEST - min(length, _NEST - 3)


def closing(length: int) -> int:
    return -_NEST + min(length, _NEST - 1)

_SUPPRESS = re.compile(r"ftmb:\s*ignore\((\w+)\)\s*(.*?)\s*(?:\*/|$)")


@dataclass(frozen=True)
class Edit:
    start: int
    end: int  # == start for an insertion
    text: str
    order: int = PLAIN

    def to_json(self) -> list:
        return [self.start, self.end, self.text, self.order]

    @staticmethod
    def from_json(d: list) -> Edit:
        return Edit(int(d[0]), int(d[1]), str(d[2]), int(d[3]))


@dataclass(frozen=True)
class PlanSite:
    id: int
    kind: str  # ordered | lock | atomic | external | nondet | packet_io | spawn | join | alloc | free | init | include
    file: str  # relative to the plan's root when under it
    line: int
    start: int
    end: int
    entry: str  # the ABI entry point called ("" for the include)
    objs: tuple[int, ...]
    reason: str
    edits: tuple[Edit, ...]
    how: str = ""  # "statement" | "expression" | "invocation" | "call" | ...: how it is spliced

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "file": self.file, "line": self.line, "start": self.start,
                "end": self.end, "entry": self.entry, "objs": list(self.objs), "reason": self.reason,
                "how": self.how, "edits": [e.to_json() for e in self.edits]}

    @staticmethod
    def from_json(d: dict[str, Any]) -> PlanSite:
        return PlanSite(d["id"], d["kind"], d["file"], d["line"], d["start"], d["end"], d["entry"],
                        tuple(d["objs"]), d["reason"], tuple(Edit.from_json(e) for e in d["edits"]), d.get("how", ""))


@dataclass(frozen=True)
class PlanObject:
    obj: int
    variable: str  # report variable id ("" for a lock known only by its expression)
    name: str
    decl: str
    strategy: str  # ordered | lock | atomic | external

    def to_json(self) -> dict[str, Any]:
        return {"obj": self.obj, "variable": self.variable, "name": self.name, "decl": self.decl,
                "strategy": self.strategy}

    @staticmethod
    def from_json(d: dict[str, Any]) -> PlanObject:
        return PlanObject(d["obj"], d["variable"], d["name"], d["decl"], d["strategy"])


@dataclass(frozen=True)
class Skipped:
    what: str  # variable name, or "name @ loc" for one access
    where: str  # decl or access loc
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "where": self.where, "reason": self.reason}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Skipped:
        return Skipped(d["what"], d["where"], d["reason"])


@dataclass(frozen=True)
class Problem:
    where: str  # "path:line"
    message: str
    suppressed: str = ""  # the user's reason when suppressed

    def to_json(self) -> dict[str, Any]:
        return {"where": self.where, "message": self.message, "suppressed": self.suppressed}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Problem:
        return Problem(d["where"], d["message"], d.get("suppressed", ""))


@dataclass(frozen=True)
class PlanRoot:
    entry: str  # the root function's name
    how: str  # "main" | the spawn call | "signal" | "entry", as in the report
    site: str  # "path:line" of the spawn call or handler installation; "" for main and --entry
    defined: tuple[str, ...]  # "path:line" of each definition of `entry` in the project

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "how": self.how, "site": self.site, "defined": list(self.defined)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> PlanRoot:
        return PlanRoot(d["entry"], d["how"], d["site"], tuple(d["defined"]))


@dataclass(frozen=True)
class Plan:
    tool_version: str
    root: str
    files: tuple[tuple[str, str], ...]  # (path, sha256 of the original)
    objects: tuple[PlanObject, ...]
    sites: tuple[PlanSite, ...]
    skipped: tuple[Skipped, ...]
    problems: tuple[Problem, ...]
    reductions: tuple[str, ...] = ()
    failed_units: tuple[str, ...] = ()
    units: tuple[str, ...] = ()  # every translation unit the plan was made from
    roots: tuple[PlanRoot, ...] = ()
    schema: str = field(default=SCHEMA)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.suppressed]

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "tool_version": self.tool_version, "root": self.root,
                "files": [{"path": p, "sha256": h} for p, h in self.files],
                "objects": [o.to_json() for o in self.objects], "sites": [s.to_json() for s in self.sites],
                "skipped": [s.to_json() for s in self.skipped], "problems": [p.to_json() for p in self.problems],
                "reductions": list(self.reductions), "failed_units": list(self.failed_units),
                "units": list(self.units), "roots": [r.to_json() for r in self.roots]}

    @staticmethod
    def from_json(d: Any, source: str = "<plan>") -> Plan:
        if isinstance(d, dict) and d.get("schema") in OLD_SCHEMAS:
            raise RewriteError(f"{source}: an {d['schema']} plan, made before plans listed the thread roots; make "
                               f"it again (ftmb-instrument instrument -p BUILD --plan {source})")
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise RewriteError(f"{source}: not an {SCHEMA} plan (schema: {found!r})")
        try:
            return Plan(d["tool_version"], d["root"], tuple((f["path"], f["sha256"]) for f in d["files"]),
                        tuple(PlanObject.from_json(o) for o in d["objects"]),
                        tuple(PlanSite.from_json(s) for s in d["sites"]),
                        tuple(Skipped.from_json(s) for s in d["skipped"]),
                        tuple(Problem.from_json(p) for p in d["problems"]),
                        tuple(d.get("reductions", ())), tuple(d.get("failed_units", ())), tuple(d.get("units", ())),
                        tuple(PlanRoot.from_json(r) for r in d["roots"]))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise RewriteError(f"{source}: malformed {SCHEMA} plan: missing or wrong field {exc}") from None

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"

    def abspath(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.root, path)


def load_plan(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise RewriteError(f"{path}: cannot read plan: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RewriteError(f"{path}: not JSON: {exc}") from None
    return Plan.from_json(data, path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PlanOptions:
    # Reductions (not provably safe; each one used is listed in plan.reductions):
    unordered_commutative: bool = False  # do not order objects only ever updated by +=/-=/++/--


def is_instrumented(data: bytes) -> bool:
    return data.lstrip().startswith(MARKER_PREFIX.encode())


# ---- building a plan ----------------------------------------------------------------------------

# C11 <stdatomic.h> generic functions (macros) mapped onto the explicit entries: (base, how).
C11_IMPLICIT = {
    "atomic_load": ("atomic_load_explicit", ", __ATOMIC_SEQ_CST"),
    "atomic_store": ("atomic_store_explicit", ", __ATOMIC_SEQ_CST"),
    "atomic_exchange": ("atomic_exchange_explicit", ", __ATOMIC_SEQ_CST"),
    **{f"atomic_fetch_{op}": (f"atomic_fetch_{op}_explicit", ", __ATOMIC_SEQ_CST")
       for op in ("add", "sub", "and", "or", "xor")},
    "atomic_compare_exchange_strong": ("atomic_compare_exchange_strong_explicit",
                                       ", 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST"),
    "atomic_compare_exchange_weak": ("atomic_compare_exchange_weak_explicit",
                                     ", 1, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST"),
}
# DPDK calls that free or move memory that may be the arena's: renamed to their entry, which passes
# pointers outside the arena to DPDK. free() and realloc() are not rewritten: the runtime interposes
# them at link time (runtime/src/arena.c).
ROUTED_FREES = ("rte_free", "rte_realloc", "rte_realloc_socket")
ALLOC_KIND = "alloc"

# Types (as the analysis spells a variable's type, qualifiers aside) whose value one load of 1, 2,
# 4 or 8 bytes gives: what ftmb_external_read can log. Builtin integer types are recognized by
# their words (EXTERNAL_TYPE_WORDS); these are the usual typedefs of such types.
EXTERNAL_TYPEDEFS = frozenset({
    "bool", "sig_atomic_t", "size_t", "ssize_t", "intptr_t", "uintptr_t", "pid_t",
    *(f"{u}int{n}_t" for u in ("", "u") for n in (8, 16, 32, 64)),
})
EXTERNAL_TYPE_WORDS = frozenset({"_Bool", "char", "short", "int", "long", "signed", "unsigned", "float", "double"})
QUALIFIERS = frozenset({"const", "volatile", "restrict"})
EXTERNAL_WRITE = "written only by a signal handler: an external input; its reads log the value"


def is_external_type(ctype: str) -> bool:
    """Whether a variable of type `ctype` (the analysis's spelling) can be an external input."""
    words = [w for w in ctype.replace("*", " * ").split() if w not in QUALIFIERS]
    if len(words) == 1 and words[0] in EXTERNAL_TYPEDEFS:
        return True
    if len(words) == 2 and words[0] == "enum":
        return True
    return bool(words) and set(words) <= EXTERNAL_TYPE_WORDS and words[-2:] != ["long", "double"]


class _File:
    """A source file as the planner sees it: text, line starts, sites from the frontend."""

    def __init__(self, path: str, sites):
        self.path = path
        with open(path, "rb") as fh:
            self.data = fh.read()
        self.sites = sites
        self.line_starts = [0] + [m.end() for m in re.finditer(rb"\n", self.data)]
        self.calls_by_loc: dict[int, list] = {}
        for c in sites.calls:
            self.calls_by_loc.setdefault(c.loc, []).append(c)
            if c.start >= 0 and c.start != c.loc:
                self.calls_by_loc.setdefault(c.start, []).append(c)
        self.stmts = sorted(sites.stmts, key=lambda s: (s.start, -s.end))
        self.address_only = set(sites.address_only)
        self.reads_at: dict[int, list] = {}  # read's location -> (start, end, shape), in order
        for loc, s, e, shape in sites.reads:
            self.reads_at.setdefault(loc, []).append((s, e, shape))
        self._containing: dict[int, list] = {}  # offset -> statements containing it (many accesses share one)
        self.invocations: dict[int, list] = {}  # macro invocation start -> its outermost statements
        for inv in sites.invocations:
            self.invocations.setdefault(inv.start, []).append(inv)
        self.calls_in: dict[tuple[int, int], set[str]] = {}  # (start, end) -> project functions called (Planner's)

    def offset(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col - 1

    def line_of(self, off: int) -> int:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= off:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def line_text(self, line: int) -> str:
        s = self.line_starts[line - 1]
        e = self.line_starts[line] if line < len(self.line_starts) else len(self.data)
        return self.data[s:e].decode("utf-8", "replace")

    def suppression(self, line: int) -> str:
        for ln in (line, line - 1):
            if ln >= 1:
                m = _SUPPRESS.search(self.line_text(ln))
                if m and m.group(1) in ("access", "race", "variable") and m.group(2):
                    return m.group(2)
        return ""

    def text(self, s: int, e: int) -> str:
        return self.data[s:e].decode("utf-8", "replace")

    def containing(self, off: int):
        """Statements containing `off`, outermost first (do not modify)."""
        got = self._containing.get(off)
        if got is None:
            got = self._containing[off] = [s for s in self.stmts if s.start <= off < s.end]
        return got


NAME = "\x00"  # a decision's stand-in for the name of the variable it is applied to (Planner.decide)


def strongly_connected(nodes, successors) -> list[list]:
    """The strongly connected components of the graph `successors` spans from `nodes` (iterative
    Tarjan), each listed after every component it reaches: successors' components first."""
    comps: list[list] = []
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(successors(root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(successors(nxt))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] != index[node]:
                continue
            members = []
            while True:
                h = stack.pop()
                on_stack.discard(h)
                members.append(h)
                if h == node:
                    break
            comps.append(members)
    return comps


class Planner:
    def __init__(self, report: Report, sites: dict, root: str, sem, options: PlanOptions = PlanOptions()):
        self.report = report
        self.root = os.path.realpath(root)
        self.sem = sem
        self.options = options
        self.all_sites = sites
        self.files: dict[str, _File] = {p: _File(p, fs) for p, fs in sites.items() if fs.stmts or fs.calls}
        # functions the project defines (files added later by `file` have no sites, so none)
        self.defined = {fn.name for ff in self.files.values() for fn in ff.sites.functions}
        self.defined_in: dict[str, list[str]] = {}  # a function's name -> the files that define it
        for ff in self.files.values():
            for fn in ff.sites.functions:
                self.defined_in.setdefault(fn.name, []).append(ff.path)
        self.objects: list[PlanObject] = []
        self.obj_of_var: dict[str, int] = {}
        self.pooled_lock_objs: dict[str, int] = {}
        self.sites: list[PlanSite] = []
        self.skipped: list[Skipped] = []
        self.problems: list[Problem] = []
        self.reductions: list[str] = []
        self.next_site = 1
        self.handled_calls: set[tuple[str, int]] = set()
        self.regions: dict[tuple[str, int, int, str], dict] = {}
        self.decisions: dict[tuple[str, bool], tuple] = {}  # (access loc, read only) -> decide()'s actions
        self.acquires: dict[tuple[str, str], set[str]] = {}  # function -> the names of the locks it acquires
        self.real_paths: dict[str, str] = {}  # a report's path -> its real path (once per file, not per access)

    # -- paths and locations --
    def resolve(self, loc: str) -> tuple[_File | None, int, int]:
        """(file, line, offset) of a report loc "path:line[:col]"."""
        parts = loc.rsplit(":", 2)
        if len(parts) == 3 and parts[2].isdigit() and parts[1].isdigit():
            path, line, col = parts[0], int(parts[1]), int(parts[2])
        else:
            path, line = loc.rsplit(":", 1)
            line, col = int(line), 0
        real = self.real_paths.get(path)
        if real is None:
            real = self.real_paths[path] = os.path.realpath(os.path.join(self.root, path))
        f = self.files.get(real)
        if f is None:
            return None, line, -1
        return f, line, f.offset(line, col) if col else f.line_starts[line - 1]

    def file(self, path: str) -> _File:
        f = self.files.get(path)
        if f is None:
            f = self.files[path] = _File(path, FileSites(path))
        return f

    def rename_in_definition(self, f: _File, c, entry: str, kind: str, why: str) -> bool:
        """Rename the callee inside the project macro that calls it; False if it is not in one."""
        if c.defined_at is None:
            return False
        dpath, doff = c.defined_at
        d = self.file(dpath)
        # not marked handled: the invocation's other calls (one start for all of them) are still planned
        self.add_site(kind, d, doff, doff + len(c.callee), entry, (), f"{c.callee}: {why} (in the definition of "
                      f"macro {c.macro or '?'}, used at {self.where(f, c.loc)})",
                      (Edit(doff, doff + len(c.callee), entry),), "definition")
        return True

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root) if path.startswith(self.root + "/") else path

    def where(self, f: _File, off: int) -> str:
        return f"{self.rel(f.path)}:{f.line_of(off)}"

    def site_id(self) -> int:
        i = self.next_site
        self.next_site += 1
        return i

    def problem(self, f: _File | None, off_or_line: int, message: str, is_line: bool = False, suppressed: str = ""):
        if f is None:
            self.problems.append(Problem("?", message, suppressed))
            return
        line = off_or_line if is_line else f.line_of(off_or_line)
        sup = suppressed or f.suppression(line)
        self.problems.append(Problem(f"{self.rel(f.path)}:{line}", message, sup))

    def add_site(self, kind, f: _File, start, end, entry, objs, reason, edits, how) -> None:
        self.sites.append(PlanSite(self.site_id(), kind, self.rel(f.path), f.line_of(start), start, end, entry,
                                   tuple(objs), reason, tuple(edits), how))

    def new_obj(self, variable: str, name: str, decl: str, strategy: str) -> int:
        obj = len(self.objects)
        self.objects.append(PlanObject(obj, variable, name, decl, strategy))
        return obj

    # -- the passes --
    def build(self) -> Plan:
        failed_units = [u for u in self.report.translation_units if u.status != "ok"]
        for u in failed_units:
            first = u.first_error()
            where, what = (first.loc, f"{first.message} ") if first else (u.file, "")
            self.problems.append(Problem(where, f"{what}(translation unit {u.file} failed to parse; it is not rewritten)"))
        failed = [u.file for u in failed_units]
        variables = sorted(self.report.variables, key=lambda v: v.id)
        lock_vars = {v.id for v in variables if self.is_lock_var(v)}
        for v in variables:
            if v.id in lock_vars:
                self.obj_of_var[v.id] = self.new_obj(v.id, v.name, v.decl, "lock")
        for v in variables:
            if v.id not in lock_vars:
                self.variable(v)
        self.lock_and_library_calls(variables, lock_vars)
        self.lock_acquisitions(variables, lock_vars)
        self.emit_regions()
        self.init_hook()
        roots = self.thread_roots()
        self.includes(roots)
        edited = sorted({s.file for s in self.sites})
        hashes = tuple((p, sha256(self.files[os.path.realpath(os.path.join(self.root, p))].data)) for p in edited)
        return Plan(__version__, self.root, hashes, tuple(self.objects), tuple(self.sites), self.grouped_skips(),
                    tuple(self.problems), tuple(self.reductions), tuple(failed),
                    tuple(u.file for u in self.report.translation_units), tuple(roots))

    def grouped_skips(self, most: int = 8) -> tuple[Skipped, ...]:
        """The skipped accesses, one entry per variable, except where more than `most` variables are
        skipped at one place for one reason (a pointer that may point almost anywhere: HAProxy's
        140 units skip 1.6 million (variable, access) pairs at 3,176 places): one entry names the
        first three and counts the rest."""
        groups: dict[tuple[str, str], list[Skipped]] = {}
        for k in self.skipped:
            groups.setdefault((k.where, k.reason), []).append(k)
        one: dict[tuple[str, str], Skipped] = {}  # the entry standing for a group of more than `most`
        for (where, reason), ks in groups.items():
            at = f" @ {where}"
            if len(ks) > most and all(x.what.endswith(at) for x in ks):
                names = sorted({x.what[:-len(at)] for x in ks})
                one[where, reason] = Skipped(f"{', '.join(names[:3])} and {len(names) - 3} more{at}", where, reason)
        out = []
        for k in self.skipped:
            group = one.get((k.where, k.reason))
            if group is None:
                out.append(k)
            elif groups[k.where, k.reason][0] is k:
                out.append(group)
        return tuple(out)

    def is_lock_var(self, v: Variable) -> bool:
        if v.cls != "shared_rw" or not v.accesses:
            return False
        lock_calls = 0
        for a in v.accesses:
            f, _, off = self.resolve(a.loc)
            calls = f.calls_by_loc.get(off, []) if f else []
            if any(self.sem.role(c.callee, "lock") for c in calls):
                lock_calls += 1
            elif a.concurrent:
                return False
        return lock_calls > 0

    def variable(self, v: Variable) -> None:
        if v.scope == "heap":
            self.heap_alloc(v)
        if v.cls != "shared_rw":
            self.skipped.append(Skipped(v.name, v.decl, v.cls))
            return
        if v.suppressed:
            self.skipped.append(Skipped(v.name, v.decl, f"suppressed: {v.suppressed}"))
            return
        concurrent = []
        for a in v.accesses:
            if a.suppressed:
                self.skipped.append(Skipped(f"{v.name} @ {a.loc}", a.loc, f"suppressed: {a.suppressed}"))
            elif not a.concurrent:
                self.skipped.append(Skipped(f"{v.name} @ {a.loc}", a.loc,
                                            "runs while no other thread runs (before spawn or after join)"))
            else:
                concurrent.append(a)
        if not concurrent:
            return
        if v.protection == "lock":
            for a in concurrent:
                self.skipped.append(Skipped(f"{v.name} @ {a.loc}", a.loc,
                                            f"ordered by the acquisition record of lock {', '.join(a.locks_held)}"))
            return
        if self.external_input(v, concurrent):
            return
        if self.options.unordered_commutative and v.commutative:
            self.reductions.append(f"unordered_commutative: {v.name} ({v.decl}) is only updated commutatively "
                                   f"and is not ordered")
            self.skipped.append(Skipped(v.name, v.decl, "reduction unordered_commutative"))
            return
        if v.protection == "atomic":
            converted = [self.atomic_call(a) for a in concurrent]
            if all(c is not None for c in converted):
                obj = self.new_obj(v.id, v.name, v.decl, "atomic")
                for a, c in zip(concurrent, converted):
                    self.atomic_site(v, a, c, obj)
                return
        obj = self.new_obj(v.id, v.name, v.decl, "ordered")
        for a in concurrent:
            self.ordered_access(v, a, obj)

    # -- external inputs --
    def external_input(self, v: Variable, concurrent) -> bool:
        """Plan `v` as an external input if it is one; False leaves it to the other strategies.

        The rule: a scalar (EXTERNAL_TYPEDEFS, EXTERNAL_TYPE_WORDS) that a signal handler writes,
        and that nothing else writes while threads run, is an input from outside, like a received
        packet: each read outside the handlers logs the value it saw, in its own thread's stream.
        No write is instrumented (no signal comes in a replay; the logged values carry its effect)
        and neither are the handlers' reads (no replay runs a handler). Every other read must be a
        plain read of the variable's name written in the file (external_read_span); if one is not
        (its address taken, inside a macro, updated in a worker), the whole variable stays ordered,
        handler writes included: a read ordered against a write that no replay performs would see
        the wrong value."""
        if not is_external_type(v.type):
            return False
        handlers = {t.entry for t in self.report.threads if t.how == "signal"} - \
                   {t.entry for t in self.report.threads if t.how != "signal"}

        def in_handler(a) -> bool:
            return bool(a.threads) and set(a.threads) <= handlers

        writes = [a for a in v.accesses if a.mode != "read"]
        if not any(in_handler(a) for a in writes) or any(a.concurrent and not in_handler(a) for a in writes):
            return False
        reads = []
        for a in concurrent:
            if in_handler(a):
                continue
            span = self.external_read_span(v, a)
            if span is None:
                return False
            reads.append((a, span))
        obj = self.new_obj(v.id, v.name, v.decl, "external")
        for a in concurrent:
            if in_handler(a):
                why = EXTERNAL_WRITE if a.mode != "read" else "read by a signal handler, which no replay runs"
                self.skipped.append(Skipped(f"{v.name} @ {a.loc}", a.loc, why))
        writers = ", ".join(sorted({t for a in writes if in_handler(a) for t in a.threads}))
        for a, (f, start, end) in reads:
            x = f.text(start, end)
            text = f"(*(__typeof__({x}) const volatile *)ftmb_external_read(&({x}), sizeof({x})))"
            self.add_site("external", f, start, end, "ftmb_external_read", (obj,),
                          f"{v.name} is written only by signal handler {writers}: an external input, the value "
                          f"read is logged", (Edit(start, end, text),), "expression")
        return True

    def external_read_span(self, v: Variable, a) -> tuple[_File, int, int] | None:
        """(file, start, end) of the name `v` that access `a` reads by value, or None when `a` is not
        such a read (a write, `&x`, a macro's expansion, an access through a pointer)."""
        f, _, off = self.resolve(a.loc)
        if f is None or a.mode != "read" or a.macro or off in f.address_only:
            return None
        end = off + len(v.name)
        if f.data[off:end] != v.name.encode() or re.match(rb"\w", f.data[end:end + 1]):
            return None
        for _, s, e, shape in f.sites.reads:
            if s <= off < e and shape == "value" and f.text(s, e).strip("() \t\n") == v.name:
                return f, off, end
        return None

    # -- ordered regions --
    def ordered_access(self, v: Variable, a, obj: int) -> None:
        """Order the access `a` to `v` (object `obj`): what to wrap is decided once per place and
        kind of access (an access through a pointer that may point almost anywhere is listed under
        every variable it may touch: HAProxy's 140 units, 34.7 million pairs), then applied to `v`."""
        key = (a.loc, a.mode == "read")
        acts = self.decisions.get(key)
        if acts is None:
            acts = self.decisions[key] = tuple(self.decide(a.loc, a.mode == "read"))
        for act in acts:
            what = act[0]
            if what == "region":
                _, f, start, end, how, reason, call = act
                self.region(f, start, end, how, obj, v, a, reason)
                if call is not None:
                    self.regions[(f.path, start, end)]["call"] = call
            elif what == "problem":
                self.problem(act[1], act[2], act[3].replace(NAME, v.name))
            elif what == "outside":
                self.problems.append(Problem(a.loc, act[1].replace(NAME, v.name)))
            else:
                self.skipped.append(Skipped(f"{v.name} @ {a.loc}", a.loc, act[1]))

    def decide(self, loc: str, read: bool):
        """The actions ordering an access at `loc` (`read`: it only reads): ("region", file, start, end,
        how, reason, quiet call or None), ("problem", file, offset, message), ("outside", message) or
        ("skip", reason); messages name the variable as NAME."""
        f, line, off = self.resolve(loc)
        if f is None:
            yield "outside", f"access to {NAME} is in a file outside the project; cannot order it"
            return
        if off in f.address_only:
            yield "skip", ("address computation (&x, &a[i], &s.f): no memory is accessed here; what is done "
                           "through the address is ordered where it happens")
            return
        quiet = self.quiet_call(f, off)
        if quiet is not None:
            c, _ = quiet
            yield "region", f, c.start, c.rparen + 1, "quiet", f"{c.callee}() is quiet when it finds nothing", quiet
            return
        chain = f.containing(off)
        chain = [s for s in chain if s.kind != "compound" or s.from_macro]
        if not chain:
            yield "problem", f, off, f"access to {NAME} is not inside a function statement; cannot order it"
            return
        target = chain[-1]
        if target.from_macro:
            # a statement a macro produced: edit around the nearest statement written in the file
            # when the expansion sits inside one (a statement expression in an expression),
            # else around the whole invocation
            written = [s for s in chain if not s.from_macro]
            anc = written[-1] if written else None
            if anc is not None and (anc.kind in ("expr", "decl", "return", "other")
                                    or any(p.start <= off < p.end for p in anc.parts)):
                target = anc
            else:
                i = len(chain) - 1
                while i > 0 and chain[i - 1].from_macro and chain[i - 1].start == target.start:
                    i -= 1
                target = chain[i]
                end = target.end
                j = skip_blank(f.data, end)
                if f.data[j:j + 1] == b";":  # the `;` after the invocation belongs to the statement
                    end = j + 1
                # what wrapping the invocation wraps: its expansion's outermost statements (every
                # statement of it has the invocation's extent)
                outer = f.invocations.get(target.start) or [target]
                jumps = 0
                for s in outer:
                    jumps |= s.jumps
                parents = {s.parent for s in outer}
                if jumps & JUMP_ENTERS:
                    yield self.widened(f, target.start, end, off, f"macro {target.from_macro}, whose expansion "
                                                                    f"has a label or case that control may enter at")
                    return
                if not parents <= {"compound", "", "label", "if", "while", "do", "for", "switch"} or \
                        (len(outer) > 1 and not parents <= {"compound", ""}):
                    yield "problem", f, off, f"access to {NAME} in macro {target.from_macro}: no statement to wrap"
                    return
                how = "declaration" if {s.kind for s in outer} == {"decl"} and parents <= {"compound", ""} \
                    else "statement"
                if jumps:
                    if how == "declaration":
                        yield "problem", f, off, (f"access to {NAME} in a declaration made by macro "
                                                  f"{target.from_macro} that jumps out of itself: cannot wrap it in an "
                                                  f"ordered region")
                        return
                    how = "scope"
                yield ("region", f, target.start, end, how, f"macro {target.from_macro}: whole invocation statement",
                       None)
                return
        if target.kind == "label":
            yield "problem", f, off, f"access to {NAME} in a case/label expression; cannot order it"
            return
        part = next((p for p in target.parts if p.start <= off < p.end), None)
        whole = target.kind in ("expr", "other") or (target.kind == "decl" and target.parent in ("compound", ""))
        natural = (target.start, target.end) if whole or part is None else (part.start, part.end)
        narrow = self.narrow_to_argument(f, off, natural) if read and self.project_calls_in(f, *natural) else None
        if narrow is not None:
            yield narrow
            return
        if target.kind in ("expr", "other"):
            if target.jumps & JUMP_ENTERS:
                yield self.widened(f, target.start, target.end, off,
                                   "a statement with a label or case that control may enter at")
                return
            # a statement that jumps out of itself (return/break/continue/goto) ends its region however
            # control leaves it: a scope
            yield "region", f, target.start, target.end, "scope" if target.jumps else "statement", "statement", None
            return
        part = next((p for p in target.parts if p.start <= off < p.end), None)
        if target.kind == "decl" and (part is None or target.parent in ("compound", "")):
            if target.parent in ("compound", ""):
                yield "region", f, target.start, target.end, "declaration", "declaration", None
                return
        if part is None:
            yield "problem", f, off, (f"access to {NAME} in a {target.kind} statement outside any wrappable "
                                      f"expression; cannot order it")
            return
        if part.shape == "initlist":
            yield "problem", f, off, (f"access to {NAME} in an initializer list of a {target.parent} header; "
                                      f"cannot order it")
            return
        yield ("region", f, part.start, part.end, "expr:" + part.shape + ":" + part.role,
               f"{target.kind} {part.role}", None)

    def widened(self, f: _File, start: int, end: int, off: int, what: str):
        """Order the smallest statement around [start, end) that control enters only at its start, or
        else the smallest run of a block's statements from one around it to the block's end (a
        `goto resume;` before a loop whose body holds `resume:`: the goto's statement to the end).
        A region there has the block's declarations in its own block, which ends where theirs did.
        Else the refusal of an access to NAME in `what`."""
        around = [(s.start, s.end, s.jumps) for s in f.containing(start)
                  if s.end >= end and not s.from_macro and s.kind not in ("compound", "decl")]
        around += [t for t in f.sites.tails if t[0] <= start and end <= t[1]]
        fits = [t for t in around if not t[2] & JUMP_ENTERS]
        if not fits:
            return "problem", f, off, (f"access to {NAME} in {what}, inside no statement entered only at its "
                                       f"start: cannot wrap it in an ordered region")
        s, e, jumps = min(fits, key=lambda t: t[1] - t[0])
        return ("region", f, s, e, "scope" if jumps else "statement",
                "the smallest statements around a label entered from outside them", None)

    def narrow_to_argument(self, f: _File, off: int, natural: tuple[int, int]):
        """Order only the call argument that reads the object when the statement also calls project code.

        Arguments are evaluated before the call, so ordering the argument's value alone is the
        same access; the region then holds no call that could order something else inside it.
        Only reads qualify (a written argument would need its address kept)."""
        reads = [(s, e, shape) for s, e, shape in f.reads_at.get(off, ())
                 if natural[0] <= s and e <= natural[1] and shape in ("value", "bitfield")
                 and not self.project_calls_in(f, s, e)]
        if reads:
            s, e, shape = max(reads, key=lambda r: r[1] - r[0])
            return "region", f, s, e, f"expr:{shape}:read", "the value read (the statement calls project code)", None
        best = None
        for c in f.sites.calls:
            if not (natural[0] <= c.loc < natural[1]) or not c.arg_shapes:
                continue
            for (s, e), shape in zip(c.args, c.arg_shapes):
                if s <= off < e and shape in ("value", "bitfield") and not self.project_calls_in(f, s, e):
                    if best is None or e - s < best[1] - best[0]:
                        best = (s, e, shape)
        if best is None:
            return None
        s, e, shape = best
        return "region", f, s, e, f"expr:{shape}:argument", "call argument (the statement calls project code)", None

    def quiet_call(self, f: _File, off: int):
        """(call, model role) when the access at `off` is a library call the model makes quiet when it
        returns its quiet result (an empty ring dequeue) and the call can be spliced as one expression:
        written in the file, its parameter types known, its result used as a value."""
        for c in f.calls_by_loc.get(off, []):
            role = self.sem.role(c.callee, "opaque_access")
            if role is None or not role.get("quiet"):
                continue
            zero = role.get("quiet_zero_arg")
            if (c.spliceable and not c.macro and c.params and len(c.params) == len(c.args) and zero < len(c.args)
                    and c.result not in ("", "void") and c.stmt_start >= 0):
                return c, role
        return None

    def quiet_region_edits(self, f: _File, start: int, end: int, obj: int, sid: int, c, role) -> tuple[Edit, ...] | None:
        """The quiet form of an ordered library call (see ftmb_ordered_quiet_begin): its arguments
        evaluated once, in order, into temporaries of the parameters' types; in a replay that the log
        says was quiet the call is not made and the quiet result is returned (0 in the `available`
        argument); otherwise it is made and ftmb_ordered_quiet_end learns whether it was quiet. None
        when another edit falls inside the call (its text is copied into the temporaries)."""
        for s in self.sites:
            if s.file == self.rel(f.path) and any(start < e.start < end or start < e.end < end for e in s.edits):
                return None
        for (path, rs, re_), r in self.regions.items():
            if path == f.path and (rs, re_) != (start, end) and (start < rs < end or start < re_ < end):
                return None
        q = f"_ftmb_q{sid}_"
        v = f"_ftmb_v{sid}"
        decls = "".join(f"__typeof__({t}) {q}{i} = ({f.text(a, b)}); " for i, (t, (a, b)) in enumerate(zip(c.params, c.args)))
        args = ", ".join(f"{q}{i}" for i in range(len(c.args)))
        qv = f"({role.get('quiet_result')})"
        zero = role.get("quiet_zero_arg")
        set_zero = f" if ({q}{zero}) *{q}{zero} = 0;" if zero >= 0 else ""
        is_quiet = f"{v} == {qv}" + (f" && (!{q}{zero} || *{q}{zero} == 0)" if zero >= 0 else "")
        lines = "\n" * f.data.count(b"\n", start, end)  # the lines after the call keep their numbers
        text = (f"__extension__ ({{ {decls}__typeof__({c.result}) {v}; if (ftmb_ordered_quiet_begin({obj}, {sid})) "
                f"{{ {v} = {qv};{set_zero} }} else {{ {v} = {f.text(c.start, c.name_end)}({args}); "
                f"ftmb_ordered_quiet_end({is_quiet}, {obj}, {sid}); }} {v};{lines} }})")
        return (Edit(start, end, text),)

    def region(self, f: _File, start: int, end: int, how: str, obj: int, v: Variable, a, reason: str) -> None:
        key = (f.path, start, end)
        r = self.regions.setdefault(key, {"objs": {}, "file": f, "reasons": set(), "how": how})
        if how in ("statement", "declaration", "scope"):
            r["how"] = how
        r["objs"].setdefault(obj, v.name)
        r["reasons"].add(reason)
        r.setdefault("held", set()).update(a.locks_held)

    def function_at(self, f: _File, off: int) -> tuple[str, str]:
        """The function whose body holds `off`, as (file, name): functions are told apart by their
        file too, so that same-named static functions of two files stay two."""
        for fn in f.sites.functions:
            if fn.body_start <= off <= fn.body_end:
                return (f.path, fn.name)
        return (f.path, "")

    def callees(self, path: str, name: str) -> list[tuple[str, str]]:
        """The project functions a call of `name` written in file `path` may reach: the file's own
        definition if it has one (a static function, or the extern one itself), else every file's
        (without linkage facts, one of them is the extern definition)."""
        files = self.defined_in.get(name, ())
        return [(path, name)] if path in files else [(p, name) for p in files]

    def objects_taken_by_functions(self) -> dict[tuple[str, str], int]:
        """For each project function, the objects it (or anything it calls) orders with a region, as a
        bit mask over object ids. The call graph's strongly connected components are found once
        (iterative Tarjan) and each component's mask is its own regions' objects or'ed with its
        callees' masks: linear in the call graph (a search per function grew with functions times
        reachable functions: HAProxy's 140 units)."""
        direct: dict[tuple[str, str], int] = {}
        for (path, start, _), r in self.regions.items():
            fn = self.function_at(r["file"], start)
            for o in r["objs"]:
                direct[fn] = direct.get(fn, 0) | (1 << o)
        return self.reach_over_calls(direct)

    def reach_over_calls(self, direct: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        """For each project function, the or of `direct` over it and everything it calls (one pass
        over the call graph's strongly connected components, callees' components first)."""
        calls: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for f in self.files.values():
            for c in f.sites.calls:
                if c.callee in self.defined:
                    calls.setdefault((f.path, c.function), set()).update(self.callees(f.path, c.callee))
        roots = sorted((p, name) for name, files in self.defined_in.items() for p in files)
        closure: dict[tuple[str, str], int] = {}
        for members in strongly_connected(roots, lambda fn: sorted(calls.get(fn, ()))):
            mask = 0
            for h in members:
                mask |= direct.get(h, 0)
                for k in calls.get(h, ()):
                    mask |= closure.get(k, 0)
            for h in members:
                closure[h] = mask
        return closure

    def nested_regions(self) -> list[tuple[tuple, tuple]]:
        """(outer, inner) keys of every region inside another one of the same file."""
        by_file: dict[str, list] = {}
        for key in self.regions:
            by_file.setdefault(key[0], []).append(key)
        out = []
        for keys in by_file.values():
            keys.sort(key=lambda k: (k[1], -k[2]))
            for i, outer in enumerate(keys):
                for inner in keys[i + 1:]:
                    if inner[1] >= outer[2]:
                        break
                    if inner[2] <= outer[2]:
                        out.append((outer, inner))
        return out

    def drop_nested(self) -> None:
        """A region inside another region of the same object is covered by it (and nesting the
        same object would wait for itself): the inner one gives that object up."""
        for outer, inner in self.nested_regions():
            for o in set(self.regions[outer]["objs"]) & set(self.regions[inner]["objs"]):
                del self.regions[inner]["objs"][o]
        for key in [k for k, r in self.regions.items() if not r["objs"]]:
            del self.regions[key]

    def lock_acquisitions(self, variables, lock_vars) -> None:
        """Which locks each function acquires, by the analysis's names of each lock (those held at its
        release calls and not at its acquisitions: `m`, or `g_ct->lock` with its `ct_table::lock`),
        for the lock-order check of the regions (lock_order_problem)."""
        for v in variables:
            if v.id not in lock_vars:
                continue
            released, around, acquirers = set(), set(), set()
            for a in v.accesses:
                f, _, off = self.resolve(a.loc)
                for c in f.calls_by_loc.get(off, []) if f else []:
                    op = (self.sem.role(c.callee, "lock") or {}).get("op")
                    if op == "release":
                        released.update(a.locks_held)
                    elif op in ("acquire", "try_acquire"):
                        around.update(a.locks_held)
                        acquirers.add((f.path, a.function))
            for fn in acquirers:
                self.acquires.setdefault(fn, set()).update(released - around)

    def lock_order_problem(self, key, r: dict, locks_by_fn: dict[tuple[str, str], int],
                           lock_bit: dict[str, int], by_obj: dict[int, list], held_by_obj: dict[int, int]) -> str:
        """Why the region `key` could make two threads wait for each other, a deadlock the program
        did not have ("" if it cannot): it encloses a call that takes a lock L while another region of
        one of its objects is entered with L held (one thread holds L and waits for the object, the
        other holds the object and waits for L). Objects that could wait for each other are one
        (merge_waiting_objects)."""
        f, start, end = r["file"], key[1], key[2]
        for g in sorted(self.project_calls_in(f, start, end)):
            locks = locks_by_fn.get(g, 0)
            if not locks:
                continue
            for o, name in sorted(r["objs"].items()):
                if not locks & held_by_obj.get(o, 0):  # no region of o is entered with one of them held
                    continue
                for other_key, other in by_obj.get(o, ()):
                    if other_key != key and locks & other["held_mask"]:
                        held = [n for n in sorted(other["held"]) if n in lock_bit and locks >> lock_bit[n] & 1]
                        return (f"the ordered region for {name} encloses a call to {g[1]}(), which takes lock "
                                f"{held[0]}, while {name} is also ordered with {held[0]} held "
                                f"({self.where(other['file'], other_key[1])})")
        return ""

    def merge_waiting_objects(self) -> None:
        """Objects whose regions could wait for each other are ordered as one. A thread holds A while
        it begins a region of B when a region of A encloses a call that orders B, a region of B is
        nested in one of A, or one region begins both (in ascending order). Two objects on a cycle
        of such edges could each be held by a thread that waits for the other, a deadlock the program
        did not have: each strongly connected component of the edges becomes its smallest object
        (and a region of it inside another of it through a call, reentrant: emit_regions)."""
        taken = self.objects_taken_by_functions()
        succ: dict[int, int] = {}
        for key, r in self.regions.items():
            inner = 0
            for g in self.project_calls_in(r["file"], key[1], key[2]):
                inner |= taken.get(g, 0)
            after = 0  # the region's objects above o: a region begins its objects in ascending order
            for o in sorted(r["objs"], reverse=True):
                succ[o] = succ.get(o, 0) | inner | after
                after |= 1 << o
        masks: dict[tuple, int] = {}
        for outer, inner in self.nested_regions():
            mask = masks.get(inner)
            if mask is None:
                mask = masks[inner] = sum(1 << p for p in self.regions[inner]["objs"])
            for o in self.regions[outer]["objs"]:
                succ[o] = succ.get(o, 0) | mask

        def successors(o: int) -> list[int]:
            out, m = [], succ.get(o, 0)
            while m:
                low = m & -m
                m ^= low
                out.append(low.bit_length() - 1)
            return out

        rep: dict[int, int] = {}
        for comp in strongly_connected(sorted(succ), successors):
            if len(comp) > 1:
                for o in comp:
                    rep[o] = min(comp)
        if not rep:
            return
        together: dict[int, list[str]] = {}
        for o in sorted(rep):
            together.setdefault(rep[o], []).append(self.objects[o].name)
        reasons: dict[tuple[int, str], str] = {}  # (object, the name it goes by in a region) -> why merged
        for r in self.regions.values():
            objs: dict[int, str] = {}
            for o, name in r["objs"].items():
                p = rep.get(o, o)
                objs.setdefault(p, name if p == o else self.objects[p].name)
                if p in together:
                    why = reasons.get((p, objs[p]))
                    if why is None:
                        others = [n for n in together[p] if n != objs[p]]
                        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
                        why = reasons[p, objs[p]] = (f"ordered as one object with {', '.join(others[:3])}{more} "
                                                     f"(their regions could otherwise wait for each other)")
                    r["reasons"].add(why)
            r["objs"] = objs
        self.drop_nested()

    def emit_regions(self) -> None:
        self.drop_nested()
        self.merge_waiting_objects()
        taken = self.objects_taken_by_functions()
        lock_bit = {n: i for i, n in enumerate(sorted({n for names in self.acquires.values() for n in names}))}
        locks_by_fn = self.reach_over_calls({fn: sum(1 << lock_bit[n] for n in names)
                                             for fn, names in self.acquires.items()})
        by_obj: dict[int, list] = {}
        held_by_obj: dict[int, int] = {}  # the locks held at any region of each object
        encloses: dict[int, int] = {}
        for key, r in sorted(self.regions.items(), key=lambda kv: kv[0]):
            r["held_mask"] = sum(1 << lock_bit[n] for n in r["held"] if n in lock_bit)
            inner = 0
            for g in self.project_calls_in(r["file"], key[1], key[2]):
                inner |= taken.get(g, 0)
            for o in r["objs"]:
                by_obj.setdefault(o, []).append((key, r))
                held_by_obj[o] = held_by_obj.get(o, 0) | r["held_mask"]
                encloses[o] = encloses.get(o, 0) | inner
        # An object whose region encloses a call that orders it again is reentrant: every region of
        # it takes it through ftmb_ordered_reenter, and one the thread is already inside takes nothing
        # (it would otherwise wait for itself, in record and in replay).
        reentrant = 0
        for o, inner in encloses.items():
            reentrant |= inner & (1 << o)
        for (path, start, end), r in sorted(self.regions.items(), key=lambda kv: kv[0]):
            f = r["file"]
            how = r["how"]
            objs = sorted(r["objs"])
            why = self.lock_order_problem((path, start, end), r, locks_by_fn, lock_bit, by_obj, held_by_obj)
            if why:
                self.problem(f, start, f"{why}: two threads could each wait for what the other holds, a "
                                       f"deadlock the program did not have; move the call out of the statement")
            sid = self.site_id()
            again = [o for o in objs if reentrant >> o & 1]
            begins = " ".join(f"ftmb_ordered_{'reenter' if o in again else 'begin'}({o}, {sid});" for o in objs)
            ends = " ".join(f"ftmb_ordered_{'reexit' if o in again else 'end'}({o});" for o in reversed(objs))
            names = ", ".join(r["objs"][o] for o in objs)
            op, cl = opening(end - start), closing(end - start)
            entry = "ftmb_ordered_reenter" if again else "ftmb_ordered_begin"
            if how == "quiet" and again:
                how = "expr:value:call"  # the quiet form takes the object itself: the plain one
            if how == "quiet":
                edits = self.quiet_region_edits(f, start, end, objs[0], sid, *r["call"]) if len(objs) == 1 else None
                if edits is not None:
                    entry = "ftmb_ordered_quiet_begin"
                else:  # the plain form around the call expression
                    how = "expr:value:call"
            if how == "quiet":
                pass
            elif how == "statement":
                edits = (Edit(start, start, "{ " + begins + " ", op), Edit(end, end, " " + ends + " }", cl))
            elif how == "scope":  # the statement jumps out of itself: its block's cleanups end the region
                holds = " ".join(f"ftmb_obj_t _ftmb_s{sid}_{o} __attribute__((cleanup(ftmb_ordered_"
                                 f"{'reexit' if o in again else 'end'}_scope))) = "
                                 f"(ftmb_ordered_{'reenter' if o in again else 'begin'}({o}, {sid}), {o});"
                                 for o in objs)
                edits = (Edit(start, start, "{ " + holds + " ", op), Edit(end, end, " }", cl))
            elif how == "declaration":  # declarations too: no statement among them (C90, -Wdeclaration-after-statement)
                takes = " ".join(f"ftmb_obj_t _ftmb_b{sid}_{o} __attribute__((unused)) = "
                                 f"(ftmb_ordered_{'reenter' if o in again else 'begin'}({o}, {sid}), {o});"
                                 for o in objs)
                gives = " ".join(f"ftmb_obj_t _ftmb_e{sid}_{o} __attribute__((unused)) = "
                                 f"(ftmb_ordered_{'reexit' if o in again else 'end'}({o}), {o});"
                                 for o in reversed(objs))
                edits = (Edit(start, start, takes + " ", op), Edit(end, end, " " + gives, cl))
            else:
                _, shape, role = how.split(":")
                if shape == "void":
                    edits = (Edit(start, start, f"__extension__ ({{ {begins} ", op),
                             Edit(end, end, f"; {ends} }})", cl))
                else:  # the begins in the initializer: no statement before the declaration
                    takes = ", ".join(b.rstrip(";") for b in begins.split("; "))
                    val = f"+(" if shape == "bitfield" else "("
                    edits = (Edit(start, start, f"__extension__ ({{ __auto_type _ftmb_v{sid} = ({takes}, {val}", op),
                             Edit(end, end, f")); {ends} _ftmb_v{sid}; }})", cl))
            calls = {g[1] for g in self.project_calls_in(f, start, end)}
            reason = f"unsynchronized shared access to {names}: {'; '.join(sorted(r['reasons']))}"
            if calls:
                reason += f" (the region also encloses calls to {', '.join(sorted(calls))})"
            self.sites.append(PlanSite(sid, "ordered", self.rel(path), f.line_of(start), start, end,
                                       entry, tuple(objs), reason, edits,
                                       how.split(":")[0] if ":" in how else how))

    def project_calls_in(self, f: _File, start: int, end: int) -> set[tuple[str, str]]:
        """Project functions (file, name) called between `start` and `end` of `f` (do not modify)."""
        got = f.calls_in.get((start, end))
        if got is None:
            got = f.calls_in[(start, end)] = {g for c in f.sites.calls
                                              if start <= c.loc < end and c.callee in self.defined
                                              for g in self.callees(f.path, c.callee)}
        return got

    # -- atomics --
    def atomic_call(self, a):
        """(call, entry, extra) when the atomic access `a` is a call with an ftmb_ atomic wrapper."""
        f, _, off = self.resolve(a.loc)
        if f is None:
            return None
        for c in f.calls_by_loc.get(off, []):
            got = self.atomic_entry(c)
            if got is not None:
                return (f, c) + got
        return None

    def atomic_entry(self, c):
        name = c.macro or c.callee
        extra = ""
        if name in C11_IMPLICIT:
            name, extra = C11_IMPLICIT[name]
        if not c.spliceable:
            return None
        cands = TABLE["wraps"].get(name) or TABLE["wraps"].get(re.sub(r"_[1248]$", "", name))
        if not cands:
            return None
        if len(cands) == 1:
            entry = cands[0]
        else:
            entry = next((e for e in cands if e.endswith(f"_{c.pointee_size}")), None)
            if entry is None:
                return None
        if TABLE["entries"][entry]["kind"] != "atomic":
            return None
        return entry, name, extra

    def atomic_site(self, v: Variable, a, got, obj: int) -> None:
        f, c, entry, name, extra = got
        if (f.path, c.start) in self.handled_calls:
            return
        self.handled_calls.add((f.path, c.start))
        sid = self.site_id()
        edits = [Edit(c.start, c.name_end, entry)]
        ids = f", {obj}, {sid}"
        ret = TABLE["entries"][entry]["ret"]
        if name == "__sync_bool_compare_and_swap" and len(c.args) == 3:
            p = f.text(*c.args[0])
            edits.append(Edit(c.args[1][0], c.args[1][0], f"(void *)&(__typeof__(*({p}))){{ ", PLAIN))
            edits.append(Edit(c.args[1][1], c.args[1][1], " }", PLAIN))
            edits.append(Edit(c.rparen, c.rparen, ", 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST" + ids, PLAIN))
        elif name.startswith("__sync_"):
            edits.append(Edit(c.rparen, c.rparen, ", __ATOMIC_SEQ_CST" + ids, PLAIN))
        elif name in ("atomic_compare_exchange_strong_explicit", "atomic_compare_exchange_weak_explicit") \
                and not extra and len(c.args) == 5:
            weak = "1" if "weak" in name else "0"
            edits.append(Edit(c.args[2][1], c.args[2][1], f", {weak}", PLAIN))
            edits.append(Edit(c.rparen, c.rparen, ids, PLAIN))
        else:
            edits.append(Edit(c.rparen, c.rparen, extra + ids, PLAIN))
        if c.pointee_is_pointer:
            vi = 2 if "compare_exchange" in entry else 1
            if "store" in entry or "exchange" in entry:
                if vi < len(c.args):
                    s, e = c.args[vi]
                    edits.append(Edit(s, s, f"(ftmb_u{8 * c.pointee_size})(__UINTPTR_TYPE__)(", PLAIN))
                    edits.append(Edit(e, e, ")", PLAIN))
        if ret not in ("void", "_Bool", "int") and entry.startswith("ftmb_atomic_") and c.pointee_type:
            edits[0] = Edit(c.start, c.name_end, f"({c.pointee_type}){entry}")
        self.add_site("atomic", f, c.start, c.rparen + 1, entry, (obj,),
                      f"atomic access to {v.name} ({name})", edits, "invocation" if c.macro else "call")

    # -- allocations --
    def heap_alloc(self, v: Variable) -> None:
        f, line, _ = self.resolve(v.decl)
        if f is None:
            self.skipped.append(Skipped(v.name, v.decl, "allocated outside the project: not moved to the arena"))
            return
        lo, hi = f.line_starts[line - 1], (f.line_starts[line] if line < len(f.line_starts) else len(f.data))
        moved = 0
        callees = []
        for c in f.sites.calls:
            if not (lo <= c.loc < hi):
                continue
            callees.append(c.callee)
            if (f.path, c.start) in self.handled_calls:
                moved += 1
                continue
            entries = TABLE["wraps"].get(c.callee)
            if not entries or TABLE["entries"][entries[0]]["kind"] != ALLOC_KIND or c.callee in ROUTED_FREES:
                continue
            entry = entries[0]
            why = f"{v.name} is {v.cls} program state: allocated from the checkpointable arena"
            if not c.spliceable or c.macro:
                if self.rename_in_definition(f, c, entry, ALLOC_KIND, why):
                    moved += 1
                    continue
                self.problem(f, c.loc, f"allocation {c.callee}() of {v.name} is inside macro {c.macro or '?'}'s "
                                       f"expansion, defined outside the project; cannot move it to the state arena")
                continue
            n = len(TABLE["entries"][entry]["params"])
            if len(c.args) != n:
                self.problem(f, c.loc, f"{c.callee}() of {v.name} has {len(c.args)} arguments, {entry} takes {n}; "
                                       f"cannot move it to the state arena")
                continue
            self.handled_calls.add((f.path, c.start))
            edits = [Edit(c.start, c.name_end, entry)]
            self.add_site(ALLOC_KIND, f, c.start, c.rparen + 1, entry, (), why, edits, "call")
            moved += 1
        if not moved:
            what = ", ".join(sorted(set(callees))) or "no call on its line"
            self.skipped.append(Skipped(v.name, v.decl, f"heap object created by {what}: no ftmb_ arena entry "
                                                        f"replaces it, so it stays where it is, outside the arena "
                                                        f"(a checkpoint, a fork of the whole process, still keeps "
                                                        f"it; its address is not the arena's per-thread one)"))

    # -- locks and library calls --
    def lock_and_library_calls(self, variables, lock_vars) -> None:
        """Lock calls get the id of the lock variable they name. A lock the analysis cannot pin to
        one variable (reached through a pointer, one of several) shares one id with every lock of
        its type: two ids for one lock would leave its critical sections unordered in replay."""
        candidates: dict[tuple[str, int], set[int]] = {}
        for v in variables:
            if v.id in lock_vars:
                for a in v.accesses:
                    f, _, off = self.resolve(a.loc)
                    if f is not None:
                        candidates.setdefault((f.path, off), set()).add(self.obj_of_var[v.id])
        lock_obj_at = {k: next(iter(objs)) for k, objs in candidates.items() if len(objs) == 1}
        self.pooled_lock_types = set()
        for f in self.files.values():
            for c in f.sites.calls:
                if self.sem.role(c.callee, "lock") is not None and (f.path, c.loc) not in lock_obj_at:
                    self.pooled_lock_types.add(c.pointee_type or c.callee)
        for path in sorted(self.files):
            f = self.files[path]
            for c in sorted(f.sites.calls, key=lambda c: c.start):
                if (f.path, c.start) in self.handled_calls:
                    continue
                self.library_call(f, c, lock_obj_at)

    def library_call(self, f: _File, c, lock_obj_at) -> None:
        name = c.callee
        unreplayable = self.sem.role(name, "unreplayable")
        if unreplayable is not None:
            self.problem(f, c.loc, f"{name}() {unreplayable.get('reason')}: a failover or a verification replay "
                                   f"would diverge here")
        lock_role = self.sem.role(name, "lock")
        entries = TABLE["wraps"].get(name)
        if lock_role is not None:
            if not entries:
                self.problem(f, c.loc, f"{name}() has no ftmb_ lock wrapper: the order of its acquisitions "
                                       f"would not be recorded")
                return
            if not c.spliceable or c.macro:
                self.problem(f, c.loc, f"{name}() is called inside macro {c.macro or '?'}'s expansion; "
                                       f"cannot replace it by its ftmb_ wrapper")
                return
            lock_type = c.pointee_type or name
            obj = None if lock_type in self.pooled_lock_types else lock_obj_at.get((f.path, c.loc))
            if obj is None:
                key = f"every {lock_type} lock"
                obj = self.pooled_lock_objs.get(key)
                if obj is None:
                    obj = self.pooled_lock_objs[key] = self.new_obj("", key, self.where(f, c.loc), "lock")
            sid = self.site_id()
            self.handled_calls.add((f.path, c.start))
            self.sites.append(PlanSite(sid, "lock", self.rel(f.path), f.line_of(c.start), c.start, c.rparen + 1,
                                       entries[0], (obj,), f"{name}: record the acquisition order",
                                       (Edit(c.start, c.name_end, entries[0]), Edit(c.rparen, c.rparen, f", {obj}, {sid}")),
                                       "call"))
            return
        if name == "rte_eal_init":
            if not c.spliceable or c.macro:
                self.problem(f, c.loc, "rte_eal_init() inside a macro expansion: cannot add the ftmb_init hook")
                return
            self.handled_calls.add((f.path, c.start))
            sid = self.site_id()
            self.add_site("init", f, c.start, c.rparen + 1, "ftmb_init", (),
                          "DPDK program: the runtime starts right after the EAL, only when it succeeded",
                          (Edit(c.start, c.start, f"__extension__ ({{ int _ftmb_r{sid} = ", opening(c.rparen + 1 - c.start)),
                           Edit(c.rparen + 1, c.rparen + 1,
                                f"; if (_ftmb_r{sid} >= 0 && ftmb_init() != 0) _ftmb_r{sid} = -1; _ftmb_r{sid}; }})",
                                closing(c.rparen + 1 - c.start))), "call")
            return
        if name in ROUTED_FREES and entries:
            entry = entries[0]
            why = ("memory may come from the state arena: the entry frees or moves arena pointers there and passes "
                   "others to DPDK")
            if not c.spliceable or c.macro:
                if self.rename_in_definition(f, c, entry, "free", why):
                    return
                self.problem(f, c.loc, f"{name}() inside macro {c.macro or '?'}'s expansion: cannot route arena "
                                       f"pointers to the arena")
                return
            n = len(TABLE["entries"][entry]["params"])
            if len(c.args) != n:
                self.problem(f, c.loc, f"{name}() has {len(c.args)} arguments, {entry} takes {n}")
                return
            self.handled_calls.add((f.path, c.start))
            self.add_site("free", f, c.start, c.rparen + 1, entry, (), why, (Edit(c.start, c.name_end, entry),),
                          "call")
            return
        if not entries:
            nondet = self.sem.role(name, "nondeterminism")
            if nondet is not None:
                self.library_value(f, c, nondet)
            return
        entry = entries[0]
        kind = TABLE["entries"][entry]["kind"]
        if kind not in ("nondet", "packet_io", "spawn", "join"):
            return
        why = {"nondet": "nondeterministic value: logged in record mode, replayed in replay mode",
               "packet_io": "packet I/O goes through the runtime (input and output loggers)",
               "spawn": "threads get deterministic indexes",
               "join": "the waiting lcore sleeps instead of spinning (a CPU for the loggers, a follower)"}[kind]
        if not c.spliceable or c.macro:
            if self.rename_in_definition(f, c, entry, kind, why) or kind == "join":
                return  # (a join left to DPDK only spins)
            where = "a macro defined outside the project" if c.macro else "a macro expansion"
            self.problem(f, c.loc, f"{name}() is called inside {where} ({c.macro or '?'}); cannot replace "
                                   f"it by {entry}")
            return
        self.handled_calls.add((f.path, c.start))
        self.add_site(kind, f, c.start, c.rparen + 1, entry, (), f"{name}: {why}",
                      (Edit(c.start, c.name_end, entry),), "call")

    def library_value(self, f: _File, c, role) -> None:
        """A nondeterministic call without a wrapper of its own (a pid, a MAC address): the call stays,
        and its result and the bytes it writes through the model's `out_arg` go through
        ftmb_nondet_bytes, which logs them in record mode and overwrites them with the logged ones
        in replay. Two processes of one binary then see the same values."""
        name, out_arg, out_bytes = c.callee, role.get("out_arg"), role.get("out_bytes")
        entry = "ftmb_nondet_bytes"
        if not c.spliceable or c.macro:
            self.problem(f, c.loc, f"{name}() is called inside macro {c.macro or '?'}'s expansion; cannot log "
                                   f"its value through {entry}")
            return
        if out_arg >= len(c.args):
            self.problem(f, c.loc, f"{name}(): the model's out_arg {out_arg} names no argument of this call")
            return
        sid = self.site_id()
        self.handled_calls.add((f.path, c.start))
        span = c.rparen + 1 - c.start
        before, after, edits = [], [], []
        if out_arg >= 0:
            s, e = c.args[out_arg]
            out = f"_ftmb_o{sid}"
            size = str(out_bytes) if out_bytes > 0 else f"sizeof *{out}"
            count_arg = role.get("out_count_arg")
            if 0 <= count_arg < len(c.args):  # an array of that many elements (poll's fds)
                cs, ce = c.args[count_arg]
                count = f"_ftmb_n{sid}"
                before.append(f"__typeof__({f.text(cs, ce)}) {count}; ")
                edits += [Edit(cs, cs, f"({count} = ("), Edit(ce, ce, "))")]
                size = f"(ftmb_size_t)({count} > 0 ? {count} : 0) * {size}"
            arg = f.text(s, e)
            before.append(f"__typeof__(1 ? ({arg}) : ({arg})) {out}; ")  # an array argument: its pointer
            edits += [Edit(s, s, f"({out} = ("), Edit(e, e, "))")]
            after.append(f"{entry}((void *){out}, {size}); ")
        if c.result == "void":
            head, tail = "", ""
        else:
            value = f"_ftmb_v{sid}"
            head = f"__auto_type {value} = "
            after.append(f"{entry}(&{value}, sizeof {value}); ")
            tail = f"{value}; "
        edits = [Edit(c.start, c.start, f"__extension__ ({{ {''.join(before)}{head}", opening(span)), *edits,
                 Edit(c.rparen + 1, c.rparen + 1, f"; {''.join(after)}{tail}}})", closing(span))]
        self.add_site("nondet", f, c.start, c.rparen + 1, entry, (),
                      f"{name}: a value that differs between processes: logged in record mode, replayed in replay "
                      f"mode", tuple(edits), "call")

    def has_nested_call(self, f: _File, c) -> bool:
        return any(o is not c and c.lparen < o.start < c.rparen and o.callee in TABLE["wraps"] for o in f.sites.calls)

    # -- init and includes --
    def init_hook(self) -> None:
        if any(s.kind == "init" for s in self.sites):
            return
        for path in sorted(self.files):
            f = self.files[path]
            for fn in f.sites.functions:
                if fn.name != "main":
                    continue
                fail = "return 1;" if fn.returns == "int" else "__builtin_abort();"
                self.add_site("init", f, fn.body_start, fn.body_start, "ftmb_init", (),
                              "pthread program: the runtime starts first thing in main",
                              # a declaration, not a statement: main's own declarations may follow it
                              # (-Wdeclaration-after-statement -Werror builds, such as HAProxy's warnings)
                              (Edit(fn.body_start, fn.body_start,
                                    f" __attribute__((unused)) int _ftmb_init_ok = __extension__ ({{ "
                                    f"if (ftmb_init() != 0) {fail} 1; }});", OPEN),), "insert")
                return

    def thread_roots(self) -> list[PlanRoot]:
        """The report's thread roots, each with the project's definitions of its entry function (a
        static function of the same name in two files: both)."""
        defined: dict[str, list[str]] = {}
        for path in sorted(self.all_sites):
            for fn in self.all_sites[path].functions:
                defined.setdefault(fn.name, []).append(self.where(self.file(path), fn.body_start))
        return [PlanRoot(t.entry, t.how, t.site, tuple(defined.get(t.entry, ()))) for t in self.report.threads]

    def includes(self, roots: list[PlanRoot]) -> None:
        registered: dict[str, list[str]] = {}  # file -> the roots it defines, registered with the runtime
        for r in roots:
            if r.how != "main":
                for where in r.defined:
                    registered.setdefault(where.rsplit(":", 1)[0], []).append(r.entry)
        for path in sorted({s.file for s in self.sites} | set(registered)):
            f = self.file(os.path.realpath(os.path.join(self.root, path)))
            self.register_file(f, path, sorted(set(registered.get(path, ()))))
            self.add_site("include", f, 0, 0, "", (), "the runtime ABI header and the marker",
                          (Edit(0, 0, f"{MARKER}\n{INCLUDE}\n#line 1\n", FIRST),), "insert")

    def register_file(self, f: _File, path: str, roots: list[str]) -> None:
        """What the file tells the runtime, from a constructor at its end: its site ids named
        `file:line` (a replay divergence then names both sites' lines) and the thread roots it
        defines (spawn wrappers start no other function). The names carry a tag of the file, so a
        header's table and its includer's do not clash, and a guard of its own keeps a header's table
        once per unit (it follows the header's include guard, so every inclusion reaches it)."""
        named = [s for s in self.sites if s.file == path and "site" in TABLE["entries"].get(s.entry, {})
                 .get("trailing_ids", ())]
        if not named and not roots:
            return
        tag = sha256(path.encode())[:8]
        end = len(f.data)
        guard = f"_FTMB_REGISTER_{tag}"
        text = f"\n#ifndef {guard}\n#define {guard}\n#line {f.line_of(end)}\n"
        sites = where = roots_table = "0"
        if named:
            sites, where = f"_ftmb_site_ids_{tag}", f"_ftmb_site_where_{tag}"
            text += (f"static const ftmb_u32 {sites}[] = {{{', '.join(str(s.id) for s in named)}}};\n"
                     f"static const char *const {where}[] = "
                     f"{{{', '.join(json.dumps(f'{s.file}:{s.line}') for s in named)}}};\n")
        if roots:
            roots_table = f"_ftmb_thread_roots_{tag}"
            text += (f"static void (*const {roots_table}[])(void) = "
                     f"{{{', '.join(f'(void (*)(void)){r}' for r in roots)}}};\n")
        text += (f"__attribute__((constructor)) static void _ftmb_register_{tag}(void) {{ ftmb_register_file("
                 f"{sites}, {where}, {len(named)}, {roots_table}, {len(roots)}); }}\n#endif\n")
        self.add_site("include", f, end, end, "ftmb_register_file", (),
                      "site ids named file:line for the runtime's diagnostics; the thread roots defined here",
                      (Edit(end, end, text),), "insert")


def build_plan(report: Report, sites: dict, root: str, sem, options: PlanOptions = PlanOptions()) -> Plan:
    """The plan for `report`; `sites` maps real paths to frontend FileSites."""
    return Planner(report, sites, root, sem, options).build()
