"""Where results go: stdout, or a user's output file, written so that nothing they had is destroyed.

This is the one place that writes a file a user named (`-o FILE`, `traffic OUT.pcap`, `run --out`):

- a regular file (or a name that does not exist yet) is written to a temporary file in the same
  directory, which then replaces it in one `os.replace` (atomic on POSIX), so an error half-way (a
  full disk, an interrupted run, a renderer that raises) never leaves a truncated file where a
  previous good one stood, and the temporary file is removed whatever happens;
- a symbolic link is followed: the file it points to is replaced, the link stays a link;
- a device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe) is written directly, never replaced
  by a regular file;
- a directory, a symlink loop or a missing directory is refused with one line naming the path.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield the name to write `path`'s new content to; it becomes `path` only if the block succeeds.

    For a regular file it is a temporary file next to the (symlink-resolved) target, renamed over it
    when the block returns and removed when it raises; for a device, a FIFO or a descriptor name
    (/dev/stdout, /dev/fd/N, /proc/self/fd/N) it is `path` itself.
    OSErrors, in the block or in the rename, become an InputError naming `path`.
    """
    shown = Path(path)
    try:
        st = os.stat(shown)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a symlink loop, a path through a non-directory, no permission
        raise InputError(f"{shown}: cannot write: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InputError(f"{shown}: cannot write: Is a directory")
    if st is not None and (not stat.S_ISREG(st.st_mode) or _is_descriptor_name(shown)):
        # Opened by its own name: /dev/stdout resolves to /proc/self/fd/1, which may name a pipe, or
        # a file the shell opened (`> out`, `>> log`) that must get the bytes, not be replaced.
        try:
            yield os.fspath(path)
        except OSError as exc:
            raise InputError(f"{shown}: cannot write: {exc.strerror or exc}") from None
        return
    target = Path(os.path.realpath(shown))  # a symlink's target (existing, or to be created) is replaced
    if st is None and not target.parent.is_dir():
        raise InputError(f"{shown}: cannot write: its directory does not exist ({target.parent})")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise InputError(f"{shown}: cannot write: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield tmp_name
        # mkstemp creates the file 0600; give it the mode the target has, or a plain open() would give.
        os.chmod(tmp_name, stat.S_IMODE(st.st_mode) if st is not None else _new_file_mode())
        os.replace(tmp_name, target)
    except OSError as exc:
        raise InputError(f"{shown}: cannot write: {exc.strerror or exc}") from None
    finally:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass


def write_atomic(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Write `text` (str as UTF-8, or bytes) to `path`, all or nothing; raises InputError naming the path."""
    if not isinstance(text, (str, bytes)):
        raise TypeError(f"write_atomic: expected str or bytes, got {type(text).__name__}")
    data = text.encode("utf-8") if isinstance(text, str) else text
    with replacing(path) as name:
        # Written directly (a device, FIFO or descriptor name): appending, because reopening
        # /dev/stdout with O_TRUNC would empty the file a shell opened with `>>`.
        with open(name, "ab" if name == os.fspath(path) else "wb") as f:
            f.write(data)
            f.flush()
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                os.fsync(f.fileno())


def emit(text: str, output: str | os.PathLike[str] | None) -> None:
    """Write `text` to `output` atomically, or to stdout when `output` is None."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(output, text)


def _is_descriptor_name(path: Path) -> bool:
    """/dev/stdout, /dev/stderr, /dev/fd/N, /proc/.../fd/N: an already open file, whatever it is."""
    text = os.path.abspath(path)
    return text in ("/dev/stdout", "/dev/stderr") or text.startswith(("/dev/fd/", "/proc/"))


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
