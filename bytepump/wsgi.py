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
import io
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from . import _http1, _libc, _reply
from ._chunked import ChunkedWriter, chunked_body
from ._endpoint import FdLike, _fileno, file_position
from ._errors import IncompleteBody
from ._reply import HeaderPairs, Reply
from ._transfer import Steps, _check_count
from ._waiters import check_timeout
from .edge import OriginResponse, fetch
from .pump import drive, splice_to
from .ziparchive import ZipArchive

__all__ = ["respond_from", "respond_with", "respond_zip"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_PIPE_READ = 65536
"""Bytes the fallback yields at a time: one default pipe's worth."""


def _status_line(status: str) -> int:
    """The code of a WSGI status line such as ``"200 OK"`` (a final status:
    200 to 599), else ``ValueError``."""
    code, _, reason = status.partition(" ")
    if len(code) != 3 or not code.isdigit() or not code.isascii():
        raise ValueError(f"status must be like '200 OK', not {status!r}")
    if not reason.isprintable() or not reason.isascii():
        raise ValueError(f"status must be like '200 OK', not {status!r}")
    return _reply.check_status(int(code))


def _reason(code: int, theirs: str) -> str:
    """The status line for ``code``: the caller's own where it is theirs."""
    if theirs.startswith(f"{code} "):
        return theirs
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


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


def _abort(sock: Any) -> None:
    """Make sure the client cannot take what it got for a whole response:
    a TCP connection is reset; another socket is at least shut down."""
    try:
        _libc.disconnect(sock.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


Mover = Callable[[int, str], int]
"""Moves the body into a descriptor, framed as the mode says
(:data:`bytepump._reply.LENGTH`, ``CHUNKED`` or ``CLOSE``); returns the
data bytes written."""


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

    def move(self, fd: int, mode: str) -> int:
        """Move the body into ``fd``; an error, or fewer bytes than the head
        promised, raises (with ``.transferred``)."""
        n = self.mover(fd, mode)
        length = self.reply.length
        if length is not None and n < length:
            raise IncompleteBody(f"the body ended after {n} of {length} bytes", n)
        return n


def _chunks(
    dst: int, timeout: float | None, run: Callable[[ChunkedWriter], Steps[int]]
) -> int:
    """A chunked body into gunicorn's socket: the data spliced between size
    lines, the data closed; gunicorn writes the last chunk when it ends the
    response (its ``close()``), as it frames every chunked response."""
    return drive(chunked_body(dst, run, timeout, last_chunk=False), timeout)


def _answer(
    environ: Environ,
    start_response: StartResponse,
    response: _Response,
    extra: _reply.Fields,
    status: str,
    timeout: float | None,
) -> Iterable[bytes]:
    reply = response.reply
    try:
        fields = _reply.head_fields(reply, extra)
        if reply.length is not None and reply.status != 204:
            # HEAD and 304: the length a GET / the 200 would have.
            fields.append(("Content-Length", str(reply.length)))
        elif reply.status == 416:
            fields.append(("Content-Length", "0"))
        write = start_response(_reason(reply.status, status), fields)
    except BaseException:
        response.close()
        raise
    if not reply.body or reply.length == 0:
        response.close()
        return []
    version = (1, 0) if environ.get("SERVER_PROTOCOL") == "HTTP/1.0" else (1, 1)
    mode = _reply.framing(reply, version)
    sock = _raw_socket(environ)
    if sock is not None:
        return _Spliced(response, sock, write, mode, timeout)
    return _Piped(response, environ.get("gunicorn.socket"))


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
        mode: str,
        timeout: float | None,
    ) -> None:
        self._response = response
        self._sock = sock
        self._write = write
        self._mode = mode
        # gunicorn's own write callable says whether its head went out; only
        # behind a wrapper (a framework's start_response) is the socket's
        # byte counter read, before the head and at the second item.
        server = getattr(write, "__self__", None)
        known = type(server).__module__.startswith("gunicorn") and isinstance(
            getattr(server, "headers_sent", None), bool
        )
        self._server: Any = server if known else None
        self._before = None if known else _written(sock)
        self._items = 0
        self._fallback: _Piped | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def _head_is_out(self) -> bool:
        if self._server is not None:
            return bool(self._server.headers_sent)
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
            self._fallback = _Piped(self._response, self._sock)
            return next(self._fallback)
        try:
            self._response.move(self._sock.fileno(), self._mode)
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
    timeouts, resume, the exact count), the iterator reads the other end.

    The server frames what it is given (gunicorn chunks a body of unknown
    length itself). The read end is a file object, so a server or
    middleware that never calls ``close()`` still has it closed by the
    garbage collector, and the mover then stops at its next write (EPIPE).
    ``sock`` is the client's socket where the server hands one out (gunicorn
    under TLS or gevent): a failure resets it, so that a body delimited by
    the connection's end is never taken for whole.
    """

    def __init__(self, response: _Response, sock: Any) -> None:
        self._sock = sock if hasattr(sock, "fileno") else None
        read, write = os.pipe2(os.O_CLOEXEC)
        self._read: io.FileIO | None = io.FileIO(read, "rb")
        self._errors: list[BaseException] = []
        # The thread holds no reference to this iterator, or it could never
        # be collected (and its read end closed) while the mover runs.
        self._thread = threading.Thread(
            target=_pipe_body, args=(response, write, self._errors), daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._read is None:
            raise StopIteration
        data = self._read.read(_PIPE_READ)
        if data:
            return data
        self._thread.join()
        self.close()
        if self._errors:
            # Raised after the head went out: the server drops the
            # connection instead of ending the body cleanly short.
            if self._sock is not None:
                _abort(self._sock)
            raise self._errors[0]
        raise StopIteration

    def close(self) -> None:
        """Stop reading. The mover's next write into the pipe fails (EPIPE)
        and its thread ends; one waiting on a silent source ends at its
        timeout. Nothing here waits for it: the server's thread is free at
        once."""
        if self._read is not None:
            self._read.close()
            self._read = None


def _pipe_body(response: _Response, fd: int, errors: list[BaseException]) -> None:
    """The mover thread of :class:`_Piped`: the body into the pipe's write
    end ``fd``, which it closes; an exception goes into ``errors``."""
    try:
        response.move(fd, _reply.LENGTH)
    except BaseException as exc:  # handed to the iterating thread
        errors.append(exc)
    finally:
        os.close(fd)
        response.close()


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
    ``fstat``; HEAD gets the head, 204 and 304 no body. ``headers`` are
    added (CR/LF/NUL, framing fields and, where they are computed, the
    validators refused). ``timeout`` is §1's inactivity limit. Arguments
    are checked here (``TypeError``/``ValueError``), before any request is
    answered; the application never closes ``src``.
    """
    _check_count("count", count)
    _check_count("offset", offset)
    check_timeout(timeout)
    code = _status_line(status)
    extra = _reply.check_fields(headers)
    fd = _fileno(src, "src")
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    if offset is not None and not regular:
        raise ValueError("offset needs a seekable (regular file) src")
    if regular and code == 200:
        _reply.head_fields(
            _reply.file_reply(os.fstat(fd), 0, 0, _none, head=True), extra
        )
    name = getattr(src, "name", None)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        info = os.fstat(fd)
        head = _is_head(environ)
        if stat.S_ISREG(info.st_mode):
            start = file_position(src, fd) if offset is None else offset
            reply = _reply.regular_file_reply(
                info, start, count, code, _getter(environ), head=head, name=name
            )

            def mover(dst: int, mode: str) -> int:
                return splice_to(
                    src, dst, timeout, count=reply.length, offset=reply.start
                )

        else:
            reply = _reply.plain_reply(code, 0, count, head=head)

            def mover(dst: int, mode: str) -> int:
                if mode == _reply.CHUNKED:
                    return _chunks(dst, timeout, lambda w: w.splice(src, None, None))
                return splice_to(src, dst, timeout, count=count)

        response = _Response(reply, mover)
        return _answer(environ, start_response, response, extra, status, timeout)

    return app


def _none(name: str) -> str | None:
    return None


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
    ``Content-Encoding``, ``Content-Range``, ``Accept-Ranges``, ``ETag``,
    ``Last-Modified``, ``Cache-Control`` and ``Content-Disposition`` passed
    back, hop-by-hop fields never. ``headers`` go to the origin with the
    request. An origin error before its body raises (``HTTPStatusError``,
    ``OSError``, ``UpstreamTimeout``, ``ProtocolError``) from the
    application call, before ``start_response``, so the caller answers as
    it likes; a broken origin is resumed as :func:`bytepump.splice_from`
    does.
    """
    fetch_headers = _http1.check_headers(headers)
    check_timeout(timeout)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        head = _is_head(environ)
        wanted = _reply.Forward() if head else _reply.forward_range(_getter(environ))
        origin: OriginResponse = fetch(
            url,
            timeout,
            headers=fetch_headers,
            retries=retries,
            max_redirects=max_redirects,
            **wanted._asdict(),
        )
        try:
            reply = _reply.origin_reply(origin, wanted, head=head)
        except BaseException:
            origin.close()
            raise

        def mover(dst: int, mode: str) -> int:
            if mode == _reply.CHUNKED:
                return _chunks(
                    dst, timeout, lambda w: origin._body_steps(w.dst, None, w.splice)
                )
            return origin.splice_to(dst)

        response = _Response(reply, mover, origin.close)
        return _answer(environ, start_response, response, [], "", timeout)

    return app


def respond_zip(
    archive: ZipArchive, *, filename: str | None = None, timeout: float | None = 60.0
) -> WSGIApp:
    """A WSGI application answering with a planned zip archive (a
    :class:`bytepump.ZipArchive`): ``Content-Length``, ``ETag``,
    ``Last-Modified``, ``Content-Type: application/zip``,
    ``Content-Disposition`` (``attachment; filename*=UTF-8''…`` when
    ``filename`` is given), ``If-None-Match`` → 304, and ``Range`` /
    ``If-Range`` answered with 206 or 416: a broken download resumes. The
    archive's records and entry data are written by
    :meth:`~bytepump.ZipArchive.splice_to` for exactly the window asked.
    """
    check_timeout(timeout)
    if filename is not None:  # a name no field can carry fails here
        _http1.check_field("Content-Disposition", _reply.content_disposition(filename))

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        reply = _reply.zip_reply(
            archive.size,
            archive.etag,
            archive.last_modified,
            _getter(environ),
            head=_is_head(environ),
            filename=filename,
        )

        def mover(dst: int, mode: str) -> int:
            end = reply.start + (reply.length or 0)
            return archive.splice_to(dst, start=reply.start, end=end, timeout=timeout)

        response = _Response(reply, mover)
        return _answer(environ, start_response, response, [], "", timeout)

    return app
