"""A body of unknown length written with the chunked transfer coding
(RFC 9112 7.1): the chunk-size lines are written between splices, the chunk
data is spliced by the ordinary transfer, ``count`` bytes at a time.

:class:`ChunkFramer` is the sans-IO part (which bytes go between the data);
:class:`ChunkedWriter` runs it as a generator of waits around
:func:`bytepump._transfer.steps`, so the epoll and the asyncio drivers both
run it, and nothing here moves body bytes itself (a TLS source aside, whose
plaintext cannot be measured before it is read).

How big the next chunk is comes from what the source holds right now
(``FIONREAD``): a pipe or socket says how many bytes a read would return,
so the size line can be written before they are spliced, and a slow
producer's bytes go out as they come instead of waiting for a full buffer.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import stat
import sys
import termios
from collections.abc import Callable
from typing import Any

from ._endpoint import SOCKET, Endpoint, FdLike, _is_ssl_socket
from ._errors import DownstreamTimeout, ProtocolError, UpstreamTimeout, mark_upstream
from ._pump import ProgressCallback
from ._transfer import Steps, Transfer, steps
from ._waiters import READ, WRITE, Wait

MAX_CHUNK = 1 << 24
"""Largest chunk written (16 MiB, what one transfer call moves at most)."""

_TLS_READ = 65536
_MSG_MORE = getattr(socket, "MSG_MORE", 0x8000)  # Linux's value; PyPy lacks it


class ChunkFramer:
    """The bytes of the chunked coding around data whose sizes come one at
    a time. A chunk's closing CRLF is sent with the next size line."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open = False

    def size_line(self, n: int) -> bytes:
        """What precedes ``n`` (> 0) bytes of chunk data."""
        if n <= 0:
            raise ValueError(f"a chunk holds at least one byte, not {n}")
        line = b"%x\r\n" % n
        if self._open:
            line = b"\r\n" + line
        self._open = True
        return line

    def end_data(self) -> bytes:
        """What closes the last chunk's data, for a server that writes the
        last chunk itself (aiohttp's ``write_eof``)."""
        end = b"\r\n" if self._open else b""
        self._open = False
        return end

    def last_chunk(self) -> bytes:
        """What ends the body: the last chunk and an empty trailer section."""
        end = b"0\r\n\r\n"
        if self._open:
            end = b"\r\n" + end
        self._open = False
        return end


def _available(fd: int) -> int:
    """Bytes a pipe or socket holds, readable without waiting."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    return buf[0]


class ChunkedWriter:
    """Writes one chunked body into ``dst`` (a descriptor or an object with
    ``fileno()``; its flags are restored when :meth:`finish` or
    :meth:`close` runs). :meth:`splice` may be called any number of times;
    :meth:`finish` writes the last chunk."""

    def __init__(self, dst: FdLike, timeout: float | None) -> None:
        self.dst: Any = dst
        self.timeout = timeout
        self._framer = ChunkFramer()
        self._endpoint = Endpoint(dst, "dst")
        self._ssl = _is_ssl_socket(dst)
        # Size lines go with MSG_MORE on a socket: they leave in the same
        # segment as the data spliced after them.
        self._sock: socket.socket | None = None
        if self._endpoint.kind == SOCKET and not self._ssl:
            self._endpoint.make_nonblocking()  # restored by close()
            self._sock = _socket_object(self._endpoint.fd)

    def splice(
        self, src: Any, count: int | None, on_progress: ProgressCallback
    ) -> Steps[int]:
        """Move ``count`` bytes of ``src`` (``None``: up to its end), a pipe
        or stream socket, as chunks; returns how many. Fewer than ``count``
        means ``src`` ended."""
        fd = src if isinstance(src, int) else src.fileno()
        tls = _is_ssl_socket(src)
        moved = 0
        while count is None or moved < count:
            want = MAX_CHUNK if count is None else min(MAX_CHUNK, count - moved)
            if tls:
                n = yield from self._tls_chunk(src, fd, want)
            else:
                n = yield from self._spliced_chunk(src, fd, want, on_progress)
            if not n:
                break
            moved += n
            if tls and on_progress is not None:
                on_progress(n)
        return moved

    def _spliced_chunk(
        self, src: Any, fd: int, want: int, on_progress: ProgressCallback
    ) -> Steps[int]:
        n = _available(fd)
        if not n:
            yield Wait(fd, READ, UpstreamTimeout, "src")
            n = _available(fd)
            if not n:
                _check_end(src, fd)
                return 0  # readable with nothing in it: the end
        n = min(n, want)
        yield from self._write(self._framer.size_line(n))
        got = yield from steps(
            Transfer(src, self.dst, self.timeout, n, None, on_progress, True)
        )
        if got < n:  # what was queued vanished: a reset mid-chunk
            raise mark_upstream(ProtocolError("source ended inside a chunk"))
        return n

    def _tls_chunk(self, src: Any, fd: int, want: int) -> Steps[int]:
        # TLS plaintext cannot be measured in the kernel: read it, then
        # write size line and data together (not zero-copy, as any TLS).
        saved = src.gettimeout()
        src.settimeout(0.0)
        try:
            while True:
                try:
                    data = src.recv(min(want, _TLS_READ))
                    break
                except OSError as exc:
                    if not _would_block(exc):
                        raise
                yield Wait(fd, READ, UpstreamTimeout, "src")
        finally:
            src.settimeout(saved)
        if data:
            yield from self._write(self._framer.size_line(len(data)) + data)
        return len(data)

    def finish(self, last_chunk: bool = True) -> Steps[None]:
        """Write the last chunk (or, with ``last_chunk=False``, only what
        closes the data before it), then restore ``dst``'s flags."""
        framer = self._framer
        try:
            yield from self._write(
                framer.last_chunk() if last_chunk else framer.end_data()
            )
        finally:
            self.close()

    def close(self) -> None:
        """Restore ``dst``'s flags and release the writer's descriptor."""
        self._endpoint.restore()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _write(self, data: bytes) -> Steps[None]:
        self._endpoint.make_nonblocking()
        view = memoryview(data)
        while view:
            try:
                if self._sock is not None:
                    sent = self._sock.send(view, _MSG_MORE)
                elif self._ssl:
                    sent = self.dst.send(view)
                else:
                    sent = os.write(self._endpoint.fd, view)
            except OSError as exc:
                if not _would_block(exc):
                    raise
                yield Wait(self._endpoint.fd, WRITE, DownstreamTimeout, "dst")
                continue
            view = view[sent:]


def chunked_body(
    dst: FdLike,
    run: Callable[[ChunkedWriter], Steps[int]],
    timeout: float | None,
    *,
    last_chunk: bool = True,
) -> Steps[int]:
    """``run(writer)`` with a :class:`ChunkedWriter` into ``dst``, then the
    end of the chunked body (the last chunk, or with ``last_chunk=False``
    only what closes the data, for a server that writes the last chunk
    itself); returns the data bytes ``run`` moved. Any driver runs it."""
    writer = ChunkedWriter(dst, timeout)
    try:
        moved = yield from run(writer)
        yield from writer.finish(last_chunk)
        return moved
    finally:
        writer.close()


def _would_block(exc: OSError) -> bool:
    if isinstance(exc, BlockingIOError):
        return True
    ssl = sys.modules.get("ssl")  # loaded if there is a TLS socket at all
    return ssl is not None and isinstance(
        exc, (ssl.SSLWantReadError, ssl.SSLWantWriteError)
    )


def _socket_object(fd: int) -> socket.socket:
    """A nonblocking socket object on a duplicate of ``fd``. (PyPy's
    ``socket.socket(fileno=...)`` makes the shared file description
    blocking; it is made nonblocking again at once.)"""
    sock = socket.socket(fileno=os.dup(fd))
    sock.setblocking(False)
    return sock


def _check_end(src: Any, fd: int) -> None:
    """A socket that turned readable with nothing to read has ended, or has
    an error pending (a reset): that one is raised, never taken for an end."""
    if isinstance(src, socket.socket):
        err = src.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    elif stat.S_ISSOCK(os.fstat(fd).st_mode):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        with _socket_object(fd) as probe:
            err = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    else:
        return  # a pipe's end is just an end
    if err:
        raise mark_upstream(OSError(err, os.strerror(err)))
