"""The runtime ABI: spec.py is the source of truth; emit_table.py (generated) is what the rewriter
reads; calls.replacement_call renders a replacement call from it."""

from .calls import AbiCallError, replacement_call
from .spec import ABI_VERSION, ENTRIES, Entry

__all__ = ["ABI_VERSION", "ENTRIES", "AbiCallError", "Entry", "replacement_call"]
