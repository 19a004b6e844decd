"""The runtime ABI: spec.py is the source of truth; emit_table.py (generated) is what the rewriter reads."""

from .spec import ABI_VERSION, ENTRIES, Entry

__all__ = ["ABI_VERSION", "ENTRIES", "Entry"]
