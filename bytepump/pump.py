"""``splice_to``: move bytes between two descriptors, blocking the caller."""

from __future__ import annotations

from ._endpoint import FILE, Endpoint, FdLike, SourcePosition
from ._errors import SpliceUnsupported, annotate
from ._pump import CopyPump, ProgressCallback, _Pump, splice_pump
from ._waiters import EpollWaiter


def _check_non_negative(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative, got {value!r}")


def _check_int(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int)
        ):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")


class Transfer:
    """A checked pair of endpoints and the §1 rules around moving bytes.

    The drivers (this module's blocking one, ``bytepump.aio``'s) run
    :meth:`pumps` and :meth:`finish` around their own waiting.
    """

    def __init__(
        self,
        src: FdLike,
        dst: FdLike,
        timeout: float | None,
        count: int | None,
        offset: int | None,
        on_progress: ProgressCallback,
    ) -> None:
        _check_int(count=count, offset=offset)
        _check_non_negative(timeout=timeout, count=count, offset=offset)
        self.src = Endpoint(src, "src")
        self.dst = Endpoint(dst, "dst")
        if self.src.fd == self.dst.fd:
            raise ValueError("src and dst are the same file descriptor")
        if offset is not None and self.src.kind != FILE:
            raise ValueError("offset needs a seekable (regular file) src")
        self.count = count
        self.offset = offset
        self.on_progress = on_progress
        self.position: SourcePosition | None = None

    def start(self) -> None:
        """Flush a buffered ``dst`` and note where a file source starts."""
        flush = getattr(self.dst.obj, "flush", None)
        if flush is not None:
            flush()
        if self.src.kind == FILE:
            self.position = SourcePosition(self.src, self.offset)

    def _pump(self, kind: type) -> _Pump:
        start = None if self.position is None else self.position.start
        return kind(self.src, self.dst, self.count, self.on_progress, start)

    def splice_pump(self) -> _Pump:
        """The zero-copy pump; raises :class:`SpliceUnsupported` if refused."""
        return self._pump(splice_pump)

    def copy_pump(self) -> _Pump:
        """The user-space fallback."""
        return self._pump(CopyPump)

    def finish(self, transferred: int) -> None:
        """Settle the source position and restore the caller's flags."""
        try:
            if self.position is not None:
                self.position.settle(transferred)
        finally:
            self.src.restore()
            self.dst.restore()


def _drive(pump: _Pump, timeout: float | None) -> int:
    waiter = EpollWaiter()
    try:
        while True:
            try:
                waits = pump.advance()
            except InterruptedError:
                continue  # PEP 475: the signal handlers have run; retry
            if waits is None:
                return pump.transferred
            for wait in waits:
                waiter.wait(wait, timeout)
    except BaseException as exc:
        annotate(exc, pump.transferred)
        raise
    finally:
        waiter.close()
        pump.close()


def splice_to(
    src: FdLike,
    dst: FdLike,
    timeout: float | None = 60.0,
    *,
    count: int | None = None,
    offset: int | None = None,
    on_progress: ProgressCallback = None,
    fallback: bool = True,
) -> int:
    """Copy from ``src`` to ``dst`` until end of file or ``count`` bytes.

    ``src`` and ``dst`` are int file descriptors or objects with
    ``fileno()``: regular files, pipes, stream sockets, character devices.
    The data stays in the kernel (splice(2)) unless the pair cannot be
    spliced (TLS sockets, ``O_APPEND`` destinations, some ``/proc`` files),
    where one reusable user-space buffer carries it instead, or
    :class:`SpliceUnsupported` is raised before any byte moves if
    ``fallback`` is false.

    ``timeout`` is an inactivity limit in seconds (``None``: none):
    :class:`UpstreamTimeout` when ``src`` yields nothing that long,
    :class:`DownstreamTimeout` when ``dst`` accepts nothing. ``on_progress``
    is called with each positive byte count written to ``dst``.

    Returns the number of bytes written to ``dst``. Every exception raised
    once bytes may have moved carries ``.transferred``; the caller's
    ``O_NONBLOCK`` flags are restored on every path, and a regular-file
    source is left just past the last byte delivered.

    Raises ``TypeError`` for an object without a descriptor, ``ValueError``
    for negative numbers, the same descriptor twice, a closed file object
    or ``offset`` on a non-seekable source, ``OSError`` (``EBADF``) for a
    closed descriptor and ``IsADirectoryError`` for a directory.
    """
    transfer = Transfer(src, dst, timeout, count, offset, on_progress)
    if count == 0:
        return 0
    transferred = 0
    try:
        transfer.start()
        try:
            transferred = _drive(transfer.splice_pump(), timeout)
        except SpliceUnsupported:
            if not fallback:
                raise
            transferred = _drive(transfer.copy_pump(), timeout)
    except BaseException as exc:
        transferred = getattr(exc, "transferred", 0)
        annotate(exc, transferred)
        raise
    finally:
        transfer.finish(transferred)
    return transferred
