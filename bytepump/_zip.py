"""Zip records for STORED entries, sans-IO: pure functions returning bytes.

Only what a streaming writer needs whose sizes and CRC-32s are known before
the data (APPNOTE 6.3.10): local file headers without a data descriptor,
central directory headers, and the end records, with Zip64 where a size, an
offset or the entry count does not fit the classic fields. Names are UTF-8
with general-purpose flag bit 11. Nothing here touches a descriptor; the
streamer in :mod:`bytepump.zipstream` writes what these return.
"""

from __future__ import annotations

import datetime
import re
import struct
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

_UTF8_FLAG = 1 << 11
_STORED = 0
_VERSION_STORED = 10  # 1.0: stored entries
_VERSION_ZIP64 = 45  # 4.5: Zip64 extensions
_MADE_BY_UNIX = 3 << 8  # upper byte: host system; external attributes are Unix
_REGULAR_FILE_ATTRS = (0o100644 << 16) & MAX_32

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes, then name and extra field
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes, then name and extra
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes

LOCAL_HEADER_SIZE = _LOCAL.size
"""Fixed part of a local file header, in bytes (name and extra follow)."""

_DOS_MIN = datetime.datetime(1980, 1, 1)
_DOS_MAX = datetime.datetime(2107, 12, 31, 23, 59, 58)


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


def make_entry(
    filename: str,
    size: int,
    crc32: int,
    modified: datetime.datetime,
    offset: int,
) -> Entry:
    """Validate an entry's fields and return it.

    ``ValueError`` for a bad name (see :func:`encode_name`), a size or an
    offset outside 0..2**64-1, or a CRC-32 outside 0..2**32-1; ``TypeError``
    for non-integers.
    """
    name = encode_name(filename)
    _check_int("size", size, MAX_64)
    _check_int("crc32", crc32, MAX_32)
    _check_int("offset", offset, MAX_64)
    return Entry(name, size, crc32, *dos_datetime(modified), offset)


def _check_int(what: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} {value} outside 0..{maximum}")


def _zip64_extra(values: list[int]) -> bytes:
    if not values:
        return b""
    return struct.pack(f"<HH{len(values)}Q", _ZIP64_EXTRA_ID, 8 * len(values), *values)


def _version(zip64: bool) -> int:
    return _VERSION_ZIP64 if zip64 else _VERSION_STORED


def _shared_fields(entry: Entry, extra: bytes) -> tuple[int, ...]:
    """The fields local and central headers have in common, from "version
    needed" to the extra field's length; ``extra`` is the Zip64 one or empty.

    A size that needs Zip64 shows as 0xFFFFFFFF: the real one is in ``extra``.
    """
    size32 = min(entry.size, MAX_32)
    return (
        _version(bool(extra)),
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
    extra = _zip64_extra([entry.size, entry.size] if entry.size >= MAX_32 else [])
    return _LOCAL.pack(_LOCAL_SIG, *_shared_fields(entry, extra)) + entry.name + extra


def central_header(entry: Entry) -> bytes:
    """``entry``'s central directory file header.

    Fields that do not fit 32 bits hold 0xFFFFFFFF and their values go, in
    APPNOTE 4.5.3's order (uncompressed size, compressed size, local header
    offset), into a Zip64 extra field.
    """
    values = [entry.size, entry.size] if entry.size >= MAX_32 else []
    if entry.offset >= MAX_32:
        values.append(entry.offset)
    extra = _zip64_extra(values)
    shared = _shared_fields(entry, extra)
    fields = _CENTRAL.pack(
        _CENTRAL_SIG,
        _MADE_BY_UNIX | shared[0],  # made by: Unix, same version as needed
        *shared,
        0,  # comment length
        0,  # disk number start
        0,  # internal attributes
        _REGULAR_FILE_ATTRS,
        min(entry.offset, MAX_32),
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
            _MADE_BY_UNIX | _VERSION_ZIP64,
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
