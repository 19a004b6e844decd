"""A ReportDiff as rich tables, for people reading `ftmb-instrument diff` in a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..diff import Change, ReportDiff, UnprotectedAccess, VariableRef


def render(diff: ReportDiff, console: Console) -> None:
    """Print `diff` on `console`: one section per kind of difference, empty ones left out."""
    if diff.empty:
        console.print("No difference in shared state.")
        return
    sections = (
        ("New unprotected accesses", diff.new_unprotected_accesses, _accesses),
        ("Reclassified variables", diff.reclassified, _changes),
        ("Protection changed", diff.protection_changed, _changes),
        ("Commutativity changed", diff.commutative_changed, _changes),
        ("New variables", diff.new_variables, _variables),
        ("Removed variables", diff.removed_variables, _variables),
        ("Resolved unprotected accesses", diff.resolved_unprotected_accesses, _accesses),
    )
    counts = ", ".join(f"{len(items)} {title.lower()}" for title, items, _ in sections if items)
    console.print(f"Shared state differs: {counts}.")
    for title, items, table in sections:
        if items:
            console.print()
            console.print(table(title, items))


def _variables(title: str, items: tuple[VariableRef, ...]) -> Table:
    t = Table(title=title, title_justify="left", expand=False)
    for col in ("variable", "class", "protection", "scope", "decl"):
        t.add_column(col, overflow="fold")
    for v in items:
        t.add_row(v.name, v.cls, _protection_text(v.protection, v.locks), v.scope, v.decl)
    return t


def _changes(title: str, items: tuple[Change, ...]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("variable", "old", "new", "decl"):
        t.add_column(col, overflow="fold")
    for c in items:
        t.add_row(c.variable.name, _value_text(c.old), _value_text(c.new), c.variable.decl)
    return t


def _accesses(title: str, items: tuple[UnprotectedAccess, ...]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("variable", "function", "mode", "where"):
        t.add_column(col, overflow="fold")
    for a in items:
        t.add_row(a.variable.name, a.function, a.mode, "\n".join(a.locs))
    return t


def _protection_text(protection: str | None, locks: tuple[str, ...] | list[str]) -> str:
    if protection is None:
        return "-"
    return f"{protection} ({', '.join(locks)})" if locks else protection


def _value_text(value: object) -> str:
    if isinstance(value, dict):
        return _protection_text(value["protection"], value["locks"])
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
