"""Plain data of a shared-state report: what the analysis found, in a form every later stage reads.

Everything here is a frozen dataclass with `to_json`/`from_json`. The JSON shape is the
`ftmb-report/1` schema (ftmb_instrument/schema/ftmb-report-1.schema.json documents it field by
field). Locations are strings: a declaration is "path:line", an access "path:line:col"; paths are
as given to the analyzer (relative to the working directory when possible).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ReportError

SCHEMA = "ftmb-report/1"

CLASSES = ("shared_rw", "shared_ro", "per_core", "thread_private")
PROTECTIONS = ("lock", "atomic", "unprotected", "mixed")
SCOPES = ("global", "static", "static_local", "heap", "stack")
MODES = ("read", "write", "rmw")


@dataclass(frozen=True)
class Diagnostic:
    loc: str  # "path:line:col"
    severity: str  # "warning" | "error" | "fatal"
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"loc": self.loc, "severity": self.severity, "message": self.message}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Diagnostic:
        return Diagnostic(d["loc"], d["severity"], d["message"])


@dataclass(frozen=True)
class TranslationUnit:
    file: str
    status: str  # "ok" | "failed"
    diagnostics: tuple[Diagnostic, ...] = ()
    functions: int = 0  # function bodies analyzed in this translation unit

    def first_error(self) -> Diagnostic | None:
        """The diagnostic that explains a failed unit: its first error (else its first diagnostic)."""
        return next((d for d in self.diagnostics if d.severity != "warning"),
                    self.diagnostics[0] if self.diagnostics else None)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "status": self.status,
            "functions": self.functions,
            "diagnostics": [d.to_json() for d in self.diagnostics],
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> TranslationUnit:
        return TranslationUnit(
            d["file"], d["status"], tuple(Diagnostic.from_json(x) for x in d["diagnostics"]),
            d.get("functions", 0),
        )


@dataclass(frozen=True)
class Thread:
    entry: str  # the root function's name
    how: str  # "main" | the spawn call (pthread_create, rte_eal_mp_remote_launch, ...) | "signal" | "entry"
    site: str  # "path:line" of the spawn call or handler installation; "" for main and --entry
    instances: str  # "one" | "several"

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "how": self.how, "site": self.site, "instances": self.instances}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Thread:
        return Thread(d["entry"], d["how"], d["site"], d["instances"])


@dataclass(frozen=True)
class Access:
    loc: str  # "path:line:col"
    function: str
    mode: str  # one of MODES
    atomic: bool
    locks_held: tuple[str, ...]
    threads: tuple[str, ...]  # entries of the threads that may execute this access
    concurrent: bool  # may run while another thread runs (False: before spawn / after join in main)
    core_indexed: bool = False  # the element is selected by core id or a per-thread argument
    macro: str = ""  # name of the macro whose expansion produced this access, if any
    suppressed: str = ""  # reason given in an inline suppression, "" if none

    def to_json(self) -> dict[str, Any]:
        return {
            "loc": self.loc,
            "function": self.function,
            "mode": self.mode,
            "atomic": self.atomic,
            "locks_held": list(self.locks_held),
            "threads": list(self.threads),
            "concurrent": self.concurrent,
            "core_indexed": self.core_indexed,
            "macro": self.macro,
            "suppressed": self.suppressed,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Access:
        return Access(
            d["loc"], d["function"], d["mode"], d["atomic"], tuple(d["locks_held"]),
            tuple(d["threads"]), d.get("concurrent", True), d.get("core_indexed", False),
            d.get("macro", ""), d.get("suppressed", ""),
        )


@dataclass(frozen=True)
class Variable:
    id: str  # stable hash, see ftmb_instrument.analysis.identity
    name: str
    decl: str  # "path:line"
    scope: str  # one of SCOPES
    cls: str  # one of CLASSES ("class" in JSON)
    protection: str | None  # one of PROTECTIONS for shared_rw, else None
    locks: tuple[str, ...]
    commutative: bool
    accesses: tuple[Access, ...]
    type: str = ""
    suppressed: str = ""  # reason of an inline suppression on the declaration, "" if none

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "decl": self.decl,
            "scope": self.scope,
            "class": self.cls,
            "protection": self.protection,
            "locks": list(self.locks),
            "commutative": self.commutative,
            "type": self.type,
            "suppressed": self.suppressed,
            "accesses": [a.to_json() for a in self.accesses],
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Variable:
        return Variable(
            d["id"], d["name"], d["decl"], d["scope"], d["class"], d["protection"],
            tuple(d["locks"]), d["commutative"], tuple(Access.from_json(a) for a in d["accesses"]),
            d.get("type", ""), d.get("suppressed", ""),
        )


@dataclass(frozen=True)
class Site:
    """A call that matters for recovery: a nondeterministic value or a packet I/O call."""

    loc: str
    function: str  # enclosing function
    call: str  # the callee's name
    category: str  # nondeterminism: "time" | "random" | ...; packet I/O: "rx" | "tx"
    threads: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "loc": self.loc,
            "function": self.function,
            "call": self.call,
            "category": self.category,
            "threads": list(self.threads),
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Site:
        return Site(d["loc"], d["function"], d["call"], d["category"], tuple(d["threads"]))


@dataclass(frozen=True)
class Finding:
    """A warning that matters for recovery (race, state invisible to a checkpoint, ...)."""

    kind: str  # "race" | "invisible_state" | "opaque_state" | "unresolved_call" | "unresolved_spawn" | "unreached_function" | "unreplayable_call"
    loc: str
    message: str
    variable: str = ""  # id of the variable concerned, "" if none

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "loc": self.loc, "message": self.message, "variable": self.variable}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Finding:
        return Finding(d["kind"], d["loc"], d["message"], d.get("variable", ""))


@dataclass(frozen=True)
class Coverage:
    tus_ok: int
    tus_failed: int
    functions_analyzed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "translation_units_ok": self.tus_ok,
            "translation_units_failed": self.tus_failed,
            "functions_analyzed": self.functions_analyzed,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Coverage:
        return Coverage(d["translation_units_ok"], d["translation_units_failed"], d["functions_analyzed"])


@dataclass(frozen=True)
class Report:
    tool_version: str
    translation_units: tuple[TranslationUnit, ...]
    threads: tuple[Thread, ...]
    variables: tuple[Variable, ...]
    nondeterminism: tuple[Site, ...]
    packet_io: tuple[Site, ...]
    warnings: tuple[Finding, ...]
    coverage: Coverage
    schema: str = field(default=SCHEMA)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "tool_version": self.tool_version,
            "coverage": self.coverage.to_json(),
            "translation_units": [t.to_json() for t in self.translation_units],
            "threads": [t.to_json() for t in self.threads],
            "variables": [v.to_json() for v in self.variables],
            "nondeterminism": [s.to_json() for s in self.nondeterminism],
            "packet_io": [s.to_json() for s in self.packet_io],
            "warnings": [w.to_json() for w in self.warnings],
        }

    @staticmethod
    def from_json(d: Any, source: str = "<report>") -> Report:
        """Build a report from parsed JSON; raises ReportError naming `source` on a wrong shape."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ReportError(f"{source}: not an {SCHEMA} report (schema: {found!r})")
        try:
            return Report(
                tool_version=d["tool_version"],
                translation_units=tuple(TranslationUnit.from_json(x) for x in d["translation_units"]),
                threads=tuple(Thread.from_json(x) for x in d["threads"]),
                variables=tuple(Variable.from_json(x) for x in d["variables"]),
                nondeterminism=tuple(Site.from_json(x) for x in d["nondeterminism"]),
                packet_io=tuple(Site.from_json(x) for x in d["packet_io"]),
                warnings=tuple(Finding.from_json(x) for x in d["warnings"]),
                coverage=Coverage.from_json(d["coverage"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReportError(f"{source}: malformed {SCHEMA} report: missing or wrong field {exc}") from None
