"""What a code change did to shared state: the difference between two ftmb-report/1 reports.

Variables are matched by their stable id (a hash of file, enclosing scope, name and scope kind,
no line numbers; see the schema), so code that merely moved does not show up. The comparison is
set arithmetic over those ids:

- new / removed variables;
- reclassified variables (class changed, e.g. per_core -> shared_rw);
- protection changes of shared_rw variables (protection kind or lock set);
- commutativity changes;
- new (and resolved) unprotected accesses, keyed by (variable id, function, mode), not by line.

An unprotected access is a concurrent access to a shared_rw variable that holds no lock, is not
atomic and carries no inline suppression. Accesses that cannot overlap another thread (before the
first spawn, after the last join) are not races and are left out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ReportError
from .model import SCHEMA, Access, Report, Variable


@dataclass(frozen=True)
class VariableRef:
    """A variable as a diff names it: enough to find it in the source."""

    id: str
    name: str
    decl: str
    scope: str
    cls: str
    protection: str | None
    locks: tuple[str, ...]

    @staticmethod
    def of(v: Variable) -> VariableRef:
        return VariableRef(v.id, v.name, v.decl, v.scope, v.cls, v.protection, v.locks)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "decl": self.decl,
            "scope": self.scope,
            "class": self.cls,
            "protection": self.protection,
            "locks": list(self.locks),
        }


@dataclass(frozen=True)
class Change:
    """One property of a variable that differs; `old`/`new` are JSON values."""

    variable: VariableRef  # as in the new report
    old: Any
    new: Any

    def to_json(self) -> dict[str, Any]:
        return {"variable": self.variable.to_json(), "old": self.old, "new": self.new}


@dataclass(frozen=True)
class UnprotectedAccess:
    """Unprotected accesses of one variable, in one function, in one mode."""

    variable: VariableRef
    function: str
    mode: str
    locs: tuple[str, ...]  # where, in the report the access occurs in ("path:line:col")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.variable.id, self.function, self.mode)

    def to_json(self) -> dict[str, Any]:
        return {
            "variable": self.variable.to_json(),
            "function": self.function,
            "mode": self.mode,
            "locs": list(self.locs),
        }


@dataclass(frozen=True)
class ReportDiff:
    new_variables: tuple[VariableRef, ...]
    removed_variables: tuple[VariableRef, ...]
    reclassified: tuple[Change, ...]  # old/new: class names
    protection_changed: tuple[Change, ...]  # old/new: {"protection": ..., "locks": [...]}
    commutative_changed: tuple[Change, ...]  # old/new: booleans
    new_unprotected_accesses: tuple[UnprotectedAccess, ...]  # locs from the new report
    resolved_unprotected_accesses: tuple[UnprotectedAccess, ...]  # locs from the old report

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.new_variables,
                self.removed_variables,
                self.reclassified,
                self.protection_changed,
                self.commutative_changed,
                self.new_unprotected_accesses,
                self.resolved_unprotected_accesses,
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "ftmb-diff/1",
            "differences": not self.empty,
            "new_variables": [v.to_json() for v in self.new_variables],
            "removed_variables": [v.to_json() for v in self.removed_variables],
            "reclassified": [c.to_json() for c in self.reclassified],
            "protection_changed": [c.to_json() for c in self.protection_changed],
            "commutative_changed": [c.to_json() for c in self.commutative_changed],
            "new_unprotected_accesses": [a.to_json() for a in self.new_unprotected_accesses],
            "resolved_unprotected_accesses": [a.to_json() for a in self.resolved_unprotected_accesses],
        }


def is_unprotected(access: Access) -> bool:
    """The access may overlap another thread, holds no lock, is not atomic and is not suppressed.
    (It only races when its variable is shared_rw and the variable is not suppressed.)"""
    return access.concurrent and not access.atomic and not access.locks_held and not access.suppressed


def diff_reports(old: Report, new: Report) -> ReportDiff:
    """Compare two reports by variable id; every list is sorted by variable name, then id."""
    old_vars = {v.id: v for v in old.variables}
    new_vars = {v.id: v for v in new.variables}
    common = [new_vars[i] for i in new_vars if i in old_vars]

    reclassified, protection, commutative = [], [], []
    for v in common:
        before, ref = old_vars[v.id], VariableRef.of(v)
        if before.cls != v.cls:
            reclassified.append(Change(ref, before.cls, v.cls))
        if (before.protection, sorted(before.locks)) != (v.protection, sorted(v.locks)):
            protection.append(Change(ref, _protection(before), _protection(v)))
        if before.commutative != v.commutative:
            commutative.append(Change(ref, before.commutative, v.commutative))

    old_unprotected = _unprotected(old)
    new_unprotected = _unprotected(new)

    return ReportDiff(
        new_variables=_sorted(VariableRef.of(v) for i, v in new_vars.items() if i not in old_vars),
        removed_variables=_sorted(VariableRef.of(v) for i, v in old_vars.items() if i not in new_vars),
        reclassified=_sorted(reclassified),
        protection_changed=_sorted(protection),
        commutative_changed=_sorted(commutative),
        new_unprotected_accesses=_sorted(a for k, a in new_unprotected.items() if k not in old_unprotected),
        resolved_unprotected_accesses=_sorted(a for k, a in old_unprotected.items() if k not in new_unprotected),
    )


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read an ftmb-report/1 JSON file; any problem is a one-line ReportError naming the file."""
    # Imported here: the schema checker is only needed when reading reports from disk.
    from .schema import check

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory, not a report file") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text (byte {exc.start}); expected an {SCHEMA} JSON report") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ReportError(f"{path}: JSON nested too deeply; expected an {SCHEMA} report") from None
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}; "
            f"expected an {SCHEMA} report (`ftmb-instrument analyze --format json`)"
        ) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ReportError(
            f"{path}: not an {SCHEMA} report (schema: {found!r}); "
            f"produce one with `ftmb-instrument analyze --format json`"
        )
    problems = check(data)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ReportError(f"{path}: malformed {SCHEMA} report: {problems[0]}{more}")
    # Variables are matched by id: two with one id would make the diff silently pick one of them.
    seen: dict[str, int] = {}
    for i, v in enumerate(data["variables"]):
        if v["id"] in seen:
            raise ReportError(f"{path}: variables[{i}] ({v.get('name')!r}) has the id {v['id']!r} of "
                              f"variables[{seen[v['id']]}]; ids must be unique (regenerate the report)")
        seen[v["id"]] = i
    return Report.from_json(data, source=str(path))


def _protection(v: Variable) -> dict[str, Any]:
    return {"protection": v.protection, "locks": sorted(v.locks)}


def _unprotected(report: Report) -> dict[tuple[str, str, str], UnprotectedAccess]:
    locs: dict[tuple[str, str, str], list[str]] = {}
    refs: dict[str, VariableRef] = {}
    for v in report.variables:
        if v.cls != "shared_rw" or v.suppressed:
            continue
        for a in v.accesses:
            if is_unprotected(a):
                refs.setdefault(v.id, VariableRef.of(v))
                locs.setdefault((v.id, a.function, a.mode), []).append(a.loc)
    return {
        key: UnprotectedAccess(refs[key[0]], key[1], key[2], tuple(sorted(set(where))))
        for key, where in locs.items()
    }


def _sort_key(item: VariableRef | Change | UnprotectedAccess) -> tuple[str, ...]:
    if isinstance(item, VariableRef):
        return (item.name, item.id)
    if isinstance(item, Change):
        return (item.variable.name, item.variable.id)
    return (item.variable.name, item.variable.id, item.function, item.mode)


def _sorted(items: Any) -> tuple[Any, ...]:
    return tuple(sorted(items, key=_sort_key))
