"""aiohttp handlers whose response bodies are spliced (DESIGN.md §6).

Each call prepares an ``aiohttp.web.StreamResponse`` (the head goes out
through aiohttp), splices the body into the request's transport with
:mod:`bytepump.aio` (which borrows the socket and gives it back, so
keep-alive holds) and returns the finished response for the handler to
return. What to answer — status, fields, ranges, conditionals — comes from
:mod:`bytepump._reply`, shared with the WSGI adapter; this module only
translates. A failure once the head is out aborts the connection: no client
takes a short body for a whole one.

Importing this module imports aiohttp (``pip install bytepump[aiohttp]``);
``import bytepump`` does not.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from typing import Any, Callable

from aiohttp import web

from . import _http1, _reply, aio
from ._endpoint import FILE, Endpoint, FdLike, file_position
from ._errors import IncompleteBody
from ._http1 import HeaderPairs
from ._waiters import check_timeout
from .edge import _check_count
from .ziparchive import ZipArchive

__all__ = ["respond_from", "respond_with", "respond_zip"]

Send = Callable[[Any, str], Awaitable[None]]
"""Sends a body into a transport, framed as the mode (``_reply.framing``)
says."""


async def respond_with(
    request: web.BaseRequest,
    src: FdLike,
    *,
    count: int | None = None,
    offset: int | None = None,
    status: int = 200,
    headers: HeaderPairs | None = None,
    timeout: float | None = 60.0,
) -> web.StreamResponse:
    """Answer ``request`` with a body spliced from ``src`` (a descriptor or
    an object with ``fileno()``); returns the prepared, finished response.

    A regular file gets ``Content-Length`` (``count``, or its size past
    ``offset`` or its position), ``ETag``, ``Last-Modified`` and, for
    status 200, Range / If-Range / If-None-Match / If-Modified-Since
    answered with 206, 416 or 304; HEAD gets the head. A pipe or socket
    without ``count`` is sent chunked to an HTTP/1.1 client and delimited
    by closing to an HTTP/1.0 one. ``headers`` are added (CR/LF/NUL and
    framing fields refused, before anything is sent). A source that ends
    before the promised length, or any other failure after the head, aborts
    the connection and raises.
    """
    extra = _reply.check_fields(headers)
    _reply.check_status(status)
    if count is not None:
        _check_count("count", count)
    if offset is not None:
        _check_count("offset", offset)
    check_timeout(timeout)
    source = Endpoint(src, "src")
    head = request.method == "HEAD"
    if source.kind == FILE:
        info = os.fstat(source.fd)
        start = offset if offset is not None else file_position(src, source.fd)
        answer = _reply.regular_file_reply(
            info,
            start,
            count,
            status,
            request.headers.get,
            head=head,
            name=getattr(src, "name", None),
        )
    else:
        if offset is not None:
            raise ValueError("offset needs a seekable (regular file) src")
        answer = _reply.plain_reply(status, 0, count, head=head)
    start_at = answer.start if source.kind == FILE else None

    async def send(transport: Any, mode: str) -> None:
        if mode == _reply.CHUNKED:
            await aio._chunked_to(
                transport,
                lambda writer: writer.splice(src, None, None),
                timeout,
                last_chunk=False,  # aiohttp's write_eof writes it
            )
            return
        n = await aio.splice_to(
            src, transport, timeout, count=answer.length, offset=start_at
        )
        if answer.length is not None and n < answer.length:
            raise IncompleteBody(
                f"src ended after {n} of the {answer.length} bytes promised", n
            )

    return await _respond_with_answer(request, answer, extra, send)


async def respond_from(
    request: web.BaseRequest,
    url: str,
    *,
    headers: HeaderPairs | None = None,
    timeout: float | None = 60.0,
    retries: int = 3,
    max_redirects: int = 5,
) -> web.StreamResponse:
    """Answer ``request`` with an origin's object (an edge include); returns
    the prepared, finished response.

    The client's single Range (``a-b``, ``a-``, ``-n``) and its If-Range go
    to the origin; the origin's 200 or 206, Content-Length (chunked when
    unknown), Content-Type, Content-Range, Accept-Ranges, ETag,
    Last-Modified, Cache-Control and Content-Disposition come back, never
    hop-by-hop fields; ``headers`` are added to the response. An origin
    error before the first body byte raises ``HTTPStatusError`` (or the
    connection's error) before the response starts, for the handler to
    answer as it likes. The body resumes as :func:`bytepump.splice_from`
    does; a failure after the head aborts the connection and raises.
    """
    asked = _reply.Forward()
    if request.method == "GET":
        asked = _reply.forward_range(request.headers.get)
    origin = await aio.fetch(
        url,
        timeout,
        headers=headers,
        retries=retries,
        max_redirects=max_redirects,
        **asked._asdict(),
    )
    try:
        answer = _reply.origin_reply(origin, asked, head=request.method == "HEAD")

        async def send(transport: Any, mode: str) -> None:
            if mode == _reply.CHUNKED:
                await aio._chunked_to(
                    transport,
                    lambda writer: origin._body_steps(writer.dst, None, writer.splice),
                    timeout,
                    last_chunk=False,  # aiohttp's write_eof writes it
                )
            else:
                await origin.splice_to(transport)

        return await _respond_with_answer(request, answer, [], send)
    finally:
        origin.close()


async def respond_zip(
    request: web.BaseRequest,
    archive: ZipArchive,
    *,
    filename: str | None = None,
    timeout: float | None = 60.0,
) -> web.StreamResponse:
    """Answer ``request`` with a planned zip archive (a
    :class:`bytepump.ZipArchive`); returns the prepared, finished response.

    ``Content-Length``, ``ETag``, ``Last-Modified``, ``Content-Type:
    application/zip``, ``Content-Disposition`` (``attachment;
    filename*=UTF-8''…`` when ``filename`` is given), ``If-None-Match`` →
    304, and ``Range`` / ``If-Range`` answered with 206 or 416, so a broken
    download resumes. The archive writes exactly the window asked for; a
    failure after the head (a source that no longer matches its plan)
    aborts the connection and raises.
    """
    check_timeout(timeout)
    if filename is not None:  # a name no field can carry fails here
        _http1.check_field("Content-Disposition", _reply.content_disposition(filename))
    answer = _reply.zip_reply(
        archive.size,
        archive.etag,
        archive.last_modified,
        request.headers.get,
        head=request.method == "HEAD",
        filename=filename,
    )
    window = (answer.start, answer.start + (answer.length or 0))

    async def send(transport: Any, mode: str) -> None:
        await aio._to_transport(
            transport, lambda fd: archive.steps(fd, window, timeout, None), timeout
        )

    return await _respond_with_answer(request, answer, [], send)


async def _respond_with_answer(
    request: web.BaseRequest, answer: _reply.Reply, extra: _reply.Fields, send: Send
) -> web.StreamResponse:
    """Write ``answer``'s head (with the caller's ``extra`` fields, which
    replace ours of the same name) through aiohttp, have ``send`` put the
    body into the transport, and end the response; abort on any failure
    once the head is out."""
    fields = _reply.head_fields(answer, extra)
    response = web.StreamResponse(status=answer.status, headers=fields)
    version = (request.version.major, request.version.minor)
    mode = _reply.framing(answer, version)
    if _reply.bodiless(answer.status):
        pass  # aiohttp frames 204 and 304 itself: no body, no length
    elif answer.length is not None:
        response.content_length = answer.length
    elif not answer.body and request.method != "HEAD":
        response.content_length = 0  # a 416: nothing follows
    if mode == _reply.CHUNKED:
        response.enable_chunked_encoding()
    elif mode == _reply.CLOSE:
        response.force_close()
    await response.prepare(request)  # a StreamResponse writes its head now
    if answer.body and answer.length != 0:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client connection is gone")
        try:
            await send(transport, mode)
        except BaseException:
            transport.abort()
            raise
    await response.write_eof()
    return response
