"""Parse one translation unit with libclang and extract its program facts.

This module and its package are the only code that imports `clang.cindex`. A translation unit
with an error-level diagnostic is reported as failed and never walked: a partial AST would hide
accesses. Only functions and variables defined in project files (under the project root) are
analyzed; everything else is known through the library models only.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
from dataclasses import dataclass

from clang import cindex as ci

from ..deep import TOO_DEEP, call_deep, too_deep
from ..errors import SuppressionError
from ..facts import (
    BITFIELDS,
    AccessFact,
    AllocSite,
    ArgFact,
    Branch,
    CallFact,
    Exit,
    FieldDecl,
    FunctionFacts,
    GlobalDecl,
    LocalState,
    Loop,
    Ref,
    StackSite,
    Suppression,
    TuFacts,
)
from ..model import Diagnostic, TranslationUnit
from ..semantics import Semantics

CK = ci.CursorKind
TK = ci.TypeKind
BO = ci.BinaryOperator

# clang's CXUnaryOperatorKind (clang-c/Index.h), not wrapped by the Python bindings.
UO_POST_INC, UO_POST_DEC, UO_PRE_INC, UO_PRE_DEC, UO_ADDR_OF, UO_DEREF = 1, 2, 3, 4, 5, 6

ARRAY_KINDS = {TK.CONSTANTARRAY, TK.INCOMPLETEARRAY, TK.VARIABLEARRAY, TK.DEPENDENTSIZEDARRAY}
POINTERISH = ARRAY_KINDS | {TK.POINTER}
BYTE_KINDS = {TK.CHAR_S, TK.CHAR_U, TK.SCHAR, TK.UCHAR, TK.VOID}  # what `char *`/`void *` arithmetic steps over
LOCK_TYPE = re.compile(
    r"\b(pthread_(mutex|spinlock|rwlock|barrier|cond)_t|rte_(spinlock|rwlock|mcslock|ticketlock)(_recursive)?_t|"
    r"sem_t|atomic_flag)\b"
)
SUPPRESS_KINDS = ("race", "access", "variable")
MARKER = re.compile(r"ftmb(?:\s*[:：]|[-_ ]+ignore)", re.IGNORECASE)
VALID_MARKER = re.compile(r"ftmb:\s*ignore\((\w+)\)\s*(.*?)\s*(?:\*/|$)")
IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")

_lib_ready = False


def _setup_lib() -> None:
    global _lib_ready
    if _lib_ready:
        return
    lib = ci.conf.lib
    lib.clang_getCursorUnaryOperatorKind.argtypes = [ci.Cursor]
    lib.clang_getCursorUnaryOperatorKind.restype = ctypes.c_int
    lib.clang_getSpellingLocation.argtypes = [
        ci.SourceLocation, ctypes.POINTER(ci.c_object_p), ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
    ]
    lib.clang_getSpellingLocation.restype = None
    _unguard_cursor_methods()
    _lib_ready = True


def _unguard_cursor_methods() -> None:
    """Drop the bindings' per-call null-cursor check and enum lookup from `Cursor`.

    libclang-ng wraps every Cursor method and property in `cursor_null_guard`, which compares the
    cursor with the null cursor through a libclang call, and builds `kind` through `Enum.__call__`:
    together more than half of the walk's time on DPDK code. The cursors the walk sees come from the
    AST, and the bindings already map null results to None, so the check never fires here.
    """
    kinds = {k.value: k for k in CK}
    for name, attr in list(vars(ci.Cursor).items()):
        fget = attr.fget if isinstance(attr, property) else attr
        closure = getattr(fget, "__closure__", None)
        if getattr(fget, "__name__", "") != "inner" or not closure or not callable(closure[0].cell_contents):
            continue
        plain = closure[0].cell_contents
        setattr(ci.Cursor, name, property(plain) if isinstance(attr, property) else plain)
    by_id = ci.Cursor.kind.fget
    ci.Cursor.kind = property(lambda c: kinds.get(c._kind_id) or by_id(c))


def unary_kind(c: ci.Cursor) -> int:
    return ci.conf.lib.clang_getCursorUnaryOperatorKind(c)


def spelling_location(loc: ci.SourceLocation) -> tuple[str, int]:
    f = ci.c_object_p()
    line, col, off = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
    ci.conf.lib.clang_getSpellingLocation(loc, ctypes.byref(f), ctypes.byref(line), ctypes.byref(col), ctypes.byref(off))
    if not f:
        return "", off.value
    return ci.File(f).name, off.value


@dataclass(frozen=True)
class TuJob:
    file: str  # absolute path
    args: tuple[str, ...]  # sanitized clang arguments
    project_root: str  # absolute
    display_root: str  # paths in the report are relative to this when under it
    sites: bool = False  # also scan the rewriter's sites (frontend/sites.py) from the same parse


@dataclass
class TuResult:
    unit: TranslationUnit
    facts: TuFacts | None
    sites: object = None  # sites.TuSites when the job asked for them and the unit parsed


def parse_translation_unit(job: TuJob, sem: Semantics) -> TuResult:
    """Parse `job.file`; return its status and, when it parsed cleanly, its facts."""
    index = ci.Index.create()
    _setup_lib()
    _child_cache.clear()
    try:
        return call_deep(_parse_and_walk, index, job, sem)  # the walks recurse along the AST's nesting
    finally:
        _child_cache.clear()


def _parse_and_walk(index: ci.Index, job: TuJob, sem: Semantics) -> TuResult:
    display = _Display(job.display_root)
    try:
        # the rewriter's scan needs the macro expansions; the analysis walks only declarations, so
        # one parse with them serves both (parsing is most of the time on large projects)
        tu = index.parse(job.file, args=list(job.args),
                         options=ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD if job.sites else 0)
    except ci.TranslationUnitLoadError:
        diag = Diagnostic(f"{display(job.file)}:1:1", "fatal", "libclang could not parse this file")
        return TuResult(TranslationUnit(display(job.file), "failed", (diag,)), None)
    diags = []
    failed = False
    for d in tu.diagnostics:
        if d.severity < ci.Diagnostic.Warning:
            continue
        f = d.location.file
        path = os.path.realpath(f.name) if f else job.file
        in_project = _under(path, job.project_root)
        severity = {ci.Diagnostic.Warning: "warning", ci.Diagnostic.Error: "error"}.get(d.severity, "fatal")
        if severity != "warning":
            failed = True
        elif not in_project:
            continue
        line = d.location.line if f else 0
        col = d.location.column if f else 0
        diags.append(Diagnostic(f"{display(path)}:{line}:{col}", severity, d.spelling))
    name = display(job.file)
    if failed:
        return TuResult(TranslationUnit(name, "failed", tuple(diags)), None)
    walker = _TuWalker(tu, job, sem, display)
    try:
        facts = walker.run()
    except SuppressionError as exc:
        diags.append(Diagnostic(str(exc).split(": ", 1)[0], "error", str(exc).split(": ", 1)[-1]))
        return TuResult(TranslationUnit(name, "failed", tuple(diags)), None)
    except Exception as exc:  # a walk that could not see the whole AST: no facts
        if not isinstance(exc, WalkError) and not too_deep(exc):
            raise
        diags.append(Diagnostic(f"{name}:1:1", "fatal", str(exc) if isinstance(exc, WalkError) else TOO_DEEP))
        return TuResult(TranslationUnit(name, "failed", tuple(diags)), None)
    sites = None
    if job.sites:
        from .sites import scan_parsed

        sites = scan_parsed(tu, job.file, job.project_root)  # reuses the walk's children cache
    return TuResult(TranslationUnit(name, "ok", tuple(diags), len(facts.functions)), facts, sites)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Display:
    """Maps absolute paths to the paths shown in reports (relative to the display root)."""

    def __init__(self, root: str):
        self.root = root.rstrip("/") + "/"

    def __call__(self, path: str) -> str:
        return path[len(self.root):] if path.startswith(self.root) else path


class _TuWalker:
    def __init__(self, tu: ci.TranslationUnit, job: TuJob, sem: Semantics, display: _Display):
        self.tu = tu
        self.job = job
        self.sem = sem
        self.display = display
        self.facts = TuFacts(file=display(job.file))
        self.seen_globals: set[str] = set()
        self.seen_files: set[str] = set()
        self.texts: dict[str, bytes] = {}
        self.suppress_lines: dict[tuple[str, int], Suppression] = {}
        self.realpaths: dict[str, str] = {}
        self.file_paths: dict[int, str] = {}  # libclang file handle -> real path

    # ---- files -----------------------------------------------------------------------------
    def realpath(self, name: str) -> str:
        """os.path.realpath, once per file name: the walk asks for it at every cursor."""
        path = self.realpaths.get(name)
        if path is None:
            path = self.realpaths[name] = os.path.realpath(name)
        return path

    def in_project(self, path: str) -> bool:
        return bool(path) and _under(self.realpath(path), self.job.project_root)

    def text(self, path: str) -> bytes:
        if path not in self.texts:
            try:
                with open(path, "rb") as fh:
                    self.texts[path] = fh.read()
            except OSError:
                self.texts[path] = b""
        return self.texts[path]

    def note_file(self, path: str) -> None:
        """Scan a project file once for inline suppressions."""
        if path in self.seen_files:
            return
        self.seen_files.add(path)
        for lineno, raw in enumerate(self.text(path).decode("utf-8", "replace").splitlines(), 1):
            for m in MARKER.finditer(raw):
                shown = f"{self.display(path)}:{lineno}"
                valid = VALID_MARKER.match(raw, m.start())
                if not valid:
                    raise SuppressionError(
                        f"{shown}: malformed ftmb marker {raw[m.start():].strip()!r}; "
                        f"write /* ftmb: ignore(<{'|'.join(SUPPRESS_KINDS)}>) <reason> */"
                    )
                what, reason = valid.group(1), valid.group(2).strip()
                if what not in SUPPRESS_KINDS:
                    raise SuppressionError(f"{shown}: unknown suppression ignore({what}); use one of {', '.join(SUPPRESS_KINDS)}")
                if not reason:
                    raise SuppressionError(f"{shown}: suppression ignore({what}) needs a reason after it")
                sup = Suppression(self.display(path), lineno, what, reason)
                self.suppress_lines[(path, lineno)] = sup
                self.facts.suppressions.append(sup)

    def suppression_at(self, path: str, line: int) -> str:
        sup = self.suppress_lines.get((path, line))
        return sup.reason if sup else ""

    def loc(self, c: ci.Cursor) -> tuple[str, int, int, int]:
        """(real path, line, column, offset) where `c` is expanded. The file's name is looked up once per
        file, by libclang's file handle: DPDK headers put ~5000 inline function definitions in front
        of the walk, each checked for its file."""
        f, line, col, off = ci.c_object_p(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        ci.conf.lib.clang_getInstantiationLocation(
            c.location, ctypes.byref(f), ctypes.byref(line), ctypes.byref(col), ctypes.byref(off))
        if not f:
            return "", line.value, col.value, off.value
        handle = ctypes.addressof(f.contents)
        path = self.file_paths.get(handle)
        if path is None:
            path = self.file_paths[handle] = self.realpath(ci.File(f).name)
        return path, line.value, col.value, off.value

    def macro_name(self, c: ci.Cursor) -> str:
        """Name of the macro whose expansion produced `c`, or ""."""
        path, line, col, off = self.loc(c)
        spath, soff = spelling_location(c.location)
        if not path or (self.realpath(spath) == path and soff == off):
            return ""
        m = IDENT.match(self.text(path), off)
        return m.group().decode() if m else ""

    def identifier_at_spelling(self, c: ci.Cursor) -> str:
        spath, soff = spelling_location(c.extent.start)
        if not spath:
            return ""
        m = IDENT.match(self.text(spath), soff)
        return m.group().decode() if m else ""

    # ---- declarations ----------------------------------------------------------------------
    def run(self) -> TuFacts:
        for c in children(self.tu.cursor):
            kind = c.kind
            if kind != CK.VAR_DECL and not (kind == CK.FUNCTION_DECL and c.is_definition()):
                continue  # most top-level cursors are library prototypes and types: skip them cheaply
            path = self.loc(c)[0]
            if not self.in_project(path):
                continue
            self.note_file(path)
            if kind == CK.VAR_DECL:
                usr = self.global_decl(c)
                if usr:
                    self.global_initializer(c, usr)
            else:
                self.facts.functions.append(_FunctionWalker(self, c).run())
        return self.facts

    def global_initializer(self, d: ci.Cursor, usr: str) -> None:
        """`static T *p = &x;`, `fn_t table[] = { f, g };`: values stored before any code runs."""
        init = [x for x in _children(d) if x.kind.is_expression()]
        if not init:
            return
        dest = Ref("global", usr)
        for c in _preorder(init[-1]):
            if c.kind == CK.DECL_REF_EXPR and c.referenced is not None:
                r = c.referenced
                if r.kind == CK.FUNCTION_DECL:
                    fusr = r.get_usr()
                    self.facts.fn_flows.append((dest, fusr))
                    self.facts.address_taken[fusr] = r.type.get_canonical().spelling
                    self.facts.function_names[fusr] = r.spelling
                elif r.kind == CK.VAR_DECL and _is_global_var(r):
                    target = self.global_decl(r)
                    if target:
                        self.facts.flows.append((dest, Ref("global", target)))

    def global_decl(self, d: ci.Cursor, function: str = "") -> str | None:
        """Record a file-scope or static-local variable of a project file; return its USR."""
        usr = d.get_usr()
        if usr in self.seen_globals:
            return usr
        definition = d.get_definition() or d
        path, line, _, _ = self.loc(definition)
        if not self.in_project(path):
            return None
        self.note_file(path)
        self.seen_globals.add(usr)
        if function:
            scope = "static_local"
        elif definition.storage_class == ci.StorageClass.STATIC:
            scope = "static"
        else:
            scope = "global"
        t = definition.type
        canon = t.get_canonical()
        spelling = t.spelling
        self.facts.globals.append(GlobalDecl(
            usr=usr, name=d.spelling, file=path, line=line, scope=scope, function=function, type=spelling,
            tls=definition.tls_kind != ci.TLSKind.NONE,
            atomic_type=canon.kind == TK.ATOMIC or "_Atomic" in spelling,
            is_definition=definition.is_definition(), is_pointer=canon.kind == TK.POINTER,
            is_lock=bool(LOCK_TYPE.search(spelling) or LOCK_TYPE.search(canon.spelling)),
        ))
        return usr


def _is_global_var(d: ci.Cursor | None) -> bool:
    if d is None or d.kind != CK.VAR_DECL:
        return False
    parent = d.semantic_parent
    return parent is None or parent.kind == CK.TRANSLATION_UNIT or d.storage_class == ci.StorageClass.STATIC


# Children of every cursor visited in the current translation unit, keyed by the cursor's fields: the
# walk asks for the same subtrees many times (locals, statements, then each expression's values,
# taint and lock names), and each `get_children()` is a libclang visit with a new ctypes callback.
# Cleared with each translation unit: the keys hold AST addresses.
_child_cache: dict[tuple, list[ci.Cursor]] = {}


def _key(c: ci.Cursor) -> tuple:
    """A cursor's identity within its translation unit (its fields: the AST node it stands for)."""
    d = c.data
    return c._kind_id, c.xdata, d[0], d[1], d[2]


def _children(c: ci.Cursor) -> list[ci.Cursor]:
    """The children of `c` (a shared list: do not modify it)."""
    key = _key(c)
    kids = _child_cache.get(key)
    if kids is None:
        kids = _child_cache[key] = children(c)
    return kids


def children(c: ci.Cursor) -> list[ci.Cursor]:
    """All children of `c`, or an exception: never a silently shortened list.

    `Cursor.get_children` runs a Python callback inside libclang; an exception there (a
    RecursionError while ctypes converts its arguments, say) is printed as "Exception ignored",
    ends the visit early and returns the children seen so far. The visitor here never stops a
    visit itself, so a visit that ended early is a failed one and raises.
    """
    kids: list[ci.Cursor] = []
    errors: list[BaseException] = []

    def visitor(child: ci.Cursor, _parent: ci.Cursor, _data: object) -> int:
        try:
            child._tu = c._tu
            kids.append(child)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, outside libclang
            errors.append(exc)
            return 0  # CXChildVisit_Break
        return 1  # CXChildVisit_Continue

    stopped = ci.conf.lib.clang_visitChildren(c, ci.cursor_visit_callback(visitor), None)
    if errors:
        raise errors[0]
    if stopped:
        raise WalkError(f"libclang's visit of the children of the {c.kind.name} at {_where(c)} failed "
                        f"inside its Python callback")
    return kids


class WalkError(Exception):
    """A walk over the AST could not see all of it; the translation unit is reported as failed."""


def _where(c: ci.Cursor) -> str:
    loc = c.location
    return f"{loc.file.name if loc.file else '?'}:{loc.line}:{loc.column}"


def _preorder(c: ci.Cursor):
    """`c` and its descendants, depth first (Cursor.walk_preorder through the children cache)."""
    stack = [c]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(reversed(_children(x)))


def _strip(c: ci.Cursor) -> ci.Cursor:
    """Skip parentheses, casts and implicit conversions."""
    while True:
        k = c.kind
        if k in (CK.PAREN_EXPR, CK.CSTYLE_CAST_EXPR) or (k == CK.UNEXPOSED_EXPR):
            kids = [x for x in _children(c) if x.kind != CK.TYPE_REF]
            if len(kids) != 1 or (k == CK.UNEXPOSED_EXPR and not kids[0].kind.is_expression()):
                return c
            c = kids[0]
        else:
            return c


def _function_values(e: ci.Cursor):
    """Functions named as values in `e` (not the callees of calls inside it), left to right."""
    stack = [e]
    while stack:
        x = stack.pop()
        if x.kind == CK.DECL_REF_EXPR:
            if x.referenced is not None and x.referenced.kind == CK.FUNCTION_DECL:
                yield x
            continue
        kids = _children(x)
        if x.kind == CK.CALL_EXPR and x.referenced is not None and x.referenced.kind == CK.FUNCTION_DECL:
            kids = kids[1:]  # the first child is the direct callee
        stack.extend(reversed(kids))


def _is_array(t: ci.Type) -> bool:
    return t.get_canonical().kind in ARRAY_KINDS


def _is_byte_pointer(t: ci.Type) -> bool:
    canon = t.get_canonical()
    return canon.kind == TK.POINTER and canon.get_pointee().get_canonical().kind in BYTE_KINDS


def _whole(refs: set[Ref]) -> set[Ref]:
    """Byte arithmetic on a pointer into a field (`(char *)&s.f - offsetof(...)`) may land anywhere
    in the object: the result points into the whole of it."""
    return {Ref("whole", inner=r) for r in refs}


def _pointer_mode(param_type: ci.Type | None) -> str:
    """Through a `const T *` parameter, or a variadic one (printf), a callee only reads."""
    if param_type is None:
        return "read"
    canon = param_type.get_canonical()
    if canon.kind == TK.POINTER and canon.get_pointee().is_const_qualified():
        return "read"
    return "rmw"


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text)


# An expression's text is wanted for short things (a thread argument, a lock); longer is not one of them.
MAX_TEXT_TOKENS = 64


def _token_text(c: ci.Cursor) -> str:
    """The tokens of `c` without whitespace, or "" when there are more than MAX_TEXT_TOKENS.

    For an expression that is a whole macro expansion (`snprintf(out, n, MSG_ARG_INVALID, ...)`)
    libclang tokenizes from the macro's #define to the use: hundreds of tokens per argument in DPDK's
    pipeline CLI, and a text that is not the argument's anyway.
    """
    toks = list(itertools.islice(c.get_tokens(), MAX_TEXT_TOKENS + 1))
    if len(toks) > MAX_TEXT_TOKENS:
        return ""
    return _norm(" ".join(t.spelling for t in toks))


class _FunctionWalker:
    def __init__(self, tw: _TuWalker, fn: ci.Cursor):
        self.tw = tw
        self.fn = fn
        self.usr = fn.get_usr()
        self.name = fn.spelling
        self.params = [p for p in fn.get_arguments()]
        self.param_index = {p.get_usr() or p.spelling: i for i, p in enumerate(self.params)}
        self.local_refs: dict[str, set[Ref]] = {}
        self.local_taint: dict[str, set[str]] = {}
        self.next_id = 0
        self.loop_spans: list[tuple[int, int]] = []
        self.returns: set[Ref] = set()
        self.address_taken: dict[str, str] = {}
        self.handlers: list[tuple[str, str]] = []
        self.top_locals: dict[str, tuple[str, str]] = {}  # usr -> (name, loc) declared outside loops
        self.loop_written: dict[str, str] = {}  # usr -> reason
        self.for_counters: set[str] = set()
        self.escaping: set[str] = set()  # locals whose address is taken: stack objects
        # Results of `taint` and `lvalue_obj` by cursor, kept from pass 2 on, where what they depend on
        # (the locals' refs, taint and escaping, from pass 1) no longer changes: each sub-lvalue of a
        # chain `a->b->...->z` is an access whose object is computed along the rest of the chain, and
        # each step asks for its base's taint (quadratic, then cubic, in the chain's length).
        self.memo: dict[tuple, object] | None = None

    # ---- helpers ---------------------------------------------------------------------------
    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def loc_str(self, c: ci.Cursor) -> tuple[str, int, str]:
        path, line, col, off = self.tw.loc(c)
        return f"{self.tw.display(path)}:{line}:{col}", off, path

    def span(self, off: int) -> tuple[int, int]:
        return self.loop_spans[0] if self.loop_spans else (off, off)

    def local_key(self, d: ci.Cursor) -> str:
        return d.get_usr() or f"{d.spelling}@{d.location.offset}"

    # ---- pass 1: what local pointers may point to, what locals are derived from ----------
    def collect_locals(self, body: ci.Cursor) -> None:
        assigns: list[tuple[str, ci.Cursor]] = []
        for c in _preorder(body):
            if c.kind == CK.UNARY_OPERATOR and unary_kind(c) == UO_ADDR_OF:
                root = _children(c)[0]
                while True:
                    root = _strip(root)
                    if root.kind in (CK.MEMBER_REF_EXPR, CK.ARRAY_SUBSCRIPT_EXPR) and _children(root) \
                            and _strip(_children(root)[0]).type.get_canonical().kind != TK.POINTER:
                        root = _children(root)[0]
                    else:
                        break
                d = root.referenced if root.kind == CK.DECL_REF_EXPR else None
                if d is not None and d.kind == CK.VAR_DECL and not _is_global_var(d):
                    self.escaping.add(self.local_key(d))
            if c.kind == CK.VAR_DECL and not _is_global_var(c):
                init = [x for x in _children(c) if x.kind.is_expression()]
                if init:
                    assigns.append((self.local_key(c), init[-1]))
                    if c.type.get_canonical().kind in ARRAY_KINDS | {TK.RECORD} and next(_function_values(init[-1]), None):
                        self.escaping.add(self.local_key(c))  # a local table of functions: an object to load from
            elif c.kind == CK.BINARY_OPERATOR and c.binary_operator == BO.Assign:
                lhs, rhs = _children(c)[:2]
                lhs = _strip(lhs)
                if lhs.kind == CK.DECL_REF_EXPR and lhs.referenced is not None and lhs.referenced.kind == CK.VAR_DECL \
                        and not _is_global_var(lhs.referenced):
                    assigns.append((self.local_key(lhs.referenced), rhs))
            elif (c.kind == CK.COMPOUND_ASSIGNMENT_OPERATOR or (c.kind == CK.UNARY_OPERATOR and unary_kind(c) in (
                    UO_POST_INC, UO_POST_DEC, UO_PRE_INC, UO_PRE_DEC))) and _is_byte_pointer(c.type):
                target = _strip(_children(c)[0])  # `p += off`, `p++` on a `char *` local: anywhere in its object
                d = target.referenced if target.kind == CK.DECL_REF_EXPR else None
                if d is not None and d.kind == CK.VAR_DECL and not _is_global_var(d):
                    assigns.append((self.local_key(d), c))
        for _ in range(3):  # locals derived from locals: a few rounds reach a fixpoint in practice
            changed = False
            for key, expr in assigns:
                refs = self.value_refs(expr, record=False)
                taint = self.taint(expr)
                old_r = self.local_refs.setdefault(key, set())
                old_t = self.local_taint.setdefault(key, set())
                if not refs <= old_r or not taint <= old_t:
                    old_r |= refs
                    old_t |= taint
                    changed = True
            if not changed:
                break

    # ---- expressions: what they point to, what they depend on -----------------------------
    def value_refs(self, e: ci.Cursor, record: bool = True) -> set[Ref]:
        e = _strip(e)
        k = e.kind
        if e.type.get_canonical().kind not in POINTERISH and k not in (CK.INIT_LIST_EXPR, CK.COMPOUND_LITERAL_EXPR):
            return set()
        if k == CK.DECL_REF_EXPR:
            d = e.referenced
            if d is None:
                return set()
            if d.kind == CK.VAR_DECL and _is_global_var(d):
                usr = self.global_usr(d, record)
                if usr is None:
                    return set()
                if _is_array(d.type):
                    return {Ref("global", usr)}
                return {Ref("load", inner=Ref("global", usr))}
            if d.kind == CK.PARM_DECL:
                idx = self.param_index.get(d.get_usr() or d.spelling)
                return {Ref("param", self.usr, idx)} if idx is not None else set()
            if d.kind == CK.VAR_DECL:
                if _is_array(d.type):
                    return {self.stack_ref(d, record)}
                return set(self.local_refs.get(self.local_key(d), ()))
            return set()
        if k == CK.UNARY_OPERATOR and unary_kind(e) == UO_ADDR_OF:
            inner = _strip(_children(e)[0])
            if inner.kind == CK.DECL_REF_EXPR and inner.referenced is not None \
                    and inner.referenced.kind in (CK.VAR_DECL, CK.PARM_DECL) and not _is_global_var(inner.referenced):
                return {self.stack_ref(inner.referenced, record)}
            refs, _, _ = self.lvalue_obj(inner, record)
            return refs
        if k in (CK.MEMBER_REF_EXPR, CK.ARRAY_SUBSCRIPT_EXPR) or (k == CK.UNARY_OPERATOR and unary_kind(e) == UO_DEREF):
            refs, _, _ = self.lvalue_obj(e, record)
            if _is_array(e.type):  # an embedded array: its address is inside the object
                return refs
            return {Ref("load", inner=r) for r in refs}  # a pointer stored in the object
        if k == CK.INIT_LIST_EXPR or k == CK.COMPOUND_LITERAL_EXPR:
            out: set[Ref] = set()
            for x in _children(e):
                kids = _children(x)
                if x.kind == CK.UNEXPOSED_EXPR and kids and kids[0].kind == CK.MEMBER_REF:
                    x = kids[-1]  # a designated initializer `.field = value`
                if x.kind.is_expression():
                    out |= self.value_refs(x, record)
            return out
        if k == CK.CALL_EXPR:
            callee = e.referenced
            if callee is None or callee.kind != CK.FUNCTION_DECL:
                return set()
            name = callee.spelling
            if self.tw.sem.role(name, "alloc") or self.tw.sem.role(name, "opaque_create"):
                return {self.alloc_ref(e, name)}
            return {Ref("ret", callee.get_usr())}
        if k in (CK.BINARY_OPERATOR, CK.CONDITIONAL_OPERATOR, CK.COMPOUND_ASSIGNMENT_OPERATOR):
            kids = _children(e)
            if k == CK.CONDITIONAL_OPERATOR:
                kids = kids[1:]
            elif k == CK.BINARY_OPERATOR and e.binary_operator == BO.Assign:
                kids = kids[1:]
            out: set[Ref] = set()
            for x in kids:
                out |= self.value_refs(x, record)
            if k != CK.CONDITIONAL_OPERATOR and e.binary_operator in (BO.Add, BO.Sub, BO.AddAssign, BO.SubAssign) \
                    and _is_byte_pointer(e.type):
                return _whole(out)
            return out
        if k == CK.UNARY_OPERATOR and unary_kind(e) in (UO_POST_INC, UO_POST_DEC, UO_PRE_INC, UO_PRE_DEC):
            refs = self.value_refs(_children(e)[0], record)
            return _whole(refs) if _is_byte_pointer(e.type) else refs
        return set()

    def lvalue_obj(self, e: ci.Cursor, record: bool = True) -> tuple[set[Ref], set[str], list[ci.Cursor]]:
        """The objects an lvalue lives in, the taint of its element selection, and the
        sub-expressions whose values are read to compute its address (fresh containers: the memo
        keeps its own)."""
        if self.memo is None:
            return self._lvalue_obj(e, record)
        key = ("lvalue", record, _key(e))
        if key not in self.memo:
            self.memo[key] = self._lvalue_obj(e, record)
        refs, taint, subs = self.memo[key]
        return set(refs), set(taint), list(subs)

    def _lvalue_obj(self, e: ci.Cursor, record: bool) -> tuple[set[Ref], set[str], list[ci.Cursor]]:
        e = _strip(e)
        k = e.kind
        if k == CK.DECL_REF_EXPR:
            d = e.referenced
            if d is not None and d.kind == CK.VAR_DECL and _is_global_var(d):
                usr = self.global_usr(d, record)
                return ({Ref("global", usr)} if usr else set()), set(), []
            if d is not None and d.kind == CK.VAR_DECL and self.local_key(d) in self.escaping:
                return {self.stack_ref(d, record)}, set(), []
            return set(), set(), []
        if k == CK.MEMBER_REF_EXPR:
            kids = _children(e)
            if not kids:
                return set(), set(), []
            base = kids[0]
            if _strip(base).type.get_canonical().kind == TK.POINTER:
                refs, taint, subs = self.value_refs(base, record), self.selection_taint(base), [base]
            else:
                refs, taint, subs = self.lvalue_obj(base, record)
            return self.field_refs(e, refs), taint, subs
        if k == CK.ARRAY_SUBSCRIPT_EXPR:
            base, idx = _children(e)[:2]
            sbase = _strip(base)
            taint = self.taint(idx)
            if _is_array(sbase.type):
                refs, t2, subs = self.lvalue_obj(sbase, record)
                return refs, taint | t2, subs + [idx]
            refs = self.value_refs(base, record)
            if _is_byte_pointer(sbase.type):
                refs = _whole(refs)
            return refs, taint | self.selection_taint(base), [base, idx]
        if k == CK.UNARY_OPERATOR and unary_kind(e) == UO_DEREF:
            p = _children(e)[0]
            return self.value_refs(p, record), self.selection_taint(p), [p]
        if k == CK.CALL_EXPR:
            return self.value_refs(e, record), set(), [e]
        return set(), set(), [e]

    def field_refs(self, member: ci.Cursor, refs: set[Ref]) -> set[Ref]:
        """The member `member` names inside each of `refs`: a field object of a struct. A union's
        members overlap, so a union stays one object; a struct's bit-fields share one member."""
        f = member.referenced
        parent = f.semantic_parent if f is not None and f.kind == CK.FIELD_DECL else None
        if parent is None or parent.kind != CK.STRUCT_DECL or not refs:
            return refs
        record = parent.get_usr()
        name = BITFIELDS if f.is_bitfield() else f.spelling
        if not record or not name:
            return refs
        if (record, name) not in self.tw.facts.fields:
            t = f.type
            self.tw.facts.fields[(record, name)] = FieldDecl(record, name, t.spelling, bool(
                LOCK_TYPE.search(t.spelling) or LOCK_TYPE.search(t.get_canonical().spelling)))
        return {Ref("field", record, inner=r, member=name) for r in refs}

    def selection_taint(self, pointer_expr: ci.Cursor) -> set[str]:
        """A pointer selected per thread (a thread argument, &arr[core]) makes its target per thread."""
        return {t for t in self.taint(pointer_expr) if t == "core" or t.startswith("param:")}

    def taint(self, e: ci.Cursor) -> set[str]:
        """What makes this value per-thread: "core" (the core id, thread-local storage) or
        "param:K" (parameter K, or a field of the struct it points to). Data read through arrays
        or computed by calls (hashes of packet fields) is not an identity and carries none."""
        if self.memo is None:
            return self._taint(e)
        key = ("taint", _key(e))
        if key not in self.memo:
            self.memo[key] = self._taint(e)
        return set(self.memo[key])

    def _taint(self, e: ci.Cursor) -> set[str]:
        e = _strip(e)
        k = e.kind
        if k == CK.DECL_REF_EXPR and e.referenced is not None:
            d = e.referenced
            if d.kind == CK.PARM_DECL:
                idx = self.param_index.get(d.get_usr() or d.spelling)
                return {f"param:{idx}"} if idx is not None else set()
            if d.kind == CK.VAR_DECL:
                if _is_global_var(d):
                    return {"core"} if d.tls_kind != ci.TLSKind.NONE else set()
                return set(self.local_taint.get(self.local_key(d), ()))
            return set()
        if k == CK.CALL_EXPR:
            callee = e.referenced
            if callee is not None and self.tw.sem.role(callee.spelling, "core_identity"):
                return {"core"}
            return set()
        if k == CK.MEMBER_REF_EXPR:
            kids = _children(e)
            return self.taint(kids[0]) if kids else set()
        if k == CK.UNARY_OPERATOR:
            kids = _children(e)
            if kids and unary_kind(e) == UO_ADDR_OF:
                return self.selection(kids[0])
            return self.taint(kids[0]) if kids else set()
        if k == CK.ARRAY_SUBSCRIPT_EXPR and e.type.get_canonical().kind in POINTERISH:
            return self.selection(e)  # a pointer picked from a table by a per-thread index
        if k == CK.BINARY_OPERATOR:
            return self.operator_taint(e)
        if k in (CK.CONDITIONAL_OPERATOR, CK.UNEXPOSED_EXPR, CK.PAREN_EXPR, CK.CSTYLE_CAST_EXPR):
            out: set[str] = set()
            for x in _children(e):
                if x.kind.is_expression():
                    out |= self.taint(x)
            return out
        return set()

    def operator_taint(self, e: ci.Cursor) -> set[str]:
        """Taint of a binary operator. `core * 4 + 1`, `id % n_workers` stay per-thread;
        `(id ^ port) % N` mixes in packet data and is not: every operand that is not a constant or a
        global must carry taint (an operator operand always must). `a + b + ... + z` nests as deep as
        it is long, so the operators are visited from an explicit list, children after parents,
        and evaluated in reverse: every child before its parent."""
        nodes: list[tuple[ci.Cursor, int]] = [(e, -1)]
        i = 0
        while i < len(nodes):
            x = nodes[i][0]
            if x.kind == CK.BINARY_OPERATOR:
                nodes.extend((_strip(c), i) for c in _children(x))
            i += 1
        acc: list[set[str]] = [set() for _ in nodes]
        for j in range(len(nodes) - 1, 0, -1):
            x, parent = nodes[j]
            if x.kind == CK.BINARY_OPERATOR:
                t = acc[j]
                if not t:
                    return set()
            else:
                t = self.taint(x)
                if not t and not self.neutral(x):
                    return set()
            acc[parent] |= t
        return acc[0]

    def neutral(self, e: ci.Cursor) -> bool:
        """A constant or a global: combining a per-thread value with it keeps it per-thread."""
        e = _strip(e)
        if e.kind in (CK.INTEGER_LITERAL, CK.CXX_UNARY_EXPR, CK.CHARACTER_LITERAL):
            return True
        if e.kind == CK.DECL_REF_EXPR and e.referenced is not None:
            d = e.referenced
            return d.kind == CK.ENUM_CONSTANT_DECL or (d.kind == CK.VAR_DECL and _is_global_var(d))
        return False

    def selection(self, e: ci.Cursor) -> set[str]:
        """Taint of the element an lvalue selects: `arr[core]`, `args[i].field`, `p->x`."""
        e = _strip(e)
        kids = _children(e)
        if e.kind == CK.ARRAY_SUBSCRIPT_EXPR and len(kids) >= 2:
            return self.taint(kids[1]) | self.selection(kids[0])
        if e.kind == CK.MEMBER_REF_EXPR and kids:
            return self.selection(kids[0])
        return self.taint(e)

    def global_usr(self, d: ci.Cursor, record: bool) -> str | None:
        parent = d.semantic_parent
        function = ""
        if parent is not None and parent.kind == CK.FUNCTION_DECL:
            function = parent.spelling
        if not record:
            path = self.tw.loc(d.get_definition() or d)[0]
            return d.get_usr() if self.tw.in_project(path) else None
        return self.tw.global_decl(d, function)

    def stack_ref(self, d: ci.Cursor, record: bool) -> Ref:
        loc, _, path = self.loc_str(d)
        if record:
            _, line, _, _ = self.tw.loc(d)
            site = StackSite(loc, self.tw.display(path), line, self.name, d.spelling)
            if site not in self.tw.facts.stacks:
                self.tw.facts.stacks.append(site)
        return Ref("stack", loc)

    def alloc_ref(self, call: ci.Cursor, name: str) -> Ref:
        """The heap object an allocation call returns. Its site is recorded even when the value is
        only followed through locals (pass 1): a handle kept in a local (`r = rte_ring_create(..)`)
        and handed to threads is still one object."""
        loc, _, path = self.loc_str(call)
        if all(s.key != loc for s in self.tw.facts.allocs):
            _, line, _, _ = self.tw.loc(call)
            opaque = self.tw.sem.role(name, "opaque_create") is not None
            self.tw.facts.allocs.append(
                AllocSite(loc, self.tw.display(path), line, self.name, name, self.assigned_name(call), opaque))
        return Ref("alloc", loc)

    def library_ref(self, call: ci.Cursor, name: str, obj: str) -> Ref:
        """The object a model names for calls whose handle is an integer (`object = "rte_event_dev"`):
        one per name, whatever the id, declared (for the report) at its first call in the unit."""
        key = f"library:{obj}"
        if all(s.key != key for s in self.tw.facts.allocs):
            _, line, _, _ = self.tw.loc(call)
            _, _, path = self.loc_str(call)
            self.tw.facts.allocs.append(AllocSite(key, self.tw.display(path), line, self.name, name, obj, True))
        return Ref("alloc", key)

    def assigned_name(self, call: ci.Cursor) -> str:
        """The variable an allocation is stored into: `x = malloc()` / `T *x = malloc()`."""
        text = self.tw.text(self.tw.loc(call)[0])
        off = self.tw.loc(call)[3]
        line_start = text.rfind(b"\n", 0, off) + 1
        m = re.search(rb"([A-Za-z_][\w.\->\[\]]*)\s*=\s*(\([^)]*\)\s*)?$", text[line_start:off])
        return m.group(1).decode() if m else ""

    # ---- pass 2: events --------------------------------------------------------------------
    def run(self) -> FunctionFacts:
        body = next((c for c in _children(self.fn) if c.kind == CK.COMPOUND_STMT), None)
        events: list = []
        if body is not None:
            self.collect_locals(body)
            self.memo = {}
            self.stmt(body, events, depth=0)
        path, line, _, _ = self.tw.loc(self.fn)
        loop_state = []
        for usr, (name, loc) in self.top_locals.items():
            reason = self.loop_written.get(usr)
            if reason and usr not in self.for_counters:
                loop_state.append(LocalState(name, loc, reason))
        return FunctionFacts(
            usr=self.usr, name=self.name, file=self.tw.display(path), line=line,
            type=self.fn.type.get_canonical().spelling,
            params=tuple(p.spelling for p in self.params), events=tuple(events),
            returns=tuple(sorted(self.returns, key=repr)),
            address_taken=tuple(sorted(self.address_taken)),
            fn_types=tuple(sorted(self.address_taken.items())),
            loop_state=tuple(loop_state), signal_handlers=tuple(self.handlers),
        )

    def stmt(self, c: ci.Cursor, out: list, depth: int) -> None:
        k = c.kind
        kids = _children(c)
        if k == CK.COMPOUND_STMT:
            for x in kids:
                self.stmt(x, out, depth)
        elif k == CK.IF_STMT:
            cond, rest = kids[0], kids[1:]
            self.expr(cond, out)
            alts = []
            for branch in rest[:2]:
                ev: list = []
                self.stmt(branch, ev, depth)
                alts.append(tuple(ev))
            if len(alts) < 2:
                alts.append(())
            out.append(Branch(tuple(alts)))
        elif k in (CK.WHILE_STMT, CK.FOR_STMT, CK.DO_STMT):
            if k == CK.FOR_STMT and len(kids) > 1:
                first = kids[0]
                if first.kind == CK.DECL_STMT or (first.kind == CK.BINARY_OPERATOR and first.binary_operator == BO.Assign):
                    self.stmt(first, out, depth)
                    self.note_for_counter(first)
                    kids = kids[1:]
            ext = c.extent
            self.loop_spans.append((ext.start.offset, ext.end.offset))
            body: list = []  # condition, increment and body (a do-while's body runs first; close enough)
            for x in kids:
                self.stmt(x, body, depth + 1)
            self.loop_spans.pop()
            out.append(Loop(tuple(body)))
        elif k == CK.SWITCH_STMT:
            self.expr(kids[0], out)
            ev = []
            for x in kids[1:]:
                self.stmt(x, ev, depth)
            out.append(Branch((tuple(ev), ())))
        elif k == CK.CASE_STMT:
            for x in kids[1:]:
                self.stmt(x, out, depth)
        elif k in (CK.DEFAULT_STMT, CK.LABEL_STMT):
            for x in kids:
                self.stmt(x, out, depth)
        elif k == CK.RETURN_STMT:
            for x in kids:
                self.expr(x, out)
                self.returns |= self.value_refs(x)
            out.append(Exit("return"))
        elif k in (CK.BREAK_STMT, CK.CONTINUE_STMT, CK.GOTO_STMT):
            out.append(Exit({CK.BREAK_STMT: "break", CK.CONTINUE_STMT: "continue"}.get(k, "goto")))
        elif k == CK.DECL_STMT:
            for d in kids:
                if d.kind == CK.VAR_DECL:
                    self.local_decl(d, out, depth)
        elif k in (CK.NULL_STMT, CK.ASM_STMT):
            return
        elif k.is_expression() or k == CK.UNEXPOSED_STMT:
            self.expr(c, out, discarded=True)
        else:
            for x in kids:
                self.stmt(x, out, depth)

    def note_for_counter(self, init: ci.Cursor) -> None:
        for c in _preorder(init):
            if c.kind == CK.VAR_DECL:
                self.for_counters.add(self.local_key(c))
            elif c.kind == CK.DECL_REF_EXPR and c.referenced is not None and c.referenced.kind == CK.VAR_DECL:
                self.for_counters.add(self.local_key(c.referenced))

    def local_decl(self, d: ci.Cursor, out: list, depth: int) -> None:
        if _is_global_var(d):  # a static local: a global with a function scope, initialized at load
            usr = self.tw.global_decl(d, self.name)
            if usr:
                self.tw.global_initializer(d, usr)
            return
        init = [x for x in _children(d) if x.kind.is_expression()]
        key = self.local_key(d)
        if depth == 0:
            loc, _, _ = self.loc_str(d)
            self.top_locals[key] = (d.spelling, loc)
            if init:
                call = _strip(init[-1])
                if call.kind == CK.CALL_EXPR and call.referenced is not None:
                    name = call.referenced.spelling
                    if self.tw.sem.role(name, "opaque_create"):
                        self.loop_written[key] = f"holds library state created by {name}() before the loop"
        if init and key in self.escaping:  # `struct arg a = { .ctx = &ctx };` stores into a stack object
            dest = self.stack_ref(d, True)
            for ref in self.value_refs(init[-1]):
                self.tw.facts.flows.append((dest, ref))
            for c in _function_values(init[-1]):
                self.tw.facts.fn_flows.append((dest, c.referenced.get_usr()))
        if init:
            self.expr(init[-1], out)
            if "sigaction" in d.type.spelling:
                for c in _function_values(init[-1]):
                    self.note_function_value(c, handler=True)

    # ---- expressions -----------------------------------------------------------------------
    def expr(self, c: ci.Cursor, out: list, discarded: bool = False) -> None:
        k = c.kind
        if k == CK.BINARY_OPERATOR:
            kids = _children(c)
            if len(kids) < 2:
                return
            lhs, rhs = kids[0], kids[1]
            if c.binary_operator == BO.Assign:
                self.expr(rhs, out)
                self.lvalue_access(lhs, "write", False, out)
                self.note_store(lhs, rhs)
            elif c.binary_operator in (BO.LAnd, BO.LOr):
                # `a && b && ... && z` nests to the left: down the chain first, then each right side
                # in order as a branch, as a recursion on the left operand would.
                rights = [rhs]
                while True:
                    s = _strip(lhs)
                    skids = _children(s) if s.kind == CK.BINARY_OPERATOR else []
                    if len(skids) < 2 or s.binary_operator not in (BO.LAnd, BO.LOr):
                        break
                    lhs = skids[0]
                    rights.append(skids[1])
                self.expr(lhs, out)
                for r in reversed(rights):
                    ev: list = []
                    self.expr(r, ev)
                    out.append(Branch((tuple(ev), ())))
            else:
                for x in self.operands(c):
                    self.expr(x, out)
        elif k == CK.COMPOUND_ASSIGNMENT_OPERATOR:
            lhs, rhs = _children(c)[:2]
            self.expr(rhs, out)
            self.lvalue_access(lhs, "rmw", c.binary_operator in (BO.AddAssign, BO.SubAssign), out)
        elif k == CK.UNARY_OPERATOR:
            u = unary_kind(c)
            kids = _children(c)
            if not kids:
                return
            if u in (UO_POST_INC, UO_POST_DEC, UO_PRE_INC, UO_PRE_DEC):
                self.lvalue_access(kids[0], "rmw", True, out)
            elif u == UO_ADDR_OF:
                _, _, subs = self.lvalue_obj(kids[0])
                for s in subs:
                    self.expr(s, out)
            elif u == UO_DEREF:
                self.lvalue_access(c, "read", False, out)
            else:
                self.expr(kids[0], out)
        elif k in (CK.DECL_REF_EXPR, CK.MEMBER_REF_EXPR, CK.ARRAY_SUBSCRIPT_EXPR):
            d = c.referenced if k == CK.DECL_REF_EXPR else None
            if d is not None and d.kind == CK.FUNCTION_DECL:
                self.note_function_value(c)
            elif _is_array(c.type):  # an array used as a pointer: its address, not a load
                _, _, subs = self.lvalue_obj(c)
                for s in subs:
                    self.expr(s, out)
            else:
                self.lvalue_access(c, "read", False, out)
        elif k == CK.CALL_EXPR:
            self.call(c, out, discarded)
        elif k == CK.CONDITIONAL_OPERATOR:
            kids = _children(c)
            self.expr(kids[0], out)
            alts = []
            for x in kids[1:3]:
                ev = []
                self.expr(x, ev)
                alts.append(tuple(ev))
            out.append(Branch(tuple(alts)))
        elif k == CK.CXX_UNARY_EXPR:  # sizeof/alignof: no evaluation
            return
        elif k == CK.UNEXPOSED_EXPR and self.is_atomic_expr(c):
            self.atomic_expr(c, out, discarded)
        elif k == CK.StmtExpr:
            for x in _children(c):
                self.stmt(x, out, 0 if not self.loop_spans else 1)
        else:
            for x in _children(c):
                if x.kind.is_expression() or x.kind == CK.COMPOUND_STMT:
                    if x.kind == CK.COMPOUND_STMT:
                        self.stmt(x, out, 1)
                    else:
                        self.expr(x, out)

    def operands(self, c: ci.Cursor) -> list[ci.Cursor]:
        """The operands of the arithmetic, comparison and bitwise operator `c`, left to right, looking
        through nested operators of those kinds, parentheses and implicit conversions: evaluating
        each in order is what `expr` on `c` does, without a recursion as deep as a long `a + b + ...`
        or a macro nesting `((x) + 1)` two hundred times."""
        out = []
        stack = list(reversed(_children(c)[:2]))
        while stack:
            x = stack.pop()
            kids = _children(x)
            if x.kind == CK.BINARY_OPERATOR and len(kids) >= 2 and x.binary_operator not in (BO.Assign, BO.LAnd, BO.LOr):
                stack.extend(reversed(kids[:2]))
            elif x.kind in (CK.PAREN_EXPR, CK.UNEXPOSED_EXPR) and not self.is_atomic_expr(x) \
                    and all(y.kind.is_expression() for y in kids):
                stack.extend(reversed(kids))
            else:
                out.append(x)
        return out

    def note_function_value(self, c: ci.Cursor, handler: bool = False) -> None:
        if c.kind != CK.DECL_REF_EXPR or c.referenced is None or c.referenced.kind != CK.FUNCTION_DECL:
            return
        d = c.referenced
        usr = d.get_usr()
        self.address_taken[usr] = d.type.get_canonical().spelling
        self.tw.facts.function_names[usr] = d.spelling
        if handler:
            self.handlers.append((usr, self.loc_str(c)[0]))

    def note_store(self, lhs: ci.Cursor, rhs: ci.Cursor) -> None:
        s = _strip(lhs)
        if s.kind == CK.MEMBER_REF_EXPR and s.spelling in ("sa_handler", "sa_sigaction"):
            for c in _function_values(rhs):
                self.note_function_value(c, handler=True)
        dests, _, _ = self.lvalue_obj(s)
        if dests:
            values = self.value_refs(rhs)
            if s.type.get_canonical().kind == TK.RECORD:  # a struct copy: the pointers stored in the source
                values |= {Ref("load", inner=r) for r in self.lvalue_obj(rhs)[0]}
            funcs = [c.referenced.get_usr() for c in _function_values(rhs)]
            for dest in dests:
                for ref in values:
                    self.tw.facts.flows.append((dest, ref))
                for f in funcs:
                    self.tw.facts.fn_flows.append((dest, f))
        if s.kind == CK.DECL_REF_EXPR and s.referenced is not None:
            d = s.referenced
            if d.kind == CK.VAR_DECL and not _is_global_var(d) and self.loop_spans:
                key = self.local_key(d)
                if key in self.top_locals:
                    self.loop_written.setdefault(key, "written inside the loop and read in later iterations")
        for c in _function_values(rhs):
            self.note_function_value(c)

    def lvalue_access(self, target: ci.Cursor, mode: str, commutative: bool, out: list,
                      atomic: bool = False, force_refs: set[Ref] | None = None) -> None:
        t = _strip(target)
        refs, taint, subs = self.lvalue_obj(t)
        for s in subs:
            if s is not t:
                self.expr(s, out)
        if force_refs is not None:
            refs = force_refs
        if t.kind == CK.DECL_REF_EXPR and t.referenced is not None and t.referenced.kind == CK.VAR_DECL \
                and not _is_global_var(t.referenced) and mode != "read" and self.loop_spans:
            key = self.local_key(t.referenced)
            if key in self.top_locals:
                self.loop_written.setdefault(key, "written inside the loop and read in later iterations")
        if not refs:
            return
        is_atomic = atomic or t.type.get_canonical().kind == TK.ATOMIC or "_Atomic" in t.type.spelling
        self.emit_access(t, refs, mode, is_atomic, commutative, taint, out)

    def emit_access(self, at: ci.Cursor, refs: set[Ref], mode: str, atomic: bool, commutative: bool,
                    taint: set[str], out: list) -> None:
        loc, off, path = self.loc_str(at)
        line = self.tw.loc(at)[1]
        suppressed = self.tw.suppression_at(path, line)
        macro = self.tw.macro_name(at)
        for ref in sorted(refs, key=repr):
            out.append(AccessFact(
                id=self.new_id(), ref=ref, loc=loc, offset=off, mode=mode, atomic=atomic,
                commutative_op=commutative, index_taint=tuple(sorted(taint)), macro=macro,
                suppressed=suppressed, span=self.span(off),
            ))

    def is_atomic_expr(self, c: ci.Cursor) -> bool:
        name = self.tw.identifier_at_spelling(c)
        return bool(name) and self.tw.sem.role(name, "atomic") is not None and len(_children(c)) >= 1

    def atomic_expr(self, c: ci.Cursor, out: list, discarded: bool) -> None:
        name = self.tw.identifier_at_spelling(c)
        role = self.tw.sem.role(name, "atomic")
        kids = _children(c)
        obj = kids[0]
        for x in kids[1:]:
            self.expr(x, out)
        self.atomic_access(obj, role.get("mode"), self.commutative_name(name, discarded), c, out)

    @staticmethod
    def commutative_name(name: str, discarded: bool) -> bool:
        return discarded and bool(re.search(r"(add|sub|inc|dec)", name)) and "cmpset" not in name

    def atomic_access(self, pointer: ci.Cursor, mode: str, commutative: bool, at: ci.Cursor, out: list) -> None:
        p = _strip(pointer)
        if p.kind == CK.UNARY_OPERATOR and unary_kind(p) == UO_ADDR_OF:
            inner = _children(p)[0]
            refs, taint, subs = self.lvalue_obj(inner)
        else:
            refs, taint, subs = self.value_refs(pointer), self.selection_taint(pointer), [pointer]
        for s in subs:
            self.expr(s, out)
        if refs:
            self.emit_access(at, refs, mode, True, commutative, taint, out)

    def arg_fact(self, a: ci.Cursor, param_type: ci.Type | None) -> ArgFact:
        s = _strip(a)
        funcs = []
        for c in _function_values(a):
            funcs.append(c.referenced.get_usr())
            self.note_function_value(c)
        text = _token_text(a)
        ptr_type = ""
        canon = s.type.get_canonical()
        if canon.kind == TK.POINTER and canon.get_pointee().kind in (TK.FUNCTIONPROTO, TK.FUNCTIONNOPROTO):
            ptr_type = canon.get_pointee().spelling
        return ArgFact(
            refs=tuple(sorted(self.value_refs(a), key=repr)), funcs=tuple(funcs),
            taint=tuple(sorted(self.taint(a))), text=text, lock=self.lock_name(a), ptr_type=ptr_type,
            mode=_pointer_mode(param_type),
        )

    def lock_name(self, a: ci.Cursor) -> str:
        """A stable name for a lock object: `flow_lock`, `locks[]`, or for a field `PATH|tag::field`
        where PATH is `tbl.lock`, `g_tbl->lock` or `$K->field` (through parameter K, resolved by the
        analysis at each call) and `tag::field` names the field by its struct, wherever it is reached."""
        s = _strip(a)
        if s.kind == CK.UNARY_OPERATOR and unary_kind(s) == UO_ADDR_OF:
            s = _strip(_children(s)[0])
        return self._lock_path(s)

    def _lock_path(self, s: ci.Cursor) -> str:
        s = _strip(s)
        if s.kind == CK.DECL_REF_EXPR and s.referenced is not None:
            d = s.referenced
            if d.kind == CK.PARM_DECL:
                idx = self.param_index.get(d.get_usr() or d.spelling)
                return f"${idx}"
            return d.spelling if _is_global_var(d) else f"local:{d.spelling}"
        if s.kind == CK.ARRAY_SUBSCRIPT_EXPR:
            return self._lock_path(_children(s)[0]) + "[]"
        if s.kind == CK.MEMBER_REF_EXPR:
            kids = _children(s)
            if not kids:
                return s.spelling
            base = _strip(kids[0])
            arrow = base.type.get_canonical().kind == TK.POINTER
            inner = self._lock_path(base)
            tag = (base.type.get_canonical().get_pointee() if arrow else base.type.get_canonical()).spelling
            tag = re.sub(r"^(struct|union)\s+", "", tag)
            fallback = f"{tag}::{s.spelling}"
            if inner.startswith("local:") or not inner:
                return fallback
            return f"{inner.split('|')[0]}{'->' if arrow else '.'}{s.spelling}|{fallback}"
        return _token_text(s) or "?"

    def call(self, c: ci.Cursor, out: list, discarded: bool) -> None:
        callee = c.referenced
        args = [a for a in c.get_arguments() if a is not None]
        direct = callee is not None and callee.kind == CK.FUNCTION_DECL
        name = callee.spelling if direct else ""
        loc, off, _ = self.loc_str(c)
        roles = self.tw.sem.lookup(name) if direct else []
        kinds = {r.kind for r in roles}
        if not direct:
            kids = _children(c)
            if kids:
                self.expr(kids[0], out)
        if "atomic" in kinds:
            role = next(r for r in roles if r.kind == "atomic")
            obj_i = role.get("object_arg")
            for i, a in enumerate(args):
                if i != obj_i:
                    self.expr(a, out)
            if obj_i < len(args):
                self.atomic_access(args[obj_i], role.get("mode"), self.commutative_name(name, discarded), c, out)
        elif "lock" in kinds:
            role = next(r for r in roles if r.kind == "lock")
            for i, a in enumerate(args):
                if i != role.get("lock_arg"):
                    self.expr(a, out)
        else:
            for a in args:
                self.expr(a, out)
        if "opaque_access" in kinds:
            role = next(r for r in roles if r.kind == "opaque_access")
            h = role.get("handle_arg")
            if role.get("object"):  # an integer handle (an event device id): the library's named object
                self.emit_access(c, {self.library_ref(c, name, role.get("object"))}, role.get("mode"),
                                 role.get("thread_safe"), False, (), out)
            elif h < len(args):
                refs = self.value_refs(args[h])
                if refs:
                    self.emit_access(c, refs, role.get("mode"), role.get("thread_safe"), False,
                                     self.selection_taint(args[h]), out)
        param_types: list = []
        if direct and callee.type.kind == TK.FUNCTIONPROTO:
            param_types = list(callee.type.argument_types())
        arg_facts = tuple(self.arg_fact(a, param_types[i] if i < len(param_types) else None) for i, a in enumerate(args))
        if "signal" in kinds:
            role = next(r for r in roles if r.kind == "signal")
            h = role.get("handler_arg")
            if h < len(args):
                for x in _function_values(args[h]):
                    self.note_function_value(x, handler=True)
        callee_type = ""
        if not direct:
            kids = _children(c)
            if kids:
                t = _strip(kids[0]).type.get_canonical()
                callee_type = (t.get_pointee() if t.kind == TK.POINTER else t).spelling
        out.append(CallFact(
            id=self.new_id(), callee=name, callee_usr=callee.get_usr() if direct else "",
            callee_type=callee_type, loc=loc, offset=off, in_loop=bool(self.loop_spans), args=arg_facts,
            macro=self.tw.macro_name(c), span=self.span(off),
        ))
        if direct:
            self.tw.facts.function_names[callee.get_usr()] = name
