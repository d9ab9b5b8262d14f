"""Edge includes: read an origin's response head, splice its body onward.

:func:`skip_headers` takes exactly a response head out of a socket, leaving
the body for :func:`bytepump.splice_to`. :func:`splice_from` fetches a URL
and splices the body into a descriptor, resuming a broken download where it
stopped. The HTTP parsing lives, sans-IO, in :mod:`bytepump._http1`; this
module does the socket work around it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import select
import socket
import sys
import urllib.parse
from collections.abc import Collection, Iterator
from typing import Any, Callable, Optional

from . import _http1
from ._errors import (
    HTTPStatusError,
    IncompleteBody,
    ProtocolError,
    UpstreamTimeout,
    annotate,
)
from ._http1 import HeaderPairs, LineReader, Origin, ResponseHead
from .pump import splice_to

ProgressCallback = Optional[Callable[[int], object]]

_ACCEPTED = (200, 206)
_REDIRECTS = frozenset([301, 302, 303, 307, 308])
_CREDENTIALS = frozenset(["authorization", "cookie", "proxy-authorization"])
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def _mark_upstream(exc: BaseException) -> BaseException:
    # The convention bytepump.pump follows too: a failure on the origin's
    # side may be retried by splice_from; one on dst's side never is.
    exc._bytepump_upstream = True  # type: ignore[attr-defined]
    return exc


def _is_upstream(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamTimeout) or bool(
        getattr(exc, "_bytepump_upstream", False)
    )


def _is_tls(sock: object) -> bool:
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must not be negative, got {timeout!r}")


# --- reading delimited units without over-reading ------------------------


def _wait_readable(sock: socket.socket, timeout: float | None, what: str) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    # Rounded up, as the core's waiter does: rounded down, a sub-millisecond
    # remainder would become a zero-timeout spin. poll() itself resumes
    # after a signal with the time that remains (PEP 475).
    ms = None if timeout is None else math.ceil(timeout * 1000)
    if not poller.poll(ms):
        raise UpstreamTimeout(f"no {what} from the origin for {timeout} s")


def _read_peeking(
    sock: socket.socket, reader: LineReader, timeout: float | None
) -> None:
    # Peek at what has arrived, let the reader say how much of it is the
    # unit, and take exactly that out of the socket: head and body arriving
    # in one segment are split at the blank line. Bytes peeked while the end
    # is not yet in sight all belong to the unit, so they are taken too (the
    # receive queue may be smaller than the unit), and the next peek sees
    # only new bytes: no spinning over the same ones.
    #
    # A socket with a timeout would wait inside recv() itself, MSG_DONTWAIT
    # or not, so it is polled first; any other socket is tried first.
    try_first = sock.gettimeout() in (None, 0.0)
    must_wait = not try_first
    while not reader.done:
        if must_wait:
            _wait_readable(sock, timeout, reader.what)
        try:
            data = sock.recv(reader.budget, _PEEK)
        except BlockingIOError:
            must_wait = True
            continue
        must_wait = not try_first
        if not data:
            raise _mark_upstream(reader.eof_error())
        _take(sock, reader.feed(data), reader)


def _take(sock: socket.socket, n: int, reader: LineReader) -> None:
    """Remove ``n`` bytes that a peek has shown to be in the socket."""
    while n:  # they are queued: one call returns them all
        taken = len(sock.recv(n, socket.MSG_DONTWAIT))
        if not taken:
            raise _mark_upstream(reader.eof_error())
        n -= taken


def _read_tls(sock: Any, reader: LineReader, timeout: float | None) -> None:
    # A TLS socket cannot peek (the kernel holds ciphertext), so it is read
    # in pieces too small to pass the unit's end: reader.safe_size. They are
    # served from OpenSSL's buffer of the current record; the syscalls stay
    # one per record, not one per byte.
    import ssl

    saved = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        while not reader.done:
            try:
                data = sock.recv(reader.safe_size)
            except (socket.timeout, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise UpstreamTimeout(
                    f"no {reader.what} from the origin for {timeout} s"
                ) from None
            if not data:
                raise _mark_upstream(reader.eof_error())
            reader.feed(data)
    finally:
        sock.settimeout(saved)


def _read_unit(sock: Any, reader: LineReader, timeout: float | None) -> Any:
    """Fill ``reader`` from ``sock`` without consuming a byte past its unit;
    returns ``reader.result``. Socket errors are marked as the origin's."""
    try:
        if _is_tls(sock):
            _read_tls(sock, reader, timeout)
        else:
            _read_peeking(sock, reader, timeout)
    except OSError as exc:
        _mark_upstream(exc)
        raise
    return reader.result


def skip_headers(
    sock: socket.socket,
    *,
    max_size: int = _http1.MAX_HEAD,
    timeout: float | None = 60.0,
    expect: Collection[int] | None = _ACCEPTED,
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
    _check_timeout(timeout)
    head = _read_unit(sock, _http1.HeadReader(max_size), timeout)
    if expect is not None and head.status not in expect:
        raise HTTPStatusError(
            f"origin answered {head.status} {head.reason}", head.status, head
        )
    return head


# --- splice_from ---------------------------------------------------------


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


@contextlib.contextmanager
def _origin_side(what: str, timeout: float | None) -> Iterator[None]:
    """Mark socket errors as the origin's; a socket timeout (or a connect
    that would have to wait, with ``timeout=0``) becomes UpstreamTimeout."""
    try:
        yield
    except UpstreamTimeout as exc:  # before socket.timeout: a subclass on 3.10+
        _mark_upstream(exc)
        raise
    except (socket.timeout, BlockingIOError):
        raise _mark_upstream(
            UpstreamTimeout(f"{what} took more than {timeout} s")
        ) from None
    except OSError as exc:
        _mark_upstream(exc)
        raise


def _connect(origin: Origin, request: bytes, timeout: float | None) -> Any:
    """A socket to ``origin`` (TLS for https) that has sent ``request`` and
    is now nonblocking, so a peek never waits inside ``recv``."""
    with _origin_side(f"connecting to {origin.authority}", timeout):
        sock = socket.create_connection((origin.host, origin.port), timeout)
    try:
        with _origin_side(f"talking to {origin.authority}", timeout):
            if origin.scheme == "https":
                sock = _tls_context().wrap_socket(sock, server_hostname=origin.host)
            sock.sendall(request)
        sock.settimeout(0.0)
    except BaseException:
        sock.close()
        raise
    return sock


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


class _Fetch:
    """One splice_from call: requests, redirects, resumes, byte accounting.

    ``delivered`` counts the bytes in ``dst``; the next byte it wants is
    ``offset + delivered`` of the object, whichever connection brings it.
    ``_pos`` is the object offset of the next body byte in the socket.
    """

    def __init__(
        self,
        dst: Any,
        url: str,
        origin: Origin,
        fields: list[tuple[str, str]],
        timeout: float | None,
        offset: int,
        length: int | None,
        on_progress: ProgressCallback,
    ) -> None:
        self.dst = dst
        self.url = url
        self.origin = origin
        self.fields = fields
        self.timeout = timeout
        self.offset = offset
        self.end = None if length is None else offset + length
        self.on_progress = on_progress
        self.redirects_left = 0
        self.delivered = 0
        self.started = False
        """Whether an accepted response's body has begun; only then is an
        origin's failure retried."""
        self.validator: str | None = None
        self.total: int | None = None
        self._pos = 0
        self._devnull = -1

    def run(self, retries: int, max_redirects: int) -> int:
        self.redirects_left = max_redirects
        reconnections = 0
        try:
            while True:
                try:
                    self._attempt()
                    return self.delivered
                except Exception as exc:
                    if not (self.started and _is_upstream(exc)):
                        raise
                    if reconnections == retries or self.validator is None:
                        raise IncompleteBody(
                            self._incomplete(exc, retries), self.delivered
                        ) from exc
                    reconnections += 1
        except BaseException as exc:
            annotate(exc, self.delivered)
            raise
        finally:
            if self._devnull >= 0:
                os.close(self._devnull)

    def _incomplete(self, exc: BaseException, retries: int) -> str:
        if self.validator is None:
            why = "the origin sent no ETag or Last-Modified to resume with"
        else:
            why = f"{retries} retries"
        return (
            f"origin body broke off after {self.delivered} bytes were delivered "
            f"({type(exc).__name__}: {exc}); gave up: {why}"
        )

    @property
    def _window_full(self) -> bool:
        return self.end is not None and self.offset + self.delivered >= self.end

    def _attempt(self) -> None:
        want = self.offset + self.delivered
        head, sock = self._request(want)
        with sock:
            framing = self._accept(head, want)
            if framing.chunked:
                self._chunked_body(sock)
            else:
                self._segment(sock, framing.length)

    # -- requests and responses --

    def _request_fields(self, want: int) -> list[tuple[str, str]]:
        fields = [
            ("Host", self.origin.authority),
            ("User-Agent", _user_agent()),
            # No content coding: offsets and Range count the object's bytes.
            ("Accept-Encoding", "identity"),
            ("Connection", "close"),
        ]
        if want or self.end is not None:
            fields.append(("Range", _http1.range_value(want, self.end)))
        if self.started and self.validator is not None:
            fields.append(("If-Range", self.validator))
        # The caller's Host, User-Agent or Accept-Encoding replace ours.
        theirs = {name.lower() for name, _ in self.fields}
        return [f for f in fields if f[0].lower() not in theirs] + self.fields

    def _request(self, want: int) -> tuple[ResponseHead, Any]:
        """GET the object (following redirects): the accepted 200/206 head
        and its socket, positioned at the first body byte."""
        while True:
            request = _http1.build_request(self.origin, self._request_fields(want))
            sock = _connect(self.origin, request, self.timeout)
            try:
                head = self._final_head(sock)
            except BaseException:
                sock.close()
                raise
            if head.status in _ACCEPTED:
                return head, sock
            sock.close()
            self._follow(head)

    def _final_head(self, sock: Any) -> ResponseHead:
        # Interim 1xx responses (103 Early Hints, a stray 100) come before
        # the real one and are skipped; 101 would switch protocols.
        while True:
            head = skip_headers(sock, timeout=self.timeout, expect=None)
            if not 100 <= head.status < 200 or head.status == 101:
                return head

    def _follow(self, head: ResponseHead) -> None:
        """Move to a redirect's target, or raise HTTPStatusError."""
        location = head.headers.get("Location")
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
            value = head.headers.get("Content-Range")
            if value is None:
                raise ProtocolError("206 response without Content-Range")
            rng = _http1.parse_content_range(value)
            if rng.first != want:
                raise ProtocolError(
                    f"206 response starts at byte {rng.first}, not at {want}"
                )
            if framing.length not in (None, rng.last - rng.first + 1):
                raise ProtocolError(
                    f"Content-Length {framing.length} disagrees with "
                    f"Content-Range {value!r}"
                )
            first, total = want, rng.complete
        else:
            first, total = 0, framing.length
        if not self.started:
            self.started = True
            self.validator = _http1.validator(head)
            self.total = total
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
        return framing

    # -- bodies --

    def _chunked_body(self, sock: Any) -> None:
        decoder = _http1.ChunkedDecoder()
        while not decoder.done and not self._window_full:
            if decoder.data_due:
                decoder.data_moved(self._segment(sock, decoder.data_due))
            else:
                _read_unit(sock, decoder.reader, self.timeout)
                decoder.unit_read()

    def _segment(self, sock: Any, size: int | None) -> int:
        """Move the next ``size`` body bytes (``None``: until the origin
        closes): those before the wanted byte into /dev/null, the wanted
        ones into dst, stopping at the end of the wanted range. Returns how
        many were taken from ``sock``; an early end is the origin's failure.
        """
        start = self._pos
        skip = self.offset + self.delivered - self._pos
        if skip > 0:
            count = skip if size is None else min(skip, size)
            moved = splice_to(sock, self._null(), self.timeout, count=count)
            self._pos += moved
            if moved < count:
                return self._ended(size, self._pos - start)
        count = None if size is None else size - (self._pos - start)
        if self.end is not None:
            left = self.end - self._pos
            count = left if count is None else min(count, left)
        if count == 0:
            return self._pos - start
        try:
            moved = splice_to(
                sock, self.dst, self.timeout, count=count, on_progress=self.on_progress
            )
        except BaseException as exc:
            self._delivered(getattr(exc, "transferred", 0))
            raise
        self._delivered(moved)
        if count is None or moved < count:
            return self._ended(size, self._pos - start)
        return self._pos - start

    def _delivered(self, n: int) -> None:
        self.delivered += n
        self._pos += n

    def _ended(self, size: int | None, taken: int) -> int:
        if size is None:
            return taken  # read until close: the end of the stream ends the body
        raise _mark_upstream(
            ProtocolError(f"origin closed the connection {size - taken} bytes early")
        )

    def _null(self) -> int:
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        return self._devnull


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
    _check_count("offset", offset)
    _check_count("retries", retries)
    _check_count("max_redirects", max_redirects)
    if length is not None:
        _check_count("length", length)
    _check_timeout(timeout)
    origin = _http1.parse_url(url)
    fields = _http1.check_headers(headers)
    _check_dst(dst)
    if length == 0:
        return 0
    fetch = _Fetch(dst, url, origin, fields, timeout, offset, length, on_progress)
    return fetch.run(retries, max_redirects)


__all__ = ["ResponseHead", "skip_headers", "splice_from"]
