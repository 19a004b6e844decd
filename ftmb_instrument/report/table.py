"""A Report as rich tables, for a person at a terminal (readable at 100 columns)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..model import CLASSES, PROTECTIONS, Report, Site, Variable

# Most urgent first: races, then inconsistent locking, then what is fine.
_PROTECTION_ORDER = ("unprotected", "mixed", "lock", "atomic")
_PROTECTION_STYLE = {"unprotected": "bold red", "mixed": "yellow", "lock": "green", "atomic": "green"}
_CLASS_STYLE = {"shared_rw": "bold", "shared_ro": "", "per_core": "", "thread_private": "dim"}
assert set(_PROTECTION_ORDER) == set(PROTECTIONS)


def render(report: Report, console: Console) -> None:
    """Print the report on `console`: coverage, threads, variables (shared_rw first, with
    class, protection and locks, commutativity, access count, declaration),
    nondeterminism, packet I/O, translation units that failed, warnings."""
    console.print(_coverage(report))
    console.print()
    console.print(_threads(report))
    console.print()
    console.print(_variables(report))
    suppressed = sorted((v for v in report.variables if v.suppressed), key=variable_order)
    for v in suppressed:
        console.print(Text(f"* {v.name} is suppressed: {v.suppressed}", style="dim"))
    for title, sites in (("Nondeterminism", report.nondeterminism), ("Packet I/O", report.packet_io)):
        console.print()
        console.print(_sites(title, sites) if sites else f"{title}: none found.")
    failed = [tu for tu in report.translation_units if tu.status != "ok"]
    if failed:
        console.print()
        console.print(_failed(failed))
    console.print()
    if report.warnings:
        console.print(_warnings(report))
    else:
        console.print("Warnings: none.")


def to_text(report: Report, width: int = 100) -> str:
    """The table rendering as plain text (no colors), for `-o FILE` and the format dispatcher."""
    buffer = io.StringIO()
    render(report, Console(file=buffer, width=width, color_system=None, highlight=False, soft_wrap=False))
    return buffer.getvalue()


def variable_order(v: Variable) -> tuple[int, int, str, str]:
    """Sort key: shared_rw first (races first among them), then by class, name, declaration."""
    protection = _PROTECTION_ORDER.index(v.protection) if v.protection in _PROTECTION_ORDER else len(_PROTECTION_ORDER)
    cls = CLASSES.index(v.cls) if v.cls in CLASSES else len(CLASSES)
    return (cls, protection, v.name, v.decl)


def _coverage(report: Report) -> Text:
    c = report.coverage
    text = Text(f"ftmb-instrument {report.tool_version}: ")
    text.append(f"{c.tus_ok} translation unit{'s' if c.tus_ok != 1 else ''} analyzed, ")
    text.append(f"{c.tus_failed} failed", style="bold red" if c.tus_failed else "")
    text.append(f", {c.functions_analyzed} functions")
    if c.tus_failed:
        text.append("\nResults are incomplete: the code of failed translation units was not analyzed.", style="red")
    return text


def _threads(report: Report) -> Table | str:
    if not report.threads:
        return "Threads: none found."
    t = Table(title="Threads", title_justify="left")
    t.add_column("entry", overflow="fold")
    t.add_column("started by", overflow="fold")
    t.add_column("instances")
    t.add_column("site", overflow="fold")
    for th in report.threads:
        t.add_row(th.entry, th.how, th.instances, th.site or "-")
    return t


def _variables(report: Report) -> Table | str:
    if not report.variables:
        return "Variables: none found."
    t = Table(title="Variables", title_justify="left")
    t.add_column("name", overflow="fold")
    t.add_column("class", no_wrap=True)
    # Protection and its locks share a column ("lock (m)"): a column of its own, mostly "-",
    # would push the declarations past 100 columns.
    t.add_column("protection (locks)", overflow="fold")
    t.add_column("comm.", no_wrap=True)
    t.add_column("acc.", justify="right", no_wrap=True)
    t.add_column("decl", overflow="fold")
    for v in sorted(report.variables, key=variable_order):
        protection = Text(v.protection or "-", style=_PROTECTION_STYLE.get(v.protection or "", ""))
        if v.suppressed:
            protection.append("*")
        if v.locks:
            protection.append(f" ({', '.join(v.locks)})")
        t.add_row(
            Text(v.name, style=_CLASS_STYLE.get(v.cls, "")),
            v.cls,
            protection,
            ("yes" if v.commutative else "no") if v.cls == "shared_rw" else "-",
            str(len(v.accesses)),
            v.decl,
        )
    return t


def _sites(title: str, sites: tuple[Site, ...]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("call", overflow="fold")
    t.add_column("category", no_wrap=True)
    t.add_column("function", overflow="fold")
    t.add_column("threads", overflow="fold")
    t.add_column("where", overflow="fold")
    for s in sites:
        t.add_row(s.call, s.category, s.function, ", ".join(s.threads) or "-", s.loc)
    return t


def _failed(failed: list) -> Table:
    t = Table(title="Translation units that failed to parse", title_justify="left", title_style="red")
    t.add_column("file", overflow="fold")
    t.add_column("first error", overflow="fold")
    for tu in failed:
        first = tu.first_error()
        t.add_row(tu.file, f"{first.loc}: {first.message}" if first else "-")
    return t


def _warnings(report: Report) -> Table:
    t = Table(title="Warnings", title_justify="left")
    t.add_column("kind", no_wrap=True)
    t.add_column("where", overflow="fold")
    t.add_column("message", overflow="fold")
    for w in report.warnings:
        t.add_row(w.kind, w.loc or "-", w.message)
    return t
