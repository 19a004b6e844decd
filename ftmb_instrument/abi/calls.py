"""Render the runtime call that replaces a call in instrumented source, from the generated table.

    >>> replacement_call("pthread_mutex_lock", ["&m"], obj=3, site=17)
    'ftmb_pthread_mutex_lock(&m, 3, 17)'
    >>> replacement_call("atomic_fetch_add", ["&n", "1"], size=4, obj=5, site=2)
    'ftmb_atomic_fetch_add_4(&n, 1, 5, 5, 2)'
"""

from __future__ import annotations

import re

from ..errors import FtmbError
from .emit_table import TABLE


class AbiCallError(FtmbError):
    """A call the runtime ABI has no replacement for, or replaced with the wrong arguments."""


def replacement_call(call: str, args: list[str], *, size: int | None = None, obj: int | None = None,
                     site: int | None = None) -> str:
    """The C expression calling the ftmb_ entry point that replaces `call(args...)`.

    `size` (1, 2, 4 or 8 bytes) picks among the per-size atomic entry points; `obj` and `site` are
    the compile-time ids that lock, atomic and ordered entries take last.
    """
    names = TABLE["wraps"].get(call)
    if not names:
        raise AbiCallError(f"{call}: the runtime ABI has no replacement for this call")
    if len(names) > 1:
        if size is None:
            raise AbiCallError(f"{call}: give the operand size (one of {', '.join(n[-1] for n in names)} bytes)")
        names = [n for n in names if n.endswith(f"_{size}")]
        if not names:
            raise AbiCallError(f"{call}: no entry point for {size}-byte operands")
    name = names[0]
    entry = TABLE["entries"][name]
    template = entry["args"].get(call)
    if template is None:
        if len(args) != len(entry["params"]):
            raise AbiCallError(f"{call}: {len(args)} arguments, {name} takes {len(entry['params'])}")
        out = list(args)
    else:
        def arg(m: re.Match) -> str:
            i = int(m.group(1))
            if i >= len(args):
                raise AbiCallError(f"{call}: needs at least {i + 1} arguments, got {len(args)}")
            return args[i]
        out = [re.sub(r"\$(\d+)", arg, item.strip()) for item in template.split(",")]
    for ident in entry["trailing_ids"]:
        value = {"obj": obj, "site": site}[ident]
        if value is None:
            raise AbiCallError(f"{call}: {name} needs the compile-time {ident} id")
        out.append(str(value))
    return f"{name}({', '.join(out)})"
