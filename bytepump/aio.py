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

The descriptors must not be registered with the loop by someone else (an
asyncio transport's socket) during the call: ``add_reader`` would replace
their callback.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Collection, Generator
from typing import Any

from . import _http1
from ._endpoint import FdLike
from ._errors import annotate
from ._http1 import HeaderPairs, ResponseHead
from ._pump import ProgressCallback
from ._transfer import Steps, T, Transfer, steps
from ._waiters import READ, Wait, timeout_error
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

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    def expire() -> None:
        if not future.done():
            future.set_exception(timeout_error(wait, timeout))

    if wait.events == READ:
        add, remove = loop.add_reader, loop.remove_reader
    else:
        add, remove = loop.add_writer, loop.remove_writer
    try:
        add(wait.fd, wake)
    except PermissionError:
        return  # the file does not support polling (/dev/null): always ready
    timer = None
    if timeout is not None and not math.isinf(timeout):
        timer = loop.call_later(timeout, expire)
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
    """Await a copy from ``src`` to ``dst``; see :func:`bytepump.splice_to`."""
    run = steps(Transfer(src, dst, timeout, count, offset, on_progress, fallback))
    return await drive(run, timeout)


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
        """Await the body spliced into ``dst``; see
        :meth:`bytepump.OriginResponse.splice_to`."""
        return await drive(self._body_steps(dst, on_progress), self._fetch.timeout)

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


async def drive(run: Steps[T], timeout: float | None) -> T:
    """Run ``run`` to its end, doing each wait it yields on the running loop;
    see :func:`bytepump.pump.drive`."""
    loop = asyncio.get_running_loop()
    try:
        wait = next(run)
        while True:
            try:
                await _ready(loop, wait, timeout)
            except BaseException as exc:
                wait = run.throw(exc)
            else:
                wait = next(run)
    except StopIteration as done:
        return done.value
