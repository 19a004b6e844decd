"""The location strings of the report model ("path:line" and "path:line:col") taken apart."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Non-greedy path: the line (and column) are the last one or two numeric fields, even when the
# path itself contains a colon.
_LOC = re.compile(r"^(?P<path>.+?):(?P<line>[0-9]+)(?::(?P<col>[0-9]+))?$")


@dataclass(frozen=True)
class Location:
    path: str
    line: int | None = None  # None: the string held no line ("" or a bare path)
    col: int | None = None


def parse_location(loc: str) -> Location | None:
    """Split a location string; None for "" (no source position)."""
    if not loc:
        return None
    m = _LOC.match(loc)
    if m is None:
        return Location(loc)
    col = m.group("col")
    return Location(m.group("path"), int(m.group("line")), int(col) if col else None)

