"""ftmb-instrument: automatic rollback-recovery (FTMB) for multi-threaded C middleboxes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ftmb-instrument")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
