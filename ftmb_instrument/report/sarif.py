"""A Report as SARIF 2.1.0, for code-scanning services and editors.

One rule per kind of result; every result carries `partialFingerprints` so a service can follow it
across commits: results about a variable use its stable id (file, enclosing scope, name, scope
kind; no line numbers), call sites a hash of file, function, callee and category. File paths are
relative URIs against the `SRCROOT` base id (the analyzer's working directory), which a caller
may resolve by passing `source_root`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from ..diff import is_unprotected
from ..model import Access, Finding, Report, Site, Variable
from .location import parse_location

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "SRCROOT"
TOOL_NAME = "ftmb-instrument"
FINGERPRINT_VARIABLE = "ftmbVariableId/v1"
FINGERPRINT_SITE = "ftmbSiteId/v1"
FINGERPRINT_FINDING = "ftmbFindingId/v1"


@dataclass(frozen=True)
class Rule:
    id: str
    name: str  # PascalCase, as SARIF viewers show it
    level: str  # default level: "error" | "warning" | "note"
    short: str
    help: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "shortDescription": {"text": self.short},
            "fullDescription": {"text": self.help},
            "help": {"text": self.help},
            "defaultConfiguration": {"level": self.level},
        }


RULES: tuple[Rule, ...] = (
    Rule(
        "ftmb/shared-rw-unprotected", "SharedStateUnprotected", "error",
        "Shared read-write state accessed without synchronization",
        "Threads may access this variable concurrently, at least one of them writing, without a common "
        "lock and not atomically. Replay after a failure can only reproduce the order of accesses that "
        "go through a lock or an atomic operation. Protect every access with one lock or make it atomic; "
        "if the race is intended and harmless, say so with an inline `ftmb:` suppression and its reason.",
    ),
    Rule(
        "ftmb/shared-rw-mixed", "SharedStateMixedProtection", "warning",
        "Shared read-write state synchronized inconsistently",
        "Concurrent accesses of this variable are not synchronized uniformly: some hold a lock and others "
        "do not, they hold locks with none in common, or only some are atomic. Accesses that share no lock "
        "can still interleave, and replay cannot reproduce their order. Use one lock for all of them, or "
        "atomics for all of them.",
    ),
    Rule(
        "ftmb/shared-state", "SharedState", "note",
        "Shared read-write state the runtime logs",
        "This variable is written by one thread and accessed by another. Its accesses are instrumented: "
        "the runtime records their order in Packet Access Logs so that a backup can replay them.",
    ),
    Rule(
        "ftmb/invisible-state", "InvisibleState", "warning",
        "State a checkpoint cannot see",
        "This state lives where a checkpoint does not reach (for example memory from an allocator the "
        "analysis does not model, or kernel state). After a failure it would not be restored. Keep it "
        "in memory the runtime checkpoints, or rebuild it from checkpointed state on recovery.",
    ),
    Rule(
        "ftmb/opaque-state", "OpaqueState", "warning",
        "State behind an API the analysis cannot look into",
        "A library call keeps state the analysis cannot see into, so its accesses are neither logged "
        "nor checkpointed. Add an API model for the library (ftmb_instrument/apimodels) describing it.",
    ),
    Rule(
        "ftmb/unresolved-call", "UnresolvedCall", "warning",
        "Call the analysis could not follow",
        "An indirect call whose targets are unknown: accesses in the functions it may reach are not "
        "attributed to this thread, so shared state may be missed. Name the targets with an API model "
        "or make the call direct.",
    ),
    Rule(
        "ftmb/unresolved-spawn", "UnresolvedSpawn", "warning",
        "Thread start whose function the analysis could not resolve",
        "A spawn call (pthread_create, rte_eal_remote_launch, ...) passes a function the analysis cannot "
        "trace to its definition, so every address-taken function of a compatible type is taken as a "
        "thread root: classes may be more shared than they are. Pass the function directly, or through "
        "a table or variable initialized with it.",
    ),
    Rule(
        "ftmb/unreached-function", "UnreachedFunction", "warning",
        "Function that runs in no known thread",
        "The address of this function is taken but no thread root reaches it and nothing calls it: "
        "probably a library calls it back, and what it accesses is attributed to no thread, so shared "
        "state may be missed. Describe the library call with a `callback` API model, or, for a "
        "registered callback, make sure some thread calls its driver.",
    ),
    Rule(
        "ftmb/unreplayable-call", "UnreplayableCall", "error",
        "Call whose effect a replay cannot reproduce",
        "The library decides what this call does from something the runtime cannot log (for example "
        "rte_timer_manage fires the timers that are due by its own reading of the clock), so a replay "
        "runs the program's code at other points of the log and diverges. `instrument` and `ftmb-cc` "
        "refuse the site; restructure the code (keep time in the program, e.g. compare rte_rdtsc() "
        "itself as l2fwd does) or suppress it knowingly with /* ftmb: ignore(access) <reason> */.",
    ),
    Rule(
        "ftmb/nondeterminism", "Nondeterminism", "note",
        "Nondeterministic value logged for replay",
        "This call returns a value that differs between a run and its replay (time, random numbers, "
        "...). The runtime logs its result so that the backup replays the same value.",
    ),
    Rule(
        "ftmb/packet-io", "PacketIO", "note",
        "Packet input or output",
        "Packet receive calls are where input is logged; packet transmit calls are where output is held "
        "back until everything needed to reproduce it is stored.",
    ),
)
_RULE_BY_KIND = {
    "invisible_state": "ftmb/invisible-state",
    "opaque_state": "ftmb/opaque-state",
    "unresolved_call": "ftmb/unresolved-call",
    "unresolved_spawn": "ftmb/unresolved-spawn",
    "unreached_function": "ftmb/unreached-function",
    "unreplayable_call": "ftmb/unreplayable-call",
}


def render(report: Report, *, source_root: str | None = None) -> str:
    """The report as a SARIF 2.1.0 log (JSON text). `source_root`, when given, is the directory
    relative paths are resolved against (written as the SRCROOT base id)."""
    return json.dumps(sarif_log(report, source_root=source_root), indent=2, ensure_ascii=False) + "\n"


def sarif_log(report: Report, *, source_root: str | None = None) -> dict[str, Any]:
    """The SARIF log as a JSON-ready dict."""
    rules = list(RULES)
    variables = {v.id: v for v in report.variables}
    results: list[dict[str, Any]] = []

    def rule_index(rule_id: str, kind: str = "") -> int:
        for i, rule in enumerate(rules):
            if rule.id == rule_id:
                return i
        # A finding kind this version has no text for still gets a rule of its own.
        text = kind.replace("_", " ")
        rules.append(Rule(rule_id, _pascal(kind), "warning", text, f"ftmb-instrument finding: {text}."))
        return len(rules) - 1

    def add(rule_id: str, message: str, loc: str, fingerprints: dict[str, str], kind: str = "",
            related: list[dict[str, Any]] | None = None, suppression: str = "",
            properties: dict[str, Any] | None = None) -> None:
        index = rule_index(rule_id, kind)
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": index,
            "level": rules[index].level,
            "message": {"text": message},
            "locations": [location] if (location := _location(loc)) else [],
            "partialFingerprints": fingerprints,
        }
        if related:
            result["relatedLocations"] = related
        if suppression:
            result["suppressions"] = [{"kind": "inSource", "justification": suppression}]
        if properties:
            result["properties"] = properties
        results.append(result)

    raced: set[str] = set()
    for f in report.warnings:
        v = variables.get(f.variable)
        if f.kind == "race":
            raced.add(f.variable)
            mixed = v is not None and v.protection == "mixed"
            rule_id = "ftmb/shared-rw-mixed" if mixed else "ftmb/shared-rw-unprotected"
        else:
            rule_id = _RULE_BY_KIND.get(f.kind, "ftmb/" + f.kind.replace("_", "-"))
        add(rule_id, f.message, f.loc, _finding_fingerprint(f), kind=f.kind,
            related=_related_accesses(v) if v is not None else None,
            suppression=v.suppressed if v is not None else "",
            properties=_variable_properties(v) if v is not None else None)

    for v in report.variables:
        if v.cls != "shared_rw":
            continue
        if v.protection in ("unprotected", "mixed") and v.id not in raced:
            unprotected = [a for a in v.accesses if is_unprotected(a)]
            where = unprotected[0].loc if unprotected else v.decl
            add(
                "ftmb/shared-rw-mixed" if v.protection == "mixed" else "ftmb/shared-rw-unprotected",
                _race_message(v, unprotected), where, {FINGERPRINT_VARIABLE: v.id},
                related=_related_accesses(v), suppression=v.suppressed, properties=_variable_properties(v),
            )
        add("ftmb/shared-state", _shared_message(v), v.decl, {FINGERPRINT_VARIABLE: v.id},
            suppression=v.suppressed, properties=_variable_properties(v))

    for sites, rule_id, what in (
        (report.nondeterminism, "ftmb/nondeterminism", "nondeterministic value"),
        (report.packet_io, "ftmb/packet-io", "packet I/O"),
    ):
        for s in sites:
            add(rule_id, f"{s.call}() in {s.function}: {what} ({s.category}); threads: {_threads(s.threads)}.",
                s.loc, {FINGERPRINT_SITE: _site_id(s)}, properties={"category": s.category})

    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "version": report.tool_version,
                "semanticVersion": report.tool_version,
                "rules": [r.to_json() for r in rules],
            }
        },
        "invocations": [_invocation(report)],
        "results": results,
    }
    if source_root is not None:
        root = Path(source_root).resolve().as_uri().rstrip("/") + "/"
        run["originalUriBaseIds"] = {SRCROOT: {"uri": root}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _location(loc: str, message: str = "") -> dict[str, Any] | None:
    parsed = parse_location(loc)
    if parsed is None:
        return None
    artifact: dict[str, Any]
    if PurePosixPath(parsed.path).is_absolute():
        artifact = {"uri": Path(parsed.path).as_uri()}
    else:
        artifact = {"uri": quote(PurePosixPath(parsed.path.replace("\\", "/")).as_posix()), "uriBaseId": SRCROOT}
    physical: dict[str, Any] = {"artifactLocation": artifact}
    # SARIF counts from 1; line 0 is how a diagnostic without a position is written.
    if parsed.line:
        physical["region"] = {"startLine": parsed.line}
        if parsed.col:
            physical["region"]["startColumn"] = parsed.col
    location: dict[str, Any] = {"physicalLocation": physical}
    if message:
        location["message"] = {"text": message}
    return location


def _related_accesses(v: Variable) -> list[dict[str, Any]]:
    related = []
    for i, a in enumerate(v.accesses):
        if a.concurrent and not a.atomic:
            held = f" holding {', '.join(a.locks_held)}" if a.locks_held else " with no lock held"
            loc = _location(a.loc, f"{a.mode} of {v.name} in {a.function}{held}")
            if loc is not None:
                loc["id"] = i
                related.append(loc)
    return related


def _race_message(v: Variable, unprotected: list[Access]) -> str:
    if v.protection == "mixed":
        return (f"'{v.name}' is shared read-write state synchronized inconsistently: "
                f"no lock is held at all of its {len(v.accesses)} accesses.")
    where = ", ".join(sorted({f"{a.function} ({a.mode})" for a in unprotected})) or "see accesses"
    return f"'{v.name}' is shared read-write state accessed without a lock or atomic operation in: {where}."


def _shared_message(v: Variable) -> str:
    how = {
        "lock": f"protected by {', '.join(v.locks) or 'a lock'}",
        "atomic": "accessed atomically",
        "unprotected": "unprotected",
        "mixed": "synchronized inconsistently",
    }.get(v.protection or "", "unknown protection")
    commutative = "; writes commute" if v.commutative else ""
    n = len(v.accesses)
    return f"'{v.name}' ({v.scope}) is shared read-write state, {how}{commutative}; {n} access{'es' if n != 1 else ''} logged."


def _variable_properties(v: Variable) -> dict[str, Any]:
    return {
        "variable": v.name,
        "scope": v.scope,
        "class": v.cls,
        "protection": v.protection,
        "locks": list(v.locks),
        "commutative": v.commutative,
    }


def _invocation(report: Report) -> dict[str, Any]:
    notifications = []
    for tu in report.translation_units:
        if tu.status != "ok":
            notifications.append({
                "level": "error",
                "message": {"text": f"{tu.file}: failed to parse; its code was not analyzed."},
                "locations": [loc] if (loc := _location(tu.file)) else [],
            })
        for d in tu.diagnostics:
            notifications.append({
                "level": "warning" if d.severity == "warning" else "error",
                "message": {"text": d.message},
                "locations": [loc] if (loc := _location(d.loc)) else [],
            })
    return {"executionSuccessful": True, "toolExecutionNotifications": notifications}


def _threads(threads: tuple[str, ...]) -> str:
    return ", ".join(threads) if threads else "none found"


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _site_id(s: Site) -> str:
    parsed = parse_location(s.loc)
    return _hash(parsed.path if parsed else "", s.function, s.call, s.category)


def _finding_fingerprint(f: Finding) -> dict[str, str]:
    if f.variable:
        return {FINGERPRINT_VARIABLE: f.variable}
    parsed = parse_location(f.loc)
    return {FINGERPRINT_FINDING: _hash(f.kind, parsed.path if parsed else "", f.message)}


def _pascal(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.replace("-", "_").split("_")) or "Finding"
