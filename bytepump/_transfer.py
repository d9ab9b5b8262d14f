"""One transfer from start to finish, as a generator of waits.

:func:`steps` holds every rule of DESIGN.md §1 that is not about waiting:
the input checks, the flush, the choice between splicing and the fallback,
``.transferred`` on errors, the file position and the flags restored. It
yields each :class:`~bytepump._waiters.Wait` the pump needs and has a waiter
(epoll in :mod:`bytepump.pump`, the event loop in :mod:`bytepump.aio`) do
it; a waiter's exception is thrown back in so the same cleanup runs.
"""

from __future__ import annotations

import errno
from collections.abc import Generator
from typing import TypeVar

from ._endpoint import FILE, PIPE, Endpoint, FdLike, SourcePosition
from ._errors import SpliceUnsupported, annotate
from ._paths import kernel_path
from ._pump import CopyPump, Job, ProgressCallback, _Pump
from ._waiters import Wait, check_timeout

KERNEL_MAX = 2**63 - 1
"""The largest offset or count the kernel takes (``loff_t``)."""


def _check_count(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    if value > KERNEL_MAX:
        raise ValueError(f"{name} must be at most 2**63 - 1, got {value!r}")


class Transfer:
    """A checked pair of endpoints and the §1 rules around moving bytes.

    Constructing it checks the arguments, before any byte moves, and picks
    the path (:mod:`bytepump._paths`); the drivers then run :func:`steps`
    on it.
    """

    def __init__(
        self,
        src: FdLike,
        dst: FdLike,
        timeout: float | None,
        count: int | None,
        offset: int | None,
        on_progress: ProgressCallback,
        fallback: bool,
        moved: int = 0,
        refused: type[_Pump] | None = None,
    ) -> None:
        if count is not None:
            _check_count("count", count)
        if offset is not None:
            _check_count("offset", offset)
        if timeout is not None and not timeout >= 0:  # negative or NaN
            check_timeout(timeout)
        self.src = Endpoint(src, "src")
        self.dst = Endpoint(dst, "dst")
        if self.src.fd == self.dst.fd:
            raise ValueError("src and dst are the same file descriptor")
        # A file appended to itself grows forever; the two ends of one pipe
        # are a busy loop. (Sockets are left out: a socket object is known
        # without fstat, and splicing a connection into itself is an echo.)
        if (
            self.src.ident is not None
            and self.src.ident == self.dst.ident
            and self.src.kind in (FILE, PIPE)
        ):
            raise ValueError("src and dst are the same file")
        if offset is not None and self.src.kind != FILE:
            raise ValueError("offset needs a seekable (regular file) src")
        self.count = count
        self.offset = offset
        self.on_progress = on_progress
        self.moved = moved
        """Bytes already in ``dst`` (written at once by :mod:`bytepump._quick`
        before ``dst`` filled up): counted in the result and ``.transferred``."""
        path, self.why_not = kernel_path(self.src, self.dst)
        if refused is not None:  # the kernel said so already (_quick)
            path = tuple(pump for pump in path if pump is not refused)
        self.pumps: tuple[type[_Pump], ...] = (*path, CopyPump) if fallback else path
        """The pumps to try in turn: the pair's kernel paths, then the
        user-space copy unless the caller said ``fallback=False``."""
        self.position: SourcePosition | None = None

    def start(self) -> Job:
        """Flush a buffered ``dst``, note where a file source starts, and
        say what the pumps are to move."""
        flush = getattr(self.dst.obj, "flush", None)
        if flush is not None:
            flush()
        if self.src.kind == FILE:
            self.position = SourcePosition(self.src, self.offset)
        return self

    def finish(self, transferred: int) -> None:
        """Settle the source position, put the tail of a TCP stream on the
        wire, and restore the caller's flags."""
        try:
            if self.position is not None:
                self.position.settle(transferred)
            if transferred:
                self.dst.push_tail()
        finally:
            self.src.restore()
            self.dst.restore()


T = TypeVar("T")
Steps = Generator[Wait, None, T]
"""Work that yields each :class:`Wait` it needs done and returns a ``T``."""


def steps(transfer: Transfer) -> Steps[int]:
    """The whole of ``splice_to`` but the waiting; returns bytes written.

    Each kernel path in turn while the kernel refuses before a byte was
    written, then the user-space copy (unless ``fallback`` is false).
    """
    if transfer.count == 0:
        return transfer.moved
    transferred = 0
    try:
        job = transfer.start()
        refusal: SpliceUnsupported | None = None
        for make in transfer.pumps:
            pump = make(job)
            try:
                while True:
                    try:
                        waits = pump.advance()
                    except InterruptedError:
                        continue  # PEP 475: the signal handlers have run; retry
                    if waits is None:
                        transferred = pump.transferred
                        return transfer.moved + transferred
                    yield from waits
            except SpliceUnsupported as exc:
                refusal = exc  # nothing was written: the next path may go
            finally:
                transferred = pump.transferred
                pump.close()
        raise refusal or SpliceUnsupported(
            errno.EINVAL, f"no kernel path for this pair: {transfer.why_not}"
        )
    except BaseException as exc:
        annotate(exc, transfer.moved + transferred)
        raise
    finally:
        transfer.finish(transferred)
