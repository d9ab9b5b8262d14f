"""Zip records for STORED entries, sans-IO: pure functions returning bytes.

Only what a writer needs whose sizes and CRC-32s are known before the data
(APPNOTE 6.3.10): local file headers without a data descriptor, central
directory headers and the end records, and :func:`layout`, which lays a
whole planned archive out as records and holes for the entries' data.
Nothing here touches a descriptor: :mod:`bytepump.zipstream` and
:mod:`bytepump.ziparchive` write what these return, so an archive's
predicted size and its written bytes come from the same code.

The compatibility rules readers need (DESIGN.md §3): Zip64 only where a
size, an offset or the entry count needs it (so a first entry is classic
unless it is huge), its extra field first; in a central header, all three
of sizes and offset in it as soon as one needs it (Info-ZIP unzip 6.0
rejects the minimal form); no data descriptors; UTF-8 names (flag bit 11);
an extended timestamp (0x5455, UTC) beside the DOS time; Unix modes in the
external attributes; "version needed" as each record requires. A value of
exactly 0xFFFFFFFF (or 65,535 entries) is the "see Zip64" sentinel, so it
goes to Zip64 too.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import math
import re
import stat
import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

MAX_32 = 0xFFFFFFFF
"""A classic 32-bit size or offset field holds less than this; this value
itself means "see the Zip64 extra field", so it needs Zip64 too."""
MAX_16 = 0xFFFF
"""The classic entry count fields hold less than this (same rule)."""
MAX_64 = 0xFFFFFFFFFFFFFFFF

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_ZIP64_EOCD_SIG = 0x06064B50
_ZIP64_LOCATOR_SIG = 0x07064B50
_ZIP64_EXTRA_ID = 0x0001
_TIMESTAMP_EXTRA_ID = 0x5455
_TIMESTAMP_MTIME = 1  # flags: the modification time is present

_UTF8_FLAG = 1 << 11
_STORED = 0
_VERSION_STORED = 10  # 1.0: a stored file
_VERSION_DIRECTORY = 20  # 2.0: a directory (APPNOTE 4.4.3.2)
_VERSION_ZIP64 = 45  # 4.5: Zip64 extensions
_MADE_BY = (3 << 8) | 63  # Unix (external attributes are Unix), APPNOTE 6.3
_MSDOS_DIRECTORY = 0x10

DEFAULT_FILE_MODE = 0o644
DEFAULT_DIRECTORY_MODE = 0o755

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes, then name and extra field
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes, then name and extra
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_TIMESTAMP = struct.Struct("<HHBI")  # 9 bytes: id, size 5, flags, mtime

LOCAL_HEADER_SIZE = _LOCAL.size
"""Fixed part of a local file header, in bytes (name and extra follow)."""

_DOS_MIN = datetime.datetime(1980, 1, 1)
_DOS_MAX = datetime.datetime(2107, 12, 31, 23, 59, 58)
_MTIME_MAX = 0x7FFFFFFF
"""Readers differ on whether 0x5455's mtime is signed: only 1970..2038 is
written there, other times have the DOS fields alone."""


class Entry(NamedTuple):
    """One STORED entry as the central directory describes it."""

    name: bytes
    """The file name, UTF-8 encoded (see :func:`encode_name`)."""
    size: int
    """Data size in bytes (compressed and uncompressed alike: stored)."""
    crc32: int
    dos_time: int
    dos_date: int
    offset: int
    """Where the entry's local file header starts, from the archive's byte 0."""
    mtime: int | None = None
    """Seconds since the epoch (UTC) for the 0x5455 field; ``None``: no field."""
    mode: int = stat.S_IFREG | DEFAULT_FILE_MODE
    """``st_mode``: file type and permission bits, for the external attributes."""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def encode_name(filename: str) -> bytes:
    """``filename`` as stored in the archive: UTF-8, at most 65,535 bytes.

    ``ValueError`` for an empty name, a NUL in it (readers cut names at the
    first NUL), a lone surrogate (no UTF-8 for it) or a name too long;
    ``TypeError`` for a name that is not a ``str``. The path rules
    (:func:`check_name`) are checked apart from this.
    """
    if not isinstance(filename, str):
        raise TypeError(f"file name must be a str, not {type(filename).__name__}")
    if not filename:
        raise ValueError("empty file name")
    if "\0" in filename:
        raise ValueError(f"NUL in file name {filename!r}")
    try:
        name = filename.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"file name {filename!r} has no UTF-8 form: {exc}") from None
    if len(name) > MAX_16:
        raise ValueError(f"file name of {len(name)} bytes: at most {MAX_16}")
    return name


# C0 controls, DEL and C1 controls: a NUL cuts a name short in C readers,
# a newline or an ESC sequence forges lines in a listing or a terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# "C:x" is relative to drive C's current directory on Windows, "C:/x" absolute.
_DRIVE = re.compile("[A-Za-z]:")


def check_name(filename: str) -> str:
    """Check that ``filename`` is a safe relative path; return the path it
    names (without the trailing ``/`` of a directory).

    ``ValueError`` naming the entry for what a naive extractor would write
    outside its target directory or mistake for something else (zip-slip):
    an absolute path (``/x``, a Windows drive ``C:``), a ``..`` component, a
    backslash (a separator on Windows), NUL or another control character,
    and components that are empty or ``.`` (``a//b``, ``./a``: the same
    file under two names). A name ending in ``/`` is a directory.
    """
    encode_name(filename)
    why = None
    if _CONTROL.search(filename):
        why = "a control character"
    elif "\\" in filename:
        why = "a backslash"
    elif filename.startswith("/") or _DRIVE.match(filename):
        why = "an absolute path"
    else:
        path = filename[:-1] if filename.endswith("/") else filename
        parts = path.split("/")
        if ".." in parts:
            why = "a '..' component"
        elif "" in parts or "." in parts:
            why = "an empty or '.' component"
    if why is not None:
        raise ValueError(f"entry {filename!r}: the name has {why}")
    return path


class NameSet:
    """The names of an archive's entries so far, for the rules that concern
    several: no name twice, and no path that is both a file and a directory
    (``a`` and ``a/``, or ``a`` and ``a/b``: extractors fail on the second).
    """

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._dirs: set[str] = set()  # named, or implied by a name below them
        self._named_dirs: set[str] = set()

    def add(self, filename: str) -> None:
        """Add the entry ``filename`` (a directory if it ends in ``/``).

        ``ValueError`` naming the entry if it breaks :func:`check_name` or
        clashes with an entry added before; nothing is added then.
        """
        path = check_name(filename)
        is_dir = filename.endswith("/")
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        clash = None
        if path in self._files or (is_dir and path in self._named_dirs):
            clash = "a duplicate"
        elif not is_dir and path in self._dirs:
            clash = "a file where another entry has a directory"
        else:
            clash = next(
                (f"below the file {p!r}" for p in parents if p in self._files), None
            )
        if clash is not None:
            raise ValueError(f"entry {filename!r}: the name is {clash}")
        if is_dir:
            self._named_dirs.add(path)
            self._dirs.add(path)
        else:
            self._files.add(path)
        self._dirs.update(parents)


def dos_datetime(when: datetime.datetime) -> tuple[int, int]:
    """``(time, date)`` MS-DOS fields for ``when``'s wall-clock reading.

    Seconds are rounded down to even (DOS keeps 2-second steps); a time
    zone, if any, is ignored. Times before 1980 or after 2107, which DOS
    fields cannot hold, are clamped to the first or last one they can.
    """
    if not isinstance(when, datetime.datetime):
        raise TypeError(f"modified must be a datetime, not {type(when).__name__}")
    when = min(max(when.replace(tzinfo=None), _DOS_MIN), _DOS_MAX)
    time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    date = ((when.year - 1980) << 9) | (when.month << 5) | when.day
    return time, date


def unix_time(when: datetime.datetime) -> int:
    """``when`` in whole seconds since the epoch (a naive ``when`` is local
    time, as :meth:`datetime.datetime.timestamp` has it)."""
    if not isinstance(when, datetime.datetime):
        raise TypeError(f"modified must be a datetime, not {type(when).__name__}")
    return math.floor(when.timestamp())


def full_mode(filename: str, mode: int | None) -> int:
    """The ``st_mode`` of the entry ``filename`` (a directory if it ends in
    ``/``) with permission bits ``mode`` (default 0o644, 0o755 for a
    directory); ``ValueError`` for bits outside 0o7777."""
    is_dir = filename.endswith("/")
    if mode is None:
        mode = DEFAULT_DIRECTORY_MODE if is_dir else DEFAULT_FILE_MODE
    _check_int("mode", mode, 0o7777)
    return (stat.S_IFDIR if is_dir else stat.S_IFREG) | mode


def make_entry(
    filename: str,
    size: int,
    crc32: int,
    modified: datetime.datetime,
    offset: int,
    mode: int | None = None,
) -> Entry:
    """Validate an entry's fields and return it.

    A name ending in ``/`` is a directory, which holds no data. ``mode``:
    permission bits, see :func:`full_mode`. ``ValueError`` for a bad name
    (see :func:`encode_name`), a size or an offset outside 0..2**64-1, a
    CRC-32 outside 0..2**32-1, a directory with data; ``TypeError`` for
    non-integers or a ``modified`` that is not a datetime.
    """
    name = encode_name(filename)
    _check_int("size", size, MAX_64)
    _check_int("crc32", crc32, MAX_32)
    _check_int("offset", offset, MAX_64)
    if filename.endswith("/") and (size or crc32):
        raise ValueError(f"entry {filename!r}: a directory has no data")
    dos_time, dos_date = dos_datetime(modified)
    seconds = unix_time(modified)
    mtime = seconds if 0 <= seconds <= _MTIME_MAX else None
    return Entry(
        name, size, crc32, dos_time, dos_date, offset, mtime, full_mode(filename, mode)
    )


def _check_int(what: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} {value} outside 0..{maximum}")


def _extra(entry: Entry, zip64: list[int]) -> bytes:
    """The extra field: Zip64 first (readers look for it there), then the
    extended timestamp."""
    out = b""
    if zip64:
        out = struct.pack(f"<HH{len(zip64)}Q", _ZIP64_EXTRA_ID, 8 * len(zip64), *zip64)
    if entry.mtime is not None:
        out += _TIMESTAMP.pack(_TIMESTAMP_EXTRA_ID, 5, _TIMESTAMP_MTIME, entry.mtime)
    return out


def _version(entry: Entry, zip64: bool) -> int:
    if zip64:
        return _VERSION_ZIP64
    return _VERSION_DIRECTORY if entry.is_dir else _VERSION_STORED


def _shared_fields(entry: Entry, zip64: bool, extra: bytes) -> tuple[int, ...]:
    """The fields local and central headers have in common, from "version
    needed" to the extra field's length. With ``zip64``, both sizes show as
    0xFFFFFFFF: the real ones are in ``extra``.
    """
    size32 = MAX_32 if zip64 else entry.size
    return (
        _version(entry, zip64),
        _UTF8_FLAG,
        _STORED,
        entry.dos_time,
        entry.dos_date,
        entry.crc32,
        size32,  # compressed: stored
        size32,
        len(entry.name),
        len(extra),
    )


def local_header(entry: Entry) -> bytes:
    """The local file header that precedes ``entry``'s data.

    Sizes and CRC-32 are in it (no data descriptor follows the data). A
    size ≥ 0xFFFFFFFF goes into a Zip64 extra field holding both sizes, as
    APPNOTE 4.5.3 requires of a local header.
    """
    zip64 = entry.size >= MAX_32
    extra = _extra(entry, [entry.size, entry.size] if zip64 else [])
    fields = _LOCAL.pack(_LOCAL_SIG, *_shared_fields(entry, zip64, extra))
    return fields + entry.name + extra


def central_header(entry: Entry) -> bytes:
    """``entry``'s central directory file header.

    When its size or its local header's offset is ≥ 0xFFFFFFFF, all three
    (uncompressed size, compressed size, offset, APPNOTE 4.5.3's order) go
    into a Zip64 extra field and their classic fields hold 0xFFFFFFFF.
    """
    zip64 = entry.size >= MAX_32 or entry.offset >= MAX_32
    extra = _extra(entry, [entry.size, entry.size, entry.offset] if zip64 else [])
    attributes = entry.mode << 16 | (_MSDOS_DIRECTORY if entry.is_dir else 0)
    fields = _CENTRAL.pack(
        _CENTRAL_SIG,
        _MADE_BY,
        *_shared_fields(entry, zip64, extra),
        0,  # comment length
        0,  # disk number start
        0,  # internal attributes
        attributes,
        MAX_32 if zip64 else entry.offset,
    )
    return fields + entry.name + extra


def needs_zip64_end(count: int, cd_offset: int, cd_size: int) -> bool:
    """Whether the end records must include the Zip64 EOCD record and locator."""
    return count >= MAX_16 or cd_offset >= MAX_32 or cd_size >= MAX_32


def end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    """What follows the central directory: the end of central directory
    record, preceded by the Zip64 EOCD record and locator when ``count``
    (entries), ``cd_offset`` or ``cd_size`` (bytes) does not fit it.

    A classic field that does not fit holds its all-ones value, which
    readers take as "see the Zip64 record".
    """
    _check_int("count", count, MAX_64)
    _check_int("cd_offset", cd_offset, MAX_64)
    _check_int("cd_size", cd_size, MAX_64)
    out = b""
    if needs_zip64_end(count, cd_offset, cd_size):
        zip64_eocd_offset = cd_offset + cd_size
        out = _ZIP64_EOCD.pack(
            _ZIP64_EOCD_SIG,
            _ZIP64_EOCD.size - 12,  # APPNOTE 4.3.14.1: minus signature and this
            _MADE_BY,
            _VERSION_ZIP64,
            0,  # this disk
            0,  # disk where the central directory starts
            count,
            count,
            cd_size,
            cd_offset,
        ) + _ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_SIG, 0, zip64_eocd_offset, 1)
    count16 = min(count, MAX_16)
    return out + _EOCD.pack(
        _EOCD_SIG,
        0,
        0,
        count16,
        count16,
        min(cd_size, MAX_32),
        min(cd_offset, MAX_32),
        0,  # comment length
    )


# --- a whole planned archive ---


class Member(NamedTuple):
    """An entry of a planned archive, as :func:`layout` needs it."""

    filename: str
    size: int
    crc32: int
    modified: datetime.datetime
    mode: int | None
    """Permission bits (see :func:`full_mode`); ``None``: the default."""
    data: bytes | None
    """The entry's data when the plan holds it (``size`` bytes), else ``None``:
    it comes from elsewhere when the archive is written."""


class Piece(NamedTuple):
    """A run of the archive's bytes, from ``start`` (an archive offset)."""

    start: int
    length: int
    data: bytes | None
    """The bytes themselves (records, inline data), or ``None`` for ``length``
    bytes of member ``member``'s data, which the writer fetches."""
    member: int
    """The member whose data this is (``-1`` for records)."""


class Layout(NamedTuple):
    pieces: list[Piece]
    starts: list[int]
    """``pieces[i].start``, for bisecting."""
    size: int
    """The archive's size in bytes."""
    digest: str
    """SHA-256 (hex) of the central directory and end records: they hold
    every name, size, CRC-32, time, mode and offset of the archive."""


def layout(members: Sequence[Member], *, names_checked: bool = False) -> Layout:
    """Lay out the archive of ``members`` (in order): the records as bytes,
    the data not held in the plan as holes of known size.

    Checks every name (:class:`NameSet`, unless the caller has:
    ``names_checked``) and field (:func:`make_entry`): ``ValueError``
    naming the entry. Adjacent bytes are joined into one piece, so a writer
    makes one write for them.
    """
    names = None if names_checked else NameSet()
    pieces: list[Piece] = []
    pending: list[bytes] = []
    entries = []
    offset = 0

    def flush() -> None:
        if pending:
            joined = b"".join(pending)
            pieces.append(Piece(offset - len(joined), len(joined), joined, -1))
            pending.clear()

    for index, member in enumerate(members):
        if names is not None:
            names.add(member.filename)
        entry = make_entry(
            member.filename,
            member.size,
            member.crc32,
            member.modified,
            offset,
            member.mode,
        )
        entries.append(entry)
        header = local_header(entry)
        pending.append(header)
        offset += len(header)
        if member.data is not None:
            pending.append(member.data)
        elif member.size:
            flush()
            pieces.append(Piece(offset, member.size, None, index))
        offset += member.size
    cd_offset = offset
    directory = b"".join(map(central_header, entries))
    tail = directory + end_records(len(entries), cd_offset, len(directory))
    pending.append(tail)
    offset += len(tail)
    flush()
    digest = hashlib.sha256(tail).hexdigest()
    return Layout(pieces, [p.start for p in pieces], offset, digest)


def window(plan: Layout, start: int, end: int) -> Iterator[tuple[Piece, int, int]]:
    """The pieces overlapping bytes ``[start, end)`` of the archive, each as
    ``(piece, first, stop)``: its bytes ``[first, stop)`` (counted from the
    piece's start) are in the window, in order."""
    if start >= end:
        return
    i = bisect.bisect_right(plan.starts, start) - 1
    for piece in plan.pieces[i:]:
        if piece.start >= end:
            return
        first = max(start - piece.start, 0)
        stop = min(end - piece.start, piece.length)
        if first < stop:
            yield piece, first, stop
