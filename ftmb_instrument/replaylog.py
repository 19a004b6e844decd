"""The header of the replay log the output logger writes (`--log`) and a replay loads.

The format is `struct _ftmb_log_file_hdr` in runtime/src/ftmb_internal.h ("FTMBLOG4"): magic, ABI
version, thread count, the recording's tsc_hz, each thread's record count and base, and an FNV-1a
check of those bytes, so that an edited header (a changed tsc_hz, say) is refused when loaded.
The records follow it; each carries its own check.
"""

from __future__ import annotations

import struct

from .abi.spec import ABI_VERSION

MAGIC = 0x34474F4C424D5446  # "FTMBLOG4"
MAX_THREADS = 32  # FTMB_MAX_THREADS
HEADER = struct.Struct(f"<QIIQ{MAX_THREADS}Q{MAX_THREADS}Q")  # everything the check covers
CHECK = struct.Struct("<Q")


def header_check(covered: bytes) -> int:
    """FNV-1a (64 bit) of the header bytes before the check (`_ftmb_log_hdr_check`)."""
    x = 0xCBF29CE484222325
    for b in covered:
        x = ((x ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return x


def pack_header(nthreads: int, tsc_hz: int, count: list[int] | None = None, base: list[int] | None = None,
                abi_version: int = ABI_VERSION) -> bytes:
    """A log header; with no counts it is the header of an empty log."""
    count = list(count or []) + [0] * (MAX_THREADS - len(count or []))
    base = list(base or []) + [0] * (MAX_THREADS - len(base or []))
    covered = HEADER.pack(MAGIC, abi_version, nthreads, tsc_hz, *count, *base)
    return covered + CHECK.pack(header_check(covered))
