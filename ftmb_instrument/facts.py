"""What the frontend extracts from one translation unit: plain, picklable program facts.

The frontend (the only code that sees libclang) turns each function body into a tree of events
(accesses, calls, branches, loops) in evaluation order; the analysis computes locksets, thread
contexts and classes from these facts alone. Memory is described by `Ref`s, abstract objects an
expression can point into, resolved across functions by the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ref:
    """An abstract memory object.

    kind:
      global   a file-scope variable or static local (key: its USR)
      load     whatever a pointer stored in object `inner` points to; the analysis resolves it from
               the values stored into that object (the object itself when none are known)
      param    whatever parameter `index` of the enclosing function points to (key: function USR)
      alloc    memory returned by the allocation or opaque-create call at site `key`, or (key
               `library:NAME`) the object a model names for calls whose handles are integers
      stack    a local variable whose address is taken (key: site id)
      ret      whatever function `key` (a USR) returns a pointer into
      field    member `member` of the objects `inner` denotes, a struct of type `key` (the record's
               USR). A union member is never one: the union is its object, members overlapping
      whole    the whole of the objects `inner` points into: byte-pointer arithmetic (`(char *)&s.f
               - off`) may reach any part of them
    """

    kind: str
    key: str = ""
    index: int = -1
    inner: Ref | None = None
    member: str = ""

    def __hash__(self) -> int:
        # Computed once: Refs nest (`a->b->c` is loads of fields of loads) and key the analysis's
        # tables, and the generated hash walked the whole chain on every lookup.
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.kind, self.key, self.index, self.inner, self.member))
            object.__setattr__(self, "_hash", h)
        return h

    def __reduce__(self):
        return Ref, (self.kind, self.key, self.index, self.inner, self.member)  # a hash is per process


@dataclass(frozen=True)
class GlobalDecl:
    usr: str
    name: str
    file: str  # absolute path of the definition (or of the first declaration seen)
    line: int
    scope: str  # "global" | "static" | "static_local"
    function: str  # enclosing function for static locals, "" otherwise
    type: str
    tls: bool
    atomic_type: bool
    is_definition: bool
    is_pointer: bool
    is_lock: bool  # a synchronization object (mutex, spinlock, ...), by type name


@dataclass(frozen=True)
class FieldDecl:
    """A struct member the program accesses by name (a step of a field-sensitive object's path)."""

    record: str  # USR of the struct
    member: str  # the member's name; BITFIELDS for the bit-fields of the struct (one memory location)
    type: str
    is_lock: bool


BITFIELDS = "<bitfields>"


@dataclass(frozen=True)
class AllocSite:
    key: str  # site id: "path:line:col"; "library:NAME" for a model's object of integer handles
    file: str
    line: int
    function: str
    call: str
    assigned_to: str  # name of the variable the result is stored into, "" if none
    opaque: bool  # created by a library (opaque_create), not plain memory


@dataclass(frozen=True)
class StackSite:
    key: str
    file: str
    line: int
    function: str
    name: str


@dataclass(frozen=True)
class AccessFact:
    id: int  # unique within the function
    ref: Ref
    loc: str  # "path:line:col" (expansion location)
    offset: int  # byte offset in its file (ordering inside `main`)
    mode: str  # "read" | "write" | "rmw"
    atomic: bool
    commutative_op: bool  # the operation is +=, -=, ++, -- or an atomic add/sub
    index_taint: tuple[str, ...]  # what selects the element: "core", "param:K"
    macro: str
    suppressed: str
    span: tuple[int, int]  # outermost enclosing loop of the access in `main` (or its own offset)


@dataclass(frozen=True)
class ArgFact:
    refs: tuple[Ref, ...]  # objects the argument may point into
    funcs: tuple[str, ...]  # USRs of functions the argument names (thread entries, handlers)
    taint: tuple[str, ...]
    text: str  # the argument's spelling, whitespace-normalized
    lock: str  # normalized lock name, when the argument names a lock object
    ptr_type: str  # canonical pointee type when the argument is a function pointer
    mode: str  # what the callee may do through this pointer: "read" (pointer to const) or "rmw"


@dataclass(frozen=True)
class CallFact:
    id: int
    callee: str  # name of the direct callee; "" for an indirect call
    callee_usr: str
    callee_type: str  # canonical function type of an indirect call
    loc: str
    offset: int
    in_loop: bool
    args: tuple[ArgFact, ...]
    macro: str
    span: tuple[int, int]


@dataclass(frozen=True)
class Branch:
    alternatives: tuple[tuple, ...]  # each a tuple of events; an empty one is a path that skips


@dataclass(frozen=True)
class Loop:
    body: tuple


@dataclass(frozen=True)
class Exit:
    """The path ends here: `return`, or `break`/`continue`/`goto` out of the enclosing loop."""

    kind: str  # "return" | "break" | "continue" | "goto"


@dataclass(frozen=True)
class LocalState:
    """A local of a function that lives across iterations of its loop (checkpoint-invisible)."""

    name: str
    loc: str
    reason: str


@dataclass(frozen=True)
class FunctionFacts:
    usr: str
    name: str
    file: str
    line: int
    type: str  # canonical function type, for matching indirect calls
    params: tuple[str, ...]
    events: tuple  # AccessFact | CallFact | Branch | Loop | Exit
    returns: tuple[Ref, ...]
    address_taken: tuple[str, ...]  # USRs of functions this body uses as values
    fn_types: tuple[tuple[str, str], ...]  # (usr, canonical type) of those functions
    loop_state: tuple[LocalState, ...]
    signal_handlers: tuple[tuple[str, str], ...]  # (usr, loc) installed via sigaction fields


@dataclass(frozen=True)
class Suppression:
    file: str
    line: int
    what: str
    reason: str


@dataclass
class TuFacts:
    file: str
    globals: list[GlobalDecl] = field(default_factory=list)
    functions: list[FunctionFacts] = field(default_factory=list)
    allocs: list[AllocSite] = field(default_factory=list)
    stacks: list[StackSite] = field(default_factory=list)
    flows: list[tuple[Ref, Ref]] = field(default_factory=list)  # (object stored into, pointer value stored)
    fn_flows: list[tuple[Ref, str]] = field(default_factory=list)  # (object stored into, function USR stored)
    address_taken: dict[str, str] = field(default_factory=dict)  # usr -> type of functions used as values at file scope
    suppressions: list[Suppression] = field(default_factory=list)
    function_names: dict[str, str] = field(default_factory=dict)  # usr -> name of every function referenced
    fields: dict[tuple[str, str], FieldDecl] = field(default_factory=dict)  # (record, member) -> declaration
