"""What to answer, sans-IO: status, header fields and the byte window of a
response whose body is spliced (DESIGN.md §6).

Shared by every web adapter (:mod:`bytepump.aiohttp`, :mod:`bytepump.wsgi`)
and usable by ``bytepump serve``: each maps its request to a ``get(name)``
for request header fields, calls one of the functions below, writes the
head it is given in its server's way and splices ``Answer.length`` bytes
(from ``Answer.start`` of a file) when ``Answer.body`` is set. Nothing here
touches a socket, a file or a clock; the byte-range and conditional rules
are :mod:`bytepump._ranges`'.
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, Optional

from . import _http1, _ranges
from ._errors import ProtocolError

Fields = list[tuple[str, str]]
GetField = Callable[[str], Optional[str]]
"""A request's header field by (case-insensitive) name, ``None`` if absent."""

OCTETS = "application/octet-stream"
PASSED_ON = (
    "Content-Type",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "Content-Disposition",
)
"""The origin's fields an edge include passes on; never hop-by-hop ones."""


class Answer(NamedTuple):
    """A response to write: its head, and which bytes form its body."""

    status: int
    headers: Fields
    """Everything but the framing (Content-Length is included when known;
    Transfer-Encoding and Connection are the server's, see :func:`framing`)."""
    start: int | None
    """The file offset the body starts at; ``None`` for a stream."""
    length: int | None
    """Body bytes to send; ``None`` when unknown (a stream: until its end)."""
    body: bool
    """Whether a body follows the head at all (not for HEAD, 304, 416)."""


def user_fields(headers: Any) -> Fields:
    """The caller's extra response fields, checked: a mapping or pairs,
    names tokens, CR/LF/NUL refused (``ValueError``/``TypeError``), and no
    framing field (Content-Length, Transfer-Encoding, Connection), which
    the adapter decides."""
    return _http1.check_headers(headers)


def _merge(ours: Fields, theirs: Fields) -> Fields:
    """``ours`` with the caller's fields added; a caller's field replaces
    ours of the same name (a Content-Type, a Cache-Control)."""
    names = {name.lower() for name, _ in theirs}
    return [f for f in ours if f[0].lower() not in names] + theirs


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(int(timestamp), usegmt=True)


def guess_type(name: object) -> str:
    """A media type from a file name, ``application/octet-stream`` if none."""
    if isinstance(name, (str, bytes, os.PathLike)):
        return mimetypes.guess_type(os.fsdecode(name))[0] or OCTETS
    return OCTETS


def file_answer(
    info: os.stat_result,
    get: GetField,
    *,
    method: str = "GET",
    status: int = 200,
    start: int = 0,
    count: int | None = None,
    content_type: str = OCTETS,
    extra: Sequence[tuple[str, str]] = (),
) -> Answer:
    """The answer for bytes of a regular file whose ``fstat`` is ``info``.

    The representation is the file from ``start`` (``count`` bytes, or to
    its end). For ``status`` 200, the request's ``If-None-Match`` /
    ``If-Modified-Since`` (→ 304), ``If-Range`` and one ``Range`` (→ 206,
    or 416 when unsatisfiable) are honoured as ``bytepump serve`` does, with
    a strong ``ETag`` (the file's, or one naming the window when it is part
    of the file) and ``Last-Modified``; any other status sends the window as
    it is. ``HEAD`` gets the head only.
    """
    length = max(0, info.st_size - start) if count is None else count
    body = method != "HEAD"
    if status != 200:
        fields = [("Content-Type", content_type), ("Content-Length", str(length))]
        return Answer(status, _merge(fields, list(extra)), start, length, body)
    etag = _ranges.make_etag(info.st_mtime_ns, info.st_size, info.st_ino)
    if start or length != info.st_size:
        etag = f'{etag[:-1]}-{start:x}-{length:x}"'
    validators = [("ETag", etag), ("Last-Modified", http_date(info.st_mtime))]
    if _ranges.not_modified(
        get("If-None-Match"), get("If-Modified-Since"), etag, info.st_mtime
    ):
        return Answer(304, _merge(validators, list(extra)), None, 0, False)
    decision = None
    if method == "GET" and _ranges.range_applies(get("If-Range"), etag, info.st_mtime):
        decision = _ranges.parse_range(get("Range"), length)
    if isinstance(decision, _ranges.Unsatisfiable):
        fields = [("Content-Range", decision.content_range()), ("Content-Length", "0")]
        return Answer(416, _merge(fields, list(extra)), None, 0, False)
    part = decision or _ranges.ByteRange(0, length)
    fields = [
        *validators,
        ("Accept-Ranges", "bytes"),
        ("Content-Type", content_type),
        ("Content-Length", str(part.length)),
    ]
    if decision is not None:
        fields.append(("Content-Range", decision.content_range(length)))
    return Answer(
        206 if decision else 200,
        _merge(fields, list(extra)),
        start + part.start,
        part.length,
        body,
    )


def stream_answer(
    *,
    method: str = "GET",
    status: int = 200,
    count: int | None = None,
    content_type: str = OCTETS,
    extra: Sequence[tuple[str, str]] = (),
) -> Answer:
    """The answer for a pipe or socket: ``count`` bytes (Content-Length),
    or, without ``count``, a body of unknown length (see :func:`framing`)."""
    fields = [("Content-Type", content_type)]
    if count is not None:
        fields.append(("Content-Length", str(count)))
    return Answer(status, _merge(fields, list(extra)), None, count, method != "HEAD")


class ForwardedRange(NamedTuple):
    """A client's Range (and If-Range) as :func:`bytepump.fetch` takes it."""

    offset: int = 0
    length: int | None = None
    suffix: int | None = None
    if_range: str | None = None

    def fetch_kwargs(self) -> dict[str, Any]:
        return self._asdict()


def forward_range(get: GetField) -> ForwardedRange:
    """What of the client's ``Range`` and ``If-Range`` an edge include
    passes to the origin: one byte range (``a-b``, ``a-``, ``-n``) with its
    ``If-Range``; nothing for no range, several, a malformed one, or
    ``bytes=0-`` (the whole object either way). An ``If-Range`` that is
    not valid field text is dropped with its range: the whole object is
    always a correct answer."""
    spec = _ranges.range_spec(get("Range"))
    if spec is None or spec == (0, None) or spec == (None, 0):
        return ForwardedRange()
    if_range = get("If-Range")
    if if_range is not None:
        try:
            if_range = _http1.check_headers([("If", if_range)])[0][1]
        except ValueError:
            return ForwardedRange()
    first, last = spec
    if first is None:
        return ForwardedRange(suffix=last, if_range=if_range)
    length = None if last is None else last - first + 1
    return ForwardedRange(first, length, None, if_range)


def origin_answer(
    origin: Any,
    *,
    method: str = "GET",
    asked: ForwardedRange = ForwardedRange(),  # noqa: B008 (immutable)
    extra: Sequence[tuple[str, str]] = (),
) -> Answer:
    """The answer for an edge include: ``origin`` is a fetched
    :class:`bytepump.OriginResponse` (its ``status``, ``headers``,
    ``offset``, ``length``, ``total``).

    The origin's 206 or 200 and :data:`PASSED_ON` fields go through as they
    are, ``Content-Length`` from ``origin.length`` when known. One case is
    rewritten: an origin that ignored a forwarded range without If-Range
    answered 200, whose leading bytes ``fetch`` skips, so the client gets
    the 206 it asked for, with a Content-Range built from the window
    (``ProtocolError`` if the origin gave no size to build it from).
    """
    headers = origin.headers
    fields = [(n, v) for n in PASSED_ON for v in headers.get_all(n) or ()]
    status = origin.status
    partial = asked != ForwardedRange() and asked.if_range is None
    if status == 200 and partial:
        if origin.length is None or origin.total is None:
            raise ProtocolError("origin ignored the range and sent no length")
        first, last = origin.offset, origin.offset + origin.length - 1
        if origin.length == 0:
            raise ProtocolError("origin ignored a range none of whose bytes exist")
        fields = [f for f in fields if f[0] != "Content-Range"]
        fields.append(("Content-Range", f"bytes {first}-{last}/{origin.total}"))
        status = 206
    if origin.length is not None:
        fields.append(("Content-Length", str(origin.length)))
    return Answer(
        status, _merge(fields, list(extra)), None, origin.length, method != "HEAD"
    )


CHUNKED, CLOSE, LENGTH = "chunked", "close", "length"


def framing(answer: Answer, version: tuple[int, int]) -> str:
    """How the body is delimited for an HTTP/``version`` client: by its
    Content-Length, chunked (HTTP/1.1, unknown length) or by closing the
    connection (HTTP/1.0, unknown length)."""
    if answer.length is not None or not answer.body:
        return LENGTH
    return CHUNKED if version >= (1, 1) else CLOSE
