"""The exception classes of bytepump's public contract (DESIGN.md §1)."""

from __future__ import annotations


class Timeout(TimeoutError):
    """A side of the transfer was idle for longer than the timeout."""


class UpstreamTimeout(Timeout):
    """The source yielded no data for ``timeout`` seconds."""


class DownstreamTimeout(Timeout):
    """The destination accepted no data for ``timeout`` seconds."""


class SpliceUnsupported(OSError):
    """``fallback=False`` was given and splice(2) cannot carry this pair."""


class ProtocolError(ValueError):
    """A malformed or oversized HTTP response from an origin."""


class HTTPStatusError(ProtocolError):
    """The origin answered with a status the caller did not accept."""

    def __init__(self, message: str, status: int, head: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.head = head


class IncompleteBody(ProtocolError):
    """The origin's body ended early and the retries ran out."""

    def __init__(self, message: str, transferred: int = 0) -> None:
        super().__init__(message)
        self.transferred = transferred


def mark_upstream(exc: BaseException) -> BaseException:
    """Mark ``exc`` as the source's (the origin's) failure and return it:
    ``splice_from`` retries those, never a failure on ``dst``'s side."""
    exc._bytepump_upstream = True  # type: ignore[attr-defined]
    return exc


def is_upstream(exc: BaseException) -> bool:
    """Whether ``exc`` is the source's failure (see :func:`mark_upstream`)."""
    return isinstance(exc, UpstreamTimeout) or bool(
        getattr(exc, "_bytepump_upstream", False)
    )


def annotate(exc: BaseException, transferred: int) -> BaseException:
    """Attach the number of bytes delivered so far to ``exc`` and return it."""
    exc.transferred = transferred  # type: ignore[attr-defined]
    return exc
