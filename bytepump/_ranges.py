"""The static file server's request logic, sans-IO: byte ranges, conditional
requests and request-target paths.

Nothing here touches a socket or the file system. Each function maps header
values or a request-target (strings) to a decision, so that
:mod:`bytepump._serve` only has to carry it out. What is malformed is
ignored where RFC 9110 lets a server ignore it (an unparseable Range gets
the whole representation) and refused where serving something could be
wrong (a path that might leave the served directory is not found).
"""

from __future__ import annotations

import email.utils
import os
import re
import urllib.parse
from typing import NamedTuple, Optional, Union

_HUGE = 10**30
"""Stands for any position with more digits than a file size can have;
``int()`` on thousands of digits is slow, and refused past 4300 (CPython)."""

_MAX_DIGITS = 25
_RANGE_SPEC = re.compile(r"([0-9]+)?-([0-9]+)?")
_ENTITY_TAG = re.compile(r'[ \t]*((?:W/)?"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')


class ByteRange(NamedTuple):
    """Bytes ``start`` up to ``end`` (exclusive) of a representation."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        """The Content-Range value of a 206 carrying this range."""
        return f"bytes {self.start}-{self.end - 1}/{size}"


class Unsatisfiable(NamedTuple):
    """A valid Range none of whose bytes exist: a 416."""

    size: int

    def content_range(self) -> str:
        """The Content-Range value a 416 carries (RFC 9110 14.4)."""
        return f"bytes */{self.size}"


RangeDecision = Union[None, ByteRange, Unsatisfiable]
"""``None``: send the whole representation (200)."""


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > _MAX_DIGITS else int(digits)


RangeSpec = tuple[Optional[int], Optional[int]]
"""``(first, last)`` of ``bytes=first-last``; either may be ``None``
(``first-``, and the suffix ``-last``), not both."""


def range_spec(value: str | None) -> RangeSpec | None:
    """The one byte range a ``Range`` value asks for, before any size is
    known (to pass on to an origin), or ``None`` where :func:`parse_range`
    would send the whole representation: no header, another unit, several
    ranges, a malformed or inverted spec."""
    if value is None:
        return None
    unit, sep, specs = value.partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes" or "," in specs:
        return None
    match = _RANGE_SPEC.fullmatch(specs.strip(" \t"))
    if match is None:
        return None
    digits = match.groups()
    first, last = (None if d is None else _number(d) for d in digits)
    if first is None and last is None:
        return None
    if first is not None and last is not None and last < first:
        return None  # last-pos < first-pos: invalid, so ignored
    return first, last


def parse_range(value: str | None, size: int) -> RangeDecision:
    """What to send for a ``Range`` header ``value`` on a ``size``-byte file.

    Single byte ranges as RFC 9110 14.1.2 has them: ``bytes=first-last``
    (last clamped to the end of the file), ``bytes=first-`` and the suffix
    ``bytes=-n`` (the last ``n`` bytes; all of them if the file is shorter).
    A first byte at or past the end, or ``-0``, is :class:`Unsatisfiable`.
    ``None`` (the whole file, as if there were no Range) for no header, a
    unit other than ``bytes``, a malformed or inverted spec, more than one
    range (serving one 200 is allowed and cheaper than multipart), and an
    empty file, which has no byte a 206 could name.
    """
    spec = range_spec(value)
    if spec is None:
        return None
    first, last = spec
    if first is None:
        suffix = last or 0  # never None here: range_spec has one of the two
        if size == 0:
            return None
        if suffix == 0:
            return Unsatisfiable(size)
        return ByteRange(max(size - suffix, 0), size)
    end = size if last is None else last + 1
    if first >= size:
        return Unsatisfiable(size) if size else None
    return ByteRange(first, min(end, size))


def entity_tags(value: str) -> list[str] | None:
    """The entity-tags of an ``If-None-Match`` / ``If-Match`` list, ``["*"]``
    for ``*``, or ``None`` if ``value`` is malformed. A tag may contain a
    comma, so the list is not simply split on commas."""
    value = value.strip(" \t")
    if value == "*":
        return ["*"]
    tags = []
    pos = 0
    while pos < len(value):
        match = _ENTITY_TAG.match(value, pos)
        if match is None or match.end() == pos:
            return None
        tags.append(match.group(1))
        pos = match.end()
    return tags or None


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def _http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):  # the exception varies by version
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def not_modified(
    if_none_match: str | None,
    if_modified_since: str | None,
    etag: str,
    mtime: float,
) -> bool:
    """Whether a GET or HEAD is answered 304 (RFC 9110 13.1.2, 13.1.3).

    ``If-None-Match`` matches ``*`` or a tag equal to ``etag`` by the weak
    comparison; when it is present, ``If-Modified-Since`` is not looked at.
    Otherwise a valid ``If-Modified-Since`` at or after ``mtime`` (whole
    seconds, as Last-Modified has them) means not modified. A malformed
    field is ignored, so the full response is sent.
    """
    if if_none_match is not None:
        tags = entity_tags(if_none_match)
        if tags is None:
            return False
        return tags == ["*"] or _opaque(etag) in map(_opaque, tags)
    if if_modified_since is not None:
        since = _http_date(if_modified_since)
        return since is not None and int(mtime) <= since
    return False


def range_applies(if_range: str | None, etag: str, mtime: float) -> bool:
    """Whether a Range may be honoured given ``If-Range`` (RFC 9110 13.1.5):
    yes without one; with an entity-tag only if it is strongly equal to
    ``etag``; with a date only if it is exactly the Last-Modified second."""
    if if_range is None:
        return True
    value = if_range.strip(" \t")
    if value.startswith(('"', "W/")):
        return not value.startswith("W/") and value == etag
    when = _http_date(value)
    return when is not None and when == int(mtime)


def make_etag(mtime_ns: int, size: int, inode: int) -> str:
    """A strong entity-tag that changes whenever the file is replaced or
    rewritten (new inode, size or modification time)."""
    return f'"{inode:x}-{mtime_ns:x}-{size:x}"'


PathParts = Optional[list[str]]


def path_parts(target: str) -> PathParts:
    """The file names a request-target names below the served directory, in
    order, or ``None`` if it must not be served (a 404).

    ``target`` is the request line's target as :mod:`http.server` has it
    (the raw bytes decoded as Latin-1). The query is dropped. Each segment is
    percent-decoded on its own, *after* splitting on ``/``, and refused if it
    is (or decodes to) ``..`` or contains ``/`` or NUL: an encoded slash
    never becomes a separator and an encoded dot-dot never climbs. Empty and
    ``.`` segments are skipped. The bytes become names as ``os.fsdecode``
    has them (UTF-8, undecodable bytes as surrogates).
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return None  # absolute-form and "*" targets name no file here
    try:
        raw = path.encode("latin-1")
    except UnicodeEncodeError:
        return None  # cannot have come off the wire
    parts = []
    for segment in raw.split(b"/"):
        name = urllib.parse.unquote_to_bytes(segment)
        if name == b".." or b"/" in name or b"\0" in name:
            return None
        if name not in (b"", b"."):
            parts.append(os.fsdecode(name))
    return parts
