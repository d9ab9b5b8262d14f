"""asyncio versions of the blocking calls (DESIGN.md §4).

Same arguments and semantics as :func:`bytepump.splice_to`,
:func:`bytepump.splice_from` and :func:`bytepump.skip_headers`: they run
the very generators of waits the blocking calls run, but the waits go
through the running loop's ``add_reader`` / ``add_writer`` instead of epoll,
so they work under uvloop too. Cancellation raises ``CancelledError`` with
``.transferred``, releases the pipe, closes the origin's socket, restores
the descriptors' flags and leaves a regular-file source just past the last
byte delivered. (The ``CancelledError`` with ``.transferred`` is the one
the awaiting coroutine sees; asyncio before Python 3.11 raises a new one to
whoever awaits the cancelled Task from outside, with the original as its
``__context__``.)

``dst`` may be an ``asyncio.Transport`` (a TCP or Unix socket's, on the
standard loop or uvloop): it is borrowed for the call and given back (see
:func:`_to_transport`). Other descriptors must not be registered with the
loop by someone else during the call: ``add_reader`` would replace their
callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Collection, Generator, Iterator
from typing import Any

from . import _http1
from ._chunked import ChunkedWriter, chunked_body
from ._endpoint import FdLike
from ._errors import DownstreamTimeout, annotate
from ._http1 import HeaderPairs, ResponseHead
from ._pump import ProgressCallback
from ._quick import begin
from ._transfer import Steps, T, Transfer, steps
from ._waiters import (
    READ,
    WRITE,
    Shrinking,
    Wait,
    first_timer,
    later_timers,
    send_queue,
    timeout_error,
)
from .edge import (
    ACCEPTED,
    Fetch,
    OriginBase,
    _check_dst,
    fetch_steps,
    skip_headers_steps,
)

__all__ = ["OriginResponse", "fetch", "skip_headers", "splice_from", "splice_to"]


async def _ready(
    loop: asyncio.AbstractEventLoop, wait: Wait, timeout: float | None
) -> None:
    # The future is awaited directly and timed out by a loop timer, not with
    # asyncio.wait_for: before Python 3.12, wait_for swallows a cancellation
    # that arrives in the same loop pass as the result, and the task would
    # run on. Awaiting a plain future, a cancel() either cancels it or (once
    # it has its result) is delivered at the task's next step.
    future = loop.create_future()
    later: Iterator[float] | None = None
    timer: asyncio.TimerHandle | None = None

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    def expire() -> None:
        # The timers EpollWaiter.wait runs (_waiters.later_timers): a
        # write wait on a socket goes on while its queue shrinks.
        nonlocal later, timer
        if future.done():
            return
        if later is None:
            later = later_timers(wait, timeout)
        delay = next(later, None)
        if delay is None:
            future.set_exception(timeout_error(wait, timeout))
        else:
            timer = loop.call_later(delay, expire)

    if wait.events == READ:
        add, remove = loop.add_reader, loop.remove_reader
    else:
        add, remove = loop.add_writer, loop.remove_writer
    try:
        add(wait.fd, wake)
    except PermissionError:
        return  # the file does not support polling (/dev/null): always ready
    first = first_timer(wait, timeout)
    if first is not None:
        timer = loop.call_later(first, expire)
    try:
        await future
    finally:
        remove(wait.fd)
        if timer is not None:
            timer.cancel()


async def splice_to(
    src: FdLike,
    dst: FdLike,
    timeout: float | None = 60.0,
    *,
    count: int | None = None,
    offset: int | None = None,
    on_progress: ProgressCallback = None,
    fallback: bool = True,
) -> int:
    """Await a copy from ``src`` to ``dst``; see :func:`bytepump.splice_to`.

    ``dst`` may also be an ``asyncio.Transport`` over a TCP or Unix stream
    socket (see :func:`to_transport`).
    """

    def run(fd: Any) -> Steps[int]:
        return steps(Transfer(src, fd, timeout, count, offset, on_progress, fallback))

    if _is_transport(dst):
        return await _to_transport(dst, run, timeout)
    begun = begin(src, dst, timeout, count, offset, on_progress, fallback)
    if isinstance(begun, int):
        return begun
    return await drive(steps(begun), timeout)


async def splice_from(
    dst: Any,
    url: str,
    timeout: float | None = 60.0,
    *,
    offset: int = 0,
    length: int | None = None,
    headers: HeaderPairs | None = None,
    on_progress: ProgressCallback = None,
    retries: int = 3,
    max_redirects: int = 5,
) -> int:
    """Await a GET of ``url`` spliced into ``dst``; see
    :func:`bytepump.splice_from`.

    The URL's host name is resolved on the loop (``loop.getaddrinfo``); a
    redirect to another host name is looked up with a blocking
    ``getaddrinfo`` (an IP address needs no lookup).
    """
    job = Fetch(
        url,
        timeout,
        offset=offset,
        length=length,
        headers=headers,
        retries=retries,
        max_redirects=max_redirects,
    )
    if _is_transport(dst):
        _check_transport(dst)
        await _resolve(job)
        return await _to_transport(
            dst, lambda fd: fetch_steps(job, fd, on_progress), timeout
        )
    _check_dst(dst)
    await _resolve(job)
    return await drive(fetch_steps(job, dst, on_progress), timeout)


async def _resolve(job: Fetch) -> None:
    """Look the URL's host up on the loop, for ``job`` to connect to."""
    if not job.connects:
        return
    host, port = job.origin.host, job.origin.port
    loop = asyncio.get_running_loop()
    try:
        job.addresses[host, port] = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )
    except BaseException as exc:  # gaierror, cancellation: nothing written
        annotate(exc, 0)
        raise


class OriginResponse(OriginBase):
    """:class:`bytepump.OriginResponse` for the loop: ``await
    origin.splice_to(dst)``; an async context manager closing the
    connection."""

    async def splice_to(self, dst: Any, *, on_progress: ProgressCallback = None) -> int:
        """Await the body spliced into ``dst`` (a descriptor or an
        ``asyncio.Transport``); see :meth:`bytepump.OriginResponse.splice_to`."""
        timeout = self._fetch.timeout
        if _is_transport(dst):
            return await _to_transport(
                dst, lambda fd: self._body_steps(fd, on_progress), timeout
            )
        return await drive(self._body_steps(dst, on_progress), timeout)

    async def __aenter__(self) -> OriginResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class _Opening:
    """What :func:`fetch` returns: awaitable (the response) and usable as
    ``async with`` (the response, closed at the end of the block)."""

    def __init__(self, job: Fetch) -> None:
        self._job = job
        self._response: OriginResponse | None = None

    async def _open(self) -> OriginResponse:
        try:
            await _resolve(self._job)
            await drive(self._job.open(), self._job.timeout)
        except BaseException:
            self._job.close()
            raise
        return OriginResponse(self._job)

    def __await__(self) -> Generator[Any, None, OriginResponse]:
        return self._open().__await__()

    async def __aenter__(self) -> OriginResponse:
        self._response = await self._open()
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            self._response.close()


def fetch(
    url: str,
    timeout: float | None = 60.0,
    *,
    offset: int = 0,
    length: int | None = None,
    headers: HeaderPairs | None = None,
    retries: int = 3,
    max_redirects: int = 5,
    suffix: int | None = None,
    if_range: str | None = None,
) -> _Opening:
    """:func:`bytepump.fetch` on the loop: ``async with aio.fetch(url) as
    origin:`` (or ``origin = await aio.fetch(url)``), then ``await
    origin.splice_to(dst)``. The arguments are checked at once."""
    return _Opening(
        Fetch(
            url,
            timeout,
            offset=offset,
            length=length,
            headers=headers,
            retries=retries,
            max_redirects=max_redirects,
            suffix=suffix,
            if_range=if_range,
        )
    )


async def skip_headers(
    sock: socket.socket,
    *,
    max_size: int = _http1.MAX_HEAD,
    timeout: float | None = 60.0,
    expect: Collection[int] | None = ACCEPTED,
) -> ResponseHead:
    """Await an HTTP/1.x response head from ``sock``, and not one byte
    more; see :func:`bytepump.skip_headers`."""
    return await drive(skip_headers_steps(sock, max_size, timeout, expect), timeout)


# --- transports as destinations ------------------------------------------

_BORROWABLE = ("asyncio.", "uvloop.")
"""Modules whose socket transports are known to be borrowed safely: they
write only from their buffer (drained first) and read only while reading
is on (paused during the call)."""
_STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
_TRANSPORT_POLL = 0.005
"""Seconds between looks at a TLS transport's write buffer: a transport
tells its protocol, not us, when it drains."""


def _is_transport(obj: Any) -> bool:
    """Whether ``obj`` is an asyncio transport (uvloop's are not
    ``asyncio.BaseTransport`` subclasses, but quack alike)."""
    return isinstance(obj, asyncio.BaseTransport) or (
        hasattr(obj, "get_extra_info") and hasattr(obj, "pause_reading")
    )


def _check_transport(transport: Any) -> None:
    """``TypeError`` for a transport bytepump cannot write into safely
    (not a stream socket's, another library's), ``ValueError`` for one
    that is closing: before anything about it is changed."""
    if not (_is_transport(transport) and hasattr(transport, "write")):
        raise TypeError(f"dst must be a stream transport, not {transport!r}")
    if transport.is_closing():
        raise ValueError("the transport is closing")
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        raise TypeError(f"{transport!r} is not over a stream socket")
    if sock.family not in _STREAM_FAMILIES:
        raise TypeError(f"{transport!r} is not over a TCP or Unix socket")
    if transport.get_extra_info("ssl_object") is not None:
        return  # written through transport.write: any kind will do
    if not type(transport).__module__.startswith(_BORROWABLE):
        # aiohttp's aiofastnet transports and the like: they may write or
        # read behind our back, so their socket is not ours to splice into.
        raise TypeError(
            f"cannot borrow the socket of a {type(transport).__qualname__} "
            f"from {type(transport).__module__}: only asyncio's and uvloop's"
        )


async def _to_transport(
    transport: Any, run: Callable[[int], Steps[T]], timeout: float | None
) -> T:
    """``run(fd)`` with ``fd`` writing into ``transport``'s connection.

    A cleartext transport's socket is borrowed, as ``loop.sendfile`` does
    (KERNEL-NOTES): its reading paused, its write buffer drained, the
    bytes spliced into a ``dup()`` of its socket (the loop refuses waits on
    the descriptor a transport owns, and the duplicate is in no table),
    and everything put back on every path. A TLS transport gets the bytes
    through ``transport.write``, with its flow control, from a socket pair
    ``run`` writes into: same result, not zero-copy.
    """
    _check_transport(transport)
    if transport.get_extra_info("ssl_object") is not None:
        return await _through_write(transport, run, timeout)
    loop = asyncio.get_running_loop()
    fd = os.dup(transport.get_extra_info("socket").fileno())
    reading = transport.is_reading()
    try:
        if reading:
            transport.pause_reading()
        drained = Wait(fd, WRITE, DownstreamTimeout, "dst (transport buffer)")
        while transport.get_write_buffer_size():
            await _ready(loop, drained, timeout)
            await asyncio.sleep(0)  # the transport's writer runs in this pass
        return await drive(run(fd), timeout)
    finally:
        os.close(fd)
        if reading and not transport.is_closing():
            transport.resume_reading()


async def _chunked_to(
    dst: Any,
    run: Callable[[ChunkedWriter], Steps[int]],
    timeout: float | None,
    *,
    last_chunk: bool = True,
) -> int:
    """``run(writer)`` with a :class:`~bytepump._chunked.ChunkedWriter`
    into ``dst`` (a descriptor or a transport), then the end of the chunked
    body (the last chunk, or with ``last_chunk=False`` only what closes the
    data, for a server that writes the last chunk itself)."""

    def framed(fd: Any) -> Steps[int]:
        return chunked_body(fd, run, timeout, last_chunk=last_chunk)

    if _is_transport(dst):
        return await _to_transport(dst, framed, timeout)
    return await drive(framed(dst), timeout)


async def _through_write(
    transport: Any, run: Callable[[int], Steps[T]], timeout: float | None
) -> T:
    loop = asyncio.get_running_loop()
    mine, theirs = socket.socketpair()
    mine.setblocking(False)
    theirs.setblocking(False)

    async def forward() -> None:
        try:
            await _forward(loop, theirs, transport, timeout)
        finally:
            # A failed forwarder stops the writer at once (EPIPE), not
            # after its own timeout; its error is the one raised.
            theirs.close()

    forwarder = asyncio.ensure_future(forward())
    try:
        with mine:
            try:
                # The forwarder judges the client's inactivity; it stops
                # taking bytes from this socket while the client is slow.
                result = await drive(run(mine.fileno()), timeout, untimed=mine.fileno())
            except BaseException as exc:
                if forwarder.done() and not forwarder.cancelled():
                    failure = forwarder.exception()
                    if failure is not None:
                        annotate(failure, getattr(exc, "transferred", 0))
                        raise failure from exc
                raise
            mine.shutdown(socket.SHUT_WR)
        await forwarder
        return result
    finally:
        if not forwarder.done():
            forwarder.cancel()
            with contextlib.suppress(BaseException):
                await forwarder


async def _forward(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    transport: Any,
    timeout: float | None,
) -> None:
    """Copy what arrives on ``sock`` into ``transport`` until end of file,
    keeping its write buffer below its low-water mark; ``DownstreamTimeout``
    once neither that buffer nor the transport's socket has let a byte go
    for ``timeout`` seconds."""
    low = transport.get_write_buffer_limits()[0]
    # The transport's buffer drains only when its socket is writable, which
    # a slow reader can hold off for longer than the timeout (see
    # _waiters): bytes leaving the socket are activity too.
    buffered = Shrinking(transport.get_write_buffer_size)
    sent = send_queue(transport.get_extra_info("socket").fileno())
    while True:
        data = await loop.sock_recv(sock, 1 << 18)
        if not data:
            return
        transport.write(data)
        idle = 0.0
        while transport.get_write_buffer_size() > low:
            if transport.is_closing():
                raise ConnectionResetError("the transport closed")
            await asyncio.sleep(_TRANSPORT_POLL)
            moved = buffered.shrank() | sent.shrank()  # not "or": both look
            idle = 0.0 if moved else idle + _TRANSPORT_POLL
            if timeout is not None and idle > timeout:
                raise DownstreamTimeout(
                    f"dst (TLS transport) idle for more than {timeout} s"
                )


async def drive(
    run: Steps[T], timeout: float | None, *, untimed: int | None = None
) -> T:
    """Run ``run`` to its end, doing each wait it yields on the running loop;
    see :func:`bytepump.pump.drive`. Waits on ``untimed`` have no time
    limit (another task watches what that descriptor feeds)."""
    loop = asyncio.get_running_loop()
    try:
        wait = next(run)
        while True:
            try:
                await _ready(loop, wait, None if wait.fd == untimed else timeout)
            except BaseException as exc:
                wait = run.throw(exc)
            else:
                wait = next(run)
    except StopIteration as done:
        result: T = done.value
        return result
