"""The rewriter: apply a plan's edits to the original sources.

Edits are byte-offset replacements (an insertion has start == end) into the original file. Per
file they are collected from every site, identical ones deduplicated (a header included by many
translation units is edited once), sorted by offset and by their order class (what closes a region
before what opens the next at the same offset), and refused when two of them overlap. A file whose
contents changed since the plan was made, or that already carries the instrumentation marker, is
refused too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import RewriteError
from ..plan import Edit, Plan, is_instrumented, sha256


@dataclass(frozen=True)
class Rewritten:
    path: str  # absolute path of the original
    original: bytes
    text: bytes


def apply_edits(data: bytes, edits: list[Edit], where: str = "<file>") -> bytes:
    """`data` with `edits` applied; RewriteError on overlapping or out-of-range edits."""
    uniq = sorted(set(edits), key=lambda e: (e.start, e.end > e.start, e.order, e.end, e.text))
    for e in uniq:
        if not (0 <= e.start <= e.end <= len(data)):
            raise RewriteError(f"{where}: edit [{e.start}, {e.end}) is outside the file ({len(data)} bytes); "
                               f"the plan does not match this file")
    for a, b in zip(uniq, uniq[1:]):
        # b starts at or after a; a replacement must end at or before the next edit's start, and no
        # insertion may fall strictly inside a replacement
        if a.end > b.start or (a.start == b.start and a.end > a.start and b.end > b.start):
            line = data.count(b"\n", 0, b.start) + 1
            raise RewriteError(f"{where}:{line}: conflicting edits at bytes [{a.start}, {a.end}) and "
                               f"[{b.start}, {b.end}) ({a.text!r} vs {b.text!r})")
    out = []
    pos = 0
    last = b""  # the last byte written: an insertion must not join two words (`return(x)`)
    for e in uniq:
        out.append(data[pos:e.start])
        if e.start > pos:
            last = data[e.start - 1:e.start]
        text = e.text.encode()
        if text and _word(last) and _word(text[:1]):
            out.append(b" ")
        if text and _word(text[-1:]) and _word(data[e.end:e.end + 1]):
            text += b" "
        out.append(text)
        last = text[-1:] or last
        pos = e.end
    out.append(data[pos:])
    return b"".join(out)


def _word(b: bytes) -> bool:
    return bool(b) and (b.isalnum() or b == b"_")


def apply_plan(plan: Plan, only: set[str] | None = None) -> list[Rewritten]:
    """Rewrite every file the plan edits (or only those whose absolute path is in `only`)."""
    by_file: dict[str, list[Edit]] = {}
    for s in plan.sites:
        by_file.setdefault(s.file, []).extend(s.edits)
    hashes = dict(plan.files)
    out = []
    for rel in sorted(by_file):
        path = plan.abspath(rel)
        if only is not None and os.path.realpath(path) not in only:
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise RewriteError(f"{path}: cannot read: {exc.strerror}") from None
        if is_instrumented(data):
            raise RewriteError(f"{rel}:1: already instrumented (it carries the FTMB-INSTRUMENTED marker); "
                               f"instrument the original sources")
        if rel in hashes and hashes[rel] != sha256(data):
            raise RewriteError(f"{rel}: changed since the plan was made; make the plan again")
        out.append(Rewritten(path, data, apply_edits(data, by_file[rel], rel)))
    return out
