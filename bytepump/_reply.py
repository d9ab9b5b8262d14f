"""What a web adapter answers, sans-IO: status, header fields and the byte
window of the body, decided from a request's fields and what is known of
the body (a file's size and validators, an origin's head).

The adapters (:mod:`bytepump.wsgi`, :mod:`bytepump.aiohttp`) carry a
:class:`Reply` out; the Range and conditional rules themselves are
:mod:`bytepump._ranges`', the ones ``bytepump serve`` applies.
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Optional, Union

from . import _http1, _ranges
from ._errors import ProtocolError

Fields = list[tuple[str, str]]
HeaderPairs = Union[Mapping[str, str], Iterable[tuple[str, str]]]
GetField = Callable[[str], Optional[str]]
"""A request's field by name (case-insensitive), ``None`` when absent."""

_FRAMING = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    }
)
"""Fields the adapter and the server manage; a caller may not set them."""

PASSED_ON = (
    "Content-Type",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "Content-Disposition",
)
"""The origin fields an edge include passes on (DESIGN.md §6)."""


class Reply(NamedTuple):
    """A response to send: ``status`` (int), ``fields`` (without framing),
    and the body: ``start`` and ``length`` of the representation's bytes to
    send (``length`` ``None``: unknown, to the source's end), or ``body``
    ``False`` when the response has none (HEAD, 304, 416)."""

    status: int
    fields: Fields
    start: int = 0
    length: int | None = None
    body: bool = True


def check_fields(headers: HeaderPairs | None) -> Fields:
    """A caller's response fields as checked ``(name, value)`` pairs:
    ``TypeError`` for what is not a pair of str, ``ValueError`` for CR, LF,
    NUL or another control, a name that is no token, or a framing field."""
    if headers is None:
        return []
    if isinstance(headers, (str, bytes)):
        raise TypeError("headers must be a mapping or name/value pairs")
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    fields = []
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise TypeError(f"each header must be a (name, value) pair, not {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be str: {pair!r}")
        value = _http1.check_field(name, value)
        if name.lower() in _FRAMING:
            raise ValueError(f"{name} is set by bytepump and the server, not by you")
        fields.append((name, value))
    return fields


def http_date(seconds: float) -> str:
    """An IMF-fixdate (RFC 9110 5.6.7) for a Unix time."""
    return email.utils.formatdate(int(seconds), usegmt=True)


def file_reply(
    info: os.stat_result,
    start: int,
    length: int | None,
    get: GetField,
    *,
    head: bool,
    name: str | None = None,
) -> Reply:
    """The answer for bytes ``[start, start + length)`` of a regular file
    (``length`` ``None``: to its end) whose ``os.stat_result`` is ``info``,
    as ``bytepump serve`` answers: ``ETag`` and ``Last-Modified`` from the
    stat, ``If-None-Match`` / ``If-Modified-Since`` → 304, one ``Range``
    within the window (with ``If-Range``) → 206 or 416, HEAD → no body.
    The window is the representation: a range counts from its start."""
    size = max(0, info.st_size - start)
    if length is not None:
        size = min(size, length)
    mtime = info.st_mtime
    etag = _ranges.make_etag(info.st_mtime_ns, size, info.st_ino)
    if start:
        etag = f'{etag[:-1]}-{start:x}"'
    validators = [("ETag", etag), ("Last-Modified", http_date(mtime))]
    if _ranges.not_modified(
        get("If-None-Match"), get("If-Modified-Since"), etag, mtime
    ):
        return Reply(304, validators, body=False)
    decision = None
    if not head and _ranges.range_applies(get("If-Range"), etag, mtime):
        decision = _ranges.parse_range(get("Range"), size)
    if isinstance(decision, _ranges.Unsatisfiable):
        return Reply(416, [("Content-Range", decision.content_range())], body=False)
    kind = mimetypes.guess_type(name)[0] if name else None
    fields = [
        *validators,
        ("Accept-Ranges", "bytes"),
        ("Content-Type", kind or "application/octet-stream"),
    ]
    if decision is None:
        return Reply(200, fields, start, size, body=not head)
    fields.append(("Content-Range", decision.content_range(size)))
    return Reply(206, fields, start + decision.start, decision.length, body=not head)


class Forward(NamedTuple):
    """A client's single Range as :func:`bytepump.fetch` takes it."""

    offset: int = 0
    length: int | None = None
    suffix: int | None = None
    if_range: str | None = None


def forward_range(get: GetField) -> Forward:
    """The client's one ``Range`` (``a-b``, ``a-``, ``-n``) and its
    ``If-Range``, to pass on to an origin; a missing, malformed or
    multi-range field asks for the whole object."""
    value = get("Range")
    if value is None:
        return Forward()
    unit, _, spec = value.strip(" \t").partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return Forward()
    first, dash, last = spec.strip(" \t").partition("-")
    if (
        not dash
        or not (first.isdigit() or first == "")
        or not (last.isdigit() or last == "")
    ):
        return Forward()
    if_range = get("If-Range")
    if not first:
        return (
            Forward(suffix=int(last), if_range=if_range)
            if last and int(last)
            else Forward()
        )
    offset = int(first)
    if not last:
        return Forward(offset, if_range=if_range) if offset else Forward()
    if int(last) < offset:
        return Forward()
    return Forward(offset, int(last) - offset + 1, if_range=if_range)


def origin_fields(get: GetField) -> Fields:
    """The fields of an origin's head that an edge include passes on."""
    return [(name, value) for name in PASSED_ON if (value := get(name)) is not None]


def origin_reply(origin: Any, asked: Forward, *, head: bool) -> Reply:
    """The answer for an edge include: ``origin`` is a fetched
    :class:`bytepump.OriginResponse` (``status``, ``headers``, ``offset``,
    ``length``, ``total``), ``asked`` what :func:`forward_range` passed on.

    The origin's 206 or 200 and :data:`PASSED_ON` fields go through as they
    are. One case is rewritten: an origin that ignored a forwarded range
    sent without ``If-Range`` answered 200, whose leading bytes ``fetch``
    skips; passing that 200 on would hand the client part of the object as
    if whole, so it gets the 206 it asked for, with a Content-Range built
    from the window (``ProtocolError`` when the origin said no size to build
    it from).
    """
    fields = origin_fields(origin.headers.get)
    status = origin.status
    if status == 200 and asked != Forward() and asked.if_range is None:
        if not origin.length or origin.total is None:
            raise ProtocolError("origin ignored the range and said no size")
        last = origin.offset + origin.length - 1
        fields = [f for f in fields if f[0] != "Content-Range"]
        fields.append(("Content-Range", f"bytes {origin.offset}-{last}/{origin.total}"))
        status = 206
    return Reply(status, fields, 0, origin.length, body=not head)


CHUNKED, CLOSE, LENGTH = "chunked", "close", "length"


def framing(reply: Reply, version: tuple[int, int]) -> str:
    """How the body is delimited for an HTTP/``version`` client: by its
    Content-Length (known, or no body), chunked (HTTP/1.1, unknown length)
    or by closing the connection (HTTP/1.0, unknown length)."""
    if reply.length is not None or not reply.body:
        return LENGTH
    return CHUNKED if version >= (1, 1) else CLOSE
