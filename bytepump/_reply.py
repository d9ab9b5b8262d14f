"""What a web adapter answers, sans-IO: status, header fields and the byte
window of the body, decided from a request's fields and what is known of
the body (a file's size and validators, an origin's head).

The adapters (:mod:`bytepump.wsgi`, :mod:`bytepump.aiohttp`) carry a
:class:`Reply` out; the Range and conditional rules themselves are
:mod:`bytepump._ranges`', the ones ``bytepump serve`` applies.
"""

from __future__ import annotations

import datetime
import email.utils
import mimetypes
import os
import urllib.parse
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
    "Content-Encoding",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "Content-Disposition",
)
"""The origin fields an edge include passes on: DESIGN.md §6's list, and
``Content-Encoding``, without which an object stored compressed (S3
metadata) would reach the client as if it were plain."""

_COMPUTED = frozenset({"etag", "last-modified", "content-range", "accept-ranges"})
"""Fields a reply computes for its Range and conditional answers: a
caller's own would contradict them (an ETag a 304 is not judged by)."""

_MAX_FORWARD = 1 << 62
"""A forwarded range position at or past this is ignored (the whole object
is asked for, as a server may always do): no object is that large, and
``fetch`` takes positions below 2**63 only."""


class Reply(NamedTuple):
    """A response to send: ``status`` (int), ``fields`` (without framing),
    and the body: ``start`` and ``length`` of the representation's bytes to
    send (``length`` ``None``: unknown, to the source's end), or ``body``
    ``False`` when the response has none (HEAD, 204, 304, 416; a 304's
    ``length`` is the 200's, for its Content-Length)."""

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


def check_status(status: int) -> int:
    """``status`` if it can be a final response's (200 to 599), else
    ``ValueError``: a 1xx is interim, and the server sends those."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not 200 <= status <= 599:
        raise ValueError(f"status must be a final status (200-599), not {status}")
    return status


def bodiless(status: int) -> bool:
    """Whether a response with ``status`` never has a body (RFC 9110 6.4.1:
    204 and 304; 1xx are never final here)."""
    return status in (204, 304)


def plain_reply(status: int, start: int, length: int | None, *, head: bool) -> Reply:
    """The answer with a caller's own ``status`` (no Range or conditional
    rules): ``length`` bytes from ``start`` (``None``: to the source's
    end), ``application/octet-stream`` unless the caller says otherwise;
    none for HEAD, 204 and 304."""
    fields = [("Content-Type", "application/octet-stream")]
    if status == 204:
        return Reply(status, [], body=False)
    return Reply(status, fields, start, length, body=not head and not bodiless(status))


def head_fields(reply: Reply, extra: Fields) -> Fields:
    """``reply``'s fields with the caller's ``extra`` ones, which replace
    ours of the same name; ``ValueError`` where they would replace a field
    the reply computed for its Range and conditional answers (ETag,
    Last-Modified, Content-Range, Accept-Ranges), before the head is sent."""
    ours = {name.lower() for name, _ in reply.fields}
    theirs = {name.lower() for name, _ in extra}
    clash = sorted(theirs & _COMPUTED) if ours & _COMPUTED else []
    if clash:
        raise ValueError(
            f"{', '.join(clash)} come from the source here and cannot be set"
        )
    return [f for f in reply.fields if f[0].lower() not in theirs] + extra


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
    etag = _ranges.make_etag(info.st_mtime_ns, size, info.st_ino)
    if start:
        etag = f'{etag[:-1]}-{start:x}"'
    kind = mimetypes.guess_type(name)[0] if name else None
    content = [("Content-Type", kind or "application/octet-stream")]
    return _representation(size, etag, info.st_mtime, get, head, content, start)


def regular_file_reply(
    info: os.stat_result,
    start: int,
    count: int | None,
    status: int,
    get: GetField,
    *,
    head: bool,
    name: object = None,
) -> Reply:
    """What ``respond_with`` answers for a regular file: with status 200,
    :func:`file_reply` (its Range and conditional rules); with any other,
    :func:`plain_reply` of the ``count`` bytes (or all) past ``start``.
    ``name`` is the file object's ``name`` (a path gives the Content-Type)."""
    if status == 200:
        path = name if isinstance(name, str) else None
        return file_reply(info, start, count, get, head=head, name=path)
    size = max(0, info.st_size - start)
    length = size if count is None else min(size, count)
    return plain_reply(status, start, length, head=head)


def zip_reply(
    size: int,
    etag: str,
    modified: datetime.datetime | None,
    get: GetField,
    *,
    head: bool,
    filename: str | None = None,
) -> Reply:
    """The answer for a planned zip archive of ``size`` bytes (a
    :class:`bytepump.ZipArchive`'s ``size``, ``etag`` and
    ``last_modified``), with the Range and conditional rules of
    :func:`file_reply`; ``filename`` goes into ``Content-Disposition`` as
    RFC 6266 has it (``filename*`` in UTF-8, and an ASCII ``filename``
    for old clients)."""
    content = [("Content-Type", "application/zip")]
    if filename is not None:
        content.append(("Content-Disposition", content_disposition(filename)))
    mtime = None if modified is None else modified.timestamp()
    return _representation(size, etag, mtime, get, head, content, 0)


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` (RFC 6266, RFC 8187): the name
    percent-encoded as UTF-8 in ``filename*``, and an ASCII stand-in (non-
    ASCII, quotes, backslashes and controls as ``_``) in ``filename``."""
    fallback = "".join(
        c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename
    )
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _is_date(if_range: str) -> bool:
    return not if_range.strip(" \t").startswith(('"', "W/"))


def _representation(
    size: int,
    etag: str,
    mtime: float | None,
    get: GetField,
    head: bool,
    content: Fields,
    start: int,
) -> Reply:
    """The 200, 206, 304 or 416 for ``size`` bytes (at ``start`` of their
    source) with validators ``etag`` and ``mtime`` (``None``: no
    Last-Modified, and a date in If-Range or If-Modified-Since matches
    nothing)."""
    validators = [("ETag", etag)]
    if mtime is not None:
        validators.append(("Last-Modified", http_date(mtime)))
    since = get("If-Modified-Since") if mtime is not None else None
    if _ranges.not_modified(get("If-None-Match"), since, etag, mtime or 0.0):
        return Reply(304, validators, start, size, body=False)
    if_range = get("If-Range")
    if mtime is None and if_range is not None and _is_date(if_range):
        if_range = '"no date matches"'  # no Last-Modified: a date is stale
    decision = None
    if not head and _ranges.range_applies(if_range, etag, mtime or 0.0):
        decision = _ranges.parse_range(get("Range"), size)
    if isinstance(decision, _ranges.Unsatisfiable):
        return Reply(416, [("Content-Range", decision.content_range())], body=False)
    fields = [*validators, ("Accept-Ranges", "bytes"), *content]
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
    multi-range field, or one that asks for everything from byte 0, asks
    for the whole object (:func:`bytepump._ranges.range_spec` decides what
    is malformed, as for the files ``serve`` answers)."""
    spec = _ranges.range_spec(get("Range"))
    if spec is None:
        return Forward()
    first, last = spec
    if max(first or 0, last or 0) >= _MAX_FORWARD:
        return Forward()
    if_range = get("If-Range")
    if first is None:
        return Forward(suffix=last, if_range=if_range) if last else Forward()
    if last is None:
        return Forward(first, if_range=if_range) if first else Forward()
    return Forward(first, last - first + 1, if_range=if_range)


def origin_fields(get: GetField) -> Fields:
    """The fields of an origin's head that an edge include passes on:
    :data:`PASSED_ON`, less any the origin's ``Connection`` field names
    (hop-by-hop, RFC 9110 7.6.1)."""
    hop = {token.strip(" \t").lower() for token in (get("Connection") or "").split(",")}
    return [
        (name, value)
        for name in PASSED_ON
        if name.lower() not in hop and (value := get(name)) is not None
    ]


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
