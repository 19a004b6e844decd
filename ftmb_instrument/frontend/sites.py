"""Exact source extents for the rewriter: statements, their parts, calls and macro invocations.

The analysis names accesses and calls by location ("path:line:col", the expansion location). The
rewriter needs more: the statement that contains a location, the byte ranges of its condition,
initializers or returned value, and for a call its callee token, parentheses and arguments. This
pass scans the translation unit the analysis parsed (with the preprocessing record, to see macro
invocations: clang_tu.parse_translation_unit with `sites`) and returns these extents, per project
file, as plain data.

All offsets are byte offsets into the file as it is on disk, end exclusive. A statement or call
that a macro expansion produced is described by the extent of the invocation in the file, never
by a position inside the macro's definition: `from_macro` marks it, and the rewriter then only
ever edits around the whole invocation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from clang import cindex as ci

from ..deep import TOO_DEEP, too_deep
from .clang_tu import UO_ADDR_OF, WalkError, _children, _strip, _under, spelling_location, unary_kind

CK = ci.CursorKind
TK = ci.TypeKind

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_QUALS = re.compile(r"\b(const|volatile|restrict|_Atomic)\b")
_ATOMIC_WRAP = re.compile(r"^_Atomic\((.*)\)$")

CONTROL = {
    CK.IF_STMT: "if", CK.WHILE_STMT: "while", CK.DO_STMT: "do", CK.FOR_STMT: "for",
    CK.SWITCH_STMT: "switch",
}
SIMPLE_OTHER = {CK.BREAK_STMT, CK.CONTINUE_STMT, CK.GOTO_STMT, CK.NULL_STMT, CK.ASM_STMT, CK.INDIRECT_GOTO_STMT}


@dataclass(frozen=True)
class Part:
    """An expression inside a statement that can be wrapped on its own."""

    role: str  # "cond" | "init" | "inc" | "value" (returned value, variable initializer)
    start: int
    end: int
    shape: str  # "value" | "bitfield" (no __auto_type) | "void" | "initlist" (cannot be wrapped)


@dataclass(frozen=True)
class Stmt:
    kind: str  # "expr" | "decl" | "return" | "if" | "while" | "do" | "for" | "switch" | "compound" | "label" | "other"
    start: int
    end: int  # past the terminating ';' for expr/decl/return/other statements
    parent: str  # kind of the enclosing statement ("" for a function body)
    parts: tuple[Part, ...]
    function: str
    from_macro: str  # name of the macro whose expansion produced this statement, "" if written in the file
    jumps: int  # JUMP_* bits: how control can leave the statement other than at its end, or enter it
    calls: tuple[str, ...]  # direct callees inside the statement (outside nested statements)


@dataclass(frozen=True)
class Invocation:
    """An outermost statement of a macro invocation's expansion. Every statement of an expansion
    has the invocation's extent in the file, so these, not whichever of them contains an access,
    are what wrapping the invocation wraps."""

    start: int  # the invocation's start
    kind: str  # "decl" | "compound" | "label" | a control kind | "other"
    parent: str  # kind of the enclosing statement written in the file ("" for a function body)
    jumps: int  # JUMP_* bits of the statement (loops and switches inside it hold their own)


@dataclass(frozen=True)
class Call:
    callee: str  # the called function (for a macro invocation: the function the expansion calls)
    loc: int  # expansion offset of the call (what the analysis reports)
    start: int  # where the written call begins (callee name, or macro name for `macro`)
    name_end: int
    lparen: int
    rparen: int  # offset of the closing parenthesis
    args: tuple[tuple[int, int], ...]  # written arguments, stripped of surrounding blanks
    macro: str  # the written name is this macro (stdatomic-style wrappers); "" for a plain call
    spliceable: bool  # name, parentheses and arguments are all written in this file
    pointee_size: int  # sizeof(*first argument) when it is a pointer, else 0
    pointee_type: str  # unqualified canonical spelling of that pointee
    pointee_is_pointer: bool
    function: str
    stmt_start: int  # the enclosing statement (for inserting after it)
    defined_at: tuple[str, int] | None = None  # (file, offset) of the callee name inside a #define of a project file
    arg_shapes: tuple[str, ...] = ()  # Part.shape of each written argument ("" when unknown)
    result: str = ""  # canonical spelling of the call's result type
    params: tuple[str, ...] = ()  # canonical spellings of the callee's parameter types (prototyped, not variadic)


@dataclass(frozen=True)
class Function:
    name: str
    body_start: int  # offset just past the opening brace
    body_end: int
    returns: str  # canonical result type spelling


@dataclass
class FileSites:
    path: str  # real path
    stmts: list[Stmt] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    macros: list[tuple[str, int, int]] = field(default_factory=list)  # (name, start, end) invocations
    # locations of the nodes of an `&x`, `&a[i]`, `&s.f` operand: an address computation, no memory access
    address_only: list[int] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    # (location, start, end, shape) of lvalue expressions whose value is read (lvalue-to-rvalue
    # conversions); location is the cursor location the analysis reports (a member's name for s->f)
    reads: list[tuple[int, int, int, str]] = field(default_factory=list)
    # (start, end, jumps) of the statements from one of a written block's to its closing brace, for
    # the blocks that hold a label or case: a region that a goto may enter at a label in it can
    # widen to the statements from the goto's to the end of the block (jumps: JUMP_* bits of them)
    tails: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass
class TuSites:
    file: str
    ok: bool
    error: str = ""
    files: dict[str, FileSites] = field(default_factory=dict)


# ---- text helpers (pure; also used by the rewriter's tests) -------------------------------------

def skip_blank(text: bytes, i: int) -> int:
    """Skip whitespace and comments from i."""
    n = len(text)
    while i < n:
        c = text[i:i + 1]
        if c in (b" ", b"\t", b"\n", b"\r", b"\f", b"\v"):
            i += 1
        elif text.startswith(b"/*", i):
            j = text.find(b"*/", i + 2)
            i = n if j < 0 else j + 2
        elif text.startswith(b"//", i):
            j = text.find(b"\n", i)
            i = n if j < 0 else j
        elif text.startswith(b"\\\n", i):
            i += 2
        else:
            break
    return i


def match_paren(text: bytes, open_at: int) -> int:
    """Offset of the parenthesis closing the one at open_at, or -1."""
    depth = 0
    i, n = open_at, len(text)
    while i < n:
        c = text[i]
        if c in b"([{":
            depth += 1
        elif c in b")]}":
            depth -= 1
            if depth == 0:
                return i
        elif c in b"\"'":
            i = _skip_literal(text, i)
            continue
        elif text.startswith(b"/*", i) or text.startswith(b"//", i):
            i = skip_blank(text, i)
            continue
        i += 1
    return -1


def _skip_literal(text: bytes, i: int) -> int:
    q = text[i]
    i += 1
    while i < len(text) and text[i] != q:
        i += 2 if text[i] == 0x5C else 1
    return i + 1


def split_args(text: bytes, lparen: int, rparen: int) -> tuple[tuple[int, int], ...]:
    """Ranges of the top-level comma-separated arguments between the parentheses."""
    out = []
    start = lparen + 1
    for i in top_level(text, lparen + 1, rparen, 0x2C):
        out.append(_trim(text, start, i))
        start = i + 1
    if rparen > lparen + 1 and text[lparen + 1:rparen].strip():
        out.append(_trim(text, start, rparen))
    return tuple(out)


def top_level(text: bytes, start: int, end: int, sep: int) -> list[int]:
    """Offsets of the byte `sep` between `start` and `end` outside brackets, literals and comments."""
    out = []
    depth = 0
    i = start
    while i < end:
        c = text[i]
        if c in b"([{":
            depth += 1
        elif c in b")]}":
            depth -= 1
        elif c in b"\"'":
            i = _skip_literal(text, i)
            continue
        elif text.startswith(b"/*", i) or text.startswith(b"//", i):
            i = skip_blank(text, i)
            continue
        elif c == sep and depth == 0:
            out.append(i)
        i += 1
    return out


def _trim(text: bytes, s: int, e: int) -> tuple[int, int]:
    s = skip_blank(text, s)
    while e > s and text[e - 1:e] in (b" ", b"\t", b"\n", b"\r"):
        e -= 1
    return s, e


def directive_ranges(text: bytes) -> list[tuple[int, int]]:
    """Byte ranges of preprocessor directive lines (with continuations)."""
    out = []
    for m in re.finditer(rb"(?m)^[ \t]*#", text):
        s = m.start()
        e = s
        while True:
            nl = text.find(b"\n", e)
            if nl < 0:
                e = len(text)
                break
            if nl > 0 and text[nl - 1:nl] == b"\\":
                e = nl + 1
                continue
            e = nl
            break
        out.append((s, e))
    return out


def unqualified(spelling: str) -> str:
    s = spelling.strip()
    m = _ATOMIC_WRAP.match(s)
    if m:
        s = m.group(1)
    return " ".join(_QUALS.sub(" ", s).split())


# ---- the pass ----------------------------------------------------------------------------------

def scan_parsed(tu: ci.TranslationUnit, file: str, project_root: str) -> TuSites:
    """The sites of a translation unit parsed without errors, with PARSE_DETAILED_PROCESSING_RECORD.
    Children come from clang_tu's cache (the analysis walk of the same parse has filled it; the
    caller clears it with each translation unit)."""
    scanner = _Scanner(tu, os.path.realpath(project_root))
    try:
        scanner.run()
    except Exception as exc:  # a scan that missed part of the AST must not be used
        if not isinstance(exc, WalkError) and not too_deep(exc):
            raise
        return TuSites(file, False, f"{file}:1:1: {exc if isinstance(exc, WalkError) else TOO_DEEP}")
    return TuSites(file, True, "", scanner.files)


# Leaving a statement early: a return, a goto to a label outside it, a break or continue; entering it
# other than at its start: a case of an enclosing switch, a label inside it that a goto outside it
# targets (or whose address is taken), and a computed goto (its target is not known, so it is
# counted as both).
JUMP_ALWAYS, JUMP_BREAK, JUMP_CONTINUE, JUMP_CASE, JUMP_LABEL = 1, 2, 4, 8, 16
JUMP_ENTERS = JUMP_CASE | JUMP_LABEL


def _key(x: ci.Cursor) -> tuple:
    """A cursor's identity (what libclang's cursor equality compares)."""
    d = x.data
    return (x._kind_id, x.xdata, d[0], d[1], d[2])


def _in_header(kind: ci.CursorKind, n: int, nkids: int) -> bool:
    """Whether child `n` of `nkids` of a control statement is in its header (libclang lists a for's
    init, condition and step, those present, before its body; the condition of if, while and
    switch first, of do last)."""
    if kind == CK.FOR_STMT:
        return n < nkids - 1
    if kind == CK.DO_STMT:
        return n == nkids - 1
    return n == 0


class _Scanner:
    def __init__(self, tu: ci.TranslationUnit, root: str):
        self.tu = tu
        self.root = root
        self.files: dict[str, FileSites] = {}
        self.texts: dict[str, bytes] = {}
        self.directives: dict[str, list[tuple[int, int]]] = {}
        self.real: dict[str, str] = {}
        self.jumps: dict[tuple, int] = {}  # escapes() of every statement seen, less what labels decide
        # cursor key -> (labels defined inside it, gotos inside it per target label), where non-empty;
        # a label is its LabelStmt's address (a macro's __label__ labels share names, not addresses)
        self.labels: dict[tuple, tuple[frozenset, dict[int, int]]] = {}
        self.label_uses: dict[int, int] = {}  # the gotos per label of the function being scanned
        self.address_taken: set[int] = set()  # labels whose address (&&label) is taken
        # the blocks of statement expressions: their last statement is their value, so no run of
        # their statements is wrapped in a block of its own
        self.valued: set[tuple] = set()
        # path -> start offset of a macro invocation -> its end: libclang ends a statement or
        # expression whose last token comes from a macro at the invocation's start
        # (`if (ptr) x = stktable_data_cast(ptr, t);` ends before `stktable_data_cast`)
        self.invocation_end: dict[str, dict[int, int]] = {}

    def realpath(self, name: str) -> str:
        r = self.real.get(name)
        if r is None:
            r = self.real[name] = os.path.realpath(name)
        return r

    def text(self, path: str) -> bytes:
        if path not in self.texts:
            with open(path, "rb") as fh:
                self.texts[path] = fh.read()
            self.directives[path] = directive_ranges(self.texts[path])
        return self.texts[path]

    def fs(self, path: str) -> FileSites:
        if path not in self.files:
            self.files[path] = FileSites(path)
            self.text(path)
        return self.files[path]

    def run(self) -> None:
        for c in _children(self.tu.cursor):  # the invocations first: a function's come after it
            f = c.location.file
            if f is not None and c.kind == CK.MACRO_INSTANTIATION:
                path = self.realpath(f.name)
                if _under(path, self.root):
                    ext = c.extent
                    self.fs(path).macros.append((c.spelling, ext.start.offset, ext.end.offset))
                    ends = self.invocation_end.setdefault(path, {})
                    ends[ext.start.offset] = max(ends.get(ext.start.offset, 0), ext.end.offset)
        for c in _children(self.tu.cursor):
            f = c.location.file
            if f is None or c.kind == CK.MACRO_INSTANTIATION:
                continue
            path = self.realpath(f.name)
            if c.kind != CK.FUNCTION_DECL or not c.is_definition() or not _under(path, self.root):
                continue
            body = next((k for k in _children(c) if k.kind == CK.COMPOUND_STMT), None)
            if body is None:
                continue
            fs = self.fs(path)
            self.escapes(body)  # every goto of the function, before any statement asks about its labels
            self.label_uses = self.labels.get(_key(body), (frozenset(), {}))[1]
            fs.functions.append(Function(c.spelling, body.extent.start.offset + 1, body.extent.end.offset - 1,
                                         c.result_type.get_canonical().spelling))
            self.stmt(fs, body, "", c.spelling)

    # -- statements --
    def macro_of(self, fs: FileSites, c: ci.Cursor, start: ci.SourceLocation | None = None) -> str:
        """Name of the macro whose definition `c` is spelled in, "" if spelled in the file itself
        (`start`: c.extent.start, when the caller has it)."""
        if start is None:
            start = c.extent.start
        off = start.offset
        spath, soff = spelling_location(start)
        if spath and self.realpath(spath) == fs.path and soff == off:
            return ""
        if spath and self.realpath(spath) == fs.path and self.in_invocation_arg(fs, soff):
            return ""
        m = IDENT.match(self.text(fs.path), off)
        return m.group().decode() if m else "?"

    def in_invocation_arg(self, fs: FileSites, off: int) -> bool:
        if any(s <= off < e for s, e in self.directives[fs.path]):
            return False
        return True

    def end_of(self, e: ci.Cursor) -> int:
        """End offset of `e`'s extent, past the macro invocation its last token came from."""
        end = e.extent.end
        ends = self.invocation_end.get(self.realpath(end.file.name)) if end.file is not None else None
        return ends.get(end.offset, end.offset) if ends else end.offset

    def stmt(self, fs: FileSites, c: ci.Cursor, parent: str, fn: str, within: int = -1) -> None:
        """Record statement `c` and those inside it; `within`: the start of the macro invocation whose
        expansion the enclosing statement came from (-1: written in the file)."""
        k = c.kind
        text = self.text(fs.path)
        ext = c.extent
        first = ext.start
        start, end = first.offset, self.end_of(c)
        if first.file is None or self.realpath(first.file.name) != fs.path:
            return
        from_macro = self.macro_of(fs, c, first)
        if not from_macro and within == start:
            # written in an argument, inside a statement of the same invocation's expansion: its
            # extent is the invocation's, so it is the macro's (`(tmpelt2).next = tmpelt;` in HAProxy's
            # mt_list_for_each_entry_safe, a loop header: wrapped as a statement of its own, the
            # region ended at the invocation and the loop's body, written after it, left the loop)
            m = IDENT.match(text, start)
            from_macro = m.group().decode() if m else "?"
        inv = start if from_macro else -1
        if from_macro and within != start:
            kind = ("decl" if k == CK.DECL_STMT else "compound" if k == CK.COMPOUND_STMT else
                    "label" if k in (CK.LABEL_STMT, CK.CASE_STMT, CK.DEFAULT_STMT) else CONTROL.get(k, "other"))
            fs.invocations.append(Invocation(start, kind, parent, self.escapes(c)))
        kids = list(_children(c))
        if k == CK.COMPOUND_STMT:
            fs.stmts.append(Stmt("compound", start, end, parent, (), fn, from_macro, self.escapes(c), ()))
            if not from_macro and (_key(c) in self.labels or self.jumps[_key(c)] & JUMP_CASE) and \
                    _key(c) not in self.valued:
                self.tails(fs, kids, end - 1)
            for x in kids:
                self.stmt(fs, x, "compound", fn, inv)
            return
        if k in (CK.LABEL_STMT, CK.CASE_STMT, CK.DEFAULT_STMT):
            fs.stmts.append(Stmt("label", start, end, parent, (), fn, from_macro, self.escapes(c), ()))
            for x in kids:
                if x.kind.is_statement() or x.kind.is_expression():
                    if k == CK.CASE_STMT and x is kids[0]:
                        continue
                    self.stmt(fs, x, "label", fn, inv)
            return
        if k in CONTROL:
            kind = CONTROL[k]
            parts = self.control_parts(fs, c, kind, kids)
            fs.stmts.append(Stmt(kind, start, end, parent, parts, fn, from_macro, self.escapes(c), ()))
            # the header's expressions (a for's init, condition and step, the condition of the
            # others) are never statements of their own, wrappable parts or not: a header a macro
            # wrote (`list_for_each_entry(...) { ... }`) has no parts, and wrapping its init as a
            # statement made the loop's body the region's end
            for n, x in enumerate(kids):
                if x.kind == CK.DECL_STMT or not _in_header(k, n, len(kids)):
                    self.stmt(fs, x, kind, fn, inv)
                else:
                    self.calls_in(fs, x, fn, start, inv)
            return
        # simple statements: expression, declaration, return, jumps
        if k == CK.DECL_STMT:
            kind = "decl"
            parts = []
            for v in kids:
                if v.kind != CK.VAR_DECL:
                    continue
                init = self.initializer(fs, v)
                if init is not None:
                    parts.append(self.part("init", init))
        elif k == CK.RETURN_STMT:
            kind = "return"
            parts = [self.part("value", kids[0])] if kids else []
        elif k in SIMPLE_OTHER:
            kind, parts = "other", []
        elif k.is_expression():
            kind, parts = "expr", []
        else:
            kind, parts = "other", []
        if kind != "decl" or text[end - 1:end] != b";":
            j = skip_blank(text, end)
            if text[j:j + 1] == b";" and kind != "decl":
                end = j + 1
            elif kind == "decl":
                j = skip_blank(text, end)
                if text[j:j + 1] == b";":
                    end = j + 1
        jumps = self.escapes(c)
        calls = self.calls_in(fs, c, fn, start, inv)
        fs.stmts.append(Stmt(kind, start, end, parent, tuple(parts), fn, from_macro, jumps, calls))

    def initializer(self, fs: FileSites, v: ci.Cursor) -> ci.Cursor | None:
        """The initializer of variable `v` (not an array bound: only what follows its `=`)."""
        init = [x for x in _children(v) if x.kind.is_expression()]
        if not init:
            return None
        text = self.text(fs.path)
        name_at = v.location.offset
        between = text[name_at:init[-1].extent.start.offset]
        return init[-1] if b"=" in between else None

    def part(self, role: str, e: ci.Cursor) -> Part:
        s = _strip(e)
        shape = "value"
        if e.type.kind == TK.VOID:
            shape = "void"
        elif s.kind == CK.INIT_LIST_EXPR or e.kind == CK.INIT_LIST_EXPR:
            shape = "initlist"
        elif s.kind == CK.MEMBER_REF_EXPR and s.referenced is not None and s.referenced.kind == CK.FIELD_DECL \
                and s.referenced.is_bitfield():
            shape = "bitfield"
        return Part(role, e.extent.start.offset, self.end_of(e), shape)

    def control_parts(self, fs: FileSites, c: ci.Cursor, kind: str, kids: list) -> tuple[Part, ...]:
        text = self.text(fs.path)
        if kind == "do":
            cond = kids[-1] if kids else None
            return (self.part("cond", cond),) if cond is not None and cond.kind.is_expression() else ()
        if kind in ("if", "while", "switch"):
            cond = next((x for x in kids if x.kind.is_expression()), None)
            return (self.part("cond", cond),) if cond is not None else ()
        # for: the header is split textually, children are matched to its three slots
        start = c.extent.start.offset
        lp = text.find(b"(", start)
        rp = match_paren(text, lp) if lp >= 0 else -1
        if lp < 0 or rp < 0:
            return ()
        semis = top_level(text, lp + 1, rp, 0x3B)  # `*end != ']'`: a bracket in a literal is no bracket
        if len(semis) != 2:
            return ()
        slots = (("init", lp + 1, semis[0]), ("cond", semis[0] + 1, semis[1]), ("inc", semis[1] + 1, rp))
        parts = []
        for role, s, e in slots:
            for x in kids:
                xs = x.extent.start.offset
                if s <= xs < e:
                    if x.kind == CK.DECL_STMT:
                        for v in _children(x):
                            init = self.initializer(fs, v) if v.kind == CK.VAR_DECL else None
                            if init is not None:
                                parts.append(self.part("init", init))
                    elif x.kind.is_expression():
                        p = self.part(role, x)
                        parts.append(Part(role, p.start, p.end, "void" if role != "cond" else p.shape))
                    break
        return tuple(parts)

    def escapes(self, c: ci.Cursor) -> int:
        """How control can cross the edge of `c` (JUMP_* bits: a return or a goto to a label outside
        `c`; a label inside `c` that a goto outside it targets; a break or continue not inside a loop
        or switch of `c`; a case not inside a switch of `c`), computed once per statement: nested
        statements are asked about again by their own stmt() call. An explicit stack, not a
        recursion: a long expression or a deeply nested macro must not end the walk early (a missed
        jump would let a region be rewritten around it)."""
        stack = [(c, False)]
        while stack:
            x, expanded = stack.pop()
            kx = _key(x)
            if kx in self.jumps:
                continue
            k = x.kind
            if k == CK.RETURN_STMT:
                self.jumps[kx] = JUMP_ALWAYS
                continue
            if k == CK.GOTO_STMT:
                target = x.referenced
                self.jumps[kx] = 0 if target is not None else JUMP_ALWAYS | JUMP_LABEL
                if target is not None:
                    self.labels[kx] = (frozenset(), {target.data[1]: 1})
                continue
            if k == CK.INDIRECT_GOTO_STMT:
                self.jumps[kx] = JUMP_ALWAYS | JUMP_LABEL
                continue
            if k == CK.BREAK_STMT:
                self.jumps[kx] = JUMP_BREAK
                continue
            if k == CK.CONTINUE_STMT:
                self.jumps[kx] = JUMP_CONTINUE
                continue
            if k == CK.ADDR_LABEL_EXPR:  # &&label: an indirect goto anywhere may enter at it
                self.address_taken.update(y.data[0] for y in _children(x) if y.kind == CK.LABEL_REF)
                self.jumps[kx] = 0
                continue
            kids = _children(x)
            if not expanded:
                stack.append((x, True))
                stack.extend((y, False) for y in kids)
                continue
            bits = JUMP_CASE if k in (CK.CASE_STMT, CK.DEFAULT_STMT) else 0
            defs: set[int] = {x.data[1]} if k == CK.LABEL_STMT else set()
            refs: dict[int, int] = {}
            for y in kids:
                bits |= self.add_jumps(_key(y), defs, refs)
            if k in (CK.WHILE_STMT, CK.DO_STMT, CK.FOR_STMT):
                bits &= ~(JUMP_BREAK | JUMP_CONTINUE)
            elif k == CK.SWITCH_STMT:
                bits &= ~(JUMP_BREAK | JUMP_CASE)
            self.jumps[kx] = bits
            if defs or refs:
                self.labels[kx] = (frozenset(defs), refs)
        kc = _key(c)
        lab = self.labels.get(kc)
        return self.jumps[kc] | (self.label_jumps(*lab) if lab is not None else 0)

    def add_jumps(self, kx: tuple, defs: set[int], refs: dict[int, int]) -> int:
        """Add the labels and gotos of the statement `kx` to `defs` and `refs`; its other JUMP_* bits."""
        lab = self.labels.get(kx)
        if lab is not None:
            defs |= lab[0]
            for t, n in lab[1].items():
                refs[t] = refs.get(t, 0) + n
        return self.jumps[kx]

    def label_jumps(self, defs, refs: dict[int, int]) -> int:
        """JUMP_ALWAYS for a goto to a label not among `defs`, JUMP_LABEL for a label of `defs` that
        a goto not counted in `refs` (or an indirect one) may jump to."""
        bits = JUMP_ALWAYS if any(t not in defs for t in refs) else 0
        if any(d in self.address_taken or self.label_uses.get(d, 0) > refs.get(d, 0) for d in defs):
            bits |= JUMP_LABEL
        return bits

    def tails(self, fs: FileSites, kids: list, close: int) -> None:
        """Record the jumps of each run of a block's statements up to its closing brace at `close`
        (statements a macro invocation expanded to share its start: the run starts at the first)."""
        bits, defs, refs = 0, set(), {}
        for n in range(len(kids) - 1, -1, -1):
            bits |= self.add_jumps(_key(kids[n]), defs, refs)
            first = kids[n].extent.start
            if first.file is None or self.realpath(first.file.name) != fs.path:
                continue
            if n > 0 and kids[n - 1].extent.start.offset == first.offset:
                continue
            fs.tails.append((first.offset, close, bits | self.label_jumps(defs, refs)))

    # -- calls --
    def calls_in(self, fs: FileSites, e: ci.Cursor, fn: str, stmt_start: int, within: int = -1) -> tuple[str, ...]:
        """Record the calls inside expression `e` (statement expressions are walked as statements;
        `within` as for stmt())."""
        names: list[str] = []
        stack = [e]
        while stack:
            c = stack.pop()
            if c.kind == CK.StmtExpr:
                for x in _children(c):
                    self.valued.add(_key(x))
                    self.stmt(fs, x, "compound", fn, within)
                continue
            if c.kind.is_statement() and c is not e and c.kind not in (CK.DECL_STMT,) and not c.kind.is_expression():
                self.stmt(fs, c, "", fn, within)
                continue
            if c.kind == CK.UNARY_OPERATOR and unary_kind(c) == UO_ADDR_OF:
                self.note_address_only(fs, c)
            elif c.kind == CK.UNEXPOSED_EXPR:
                self.note_read(fs, c)
            if c.kind == CK.CALL_EXPR or (c.kind == CK.UNEXPOSED_EXPR and self.builtin_name(fs, c)):
                call = self.call(fs, c, fn, stmt_start)
                if call is not None:
                    fs.calls.append(call)
                    names.append(call.callee)
            stack.extend(reversed(list(_children(c))))
        return tuple(names)

    def note_read(self, fs: FileSites, c: ci.Cursor) -> None:
        kids = _children(c)
        if len(kids) != 1:
            return
        x = kids[0]
        xk = x.kind
        if xk not in (CK.DECL_REF_EXPR, CK.MEMBER_REF_EXPR, CK.ARRAY_SUBSCRIPT_EXPR, CK.UNARY_OPERATOR,
                      CK.PAREN_EXPR):
            return
        if xk == CK.UNARY_OPERATOR and unary_kind(x) != 6:  # only *p is an lvalue
            return
        t = x.type.get_canonical()
        tk = t.kind
        if tk in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY, TK.VARIABLEARRAY, TK.FUNCTIONPROTO, TK.FUNCTIONNOPROTO,
                  TK.RECORD):
            return
        if tk != TK.POINTER:
            ct = c.type.get_canonical()
            if ct.kind == TK.POINTER and t.spelling == ct.spelling:
                return
        ext = x.extent
        first, last = ext.start, ext.end
        if first.file is None or self.realpath(first.file.name) != fs.path or self.macro_of(fs, x, first):
            return
        s, e = first.offset, last.offset
        spath, soff = spelling_location(last)
        if not (spath and self.realpath(spath) == fs.path and soff == e):
            return  # ends inside a macro expansion
        fs.reads.append((x.location.offset, s, e, self.part("value", x).shape))

    def note_address_only(self, fs: FileSites, c: ci.Cursor) -> None:
        """`&` over array elements and struct members of a named object reads no memory itself."""
        kids = list(_children(c))
        if len(kids) != 1:
            return
        e = _strip(kids[0])
        start = e.extent.start.offset
        locs = []
        while True:
            if spelling_location(e.location)[1] != e.location.offset:
                # a macro's argument: its location is the invocation's, where the expansion's own
                # accesses are reported too (`list_for_each_entry(it, &head, l)` reads head.n there)
                return
            locs.append(e.location.offset)
            if e.kind == CK.DECL_REF_EXPR:
                break
            if e.kind == CK.ARRAY_SUBSCRIPT_EXPR:
                base = _strip(_children(e)[0])
                if base.type.get_canonical().kind not in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
                    return  # p[i] reads the pointer p
                e = base
                continue
            if e.kind == CK.MEMBER_REF_EXPR:
                inner = [x for x in _children(e) if x.kind.is_expression()]
                if not inner or inner[0].type.get_canonical().kind == TK.POINTER:
                    return  # s->f reads the pointer s
                e = _strip(inner[0])
                continue
            return
        if e.extent.start.offset == start and c.extent.start.file is not None \
                and self.realpath(c.extent.start.file.name) == fs.path and not self.macro_of(fs, c):
            fs.address_only.extend(locs)

    def builtin_name(self, fs: FileSites, c: ci.Cursor) -> str:
        """For an atomic builtin (`__atomic_*`, `__c11_atomic_*`: not a CallExpr in libclang), its name."""
        spath, soff = spelling_location(c.extent.start)
        if not spath:
            return ""
        try:
            text = self.text(self.realpath(spath))
        except OSError:
            return ""
        m = IDENT.match(text, soff)
        name = m.group().decode() if m else ""
        return name if name.startswith(("__atomic_", "__c11_atomic_")) and text[skip_blank(text, m.end()):][:1] == b"(" else ""

    def call(self, fs: FileSites, c: ci.Cursor, fn: str, stmt_start: int) -> Call | None:
        text = self.text(fs.path)
        loc = c.location.offset
        kids = list(_children(c))
        if c.kind == CK.UNEXPOSED_EXPR:
            name = self.builtin_name(fs, c)
            callee = c
            cargs = kids
        else:
            ref = c.referenced
            if ref is None or ref.kind != CK.FUNCTION_DECL:
                return None
            name = ref.spelling
            callee = _strip(kids[0]) if kids else c
            cargs = list(c.get_arguments())
        spath, soff = spelling_location(callee.location)
        macro = ""
        spliceable = False
        at = -1
        defined_at = None
        if spath and self.realpath(spath) == fs.path and text.startswith(name.encode(), soff) \
                and not any(s <= soff < e for s, e in self.directives[fs.path]):
            at, spliceable = soff, True
        else:
            if spath and _under(self.realpath(spath), self.root):
                dpath = self.realpath(spath)
                dtext = self.text(dpath)
                if dtext.startswith(name.encode(), soff) and any(s <= soff < e for s, e in self.directives[dpath]):
                    defined_at = (dpath, soff)
            eoff = callee.location.offset
            m = IDENT.match(text, eoff)
            if m and m.group().decode() != name:
                macro = m.group().decode()
                at, spliceable = eoff, True
        lp = rp = -1
        args: tuple[tuple[int, int], ...] = ()
        name_end = at
        if at >= 0:
            m = IDENT.match(text, at)
            name_end = m.end() if m else at
            lp = skip_blank(text, name_end)
            if text[lp:lp + 1] == b"(":
                rp = match_paren(text, lp)
            if rp < 0:
                spliceable = False
            else:
                args = split_args(text, lp, rp)
        size, ptype, is_ptr = 0, "", False
        if cargs and cargs[0] is not None:
            t = cargs[0].type.get_canonical()
            if t.kind in (TK.POINTER,):
                p = t.get_pointee()
                size = max(p.get_size(), 0)
                ptype = unqualified(p.get_canonical().spelling)
                inner = p.get_canonical()
                is_ptr = inner.kind == TK.POINTER or ptype.endswith("*")
        shapes: tuple[str, ...] = ()
        if spliceable and not macro and len(cargs) == len(args) and all(x is not None for x in cargs):
            shapes = tuple(self.part("value", x).shape if (x.extent.start.offset, x.extent.end.offset) == a else ""
                           for x, a in zip(cargs, args))
        params: tuple[str, ...] = ()
        if c.kind != CK.UNEXPOSED_EXPR:
            ft = c.referenced.type.get_canonical()
            if ft.kind == TK.FUNCTIONPROTO and not ft.is_function_variadic():
                params = tuple(t.get_canonical().spelling for t in ft.argument_types())
        return Call(name, loc, at, name_end, lp, rp, args, macro, spliceable, size, ptype, is_ptr, fn, stmt_start,
                    defined_at, shapes, c.type.get_canonical().spelling, params)
