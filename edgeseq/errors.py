"""The one exception type that reaches the user as a single line.

Anything the user can get wrong (a path, a file, a record, a sample rate, a bundle) raises
``EdgeseqError`` with a message that says what is wrong and where; the CLI prints it on one line
and exits with status 2. Bugs stay ordinary exceptions with tracebacks.
"""


class EdgeseqError(Exception):
    """A problem with the user's input, reported as one line (exit status 2)."""


def install_hint(extra: str) -> str:
    """How to add an extra: edgeseq is not on PyPI, so from a checkout or from its wheel."""
    return (f"pip install -e \".[{extra}]\" in a checkout, or pip install "
            f"\"edgeseq-VERSION-py3-none-any.whl[{extra}]\"")


class StreamFailed(EdgeseqError):
    """A ``serve`` run that failed after it started: the one line, and the summary of what it had
    counted by then, which the CLI prints before the line (nothing counted is lost with the run)."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary
