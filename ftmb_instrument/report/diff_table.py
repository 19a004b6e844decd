"""A ReportDiff as rich tables, for people reading `ftmb-instrument diff` in a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..diff import Change, ReportDiff, UnprotectedAccess, VariableRef

MAX_LOCS = 3  # locations listed per (variable, function, mode); `--format json` has them all


def render(diff: ReportDiff, console: Console) -> None:
    """Print `diff` on `console`: one section per kind of difference, empty ones left out."""
    if diff.empty:
        console.print("No difference in shared state.")
        return
    # (title, what one item is called, items, table builder), most urgent first
    sections = (
        ("New unprotected accesses", "new unprotected access", diff.new_unprotected_accesses, _accesses),
        ("Reclassified variables", "reclassified variable", diff.reclassified, _changes),
        ("Protection changed", "protection change", diff.protection_changed, _changes),
        ("Commutativity changed", "commutativity change", diff.commutative_changed, _changes),
        ("New variables", "new variable", diff.new_variables, _variables),
        ("Removed variables", "removed variable", diff.removed_variables, _variables),
        ("Resolved unprotected accesses", "resolved unprotected access", diff.resolved_unprotected_accesses, _accesses),
    )
    counts = ", ".join(_count(len(items), noun) for _, noun, items, _ in sections if items)
    console.print(f"Shared state differs: {counts}.")
    for title, _, items, table in sections:
        if items:
            console.print()
            console.print(table(title, items))


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun}es" if noun.endswith("ss") else f"{n} {noun}s"


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
        shown = list(a.locs[:MAX_LOCS])
        if len(a.locs) > MAX_LOCS:
            shown.append(f"(+{len(a.locs) - MAX_LOCS} more)")
        t.add_row(a.variable.name, a.function, a.mode, "\n".join(shown))
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
