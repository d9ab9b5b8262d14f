"""HTTP/1.1 on the wire, sans-IO: response heads, chunked framing, requests.

Nothing here touches a socket. The readers are shown bytes that are
available in the stream (peeked, typically) and say how many of them belong
to the unit they read, so the caller can take exactly those out of the
socket and leave the body where it is for splice(2). Everything else is a
pure function from bytes or strings to values, or to ``ProtocolError`` /
``ValueError``.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import NamedTuple, NoReturn, Union

from ._errors import ProtocolError

MAX_HEAD = 65536
"""Default bound on a response head (and on a trailer section), in bytes."""

MAX_CHUNK_LINE = 4096
"""Bound on one chunk-size line, extensions included."""

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN = re.compile(_TCHAR + rb"+")
# Field values, reason phrases: HTAB, SP, VCHAR and obs-text (RFC 9110 5.5);
# CR, LF, NUL and the other controls are what smuggling is made of.
_TEXT = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_STATUS_LINE = re.compile(rb"(HTTP/1\.[01]) ([1-9][0-9]{2})(?: (.*))?", re.DOTALL)
_FIELD_LINE = re.compile(rb"(" + _TCHAR + rb"+):(.*)", re.DOTALL)
_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_EXT = (
    rb"[ \t]*;[ \t]*("
    + _TCHAR
    + rb"+)(?:[ \t]*=[ \t]*("
    + _TCHAR
    + rb"+|"
    + _QUOTED
    + rb"))?"
)
_CHUNK_EXT = re.compile(_EXT)
# 16 hex digits at most: int(x, 16) alone would also take "0x1f", "+1f",
# "1_f" and surrounding spaces, and sizes beyond any file.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:" + _EXT + rb")*)[ \t]*")
_CONTENT_RANGE = re.compile(
    r"bytes[ \t]+([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)", re.IGNORECASE
)
_DIGITS = re.compile(r"[0-9]{1,19}")


class ResponseHead:
    """An HTTP/1.x response head: status line and header fields.

    ``headers`` is an ``http.client.HTTPMessage`` (case-insensitive), parsed
    by the standard library the first time it is asked for; the engine
    itself looks fields up with :meth:`get` and :meth:`get_all`, which give
    the same answers from the checked fields: for a small object fetched on
    a kept-alive connection the ``email`` parser behind ``HTTPMessage`` was
    about a third of the Python work per object. ``raw`` is the head exactly
    as received, blank line included.
    """

    __slots__ = (
        "_by_name",
        "_fields",
        "_headers",
        "raw",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        reason: str,
        version: str,
        fields: list[tuple[bytes, bytes]],
        raw: bytes,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.raw = raw
        self._fields = fields
        self._headers: http.client.HTTPMessage | None = None
        by_name: dict[str, list[str]] = {}
        for name, value in fields:
            by_name.setdefault(name.decode("ascii").lower(), []).append(
                value.decode("latin-1")
            )
        self._by_name = by_name

    @property
    def headers(self) -> http.client.HTTPMessage:
        """The header fields as the standard library's ``HTTPMessage``."""
        if self._headers is None:
            self._headers = _message(self._fields)
        return self._headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of field ``name`` (any case), as
        ``headers.get`` answers it."""
        values = self._by_name.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of field ``name`` (any case), in order; empty when
        there is none."""
        return self._by_name.get(name.lower(), [])

    def __repr__(self) -> str:
        return f"<ResponseHead {self.version} {self.status} {self.reason!r}>"


def _split_lines(raw: bytes) -> list[bytes]:
    # RFC 9112 2.2: a recipient may take a bare LF as a line terminator and
    # ignore a preceding CR. The final element is what follows the last LF.
    return [line[:-1] if line.endswith(b"\r") else line for line in raw.split(b"\n")]


def parse_status_line(line: bytes) -> tuple[str, int, str]:
    """``(version, status, reason)`` of a status line without its line end.

    The status code is exactly three digits, the version HTTP/1.0 or 1.1.
    """
    m = _STATUS_LINE.fullmatch(line)
    if m is None or not _TEXT.fullmatch(m.group(3) or b""):
        raise ProtocolError(f"malformed status line {line[:100]!r}")
    return m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1")


def field_lines(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The ``(name, value)`` pairs of header (or trailer) field ``lines``,
    each line checked and obs-folds replaced with a space (RFC 9112 5.2),
    the values stripped of surrounding whitespace.

    ``ProtocolError`` for a line without a colon, with whitespace before
    it, a name that is no token, or a value with control characters.
    """
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields and _TEXT.fullmatch(line):
            fields[-1][1] += b" " + line.lstrip(b" \t")
            continue
        m = _FIELD_LINE.fullmatch(line)
        if m is None or not _TEXT.fullmatch(m.group(2)):
            raise ProtocolError(f"malformed header line {line[:100]!r}")
        fields.append([m.group(1), m.group(2)])
    return [(name, value.strip(b" \t")) for name, value in fields]


_MAX_FIELDS = 99
"""What ``http.client.parse_headers`` takes at most: its ``_MAXHEADERS``
(100) counts the blank line that ends the fields."""
_MAX_FIELD_LINE = 65536
"""The longest line it takes (its ``_MAXLINE``)."""


def checked_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """:func:`field_lines`, also refusing what ``http.client.parse_headers``
    would refuse (more than 99 fields, a line over 64 KiB), so that a head
    is refused when it is read, not when its ``headers`` are first asked
    for."""
    fields = field_lines(lines)
    if len(fields) > _MAX_FIELDS:
        raise ProtocolError(f"unacceptable header fields: more than {_MAX_FIELDS}")
    if any(len(name) + len(value) + 4 > _MAX_FIELD_LINE for name, value in fields):
        raise ProtocolError("unacceptable header fields: a line over 64 KiB")
    return fields


def _message(fields: list[tuple[bytes, bytes]]) -> http.client.HTTPMessage:
    canonical = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
    try:
        return http.client.parse_headers(io.BytesIO(canonical + b"\r\n"))
    except http.client.HTTPException as exc:  # checked_fields refused those
        raise ProtocolError(f"unacceptable header fields: {exc}") from None


def parse_fields(lines: list[bytes]) -> http.client.HTTPMessage:
    """The header (or trailer) fields of ``lines``, validated and unfolded.

    ``http.client.parse_headers`` does the parsing, but it is lenient in
    ways that matter for framing: a line without a colon silently ends the
    fields (the ones after it are lost), and folded lines keep their CRLF.
    So every line is checked first (:func:`checked_fields`), and the stdlib
    parses the canonical result.
    """
    return _message(checked_fields(lines))


def parse_head(raw: bytes) -> ResponseHead:
    """Parse a whole response head (``raw`` ends with its blank line)."""
    lines = _split_lines(raw)
    if len(lines) < 3 or lines[-2:] != [b"", b""]:
        raise ProtocolError("response head does not end with a blank line")
    version, status, reason = parse_status_line(lines[0])
    return ResponseHead(status, reason, version, checked_fields(lines[1:-2]), raw)


class LineReader:
    """Finds where a unit made of lines ends, without reading past it.

    Sans-IO: :meth:`feed` is shown bytes that follow those already fed and
    answers how many of them belong to the unit; once :attr:`done`,
    :attr:`result` holds the parsed unit. Subclasses say which line ends
    the unit and how to parse it. A unit longer than ``max_size`` bytes is
    a ``ProtocolError``.
    """

    what = "unit"
    _ends_on_any_line = False
    """Whether the first line end ends the unit (else an empty line does)."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be positive")
        self.max_size = max_size
        self.done = False
        self.result: object = None
        self._buf = bytearray()
        self._line_start = 0
        self._lines = 0

    @property
    def budget(self) -> int:
        """How many more bytes may be looked at (what to peek for)."""
        return 0 if self.done else self.max_size - len(self._buf)

    @property
    def safe_size(self) -> int:
        """How many bytes can be read without any chance of passing the end.

        For a stream that cannot peek (TLS): a unit that ends with an empty
        line needs at least two more bytes ("\\n\\n") while the current line
        has content, one otherwise.
        """
        if self.done:
            return 0
        partial = self._buf[self._line_start :]
        need = 1 if self._ends_on_any_line or partial in (b"", b"\r") else 2
        return min(need, self.budget)

    def feed(self, data: bytes) -> int:
        """Offer the next bytes of the stream; returns how many belong to the unit.

        Raises ``ProtocolError`` for a malformed or oversized unit.
        """
        if self.done:
            return 0
        start = len(self._buf)
        self._buf += data[: self.max_size - start]
        pos = start
        while True:
            nl = self._buf.find(b"\n", pos)
            if nl < 0:
                break
            line = bytes(self._buf[self._line_start : nl]).removesuffix(b"\r")
            self._line_start = pos = nl + 1
            self._lines += 1
            if self._line_ends_unit(line, self._lines == 1):
                del self._buf[pos:]
                self.result = self._parse(bytes(self._buf))
                self.done = True
                return pos - start
        if len(self._buf) >= self.max_size:
            self._too_long()
        return len(self._buf) - start

    def eof_error(self) -> ProtocolError:
        """The error for a stream that ended before the unit did."""
        return ProtocolError(f"connection closed inside the {self.what}")

    def _too_long(self) -> NoReturn:
        raise ProtocolError(f"{self.what} longer than {self.max_size} bytes")

    def _line_ends_unit(self, line: bytes, first: bool) -> bool:
        return line == b""

    def _parse(self, raw: bytes) -> object:
        raise NotImplementedError


class HeadReader(LineReader):
    """Reads a response head: status line, fields, blank line → ResponseHead."""

    what = "response head"

    def __init__(self, max_size: int = MAX_HEAD) -> None:
        super().__init__(max_size)

    def _line_ends_unit(self, line: bytes, first: bool) -> bool:
        if first:
            # Checked as soon as it is complete, so an origin speaking
            # something else is refused at once, not after max_size bytes.
            parse_status_line(line)
            return False
        return line == b""

    def _parse(self, raw: bytes) -> ResponseHead:
        return parse_head(raw)


class TrailerReader(LineReader):
    """Reads the trailer section after the last chunk → HTTPMessage."""

    what = "trailer section"

    def __init__(self, max_size: int = MAX_HEAD) -> None:
        super().__init__(max_size)

    def _parse(self, raw: bytes) -> http.client.HTTPMessage:
        return parse_fields(_split_lines(raw)[:-2])


class ChunkSize(NamedTuple):
    size: int
    extensions: list[tuple[str, str | None]]


def parse_chunk_line(line: bytes) -> ChunkSize:
    """Parse ``chunk-size [chunk-ext]`` (without the line end)."""
    m = _CHUNK_LINE.fullmatch(line)
    if m is None:
        raise ProtocolError(f"malformed chunk-size line {line[:100]!r}")
    extensions = []
    for ext in _CHUNK_EXT.finditer(m.group(2)):
        name, value = ext.group(1).decode("ascii"), ext.group(2)
        if value is not None:
            if value.startswith(b'"'):
                value = re.sub(rb"\\(.)", rb"\1", value[1:-1], flags=re.DOTALL)
            value = value.decode("latin-1")
        extensions.append((name, value))
    return ChunkSize(int(m.group(1), 16), extensions)


class ChunkLineReader(LineReader):
    """Reads one chunk-size line → ChunkSize."""

    what = "chunk-size line"
    _ends_on_any_line = True

    def __init__(self, max_size: int = MAX_CHUNK_LINE) -> None:
        super().__init__(max_size)

    def _line_ends_unit(self, line: bytes, first: bool) -> bool:
        return True

    def _parse(self, raw: bytes) -> ChunkSize:
        return parse_chunk_line(_split_lines(raw)[0])


class ChunkEndReader(LineReader):
    """Reads the CRLF that closes a chunk's data."""

    what = "line end after chunk data"
    _ends_on_any_line = True

    def __init__(self) -> None:
        super().__init__(2)

    def _line_ends_unit(self, line: bytes, first: bool) -> bool:
        if line:
            self._too_long()
        return True

    def _too_long(self) -> NoReturn:
        raise ProtocolError(f"chunk data not followed by CRLF: {bytes(self._buf)!r}")

    def _parse(self, raw: bytes) -> None:
        return None


class ChunkedDecoder:
    """The chunked transfer coding as a sequence of steps (RFC 9112 7.1).

    The caller either fills :attr:`reader` from the stream and calls
    :meth:`unit_read`, or, while :attr:`data_due` is positive, moves that
    many data bytes itself (splices them) and reports them with
    :meth:`data_moved`; until :attr:`done`, when :attr:`trailers` is set.
    """

    def __init__(self, max_trailers: int = MAX_HEAD) -> None:
        self.reader: LineReader | None = ChunkLineReader()
        self.data_due = 0
        self.trailers: http.client.HTTPMessage | None = None
        self._max_trailers = max_trailers

    @property
    def done(self) -> bool:
        return self.reader is None and not self.data_due

    def unit_read(self) -> None:
        """Advance past the unit :attr:`reader` has just completed."""
        reader = self.reader
        if reader is None or not reader.done:
            raise RuntimeError("no completed unit to advance past")
        if isinstance(reader, ChunkLineReader):
            size = reader.result.size  # type: ignore[attr-defined]
            if size:
                self.reader, self.data_due = None, size
            else:
                self.reader = TrailerReader(self._max_trailers)
        elif isinstance(reader, ChunkEndReader):
            self.reader = ChunkLineReader()
        else:
            self.trailers = reader.result  # type: ignore[assignment]
            self.reader = None

    def data_moved(self, n: int) -> None:
        """``n`` bytes of chunk data were moved."""
        if not 0 < n <= self.data_due:
            raise ValueError(f"{n} bytes moved, {self.data_due} were due")
        self.data_due -= n
        if not self.data_due:
            self.reader = ChunkEndReader()


class Framing(NamedTuple):
    """How a response body is delimited: chunked, ``length`` bytes, or until
    the connection closes (neither)."""

    chunked: bool
    length: int | None


def body_framing(head: ResponseHead) -> Framing:
    """The framing of a response to a GET (RFC 9112 6.3), strictly checked.

    A response with both Transfer-Encoding and Content-Length, conflicting
    Content-Length values or a transfer coding other than chunked is refused:
    each is a way for two parsers to disagree about where a body ends.
    """
    codings = head.get_all("Transfer-Encoding")
    lengths = head.get_all("Content-Length")
    if codings:
        items = [c.strip().lower() for v in codings for c in v.split(",")]
        if items != ["chunked"] or head.version != "HTTP/1.1":
            raise ProtocolError(f"unsupported transfer coding {', '.join(codings)!r}")
        if lengths:
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        return Framing(True, None)
    if not lengths:
        return Framing(False, None)
    values = {v.strip() for field in lengths for v in field.split(",")}
    if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
        raise ProtocolError(f"invalid Content-Length {', '.join(lengths)!r}")
    return Framing(False, int(values.pop()))


def keeps_alive(head: ResponseHead) -> bool:
    """Whether the connection may carry another request once this
    response's body has ended (RFC 9112 9.3): HTTP/1.1, without the
    ``close`` connection option."""
    if head.version != "HTTP/1.1":
        return False
    options = head.get_all("Connection")
    return "close" not in {o.strip().lower() for v in options for o in v.split(",")}


class ContentRange(NamedTuple):
    first: int
    last: int
    complete: int | None
    """The whole representation's length; None when sent as ``*``."""


def parse_content_range(value: str) -> ContentRange:
    """Parse a satisfied byte range ``bytes first-last/complete``."""
    m = _CONTENT_RANGE.fullmatch(value.strip(" \t"))
    if m is None:
        raise ProtocolError(f"invalid Content-Range {value[:100]!r}")
    first, last = int(m.group(1)), int(m.group(2))
    complete = None if m.group(3) == "*" else int(m.group(3))
    if last < first or (complete is not None and last >= complete):
        raise ProtocolError(f"invalid Content-Range {value[:100]!r}")
    return ContentRange(first, last, complete)


def validator(head: ResponseHead) -> str | None:
    """What to send in If-Range to resume this response's representation.

    A strong ETag, else Last-Modified; a weak ETag may not be used
    (RFC 9110 13.1.5). None when there is neither.
    """
    etag = (head.get("ETag") or "").strip()
    if etag.startswith('"'):
        return etag
    modified = (head.get("Last-Modified") or "").strip()
    return modified if email.utils.parsedate_tz(modified) else None


def representation_changed(validator: str, head: ResponseHead) -> bool:
    """Whether ``head`` shows a representation other than ``validator``'s.

    A 200 must carry the same validator (strong comparison). A 206 that
    omits it is taken at its word: If-Range lets the origin send a 206 only
    for the same representation.
    """
    name = "ETag" if validator.startswith('"') else "Last-Modified"
    value = head.get(name)
    if value is None:
        return head.status != 206
    return value.strip() != validator


# --- requests -----------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~]+")
# Characters a request-target may carry as they are; anything else (space,
# controls, non-ASCII, quotes, braces) is percent-encoded, so no URL can end
# the request line early. "%" stays, not to double-encode escapes.
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"
_MANAGED = frozenset(
    ["connection", "content-length", "if-range", "range", "te", "transfer-encoding"]
)
"""Request fields splice_from derives itself; a caller may not set them."""

HeaderPairs = Union[Mapping[str, str], Iterable[tuple[str, str]]]


class Origin(NamedTuple):
    """Where a URL's request goes and what is sent there."""

    scheme: str
    host: str
    """For connecting: a DNS name (IDNA-encoded) or an IP address."""
    port: int
    authority: str
    """The Host field: host, with ``:port`` unless the scheme's default."""
    target: str
    """The request-target: path and query, percent-encoded where needed."""


def _check_text(what: str, value: str) -> None:
    # The raw string is checked, since urllib.parse strips some of these
    # characters silently, and http.client would send others.
    for ch, name in (("\r", "CR"), ("\n", "LF"), ("\0", "NUL")):
        if ch in value:
            raise ValueError(f"{what} contains {name}: {value[:100]!r}")


def parse_url(url: str) -> Origin:
    """Split an http(s) URL into an :class:`Origin`; ``ValueError`` if unusable."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    _check_text("URL", url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}: {url[:100]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not supported")
    host = parts.hostname
    if not host:
        raise ValueError(f"URL has no host: {url[:100]!r}")
    port = parts.port  # checks the range
    if port is None:
        port = _DEFAULT_PORTS[parts.scheme]
    if ":" in host:
        address, percent, zone = host.partition("%")
        ipaddress.IPv6Address(address)  # ValueError if not an address
        # RFC 6874 writes the zone's "%" as "%25"; a bare "%" is taken too.
        zone = urllib.parse.unquote(percent + zone)[1:]
        if percent and not _REG_NAME.fullmatch(zone):
            # RFC 6874: a zone ID is unreserved characters; anything else
            # (a space, DEL) could end up where it must not.
            raise ValueError(f"invalid IPv6 zone ID {zone!r}")
        # The zone names an interface of this host, meaningless to the
        # server: it is used to connect, not sent in Host (as curl does).
        name = f"[{address}]"
        host = f"{address}%{zone}" if zone else address
    else:
        host = host.encode("idna").decode("ascii")  # UnicodeError is a ValueError
        if not _REG_NAME.fullmatch(host):
            raise ValueError(f"invalid host {host!r}")
        name = host
    authority = name if port == _DEFAULT_PORTS[parts.scheme] else f"{name}:{port}"
    target = parts.path or "/"
    if parts.query or url.split("#", 1)[0].endswith("?"):
        target += "?" + parts.query
    return Origin(parts.scheme, host, port, authority, quote_target(target))


def quote_target(target: str) -> str:
    """Percent-encode what a request-target may not contain as it is."""
    return urllib.parse.quote(target, safe=_TARGET_SAFE)


def check_headers(headers: HeaderPairs | None) -> list[tuple[str, str]]:
    """The caller's request fields as validated ``(name, value)`` pairs.

    Names must be tokens, values text without CR, LF, NUL or other controls
    and encodable in Latin-1; fields splice_from manages (Range, Connection,
    framing) are refused. ``ValueError`` / ``TypeError`` otherwise.
    """
    if headers is None:
        return []
    if isinstance(headers, (str, bytes)):
        raise TypeError("headers must be a mapping or name/value pairs")
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    checked = []
    for pair in pairs:
        try:
            if isinstance(pair, (str, bytes)):  # "ab" would unpack as a pair
                raise TypeError
            name, value = pair
        except (TypeError, ValueError):
            raise TypeError(
                f"each header must be a (name, value) pair, not {pair!r}"
            ) from None
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be str: {pair!r}")
        _check_text("header name", name)
        value = check_field(name, value)
        if name.lower() in _MANAGED:
            raise ValueError(f"header {name!r} is set by bytepump, not by the caller")
        checked.append((name, value))
    return checked


def check_field(name: str, value: str) -> str:
    """``value`` without surrounding blanks, once ``name`` is known to be a
    token and ``value`` Latin-1 text without CR, LF, NUL or other controls
    (``ValueError`` otherwise): a field that cannot split a head."""
    _check_text(f"value of header {name!r}", value)
    if not _TOKEN.fullmatch(name.encode("latin-1", "replace")):
        raise ValueError(f"invalid header name {name!r}")
    value = value.strip(" \t")
    if not _TEXT.fullmatch(value.encode("latin-1")):
        raise ValueError(f"value of header {name!r} contains control characters")
    return value


def build_request(origin: Origin, fields: list[tuple[str, str]]) -> bytes:
    """A GET request for ``origin`` with ``fields``, which must come from
    :func:`check_headers` or be built from checked parts."""
    lines = [f"GET {origin.target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def range_value(first: int, end: int | None) -> str:
    """A Range value for bytes ``first`` up to ``end`` (exclusive; None: all)."""
    return f"bytes={first}-" if end is None else f"bytes={first}-{end - 1}"
