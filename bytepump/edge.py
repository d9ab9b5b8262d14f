"""Edge includes: read an origin's response head, splice its body onward.

:func:`skip_headers` takes exactly a response head out of a socket, leaving
the body for :func:`bytepump.splice_to`. :func:`splice_from` fetches a URL
and splices the body into a descriptor, resuming a broken download where it
stopped. The HTTP parsing lives, sans-IO, in :mod:`bytepump._http1`; this
module does the socket work around it, written once as generators that
yield each :class:`~bytepump._waiters.Wait` they need (as
:mod:`bytepump._transfer` does): :func:`bytepump.pump.drive` runs them here
with epoll, :mod:`bytepump.aio` on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import socket
import sys
import urllib.parse
from collections.abc import Collection, Iterator
from typing import Any, Callable, Optional

from . import _http1
from ._endpoint import _is_ssl_socket
from ._errors import (
    HTTPStatusError,
    IncompleteBody,
    ProtocolError,
    UpstreamTimeout,
    annotate,
    is_upstream,
    mark_upstream,
)
from ._http1 import HeaderPairs, LineReader, Origin, ResponseHead
from ._origins import Origins
from ._pump import ProgressCallback
from ._transfer import Steps, T, Transfer, steps
from ._waiters import READ, WRITE, Wait, check_timeout
from .pump import drive

Addresses = list[tuple[Any, ...]]
"""What ``socket.getaddrinfo`` returns for a host and port."""

Into = Callable[[Any, Optional[int], ProgressCallback], Steps[int]]
"""Moves up to ``count`` (``None``: all) bytes from a socket onward."""

ACCEPTED = (200, 206)
"""The statuses :func:`skip_headers` accepts unless told otherwise."""
_REDIRECTS = frozenset([301, 302, 303, 307, 308])
_CREDENTIALS = frozenset(["authorization", "cookie", "proxy-authorization"])
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
# A nonblocking connect() goes on in the background after these (POSIX says
# so of EINTR too); the socket turns writable when it is done.
_CONNECTING = frozenset([errno.EINPROGRESS, errno.EINTR])


@contextlib.contextmanager
def _origin_side() -> Iterator[None]:
    """Mark socket errors, timeouts of waits on the origin included, as the
    origin's."""
    try:
        yield
    except OSError as exc:
        mark_upstream(exc)
        raise


# --- nonblocking socket calls --------------------------------------------


def _wanted(exc: OSError, events: int) -> int | None:
    """The readiness a nonblocking call that raised ``exc`` waits for, or
    ``None`` when ``exc`` is a real error. A TLS socket says which it needs
    (a read may have to write, a handshake does both); a plain one would
    block in the direction of the call, ``events``."""
    if isinstance(exc, BlockingIOError):
        return events
    ssl = sys.modules.get("ssl")  # loaded if there is a TLS socket at all
    if ssl is not None:
        if isinstance(exc, ssl.SSLWantReadError):
            return READ
        if isinstance(exc, ssl.SSLWantWriteError):
            return WRITE
    return None


def _retry(
    fd: int, events: int, what: str, call: Callable[..., T], *args: Any
) -> Steps[T]:
    """``call(*args)`` on a nonblocking socket, waiting each time it would
    block for the origin (``what``) to get ready; returns what it returns."""
    while True:
        try:
            return call(*args)
        except OSError as exc:
            wanted = _wanted(exc, events)
            if wanted is None:
                raise
        yield Wait(fd, wanted, UpstreamTimeout, what)


# --- reading delimited units without over-reading ------------------------


def _read_peeking(sock: socket.socket, reader: LineReader, what: str) -> Steps[None]:
    # Peek at what has arrived, let the reader say how much of it is the
    # unit, and take exactly that out of the socket: head and body arriving
    # in one segment are split at the blank line. Bytes peeked while the end
    # is not yet in sight all belong to the unit, so they are taken too (the
    # receive queue may be smaller than the unit), and the next peek sees
    # only new bytes: no spinning over the same ones.
    #
    # A socket with a timeout would wait inside recv() itself, MSG_DONTWAIT
    # or not, so it is waited for first; any other socket is tried first.
    # The caller's blocking mode and timeout are never touched.
    fd = sock.fileno()
    wait_first = sock.gettimeout() not in (None, 0.0)
    while not reader.done:
        if wait_first:
            yield Wait(fd, READ, UpstreamTimeout, what)
        data = yield from _retry(fd, READ, what, sock.recv, reader.budget, _PEEK)
        if not data:
            raise mark_upstream(reader.eof_error())
        _take(sock, reader.feed(data), reader)


def _take(sock: socket.socket, n: int, reader: LineReader) -> None:
    """Remove ``n`` bytes that a peek has shown to be in the socket."""
    while n:  # they are queued: one call returns them all
        taken = len(sock.recv(n, socket.MSG_DONTWAIT))
        if not taken:
            raise mark_upstream(reader.eof_error())
        n -= taken


def _read_tls(sock: Any, reader: LineReader, what: str) -> Steps[None]:
    # A TLS socket cannot peek (the kernel holds ciphertext), so it is read
    # in pieces too small to pass the unit's end: reader.safe_size. They are
    # served from OpenSSL's buffer of the current record; the syscalls stay
    # one per record, not one per byte. Nonblocking for the duration, so
    # that OpenSSL says what it waits for instead of waiting.
    fd = sock.fileno()
    saved = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        while not reader.done:
            data = yield from _retry(fd, READ, what, sock.recv, reader.safe_size)
            if not data:
                raise mark_upstream(reader.eof_error())
            reader.feed(data)
    finally:
        sock.settimeout(saved)


def _read_unit(sock: Any, reader: LineReader, who: str) -> Steps[Any]:
    """Fill ``reader`` from ``sock`` without consuming a byte past its unit;
    returns ``reader.result``. Socket errors are marked as the origin's;
    ``who`` names the origin in a timeout's message."""
    what = f"{who} ({reader.what})"
    with _origin_side():
        if _is_ssl_socket(sock):
            yield from _read_tls(sock, reader, what)
        else:
            yield from _read_peeking(sock, reader, what)
    return reader.result


def _read_head(
    sock: Any, reader: _http1.HeadReader, expect: Collection[int] | None, who: str
) -> Steps[ResponseHead]:
    head: ResponseHead = yield from _read_unit(sock, reader, who)
    if expect is not None and head.status not in expect:
        raise HTTPStatusError(
            f"origin answered {head.status} {head.reason}", head.status, head
        )
    return head


def skip_headers_steps(
    sock: Any,
    max_size: int,
    timeout: float | None,
    expect: Collection[int] | None,
) -> Steps[ResponseHead]:
    """:func:`skip_headers` as a generator of waits, for a driver to run
    with ``timeout``; the arguments are checked now, not when it starts."""
    check_timeout(timeout)
    return _read_head(sock, _http1.HeadReader(max_size), expect, "origin")


def skip_headers(
    sock: socket.socket,
    *,
    max_size: int = _http1.MAX_HEAD,
    timeout: float | None = 60.0,
    expect: Collection[int] | None = ACCEPTED,
) -> ResponseHead:
    """Read an HTTP/1.x response head from ``sock``, and not one byte more.

    The body stays in the socket, ready to be spliced. The head is found by
    peeking (``MSG_PEEK``) and taken with one ``recv`` of exactly its length
    once its blank line is in sight; a TLS socket, which cannot peek, is
    read in pieces that cannot reach past the blank line.

    Returns a :class:`ResponseHead`. Raises ``ProtocolError`` for a head
    longer than ``max_size`` bytes (blank line included), a malformed head
    or the end of the stream before the blank line; ``UpstreamTimeout``
    when no byte arrives for ``timeout`` seconds (``None``: no limit);
    ``HTTPStatusError`` when the status is not in ``expect`` (``None``
    accepts any). The socket's blocking mode and timeout are left as found.
    """
    return drive(skip_headers_steps(sock, max_size, timeout, expect), timeout)


# --- connecting ----------------------------------------------------------


@functools.cache
def _user_agent() -> str:
    # Looked up on first use: importing the package's __init__ while it
    # imports this module would be circular.
    try:
        from . import __version__ as version
    except ImportError:
        version = "unknown"
    return f"bytepump/{version}"


@functools.lru_cache(maxsize=1)
def _tls_context() -> Any:
    import ssl

    return ssl.create_default_context()


def _connected(sock: socket.socket, address: Any, what: str) -> Steps[None]:
    """Connect the nonblocking ``sock`` to ``address``; OSError if refused."""
    err = sock.connect_ex(address)
    if err in _CONNECTING:
        yield Wait(sock.fileno(), WRITE, UpstreamTimeout, what)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def _connect_any(addresses: Addresses, what: str) -> Steps[socket.socket]:
    """A nonblocking socket connected to the first of ``addresses`` that
    accepts, tried in turn as ``socket.create_connection`` does; if none
    does, the last one's error (a timeout too) is raised."""
    error = OSError(f"no address to connect to for {what}")
    for family, kind, proto, _, address in addresses:
        sock = None
        try:
            sock = socket.socket(family, kind, proto)  # EAFNOSUPPORT: next one
            sock.setblocking(False)
            yield from _connected(sock, address, what)
            return sock
        except BaseException as exc:
            if sock is not None:
                sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
    raise error


def _send_all(sock: Any, data: bytes, what: str) -> Steps[None]:
    view = memoryview(data)
    while view:
        # After SSLWantWriteError a TLS socket is given the same bytes again.
        sent = yield from _retry(sock.fileno(), WRITE, what, sock.send, view)
        view = view[sent:]


def _connect(origin: Origin, addresses: Addresses, request: bytes) -> Steps[Any]:
    """A socket to ``origin`` (TLS for https) that has sent ``request``, and
    is nonblocking, so a peek never waits inside ``recv``. Errors are marked
    as the origin's."""
    who = f"origin {origin.authority}"
    with _origin_side():
        sock = yield from _connect_any(addresses, f"{who} (connecting)")
        try:
            if origin.scheme == "https":
                sock = _tls_context().wrap_socket(
                    sock, server_hostname=origin.host, do_handshake_on_connect=False
                )
                yield from _retry(
                    sock.fileno(), READ, f"{who} (TLS handshake)", sock.do_handshake
                )
            yield from _send_all(sock, request, f"{who} (request)")
        except BaseException:
            sock.close()
            raise
    return sock


# --- splice_from ---------------------------------------------------------


def _check_dst(dst: Any) -> None:
    """Refuse a ``dst`` without a usable descriptor before connecting."""
    if isinstance(dst, bool):
        raise TypeError("dst must be a file descriptor, not bool")
    if isinstance(dst, int):
        fd = dst
    elif hasattr(dst, "fileno"):
        try:
            fd = dst.fileno()
        except io.UnsupportedOperation as exc:
            raise TypeError(f"dst has no file descriptor: {dst!r}") from exc
    else:
        raise TypeError(f"dst must be an int fd or have fileno(), not {dst!r}")
    os.fstat(fd)  # EBADF for a closed descriptor


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


class Fetch:
    """One fetch of an object: requests, redirects, resumes, byte
    accounting, as generators of waits: :meth:`open` up to the accepted
    head, :meth:`body` for the rest.

    Constructing it checks every argument, before a name is resolved or a
    connection made. ``delivered`` counts the bytes in ``dst``; the next
    byte it wants is ``offset + delivered`` of the object, whichever
    connection brings it. ``_pos`` is the object offset of the next body
    byte in the socket.

    ``connections``: an :class:`~bytepump._origins.Origins` to take idle
    cleartext connections from and give them back to, kept alive across
    the fetches of one job (see there); without it, every request says
    ``Connection: close``, as DESIGN §2 has it.
    """

    def __init__(
        self,
        url: str,
        timeout: float | None,
        *,
        offset: int,
        length: int | None,
        headers: HeaderPairs | None,
        retries: int,
        max_redirects: int,
        suffix: int | None = None,
        if_range: str | None = None,
        connections: Origins | None = None,
    ) -> None:
        _check_count("offset", offset)
        _check_count("retries", retries)
        _check_count("max_redirects", max_redirects)
        if length is not None:
            _check_count("length", length)
        if suffix is not None:
            _check_count("suffix", suffix)
            if not suffix:
                raise ValueError("suffix must be positive: no byte is the last 0")
            if offset or length is not None:
                raise ValueError("suffix excludes offset and length")
        check_timeout(timeout)
        self.origin = _http1.parse_url(url)
        self.fields = _http1.check_headers(headers)
        if if_range is not None:
            self.if_range: str | None = _http1.check_headers([("If", if_range)])[0][1]
            if not (suffix or offset or length is not None):
                raise ValueError("if_range needs a range (offset, length or suffix)")
        else:
            self.if_range = None
        self.url = url
        self.timeout = timeout
        self.offset = offset
        self.end = None if length is None else offset + length
        self.suffix = suffix
        self.retries = retries
        self.redirects_left = max_redirects
        self.addresses: dict[tuple[str, int], Addresses] = {}
        """``getaddrinfo`` results by (host, port), looked up once per call;
        a driver may fill it in beforehand (bytepump.aio does, on the loop)."""
        self.dst: Any = None
        self.on_progress: ProgressCallback = None
        self.head: ResponseHead | None = None
        """The first accepted response's head, once :meth:`open` is done."""
        self.delivered = 0
        self.started = False
        """Whether an accepted response's body has begun; only then is an
        origin's failure retried."""
        self.validator: str | None = None
        self.total: int | None = None
        self.limit: int | None = None
        """The object offset where the whole call ends: the end the first
        response promised (within the asked-for window); ``None`` for a body
        delimited by closing the connection or chunked, of unknown size."""
        self.used = False
        self._into: Into = self._to_dst
        self._sock: Any = None
        self._framing = _http1.Framing(False, 0)
        self._stop: int | None = None
        """Where the current response's body stops being delivered."""
        self._pos = 0
        self._devnull = -1
        self._connections = connections
        self._reusable = False
        """Whether the current response lets its connection be kept."""

    @property
    def connects(self) -> bool:
        """Whether :meth:`open` will connect at all (not for ``length=0``)."""
        return self.end is None or self.offset < self.end

    @property
    def length(self) -> int | None:
        """The bytes :meth:`body` will write; ``None`` if unknown."""
        if not self.connects:
            return 0
        return None if self.limit is None else max(0, self.limit - self.offset)

    def open(self) -> Steps[None]:
        """The first request, up to its accepted 200/206 head; its errors
        are raised as they are (never retried) and carry ``.transferred``
        (0)."""
        if not self.connects:
            return
        try:
            yield from self._respond(self.offset)
        except BaseException as exc:
            annotate(exc, 0)
            raise

    def body(
        self, dst: Any, on_progress: ProgressCallback, into: Into | None = None
    ) -> Steps[int]:
        """Move the body :meth:`open` reached into ``dst``, resuming as
        :func:`splice_from` does; returns the bytes written. Runs once; the
        origin connection is closed when it ends. Every exception carries
        ``.transferred``. ``into(sock, count, on_progress)``, if given,
        moves each run of body bytes instead of a plain transfer to ``dst``
        (a :class:`~bytepump._chunked.ChunkedWriter` framing them)."""
        if self.used:
            raise ValueError("this origin response's body was already taken")
        self.used = True
        self.dst, self.on_progress = dst, on_progress
        self._into = into or self._to_dst
        reconnections = 0
        try:
            while self.head is not None:
                try:
                    if self._sock is None:
                        yield from self._respond(self.offset + self.delivered)
                    yield from self._move_body()
                    break
                except Exception as exc:
                    self._close_socket()
                    if not is_upstream(exc):
                        raise
                    if reconnections == self.retries or self.validator is None:
                        raise IncompleteBody(
                            self._incomplete(exc), self.delivered
                        ) from exc
                    reconnections += 1
        except BaseException as exc:
            annotate(exc, self.delivered)
            raise
        finally:
            self.close()
        return self.delivered

    def close(self) -> None:
        """Close the origin connection and anything else still open."""
        self._close_socket()
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _incomplete(self, exc: BaseException) -> str:
        if self.validator is None:
            why = "the origin sent no ETag or Last-Modified to resume with"
        else:
            why = f"{self.retries} retries"
        return (
            f"origin body broke off after {self.delivered} bytes were delivered "
            f"({type(exc).__name__}: {exc}); gave up: {why}"
        )

    @property
    def _who(self) -> str:
        return f"origin {self.origin.authority}"

    def _respond(self, want: int) -> Steps[None]:
        """Request the object from byte ``want`` on and check the answer;
        leaves its socket at the first body byte."""
        head, sock = yield from self._request(want)
        try:
            self._framing = self._accept(head, want)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reusable = self._keeping and _http1.keeps_alive(head)

    @property
    def _keeping(self) -> bool:
        """Whether connections to the current origin are kept alive."""
        return self._connections is not None and self.origin.scheme == "http"

    def _move_body(self) -> Steps[None]:
        """Deliver the current response's body, then close its socket, or
        give it back to the connections kept alive when the body was read
        to the exact end of its framing."""
        sock = self._sock
        try:
            if self._framing.chunked:
                ended = yield from self._chunked_body(sock)
            else:
                taken = yield from self._segment(sock, self._framing.length)
                ended = taken == self._framing.length
        except BaseException:
            sock.close()
            raise
        self._sock = None
        if ended and self._reusable and self._connections is not None:
            self._connections.give(self.origin, sock)
        else:
            sock.close()
        reached = self.offset + self.delivered
        if self.limit is not None and reached < self.limit:
            # A well-framed but short response (a resumed 206 covering less
            # than was asked): the rest is asked for again, never a short
            # success.
            raise mark_upstream(
                ProtocolError(
                    f"origin's response ended at byte {reached}, "
                    f"before byte {self.limit}"
                )
            )

    # -- requests and responses --

    def _request_fields(self, want: int) -> list[tuple[str, str]]:
        fields = [
            ("Host", self.origin.authority),
            ("User-Agent", _user_agent()),
            # No content coding: offsets and Range count the object's bytes.
            ("Accept-Encoding", "identity"),
        ]
        if not self._keeping:
            fields.append(("Connection", "close"))
        if self.suffix is not None:
            fields.append(("Range", f"bytes=-{self.suffix}"))
        elif self._ranged(want):
            fields.append(("Range", _http1.range_value(want, self.end)))
        if_range = self.validator if self.started else self.if_range
        if if_range is not None and self._ranged(want):
            fields.append(("If-Range", if_range))
        # The caller's Host, User-Agent or Accept-Encoding replace ours.
        theirs = {name.lower() for name, _ in self.fields}
        return [f for f in fields if f[0].lower() not in theirs] + self.fields

    def _request(self, want: int) -> Steps[tuple[ResponseHead, Any]]:
        """GET the object (following redirects): the accepted 200/206 head
        and its socket, positioned at the first body byte."""
        while True:
            request = _http1.build_request(self.origin, self._request_fields(want))
            head, sock = yield from self._exchange(request)
            if head.status in ACCEPTED:
                return head, sock
            sock.close()
            self._follow(head)

    def _exchange(self, request: bytes) -> Steps[tuple[ResponseHead, Any]]:
        """Send ``request`` and read its final head: on an idle kept-alive
        connection if there is one, else, or if the origin had closed that
        one before answering a byte, on a new connection."""
        if self._keeping and self._connections is not None:
            sock = self._connections.take(self.origin)
            if sock is not None and (yield from self._answered(sock, request)):
                return (yield from self._head_of(sock)), sock
        addresses = self._resolve(self.origin)
        sock = yield from _connect(self.origin, addresses, request)
        return (yield from self._head_of(sock)), sock

    def _answered(self, sock: Any, request: bytes) -> Steps[bool]:
        """Send ``request`` on an idle kept-alive connection and wait for
        the first byte of the answer. False, the socket closed, when the
        origin closed or reset the connection instead (an origin may drop
        an idle connection at any time, RFC 9112 9.5); other errors are
        raised, the socket closed."""
        try:
            with _origin_side():
                yield from _send_all(sock, request, f"{self._who} (request)")
                what = f"{self._who} (response head)"
                peeked = yield from _retry(
                    sock.fileno(), READ, what, sock.recv, 1, _PEEK
                )
        except ConnectionError:
            peeked = b""
        except BaseException:
            sock.close()
            raise
        if not peeked:
            sock.close()
        return bool(peeked)

    def _head_of(self, sock: Any) -> Steps[ResponseHead]:
        """The final response head on ``sock``; the socket is closed if
        that fails."""
        try:
            return (yield from self._final_head(sock))
        except BaseException:
            sock.close()
            raise

    def _ranged(self, want: int) -> bool:
        """Whether the request for byte ``want`` onward carries a Range."""
        return bool(want) or self.end is not None or self.suffix is not None

    def _resolve(self, origin: Origin) -> Addresses:
        key = (origin.host, origin.port)
        if key not in self.addresses:
            # getaddrinfo blocks, here and under asyncio alike: there is no
            # wait to yield for it. bytepump.aio resolves the URL's host on
            # the loop beforehand, so only a redirect to another host name
            # is looked up here (an IP address resolves without a lookup).
            with _origin_side():
                self.addresses[key] = socket.getaddrinfo(
                    origin.host, origin.port, type=socket.SOCK_STREAM
                )
        return self.addresses[key]

    def _final_head(self, sock: Any) -> Steps[ResponseHead]:
        # Interim 1xx responses (103 Early Hints, a stray 100) come before
        # the real one and are skipped; 101 would switch protocols. All of
        # them together are held to the head size limit, so an origin
        # cannot keep the call reading interim heads forever.
        budget = _http1.MAX_HEAD
        while True:
            reader = _http1.HeadReader(budget)
            head = yield from _read_head(sock, reader, None, self._who)
            if not 100 <= head.status < 200 or head.status == 101:
                return head
            budget -= len(head.raw)
            if budget < 1:
                raise ProtocolError(
                    f"interim responses longer than {_http1.MAX_HEAD} bytes"
                )

    def _follow(self, head: ResponseHead) -> None:
        """Move to a redirect's target, or raise HTTPStatusError."""
        location = head.get("Location")
        if head.status not in _REDIRECTS or not location:
            raise HTTPStatusError(
                f"origin answered {head.status} {head.reason} for {self.url}",
                head.status,
                head,
            )
        if not self.redirects_left:
            raise HTTPStatusError(
                f"too many redirects, the last one from {self.url}", head.status, head
            )
        self.redirects_left -= 1
        url = urllib.parse.urljoin(self.url, location.strip())
        try:
            origin = _http1.parse_url(url)
        except ValueError as exc:
            raise ProtocolError(f"cannot follow a redirect to {url!r}: {exc}") from exc
        if (origin.scheme, origin.host, origin.port) != (
            self.origin.scheme,
            self.origin.host,
            self.origin.port,
        ):
            # Credentials meant for one origin are not handed to another,
            # nor is a Host override.
            dropped = _CREDENTIALS | {"host"}
            self.fields = [f for f in self.fields if f[0].lower() not in dropped]
        self.url, self.origin = url, origin

    def _accept(self, head: ResponseHead, want: int) -> _http1.Framing:
        """Check a 200/206 against what was asked and, on a resume, against
        the first response; returns the body's framing."""
        framing = _http1.body_framing(head)
        if head.status == 206:
            if not self._ranged(want):
                raise ProtocolError("206 response to a request without Range")
            value = head.get("Content-Range")
            if value is None:
                raise ProtocolError("206 response without Content-Range")
            rng = _http1.parse_content_range(value)
            if self.suffix is not None:
                # The origin says where the last ``suffix`` bytes begin.
                self.offset = want = rng.first
                self.suffix = None
            if rng.first != want:
                raise ProtocolError(
                    f"206 response starts at byte {rng.first}, not at {want}"
                )
            if framing.length not in (None, rng.last - rng.first + 1):
                raise ProtocolError(
                    f"Content-Length {framing.length} disagrees with "
                    f"Content-Range {value!r}"
                )
            if not framing.chunked and framing.length is None:
                # Delimited by closing, yet never past its Content-Range.
                framing = _http1.Framing(False, rng.last - rng.first + 1)
            first, total = want, rng.complete
            stop: int | None = rng.last + 1
        else:
            if not self.started:
                self._whole_or_skip(framing)
            first, total, stop = 0, framing.length, framing.length
        if not self.started:
            self.started = True
            self.head = head
            self.validator = _http1.validator(head)
            self.total = total
            # A first 206 shorter than asked (and than the object) promises
            # the rest too: it is asked for as a resume.
            self.limit = _earliest(self.end, stop if total is None else total)
        elif (
            self.validator is None
            or _http1.representation_changed(self.validator, head)
            or (None not in (total, self.total) and total != self.total)
        ):
            # If-Range made the origin answer 200 if the object changed; an
            # origin that ignores If-Range may still send a 206 of a new
            # object, which its validator or size gives away. Either way,
            # not one byte of a different object reaches dst.
            raise ProtocolError("the object changed at the origin during the fetch")
        self._pos = first
        self._stop = _earliest(self.limit, stop)
        return framing

    def _whole_or_skip(self, framing: _http1.Framing) -> None:
        """Where a first 200 answering a ranged request is taken from: all
        of it when the caller sent If-Range (their validator no longer
        matches, so RFC 9110 says: the whole representation), else from the
        wanted byte, the ones before it skipped."""
        if self.if_range is not None:
            self.offset, self.end = 0, None
        elif self.suffix is not None:
            if framing.length is None:
                raise ProtocolError(
                    "origin answered a suffix range with a 200 of unknown length"
                )
            self.offset = max(0, framing.length - self.suffix)
        self.suffix = None

    # -- bodies --

    def _chunked_body(self, sock: Any) -> Steps[bool]:
        """Deliver a chunked body up to the end of what is wanted; returns
        whether the body was read to its end (last chunk and trailers)."""
        decoder = _http1.ChunkedDecoder()
        while not decoder.done and (self._stop is None or self._pos < self._stop):
            if decoder.data_due:
                moved = yield from self._segment(sock, decoder.data_due)
                decoder.data_moved(moved)
            else:
                reader = decoder.reader
                assert reader is not None  # no data due: a line is
                yield from _read_unit(sock, reader, self._who)
                decoder.unit_read()
        return decoder.done

    def _segment(self, sock: Any, size: int | None) -> Steps[int]:
        """Move the next ``size`` body bytes (``None``: until the origin
        closes): those before the wanted byte into /dev/null, the wanted
        ones into dst, stopping at the end of the wanted range. Returns how
        many were taken from ``sock``; an early end is the origin's failure.
        """
        start = self._pos
        skip = self.offset + self.delivered - self._pos
        if skip > 0:
            skipping = skip if size is None else min(skip, size)
            moved = yield from self._splice(sock, self._null(), skipping, None)
            self._pos += moved
            if moved < skipping:
                return self._ended(size, self._pos - start)
        count = None if size is None else size - (self._pos - start)
        if self._stop is not None:
            left = max(0, self._stop - self._pos)
            count = left if count is None else min(count, left)
        if count == 0:
            return self._pos - start
        try:
            moved = yield from self._into(sock, count, self.on_progress)
        except BaseException as exc:
            self._delivered(getattr(exc, "transferred", 0))
            raise
        self._delivered(moved)
        if count is None or moved < count:
            return self._ended(size, self._pos - start)
        return self._pos - start

    def _splice(
        self, sock: Any, dst: Any, count: int | None, on_progress: ProgressCallback
    ) -> Steps[int]:
        """``splice_to(sock, dst, ...)``, waits yielded to this call's driver."""
        return steps(Transfer(sock, dst, self.timeout, count, None, on_progress, True))

    def _to_dst(
        self, sock: Any, count: int | None, on_progress: ProgressCallback
    ) -> Steps[int]:
        return self._splice(sock, self.dst, count, on_progress)

    def _delivered(self, n: int) -> None:
        self.delivered += n
        self._pos += n

    def _ended(self, size: int | None, taken: int) -> int:
        if size is None:
            return taken  # read until close: the end of the stream ends the body
        raise mark_upstream(
            ProtocolError(f"origin closed the connection {size - taken} bytes early")
        )

    def _null(self) -> int:
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        return self._devnull


def _earliest(a: int | None, b: int | None) -> int | None:
    """The smaller of two ends, ``None`` standing for "no end"."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def splice_from(
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
    """GET ``url`` and splice the response body into ``dst``; returns the
    number of bytes written to ``dst``.

    ``dst`` is an int descriptor or an object with ``fileno()``. The object's
    bytes from ``offset`` (``length`` of them, or all) are fetched with a
    Range request; if the origin answers 200 instead of 206, the leading
    bytes are skipped, never written. ``headers`` (a mapping or name/value
    pairs) are sent along; a URL, name or value with CR, LF or NUL is a
    ``ValueError`` before connecting. Redirects are followed up to
    ``max_redirects``; one more, or any status but 200/206, is
    ``HTTPStatusError`` before a byte reaches ``dst``.

    Once the body has begun, a broken, reset or stalled origin connection is
    resumed, up to ``retries`` times, with Range and If-Range from the first
    byte ``dst`` does not have, so ``dst`` gets every byte once, in order. A
    changed object is a ``ProtocolError``; running out of retries, or an
    origin that sent no ETag or Last-Modified to resume with, is
    ``IncompleteBody``. Failures on ``dst``'s side are never retried.
    ``timeout`` bounds every wait, for the origin (``UpstreamTimeout``) or
    for ``dst`` (``DownstreamTimeout``), as in :func:`bytepump.splice_to`;
    ``on_progress`` gets each write's byte count. Every exception carries
    ``.transferred``.

    ``https://`` works through :mod:`ssl`, the body copied in user space
    (splicing a TLS socket would move ciphertext).
    """
    fetch = Fetch(
        url,
        timeout,
        offset=offset,
        length=length,
        headers=headers,
        retries=retries,
        max_redirects=max_redirects,
    )
    _check_dst(dst)
    return drive(fetch_steps(fetch, dst, on_progress), timeout)


def fetch_steps(fetch: Fetch, dst: Any, on_progress: ProgressCallback) -> Steps[int]:
    """:func:`splice_from` as one generator of waits: ``fetch``'s first
    request, then its body into ``dst``. The origin connection is closed on
    every path."""
    try:
        yield from fetch.open()
        return (yield from fetch.body(dst, on_progress))
    finally:
        fetch.close()


class OriginBase:
    """What :class:`OriginResponse` and its asyncio twin share: the
    accepted head and what it says about the body. Not for direct use."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    @property
    def head(self) -> ResponseHead | None:
        """The accepted 200/206 response head (``None`` for ``length=0``,
        which contacts no origin)."""
        return self._fetch.head

    @property
    def status(self) -> int | None:
        """The accepted head's status, 200 or 206."""
        head = self._fetch.head
        return None if head is None else head.status

    @property
    def headers(self) -> Any:
        """The accepted head's fields (case-insensitive ``HTTPMessage``)."""
        head = self._fetch.head
        return None if head is None else head.headers

    @property
    def offset(self) -> int:
        """The object offset of the first byte ``splice_to`` writes (for a
        suffix range, where the origin said the suffix begins)."""
        return self._fetch.offset

    @property
    def length(self) -> int | None:
        """The bytes ``splice_to`` will write: from Content-Length or
        Content-Range, less the leading bytes skipped when a ranged request
        got a 200; ``None`` for a chunked or close-delimited body of unknown
        size."""
        return self._fetch.length

    @property
    def total(self) -> int | None:
        """The whole object's size, when the origin said it."""
        return self._fetch.total

    @property
    def validator(self) -> str | None:
        """The strong ETag or Last-Modified a resume would be checked with."""
        return self._fetch.validator

    def close(self) -> None:
        """Close the origin connection (the body, if not spliced, is lost)."""
        self._fetch.close()

    def _body_steps(
        self, dst: Any, on_progress: ProgressCallback, into: Into | None = None
    ) -> Steps[int]:
        _check_dst(dst)
        return self._fetch.body(dst, on_progress, into)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.status} {self._fetch.url!r} "
            f"length={self.length} total={self.total}>"
        )


class OriginResponse(OriginBase):
    """An origin's accepted response, its body not yet read (see
    :func:`fetch`). A context manager that closes the connection."""

    def splice_to(self, dst: Any, *, on_progress: ProgressCallback = None) -> int:
        """Splice the body into ``dst`` with every rule of
        :func:`splice_from` (resume, ``IncompleteBody``, ``.transferred``);
        returns the bytes written. Once only: a second call is a
        ``ValueError``. The connection is closed when it returns or raises.
        """
        return drive(self._body_steps(dst, on_progress), self._fetch.timeout)

    def __enter__(self) -> OriginResponse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
) -> OriginResponse:
    """:func:`splice_from` in two steps: GET ``url`` up to the accepted
    200/206 head, with the same checks, redirects and errors, and return an
    :class:`OriginResponse` whose ``splice_to(dst)`` moves the body.

    Beyond :func:`splice_from`'s arguments: ``suffix=n`` asks for the
    object's last ``n`` bytes (``Range: bytes=-n``; not with ``offset`` or
    ``length``), and ``if_range`` (an entity-tag or HTTP date, a client's
    ``If-Range`` passed on) goes with the first ranged request, so that a
    200 answering it carries the whole object and is delivered whole.
    ``length=0`` contacts no origin: ``head`` is ``None``, ``length`` 0.
    """
    job = Fetch(
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
    try:
        drive(job.open(), timeout)
    except BaseException:
        job.close()
        raise
    return OriginResponse(job)


__all__ = [
    "OriginResponse",
    "ResponseHead",
    "fetch",
    "skip_headers",
    "splice_from",
]
