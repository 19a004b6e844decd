"""Walks as deep as the input: the one place that sets how deep a recursive walk may go.

The AST walks (frontend) follow the program's nesting: statements in statements, `a.b.c...` and
`p->q->...` chains, operands of operands. The walks over the merged program (analysis) follow its
pointer chains, thousands of calls deep on HAProxy once its own headers are project code. Each runs
through `call_deep`, in a thread with a large stack (reserved, committed on touch) under a raised
recursion limit. Deeper still is `too_deep`: the caller reports the unit as failed in one line.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from typing import Callable, TypeVar

DEEP_STACK = 1 << 30
DEEP_RECURSION = 200_000

T = TypeVar("T")


def call_deep(fn: Callable[..., T], *args) -> T:
    """`fn(*args)` in a thread with DEEP_STACK bytes of stack and a recursion limit of DEEP_RECURSION;
    its exception, if any, is raised here."""
    out: list = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except BaseException as exc:  # re-raised in the caller's thread
            out.append(exc)

    old_stack = threading.stack_size(DEEP_STACK)
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, DEEP_RECURSION))
    try:
        t = threading.Thread(target=run, name="ftmb-deep", daemon=True)
        t.start()
        t.join()
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(old_limit)
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def too_deep(exc: BaseException) -> bool:
    """A walk went past DEEP_RECURSION: a RecursionError, also one that ctypes raised while converting
    the arguments of a libclang call (it arrives as a ctypes.ArgumentError naming it)."""
    return isinstance(exc, RecursionError) or (
        isinstance(exc, ctypes.ArgumentError) and "RecursionError" in str(exc))


TOO_DEEP = f"nested more than the walks allow ({DEEP_RECURSION} calls deep)"
