"""WSGI applications whose response bodies are spliced (DESIGN.md §6).

``respond_with(src)`` and ``respond_from(url)`` return a WSGI application
for the current request: call it with ``(environ, start_response)``, or
return it from a Flask view. It answers with the headers a client expects
(Content-Length, Range → 206/416, conditionals → 304, HEAD) and moves the
body one of two ways, chosen per request:

- **Spliced**, where the client's socket is reachable and the connection is
  cleartext HTTP/1.x: gunicorn's sync and gthread workers hand it over as
  ``environ["gunicorn.socket"]`` (a plain ``socket.socket``; under TLS it is
  an ``SSLSocket``, under gevent or eventlet another type, and the body is
  not spliced there). The server sends the head; once it has provably gone
  out, the body is spliced into the socket.
- **Through the server's write path** everywhere else (waitress, wsgiref,
  TLS, HTTP/2, gevent): the same core call moves the body into a pipe from
  a helper thread, and the application yields what it reads from the pipe,
  so memory stays bounded by the pipe, whatever the body's size.

A failure once the head is out is never a clean end: a spliced response's
connection is reset, and a piped one's iterator raises, so that the server
drops the connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import _http1, _libc, _reply
from ._endpoint import FdLike, _fileno
from ._errors import annotate
from ._reply import HeaderPairs, Reply
from ._waiters import check_timeout
from .edge import OriginResponse, fetch
from .pump import splice_to

__all__ = ["respond_from", "respond_with"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Mover = Callable[[int], int]
"""Moves the body into a descriptor; returns the bytes written."""

_PIPE_READ = 65536
"""Bytes the fallback yields at a time: one default pipe's worth."""


def _status_line(status: str) -> int:
    code, _, _ = status.partition(" ")
    if len(code) != 3 or not code.isdigit() or not status[4:].isprintable():
        raise ValueError(f"status must be like '200 OK', not {status!r}")
    return int(code)


def _reason(code: int) -> str:
    from http import HTTPStatus

    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


def _check_count(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")


def _getter(environ: Environ) -> _reply.GetField:
    def get(name: str) -> str | None:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        return value if isinstance(value, str) else None

    return get


def _is_head(environ: Environ) -> bool:
    return str(environ.get("REQUEST_METHOD", "GET")).upper() == "HEAD"


def _raw_socket(environ: Environ) -> socket.socket | None:
    """The client's socket where splicing into it is safe, else ``None``.

    Exactly ``socket.socket``: gunicorn's sync and gthread workers. An
    ``SSLSocket`` (``--certfile``) would get plaintext spliced past TLS; a
    gevent or eventlet socket would have its hub blocked; HTTP/2 frames its
    own data. Those, and servers that hand out no socket, take the write
    path.
    """
    sock = environ.get("gunicorn.socket")
    if type(sock) is not socket.socket:
        return None
    if environ.get("SERVER_PROTOCOL") not in ("HTTP/1.0", "HTTP/1.1"):
        return None
    if sock.type != socket.SOCK_STREAM:
        return None
    return sock


def _written(sock: socket.socket) -> int | None:
    """Bytes the kernel has taken from the application on a TCP socket so
    far (sent, retransmissions included, plus queued), or ``None`` where
    ``TCP_INFO`` cannot tell (a Unix socket)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    if len(info) < 208:
        return None  # a kernel before 4.19 has no tcpi_bytes_sent
    (notsent,) = struct.unpack_from("I", info, 144)
    (sent,) = struct.unpack_from("Q", info, 200)
    return int(notsent + sent)


def _abort(sock: socket.socket) -> None:
    """Make sure the client cannot take what it got for a whole response."""
    try:
        _libc.disconnect(sock.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Response:
    """One request's answer: the reply, how to move its body, and the
    cleanup (an origin connection) that runs exactly once."""

    def __init__(
        self, reply: Reply, mover: Mover, close: Callable[[], None] = lambda: None
    ) -> None:
        self.reply = reply
        self.mover = mover
        self._close = close
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def move(self, fd: int) -> int:
        """Move the body into ``fd``; an error, or fewer bytes than the head
        promised, raises (with ``.transferred``)."""
        n = self.mover(fd)
        length = self.reply.length
        if length is not None and n < length:
            exc = ValueError(f"the body ended after {n} of {length} bytes")
            annotate(exc, n)
            raise exc
        return n


def _answer(
    environ: Environ,
    start_response: StartResponse,
    response: _Response,
    fields: list[tuple[str, str]],
    timeout: float | None,
) -> Iterable[bytes]:
    reply = response.reply
    names = {name.lower() for name, _ in fields}
    head = [(n, v) for n, v in reply.fields if n.lower() not in names] + fields
    if reply.length is not None and reply.status != 304:
        head.append(
            (
                "Content-Length",
                str(reply.length if reply.body or _is_head(environ) else 0),
            )
        )
    elif reply.status == 416:
        head.append(("Content-Length", "0"))
    try:
        write = start_response(_reason(reply.status), head)
    except BaseException:
        response.close()
        raise
    if not reply.body or reply.length == 0:
        response.close()
        return []
    sock = _raw_socket(environ)
    http10 = environ.get("SERVER_PROTOCOL") == "HTTP/1.0"
    if sock is not None and (reply.length is not None or http10):
        return _Spliced(response, sock, write, timeout)
    return _Piped(response, timeout)


class _Spliced:
    """The body spliced into the client's socket once the head is out.

    The first item is ``b""``: the server's write of it sends the head
    (gunicorn writes its head before any body item, empty or not). Only at
    the second item, when the head has provably left — gunicorn's
    ``headers_sent``, or the TCP socket's sent-byte counter having grown —
    is the body spliced; otherwise (a framework that holds items back) it
    goes through the server's write path after all.
    """

    def __init__(
        self,
        response: _Response,
        sock: socket.socket,
        write: Callable[[bytes], object],
        timeout: float | None,
    ) -> None:
        self._response = response
        self._sock = sock
        self._write = write
        self._timeout = timeout
        self._before = _written(sock)
        self._items = 0
        self._fallback: _Piped | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def _head_is_out(self) -> bool:
        server = getattr(self._write, "__self__", None)
        sent = getattr(server, "headers_sent", None)
        if isinstance(sent, bool) and type(server).__module__.startswith("gunicorn"):
            return sent
        after = _written(self._sock)
        return after is not None and self._before is not None and after > self._before

    def __next__(self) -> bytes:
        if self._fallback is not None:
            return next(self._fallback)
        self._items += 1
        if self._items == 1:
            return b""
        if self._items > 2:
            raise StopIteration
        if not self._head_is_out():
            self._fallback = _Piped(self._response, self._timeout)
            return next(self._fallback)
        try:
            self._response.move(self._sock.fileno())
        except BaseException:
            _abort(self._sock)
            raise
        finally:
            self._response.close()
        raise StopIteration

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
        self._response.close()


class _Piped:
    """The body through the server's write path, bounded by a pipe: a
    thread moves it into the pipe with the core call (every rule of it:
    timeouts, resume, the exact count), the iterator reads the other end."""

    def __init__(self, response: _Response, timeout: float | None) -> None:
        self._response = response
        self._timeout = timeout
        self._read, self._write_end = os.pipe2(os.O_CLOEXEC)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._response.move(self._write_end)
        except BaseException as exc:  # handed to the iterating thread
            self._error = exc
        finally:
            os.close(self._write_end)
            self._response.close()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._read < 0:
            raise StopIteration
        data = os.read(self._read, _PIPE_READ)
        if data:
            return data
        self._thread.join()
        os.close(self._read)
        self._read = -1
        if self._error is not None:
            # Raised after the head went out: the server drops the
            # connection instead of ending the body cleanly short.
            raise self._error
        raise StopIteration

    def close(self) -> None:
        if self._read >= 0:
            # Closing the read end makes the mover's next write fail with
            # EPIPE, so the thread ends instead of waiting out a timeout.
            os.close(self._read)
            self._read = -1
            self._thread.join(None if self._timeout is None else self._timeout + 5)


def _file_position(src: FdLike, fd: int) -> int:
    tell = getattr(src, "tell", None)
    if tell is not None and not isinstance(src, int):
        return int(tell())
    return os.lseek(fd, 0, os.SEEK_CUR)


def respond_with(
    src: FdLike,
    *,
    count: int | None = None,
    offset: int | None = None,
    status: str = "200 OK",
    headers: HeaderPairs | None = None,
    timeout: float | None = 60.0,
) -> WSGIApp:
    """A WSGI application answering with the bytes of ``src`` (a descriptor
    or an object with ``fileno()``: a file, pipe or socket).

    ``Content-Length`` comes from ``count``, or from a regular file's size
    past ``offset`` (or its position); a body of unknown length goes to an
    HTTP/1.1 client chunked, to an HTTP/1.0 client delimited by closing the
    connection. With ``status`` 200 and a regular file, ``Range`` (one
    range), ``If-Range``, ``If-None-Match`` and ``If-Modified-Since`` are
    honoured (206, 416, 304) with ``ETag`` and ``Last-Modified`` from
    ``fstat``; HEAD gets the head. ``headers`` are added (CR/LF/NUL and
    framing fields refused). ``timeout`` is §1's inactivity limit.
    Arguments are checked here (``TypeError``/``ValueError``), before any
    request is answered.
    """
    _check_count("count", count)
    _check_count("offset", offset)
    check_timeout(timeout)
    code = _status_line(status)
    fields = _reply.check_fields(headers)
    fd = _fileno(src, "src")
    name = getattr(src, "name", None)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        info = os.fstat(fd)
        head = _is_head(environ)
        if stat.S_ISREG(info.st_mode):
            start = _file_position(src, fd) if offset is None else offset
            if code == 200:
                reply = _reply.file_reply(
                    info,
                    start,
                    count,
                    _getter(environ),
                    head=head,
                    name=name if isinstance(name, str) else None,
                )
            else:
                size = max(0, info.st_size - start)
                length = size if count is None else min(size, count)
                reply = Reply(code, [], start, length, body=not head)

            def mover(dst: int) -> int:
                return splice_to(
                    src, dst, timeout, count=reply.length, offset=reply.start
                )

        else:
            reply = Reply(code, [], 0, count, body=not head)

            def mover(dst: int) -> int:
                return splice_to(src, dst, timeout, count=count)

        return _answer(
            environ, start_response, _Response(reply, mover), fields, timeout
        )

    return app


def respond_from(
    url: str,
    *,
    headers: HeaderPairs | None = None,
    timeout: float | None = 60.0,
    retries: int = 3,
    max_redirects: int = 5,
) -> WSGIApp:
    """A WSGI application answering with the body of ``url`` (an edge
    include): :func:`bytepump.fetch` with the client's single ``Range`` and
    its ``If-Range`` passed on, the origin's status (200 or 206) and its
    ``Content-Length`` (chunked when unknown), ``Content-Type``,
    ``Content-Range``, ``Accept-Ranges``, ``ETag``, ``Last-Modified``,
    ``Cache-Control`` and ``Content-Disposition`` passed back, hop-by-hop
    fields never. ``headers`` go to the origin with the request. An origin
    error before its body raises (``HTTPStatusError``, ``OSError``,
    ``UpstreamTimeout``, ``ProtocolError``) from the application call,
    before ``start_response``, so the caller answers as it likes; a broken
    origin is resumed as :func:`bytepump.splice_from` does.
    """
    fetch_headers = _http1.check_headers(headers)
    check_timeout(timeout)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        get = _getter(environ)
        wanted = _reply.forward_range(get)
        origin: OriginResponse = fetch(
            url,
            timeout,
            offset=wanted.offset,
            length=wanted.length,
            suffix=wanted.suffix,
            if_range=wanted.if_range,
            headers=fetch_headers,
            retries=retries,
            max_redirects=max_redirects,
        )
        status = origin.status or 200
        fields = _reply.origin_fields(origin.headers.get) if origin.head else []
        reply = Reply(status, fields, 0, origin.length, body=not _is_head(environ))

        def mover(dst: int) -> int:
            return origin.splice_to(dst)

        response = _Response(reply, mover, origin.close)
        return _answer(environ, start_response, response, [], timeout)

    return app
