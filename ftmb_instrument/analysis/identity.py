"""Stable variable identities: reports of two versions of a codebase compare by these.

The id is the first 16 hex digits of SHA-256 over four fields joined by NUL bytes, and never a
line number, so moving code does not change it:
  1. the file of the declaration (or allocation site), relative to the project root;
  2. the enclosing function for static locals, stack objects and heap objects, "" otherwise;
  3. the variable's name; for a heap object `CALL->ASSIGNED` (allocation call and the variable
     its result is stored into), for the unknown target of a global pointer `*NAME`; for a struct
     member that is an object of its own, that name and `.MEMBER` per member of its path
     (`app.pool`, `CALL->ASSIGNED.hits`): the whole variable's id does not change;
  4. the scope: global | static | static_local | heap | stack.
"""

from __future__ import annotations

import hashlib


def variable_id(file: str, function: str, name: str, scope: str) -> str:
    return hashlib.sha256("\0".join((file, function, name, scope)).encode()).hexdigest()[:16]
