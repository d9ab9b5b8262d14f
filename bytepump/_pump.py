"""The pumps: deciding what to move next, and what to wait for when stuck.

A pump's :meth:`advance` moves as many bytes as it can without blocking and
then returns the waits that must succeed before it can go on (or ``None``
when the transfer is complete). It never waits itself, so one pump serves
the epoll driver of :mod:`bytepump.pump` and the asyncio one of
:mod:`bytepump.aio` alike.

Four pumps keep the data in the kernel — :class:`SendfilePump`,
:class:`CopyRangePump`, :class:`DirectPump` and :class:`PipePump` — and
:class:`CopyPump` is the user-space fallback. Which of them may carry a pair,
in which order, is the table in :mod:`bytepump._paths`. A kernel pump that
the kernel refuses before a byte was written raises
:class:`SpliceUnsupported`, and the next one is tried.
"""

from __future__ import annotations

import errno
import functools
import io
import sys
from typing import Callable, Optional, Protocol

from . import _libc
from ._endpoint import CHAR, FILE, OTHER, PIPE, SOCKET, Endpoint, SourcePosition
from ._errors import (
    DownstreamTimeout,
    SpliceUnsupported,
    UpstreamTimeout,
    mark_upstream,
)
from ._pipepool import Pipe, pool
from ._waiters import READ, WRITE, Wait

Waits = tuple[Wait, ...]
ProgressCallback = Optional[Callable[[int], object]]

MAX_CALL = 16 << 20
"""Bytes asked of one sendfile or copy_file_range: no call moves more, so
``on_progress`` fires and Ctrl-C lands at least every 16 MiB (DESIGN §1)."""
MAX_SPLICE = 1 << 20
"""Bytes asked of one direct splice; the kernel moves at most a pipe's worth."""

_UNLIMITED = sys.maxsize
_NONBLOCK = _libc.SPLICE_F_NONBLOCK
_AGAIN = _libc.AGAIN
_REFUSALS = frozenset(
    {errno.EINVAL, errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM}
)
"""What a first call answers when the kernel will not take this path for
this pair (Rust's std and Go fall back on the same)."""
_KERNEL_NONBLOCKING = (SOCKET, CHAR, OTHER)
"""Ends a kernel pump makes O_NONBLOCK: SPLICE_F_NONBLOCK covers a pipe end,
a regular file is always ready, anything else would block the call."""


class Job(Protocol):
    """What a pump is asked to move (a transfer: no object made per call)."""

    src: Endpoint
    dst: Endpoint
    count: int | None
    on_progress: ProgressCallback
    position: SourcePosition | None
    """How a regular-file source is read; ``None`` for other kinds."""


class _Pump:
    """What every pump shares: the byte accounting and the waits it can ask."""

    _nonblocking: tuple[str, ...] = _KERNEL_NONBLOCKING
    _refusals: frozenset[int] = _REFUSALS
    _offset: int | None = None
    """Where a regular-file source is read next (``None``: its position)."""

    def __init__(self, job: Job) -> None:
        self.transferred = 0
        self._src = job.src
        self._dst = job.dst
        self._remaining = _UNLIMITED if job.count is None else job.count
        self._on_progress = job.on_progress
        nonblocking = self._nonblocking
        if job.src.kind in nonblocking:
            job.src.make_nonblocking()
        if job.dst.kind in nonblocking:
            job.dst.make_nonblocking()

    # The waits are made on first need: most small transfers never wait.
    @functools.cached_property
    def _src_in(self) -> Waits:
        return (Wait(self._src.fd, READ, UpstreamTimeout, "source"),)

    @functools.cached_property
    def _dst_out(self) -> Waits:
        return (Wait(self._dst.fd, WRITE, DownstreamTimeout, "destination"),)

    def _delivered(self, n: int) -> None:
        self.transferred += n
        if self._on_progress is not None:
            self._on_progress(n)

    def _moved(self, n: int) -> None:
        """``n`` bytes went from a source read at ``_offset`` into ``dst``."""
        if self._offset is not None:
            self._offset += n
        self._remaining -= n
        self._delivered(n)

    def _check_refusal(self, exc: OSError) -> None:
        # The kernel will not take this path for this pair, and nothing has
        # moved yet: the next path may be tried.
        if exc.errno in self._refusals and not self.transferred:
            raise _unsupported(f"{type(self).__name__}: {exc.strerror}") from exc

    def advance(self) -> Waits | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the pump holds; called once, on every path."""


def _unsupported(what: str) -> SpliceUnsupported:
    return SpliceUnsupported(errno.EINVAL, f"no kernel path for this pair: {what}")


class SendfilePump(_Pump):
    """A regular file into a socket: sendfile(2), one call per socket
    buffer's worth, never asking for more than the file has left (asking
    past the end keeps SPLICE_F_MORE set inside the kernel and holds the
    tail back ~200 ms, golang/go#41513)."""

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        assert job.position is not None
        # The offset must be known to know what is left.
        self._offset: int = job.position.offset(explicit=True)  # type: ignore[assignment]
        self._end = job.src.size

    def advance(self) -> Waits | None:
        dst, src = self._dst.fd, self._src.fd
        while self._remaining:
            left = self._end - self._offset
            # What is left of the file, then on to its real end (it may have
            # grown), never more than MAX_CALL: comparisons, not a min() call,
            # on the path every small transfer takes.
            ask = left if 0 < left < MAX_CALL else MAX_CALL
            if self._remaining < ask:
                ask = self._remaining
            try:
                n = _libc.sendfile(dst, src, self._offset, ask)
            except OSError as exc:
                self._check_refusal(exc)
                raise
            if n == _AGAIN:
                return self._dst_out
            if n == 0:
                if left > 0 and not self.transferred:
                    raise _unsupported(
                        "sendfile moved nothing of a file not at its end"
                    )
                return None
            self._moved(n)
        return None


class CopyRangePump(_Pump):
    """A regular file into a regular file: copy_file_range(2), a reflink or
    a server-side copy where the file system has one, an in-kernel copy
    otherwise. Regular files never make it wait."""

    # EBADF: an O_APPEND destination (checked before, but a file system may
    # answer it for others too).
    _refusals = _REFUSALS | {errno.EBADF}

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        assert job.position is not None
        self._position = job.position
        self._offset = job.position.offset(explicit=False)

    def advance(self) -> Waits | None:
        src, dst = self._src.fd, self._dst.fd
        while self._remaining:
            try:
                n = _libc.copy_file_range(
                    src, self._offset, dst, min(self._remaining, MAX_CALL)
                )
            except OSError as exc:
                self._check_refusal(exc)
                raise
            if n == 0:
                if not self.transferred and self._before_end():
                    raise _unsupported("copy_file_range moved nothing of a file")
                return None
            self._moved(n)
        return None

    def _before_end(self) -> bool:
        # Old kernels answered 0, not EXDEV, for files they would not copy.
        at = self._offset
        if at is None:
            at = self._position.offset(explicit=True)
        return at is not None and at < self._src.size


class _SplicePump(_Pump):
    """What the two splice(2) pumps share."""

    def _check_splice_refusal(self, exc: OSError, in_pipe: int) -> None:
        # EINVAL on the very first splice: the kernel will not splice this
        # file, and nothing has moved yet, so the caller may fall back.
        if exc.errno == errno.EINVAL and not self.transferred and not in_pipe:
            raise _unsupported("the kernel refused the first splice") from exc


class DirectPump(_SplicePump):
    """One side is a pipe: splice straight from source to destination."""

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        # Bytes spliced out of a file are bytes delivered: its own file
        # position can be used.
        position = job.position
        self._offset = None if position is None else position.offset(explicit=False)

    @functools.cached_property
    def _stuck(self) -> Waits:
        # EAGAIN from a direct splice does not say which side is not ready.
        # A regular file always is; otherwise wait until the destination
        # has room, then until the source has data: each wait returns at
        # once when its side is ready, so this never spins.
        if not self._src.pollable:
            return self._dst_out
        if not self._dst.pollable:
            return self._src_in
        return self._dst_out + self._src_in

    def advance(self) -> Waits | None:
        src, dst = self._src.fd, self._dst.fd
        while self._remaining:
            try:
                n = _libc.splice(
                    src, self._offset, dst, min(self._remaining, MAX_SPLICE), _NONBLOCK
                )
            except OSError as exc:
                if exc.errno != errno.EPIPE and self._src.kind == SOCKET:
                    mark_upstream(exc)
                self._check_splice_refusal(exc, 0)
                raise
            if n == _AGAIN:
                return self._stuck
            if n == 0:
                return None
            self._moved(n)
        return None


class PipePump(_SplicePump):
    """Neither side is a pipe: go through an empty pipe from the pool."""

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        position = job.position
        # Bytes in the pipe are read but not delivered: an explicit offset,
        # so that the file position can be settled on what was delivered.
        self._offset = None if position is None else position.offset(explicit=True)
        self._in_pipe = 0
        self._pipe: Pipe | None = pool.acquire()
        if self._dst.kind != SOCKET:
            try:
                self._probe_destination()
            except BaseException:
                self.close()
                raise

    def _probe_destination(self) -> None:
        # From an empty pipe, a destination that splices answers EAGAIN and
        # one that cannot answers EINVAL, before anything is read from the
        # source (measured: files, /dev/null, ttys splice; O_APPEND files and
        # eventfds do not). Sockets always splice and skip the syscall.
        assert self._pipe is not None
        try:
            _libc.splice(self._pipe.r, None, self._dst.fd, 1, _NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise _unsupported("the destination does not splice") from exc
            raise

    def advance(self) -> Waits | None:
        # Bytes already in the pipe are delivered before more are taken from
        # the source, and the source is read only into an empty pipe: an
        # EAGAIN from a file into a full pipe says nothing about the file
        # (KERNEL-NOTES, the stall of sozu#1323), and one from a socket into
        # an empty pipe means the socket is dry.
        assert self._pipe is not None
        pipe_r, pipe_w, capacity = self._pipe.r, self._pipe.w, self._pipe.capacity
        src, dst = self._src.fd, self._dst.fd
        while True:
            if self._in_pipe:
                n = _libc.splice(pipe_r, None, dst, self._in_pipe, _NONBLOCK)
                if n == _AGAIN:
                    return self._dst_out
                self._in_pipe -= n
                self._delivered(n)
                continue
            if not self._remaining:
                return None
            try:
                n = _libc.splice(
                    src, self._offset, pipe_w, min(self._remaining, capacity),
                    _NONBLOCK,
                )  # fmt: skip
            except OSError as exc:
                mark_upstream(exc)
                self._check_splice_refusal(exc, self._in_pipe)
                raise
            if n == _AGAIN:
                if self._src.kind == FILE:
                    continue  # a regular file is always ready; retry
                return self._src_in
            if n == 0:
                return None
            if self._offset is not None:
                self._offset += n
            self._in_pipe = n
            self._remaining -= n

    def close(self) -> None:
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            pool.release(pipe, empty=not self._in_pipe)


Call = Callable[[memoryview], "int | Waits"]


def _fd_call(method: Callable[[memoryview], int | None], own: Waits) -> Call:
    """Wrap a nonblocking ``FileIO`` method: ``None`` (EAGAIN) becomes a wait."""

    def call(view: memoryview) -> int | Waits:
        n = method(view)
        return own if n is None else n

    return call


def _tls_call(
    method: Callable[[memoryview], int], end: Endpoint, error: type, what: str
) -> Call:
    """Wrap an ``SSLSocket`` method; a TLS record may need either direction
    (a renegotiation writes while reading), so both become waits."""
    import ssl

    want_read = (Wait(end.fd, READ, error, what),)
    want_write = (Wait(end.fd, WRITE, error, what),)

    def call(view: memoryview) -> int | Waits:
        try:
            return method(view)
        except ssl.SSLWantReadError:
            return want_read
        except ssl.SSLWantWriteError:
            return want_write

    return call


_BUFFER_SIZE = 256 * 1024
_TLS_RECORD = 16 * 1024
"""Plaintext per TLS write: ``SSLSocket.send`` is all or nothing, so a
record at a time is what lets a slow client's progress (and a correct
``.transferred`` on a timeout) show."""
_spare_buffers: list[bytearray] = []


class CopyPump(_Pump):
    """The user-space fallback: one reusable buffer, same semantics.

    Used for TLS sockets, ``O_APPEND`` destinations and files the kernel
    will not splice. Not zero-copy, and slicing the buffer allocates a
    little per chunk, but the buffer itself is reused.
    """

    # Read and write go through the descriptors' flags: every end that can
    # block, pipes included, is made O_NONBLOCK.
    _nonblocking = (*_KERNEL_NONBLOCKING, PIPE)

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        src, dst = job.src, job.dst
        if job.position is not None:
            job.position.read_ahead()
        try:
            self._buffer = _spare_buffers.pop()
        except IndexError:
            self._buffer = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._head = self._tail = 0
        if src.ssl:
            assert src.obj is not None  # an SSLSocket, not a bare descriptor
            self._read = _tls_call(src.obj.recv_into, src, UpstreamTimeout, "source")
        else:
            reader = io.FileIO(src.fd, "rb", closefd=False)
            self._read = _fd_call(reader.readinto, self._src_in)
        if dst.ssl:
            assert dst.obj is not None  # an SSLSocket, not a bare descriptor
            send = dst.obj.send
            self._write = _tls_call(
                lambda view: send(view[:_TLS_RECORD]), dst, DownstreamTimeout,
                "destination",
            )  # fmt: skip
        else:
            writer = io.FileIO(dst.fd, "wb", closefd=False)
            self._write = _fd_call(writer.write, self._dst_out)

    def advance(self) -> Waits | None:
        view = self._view
        while True:
            if self._head < self._tail:
                n = self._write(view[self._head : self._tail])
                if isinstance(n, tuple):
                    return n
                self._head += n
                self._delivered(n)
                continue
            if not self._remaining:
                return None
            try:
                n = self._read(view[: min(self._remaining, _BUFFER_SIZE)])
            except OSError as exc:
                raise mark_upstream(exc) from None
            if isinstance(n, tuple):
                return n
            if n == 0:
                return None
            self._head, self._tail = 0, n
            self._remaining -= n

    def close(self) -> None:
        if len(_spare_buffers) < 8:
            _spare_buffers.append(self._buffer)
