"""The one exception hierarchy of the project.

Library code raises these; the CLI boundary turns each into a single line on stderr and an
exit code. Messages name the file (and line) they are about, and what to do where that helps.
"""


class FtmbError(Exception):
    """Base class: bad input or a condition the user must fix. Exit code 1."""

    exit_code = 1


class InputError(FtmbError):
    """A file or value the user handed us is missing, unreadable or malformed."""


class ModelError(FtmbError):
    """A library-semantics model file is malformed or uses an unknown key."""


class ParseError(FtmbError):
    """A translation unit could not be parsed without errors."""


class SuppressionError(FtmbError):
    """An inline `ftmb:` marker is misspelled or lacks its reason."""


class ReportError(FtmbError):
    """A report file is unreadable or does not follow the expected schema."""


class RewriteError(FtmbError):
    """A site cannot be rewritten safely, edits conflict, or a plan is stale or malformed."""
