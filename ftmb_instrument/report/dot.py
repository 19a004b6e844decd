"""A Report as a Graphviz DOT graph: threads and the variables they share.

Threads are boxes; shared_rw, shared_ro and per_core variables are ellipses filled by class
(thread_private variables are left out: nothing is shared). An edge thread -> variable is labeled
with the access modes of that thread ("r", "w", "rmw"); it is red when one of those accesses is
unprotected (no lock, not atomic, may overlap another thread).
"""

from __future__ import annotations

from ..diff import is_unprotected
from ..model import MODES, Report, Thread

GRAPHED_CLASSES = ("shared_rw", "shared_ro", "per_core")
CLASS_COLORS = {"shared_rw": "#f4a6a6", "shared_ro": "#a6c8f4", "per_core": "#b6e3b0"}
MODE_LABELS = {"read": "r", "write": "w", "rmw": "rmw"}
assert tuple(MODE_LABELS) == MODES


def render(report: Report) -> str:
    """The DOT text of the sharing graph."""
    lines = [
        "digraph ftmb {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    threads: dict[str, Thread | None] = {t.entry: t for t in report.threads}
    variables = [v for v in report.variables if v.cls in GRAPHED_CLASSES]
    for v in variables:
        for a in v.accesses:
            for entry in a.threads:
                threads.setdefault(entry, None)

    for entry, t in threads.items():
        label = entry
        if t is not None:
            started = "" if t.how == entry else t.how
            if t.instances == "several":
                started = f"{started} (several)".strip()
            label = f"{entry}\n{started}" if started else entry
        lines.append(f"  {_id('thread', entry)} [shape=box, label={_quote(label)}];")

    for v in variables:
        detail = v.cls if v.protection is None else f"{v.cls}, {v.protection}"
        if v.locks:
            detail += f"\n{', '.join(v.locks)}"
        label = f"{v.name}\n{detail}"
        lines.append(
            f"  {_id('var', v.id)} [shape=ellipse, style=filled, fillcolor={_quote(CLASS_COLORS[v.cls])}, "
            f"label={_quote(label)}, tooltip={_quote(v.decl)}];"
        )

    for v in variables:
        modes: dict[str, set[str]] = {}
        racy: set[str] = set()
        for a in v.accesses:
            for entry in a.threads:
                modes.setdefault(entry, set()).add(a.mode)
                if v.cls == "shared_rw" and not v.suppressed and is_unprotected(a):
                    racy.add(entry)
        for entry, used in modes.items():
            label = ",".join(MODE_LABELS[m] for m in MODES if m in used)
            style = ', color="red", fontcolor="red"' if entry in racy else ""
            lines.append(f"  {_id('thread', entry)} -> {_id('var', v.id)} [label={_quote(label)}{style}];")

    lines.append("}")
    return "\n".join(lines) + "\n"


def _id(kind: str, name: str) -> str:
    return _quote(f"{kind}:{name}")


def _quote(text: str) -> str:
    """A DOT quoted string; newlines become centered line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
