import sys
from pathlib import Path

# Test helper modules (corpus_expect, test_report_sample) are imported by their plain names.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# A suite started in the background by a non-interactive shell (`./.ci/run &`) inherits SIGINT
# ignored, and every command the tests start would inherit that too: tests that interrupt a
# command with SIGINT would test nothing. Commands start with SIGINT at its default here.
import signal  # noqa: E402

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# After the suite, fail the run if anything of ours it started is left (tests/leftovers.py).
from leftovers import pytest_sessionfinish, pytest_sessionstart  # noqa: E402,F401
