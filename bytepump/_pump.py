"""The pumps: deciding what to move next, and what to wait for when stuck.

A pump's :meth:`advance` moves as many bytes as it can without blocking and
then returns the waits that must succeed before it can go on (or ``None``
when the transfer is complete). It never waits itself, so one pump serves
the epoll driver of :mod:`bytepump.pump` and the asyncio one of
:mod:`bytepump.aio` alike.

:func:`splice_pump` keeps the data in the kernel; :class:`CopyPump` is the
user-space fallback for the pairs splice cannot carry.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import sys
from typing import Callable, NamedTuple, Optional

from . import _libc
from ._endpoint import FILE, PIPE, SOCKET, Endpoint
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

MAX_SPLICE = 1 << 20
"""Bytes asked of one direct splice; the kernel moves at most a pipe's worth."""

_UNLIMITED = sys.maxsize
_NONBLOCK = _libc.SPLICE_F_NONBLOCK
_AGAIN = _libc.AGAIN


class Job(NamedTuple):
    """What a pump is asked to move."""

    src: Endpoint
    dst: Endpoint
    count: int | None
    on_progress: ProgressCallback
    start: int | None
    """Where a regular-file source is read from; ``None`` for other kinds."""


class _Pump:
    """What both pumps share: the byte accounting and the waits they can ask."""

    def __init__(self, job: Job) -> None:
        self.transferred = 0
        self._src = job.src
        self._dst = job.dst
        self._remaining = _UNLIMITED if job.count is None else job.count
        self._on_progress = job.on_progress

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

    def advance(self) -> Waits | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the pump holds; called once, on every path."""


def _unsupported(what: str) -> SpliceUnsupported:
    return SpliceUnsupported(errno.EINVAL, f"splice cannot carry this pair: {what}")


class _SplicePump(_Pump):
    """Moves the data with splice(2); see :func:`splice_pump`."""

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        self._offset = None if job.start is None else _libc.Offset(job.start)
        self._in_pipe = 0
        for end in (job.src, job.dst):
            if end.kind == SOCKET:
                end.make_nonblocking()

    def _check_refusal(self, exc: OSError) -> None:
        # EINVAL on the very first splice: the kernel will not splice this
        # file, and nothing has moved yet, so the caller may fall back.
        if exc.errno == errno.EINVAL and not self.transferred and not self._in_pipe:
            raise _unsupported("the kernel refused the first splice") from exc


class _DirectPump(_SplicePump):
    """One side is a pipe: splice straight from source to destination."""

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
        src, dst, offset = self._src.fd, self._dst.fd, self._offset
        while self._remaining:
            try:
                n = _libc.splice(
                    src, offset, dst, min(self._remaining, MAX_SPLICE), _NONBLOCK
                )
            except OSError as exc:
                if exc.errno != errno.EPIPE and self._src.kind == SOCKET:
                    mark_upstream(exc)
                self._check_refusal(exc)
                raise
            if n == _AGAIN:
                return self._stuck
            if n == 0:
                return None
            self._remaining -= n
            self._delivered(n)
        return None


class _PipePump(_SplicePump):
    """Neither side is a pipe: go through an empty pipe from the pool."""

    def __init__(self, job: Job) -> None:
        super().__init__(job)
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
        src, dst, offset = self._src.fd, self._dst.fd, self._offset
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
                    src, offset, pipe_w, min(self._remaining, capacity), _NONBLOCK
                )
            except OSError as exc:
                self._check_refusal(mark_upstream(exc))
                raise
            if n == _AGAIN:
                if self._src.kind == FILE:
                    continue  # a regular file is always ready; retry
                return self._src_in
            if n == 0:
                return None
            self._in_pipe = n
            self._remaining -= n

    def close(self) -> None:
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            pool.release(pipe, empty=not self._in_pipe)


def splice_pump(job: Job) -> _Pump:
    """A pump that keeps the data in the kernel.

    Raises :class:`SpliceUnsupported` here, or from ``advance`` before the
    first byte, when the kernel will not splice the pair, so the caller can
    fall back with nothing lost.
    """
    src, dst = job.src, job.dst
    if src.ssl or dst.ssl:
        raise _unsupported("a TLS socket's descriptor carries ciphertext")
    if dst.flags & os.O_APPEND:
        raise _unsupported("the kernel refuses an O_APPEND destination")
    pump = _DirectPump if PIPE in (src.kind, dst.kind) else _PipePump
    return pump(job)


Call = Callable[[memoryview], object]


def _fd_call(method: Callable[[memoryview], int | None], own: Waits) -> Call:
    """Wrap a nonblocking ``FileIO`` method: ``None`` (EAGAIN) becomes a wait."""

    def call(view: memoryview) -> object:
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

    def call(view: memoryview) -> object:
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

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        src, dst = job.src, job.dst
        for end in (src, dst):
            if end.pollable:
                end.make_nonblocking()
        try:
            self._buffer = _spare_buffers.pop()
        except IndexError:
            self._buffer = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._head = self._tail = 0
        if src.ssl:
            self._read = _tls_call(src.obj.recv_into, src, UpstreamTimeout, "source")
        else:
            reader = io.FileIO(src.fd, "rb", closefd=False)
            self._read = _fd_call(reader.readinto, self._src_in)
        if dst.ssl:
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
