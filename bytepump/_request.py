"""Request heads as ``bytepump serve`` reads them, sans-IO: strict and bounded.

RFC 9112 leaves a server no latitude where two parsers could disagree about
where a request ends: a field line without a colon, or with whitespace
between the name and the colon, is a 400 (§5.1), and so is an HTTP/1.1
request without exactly one ``Host`` (RFC 9112 §3.2). ``http.server``
silently drops such a line and every field after it, which let
``Content-Length : 40`` smuggle a second request past it; so the field
lines go through the same rules as response heads
(:func:`bytepump._http1.parse_fields`). A head is bounded as nginx bounds
it: 8 KiB a line, 32 KiB in all, so a connection holds at most that.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ._errors import ProtocolError
from ._http1 import _TCHAR, field_lines

MAX_LINE = 8192
"""Bound on the request line and on each field line, line end excluded."""
MAX_HEAD = 32768
"""Bound on the whole head, blank line included."""
MAX_FIELDS = 100
"""Bound on the number of field lines (http.client's)."""


_REQUEST_LINE = re.compile(rb"(" + _TCHAR + rb"+) ([\x21-\x7e\x80-\xff]+) (HTTP/\S+)")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")


class HeadError(Exception):
    """A request head that gets ``status`` and a closed connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Fields:
    """Header fields by case-insensitive name, each name's values in order.

    (Not ``http.client.HTTPMessage``: its email parser costs ~90 µs a head
    on CPython, more than the rest of a small response.)
    """

    __slots__ = ("_values",)

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            key = name.decode("ascii").lower()
            self._values.setdefault(key, []).append(value.decode("latin-1"))

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        values = self._values.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return self._values.get(name.lower(), [])

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fields) and other._values == self._values

    def __repr__(self) -> str:
        return f"Fields({self._values!r})"


class RequestHead(NamedTuple):
    method: str
    target: str
    """As on the wire, decoded as Latin-1 (each byte one character)."""
    version: str
    headers: Fields

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this one
        (RFC 9112 §9.3): HTTP/1.1 unless ``Connection: close``, HTTP/1.0
        only with ``Connection: keep-alive``."""
        tokens = {
            token.strip(" \t").lower()
            for value in self.headers.get_all("Connection")
            for token in value.split(",")
        }
        if self.version != "HTTP/1.0":
            return "close" not in tokens
        return "keep-alive" in tokens and "close" not in tokens


class RequestReader:
    """Finds and parses one request head in a connection's bytes.

    Sans-IO: :meth:`feed` is given each piece received (``b""`` to look at
    what the constructor was given: bytes left over from the previous
    request). Once it returns a :class:`RequestHead`, :attr:`rest` holds
    the bytes after the head (the start of a pipelined request).
    ``HeadError`` for a head over the bounds (414 for the request line, 431
    for a field line or the whole head) or a malformed one (400; 505 for an
    HTTP version other than 1.x).
    """

    def __init__(self, data: bytes = b"") -> None:
        self._buf = bytearray(data)
        self._scan = 0
        """Where the line not yet complete starts."""
        self._started = False
        """Whether a request line was seen (empty lines before it are not)."""
        self.rest = b""

    def feed(self, data: bytes | memoryview) -> RequestHead | None:
        """Take ``data`` (copied); returns the head once it is complete,
        else None."""
        buf = self._buf
        buf += data
        while True:
            start = self._scan
            nl = buf.find(b"\n", start)
            end = len(buf) if nl < 0 else nl
            if nl >= 0 and end > start and buf[end - 1] == 13:  # CR before LF
                end -= 1
            if end - start > MAX_LINE:
                if self._started:
                    raise HeadError(431, "header field line too long")
                raise HeadError(414, "request line too long")
            if nl < 0:
                break
            self._scan = nl + 1
            if end > start:
                self._started = True
            elif self._started:
                self.rest = bytes(buf[self._scan :])
                return parse_request_head(bytes(buf[: self._scan]))
        if len(buf) >= MAX_HEAD:
            raise HeadError(431, "request head too large")
        return None


def _lines(raw: bytes) -> list[bytes]:
    # RFC 9112 2.2: a bare LF may end a line; a CR before it is dropped.
    return [line.removesuffix(b"\r") for line in raw.split(b"\n")]


def parse_request_head(raw: bytes) -> RequestHead:
    """Parse a whole request head (``raw`` ends with its blank line; empty
    lines before the request line are skipped, RFC 9112 §2.2)."""
    if len(raw) > MAX_HEAD:
        raise HeadError(431, "request head too large")
    lines = _lines(raw.lstrip(b"\r\n"))[:-2]
    match = _REQUEST_LINE.fullmatch(lines[0]) if lines else None
    if match is None:
        raise HeadError(400, "malformed request line")
    method, target, version = match.groups()
    if not _VERSION.fullmatch(version):
        raise HeadError(400, "malformed HTTP version")
    if not version.startswith(b"HTTP/1."):
        raise HeadError(505, "HTTP version not supported")
    if len(lines) > MAX_FIELDS + 1:
        raise HeadError(431, f"more than {MAX_FIELDS} header fields")
    try:
        headers = Fields(field_lines(lines[1:]))
    except ProtocolError as exc:
        raise HeadError(400, str(exc)) from None
    hosts = headers.get_all("Host")
    if len(hosts) > 1 or (version != b"HTTP/1.0" and not hosts):
        raise HeadError(400, "HTTP/1.1 needs exactly one Host field")
    return RequestHead(
        method.decode("ascii"), target.decode("latin-1"), version.decode(), headers
    )
