"""Planned zip archives: every byte known before the first one is written.

A :class:`ZipArchive` is a list of :class:`ZipEntry` whose sizes and
CRC-32s are known up front (given, or read once from a local file), so its
size, a strong ETag and its Last-Modified exist before anything is sent,
and any byte range of it can be produced on its own: a server can promise
``Content-Length``, answer ``Range`` / ``If-Range`` and resume a broken
download. The records come from the sans-IO encoder of :mod:`bytepump._zip`
(the same one :class:`~bytepump.ZipStreamer` uses, so the predicted size is
the written one); the entries' data is spliced from files
(:func:`bytepump.splice_to` with ``offset`` and ``count``) and origins
(:func:`bytepump.splice_from` with ``offset`` and ``length``, over
connections kept alive from one entry to the next within a ``splice_to``),
never entering Python.
"""

from __future__ import annotations

import datetime
import os
import re
import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple, Union

from . import _zip
from ._endpoint import SOCKET, Endpoint, FdLike, _fileno, _is_ssl_socket
from ._errors import HTTPStatusError, annotate
from ._origins import Origins
from ._pump import ProgressCallback
from ._transfer import Steps, Transfer, steps
from ._waiters import check_timeout
from .edge import Fetch
from .pump import drive
from .zipstream import check_file_end, file_crc32, opened_file, record_steps

EntrySource = Union[str, "os.PathLike[str]", FdLike, bytes, None]
"""A path, a descriptor or file object, an ``http(s)://`` URL, inline
``bytes``, or ``None`` for a directory."""

_DIR, _INLINE, _URL, _PATH, _FD = "directory", "bytes", "url", "path", "fd"
_CHANGED_STATUS = {
    412: "the origin object changed since this archive first fetched it",
    416: "the origin object is shorter than planned",
}
"""Origin statuses that mean the object is not the planned one."""
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def _check_optional_int(name: str, what: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"entry {name!r}: {what} must be an int, not {value!r}")


def _source_kind(name: str, source: object) -> str:
    if source is None:
        return _DIR
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _INLINE
    if isinstance(source, str):
        scheme = _SCHEME.match(source)
        if scheme is None:
            return _PATH
        if scheme.group(1).lower() not in ("http", "https"):
            raise ValueError(f"entry {name!r}: only http(s) URLs, not {source!r}")
        return _URL
    if isinstance(source, os.PathLike):
        return _PATH
    if isinstance(source, bool):
        raise TypeError(f"entry {name!r}: source must not be a bool")
    if isinstance(source, int) or hasattr(source, "fileno"):
        return _FD
    raise TypeError(
        f"entry {name!r}: source must be a path, a descriptor or file object,"
        f" an http(s) URL, bytes or None, not {type(source).__name__}"
    )


class ZipEntry:
    """One entry of a :class:`ZipArchive`: its ``name`` in the archive and
    where its data comes from.

    ``source`` is a path or a descriptor or file object of a regular file
    (size from ``fstat``, CRC-32 read once when the archive is planned if
    not given), an ``http://`` or ``https://`` URL (``size`` and ``crc32``
    required: the bytes are fetched only when written), ``bytes`` (small
    inline content), or ``None`` for a directory, whose name ends in ``/``.
    ``modified`` (a ``datetime``; naive means local time) defaults to a
    local file's mtime, else to the archive's ``modified``. ``mode``:
    permission bits, default 0o644 for files and 0o755 for directories.

    Only the arguments' types and the rules of one entry are checked here
    (``TypeError``, ``ValueError`` naming the entry); files are looked at
    when the :class:`ZipArchive` is made.
    """

    __slots__ = ("_kind", "crc32", "mode", "modified", "name", "size", "source")

    def __init__(
        self,
        name: str,
        source: EntrySource,
        *,
        size: int | None = None,
        crc32: int | None = None,
        modified: datetime.datetime | None = None,
        mode: int | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"entry name must be a str, not {type(name).__name__}")
        _check_optional_int(name, "size", size)
        _check_optional_int(name, "crc32", crc32)
        _check_optional_int(name, "mode", mode)
        if modified is not None and not isinstance(modified, datetime.datetime):
            raise TypeError(f"entry {name!r}: modified must be a datetime")
        kind = _source_kind(name, source)
        if (kind == _DIR) != name.endswith("/"):
            raise ValueError(
                f"entry {name!r}: a directory (source None) and only a directory"
                " has a name ending in '/'"
            )
        if kind == _URL and (size is None or crc32 is None):
            raise ValueError(f"entry {name!r}: a URL source needs size and crc32")
        if kind == _INLINE:
            source = bytes(source)  # type: ignore[arg-type]
        elif kind == _PATH:
            source = os.path.abspath(source)  # type: ignore[arg-type]
        self.name = name
        self.source: Any = source
        self._kind = kind
        self.size = size
        self.crc32 = crc32
        self.modified = modified
        self.mode = mode

    def __repr__(self) -> str:
        return f"ZipEntry({self.name!r}, {self.source!r}, size={self.size!r})"


class _Planned(NamedTuple):
    entry: ZipEntry
    size: int
    stamp: tuple[int, int] | None
    """A local file's ``(st_size, st_mtime_ns)`` when planned: it must be
    the same when the data is sent."""


def _mismatch(entry: ZipEntry, what: str, planned: object, got: object) -> ValueError:
    return ValueError(
        f"entry {entry.name!r}: {what} {got!r} does not match the planned {planned!r}"
    )


class ZipArchive:
    """A zip archive planned from ``entries`` (an iterable of
    :class:`ZipEntry`, in archive order); ``modified`` (a ``datetime``) is
    the time of entries that have none of their own.

    Everything is checked now, before anything is written: the names
    (``ValueError`` naming the entry for a duplicate, a file and a
    directory with the same path, an absolute path, a ``..`` component, a
    backslash, NUL or another control character), every local file (a
    regular file; its size, or its CRC-32 read once when not given), given
    sizes and CRC-32s against inline data, and an entry with no time at
    all (``ValueError``: size and ETag never depend on the clock).
    Entries are STORED; the records follow DESIGN.md §3's compatibility
    rules (see :mod:`bytepump._zip`).
    """

    def __init__(
        self,
        entries: Iterable[ZipEntry],
        *,
        modified: datetime.datetime | None = None,
    ) -> None:
        if modified is not None and not isinstance(modified, datetime.datetime):
            raise TypeError("modified must be a datetime")
        self.entries = tuple(entries)
        names = _zip.NameSet()
        for entry in self.entries:
            if not isinstance(entry, ZipEntry):
                raise TypeError(f"entries must be ZipEntry objects, not {entry!r}")
            names.add(entry.name)  # before any file is read
        self._planned: list[_Planned] = []
        self._validators: dict[ZipEntry, str] = {}
        """Each URL entry's validator, from the first response for it."""
        members = [self._plan(entry, modified) for entry in self.entries]
        self._layout = _zip.layout(members, names_checked=True)
        times = [_zip.unix_time(member.modified) for member in members]
        if not times and modified is not None:
            times = [_zip.unix_time(modified)]
        self._newest = max(times) if times else None

    @property
    def size(self) -> int:
        """The whole archive's size in bytes."""
        return self._layout.size

    @property
    def etag(self) -> str:
        """A strong entity-tag (quoted, for an ``ETag`` header) that changes
        with any name, size, CRC-32, time, mode or order of the entries."""
        return f'"{self._layout.digest[:40]}"'

    @property
    def last_modified(self) -> datetime.datetime | None:
        """The newest entry time, as an aware UTC datetime in whole seconds
        (``None`` for an archive without entries or ``modified``)."""
        if self._newest is None:
            return None
        return datetime.datetime.fromtimestamp(self._newest, datetime.timezone.utc)

    def __repr__(self) -> str:
        return f"<ZipArchive of {len(self.entries)} entries, {self.size} bytes>"

    # --- planning ---

    def _plan(
        self, entry: ZipEntry, default_time: datetime.datetime | None
    ) -> _zip.Member:
        size, crc, data, stamp = entry.size, entry.crc32, None, None
        when = entry.modified
        if entry._kind == _DIR:
            if size or crc:
                raise ValueError(f"entry {entry.name!r}: a directory has no data")
            size = crc = 0
        elif entry._kind == _INLINE:
            data = entry.source
            if size not in (None, len(data)):
                raise _mismatch(entry, "the inline data's size", size, len(data))
            size, actual = len(data), zlib.crc32(data)
            if crc not in (None, actual):
                raise _mismatch(entry, "the inline data's CRC-32", crc, actual)
            crc = actual
        elif entry._kind in (_PATH, _FD):
            with opened_file(entry.source, entry.name) as (obj, st):
                if size not in (None, st.st_size):
                    raise _mismatch(entry, "the file's size", size, st.st_size)
                size = st.st_size
                fd = _fileno(obj, "source")
                if crc is None:
                    crc = file_crc32(fd, size, entry.name)
                else:
                    check_file_end(fd, size, entry.name)
                stamp = (st.st_size, st.st_mtime_ns)
                if when is None:
                    when = datetime.datetime.fromtimestamp(st.st_mtime)
        if when is None:
            when = default_time
        if when is None:
            raise ValueError(
                f"entry {entry.name!r} has no time: give it modified=, or give"
                " the archive modified= (size and ETag never depend on the clock)"
            )
        assert size is not None and crc is not None
        self._planned.append(_Planned(entry, size, stamp))
        return _zip.Member(entry.name, size, crc, when, entry.mode, data)

    # --- writing ---

    def splice_to(
        self,
        dst: FdLike,
        *,
        start: int = 0,
        end: int | None = None,
        timeout: float | None = 60.0,
        on_progress: ProgressCallback = None,
    ) -> int:
        """Write bytes ``[start, end)`` of the archive (``end=None``: to its
        end) to ``dst``, exactly as they are in the whole archive; returns
        the bytes written (``end - start``).

        ``dst`` is an ``int`` descriptor or an object with ``fileno()`` (a
        file, pipe or stream socket; not a TLS socket: ``TypeError``), as in
        :func:`bytepump.splice_to`, which moves the files' data with
        ``offset`` and ``count``; URLs go through
        :func:`bytepump.splice_from` with ``offset`` and ``length`` (so an
        origin's broken connection is resumed), except that the call keeps
        cleartext origin connections alive from one entry to the next and
        closes them all before it returns. The records are rebuilt
        from the plan and written from Python; nothing outside the window
        reaches ``dst``. A file source's position ends just past the last
        byte taken from it. ``timeout`` is the inactivity limit of every
        wait (``UpstreamTimeout`` / ``DownstreamTimeout``); ``on_progress``
        gets the byte count of every write, records included.

        ``ValueError`` before anything is written for a window outside
        ``0 <= start <= end <= size``. A source that turns out different
        from the plan — a local file whose size or mtime changed, an origin
        object of another size or, once this archive has fetched it, with
        another ETag or Last-Modified, one that ends early — is a ``ValueError``
        naming the entry, raised before that entry's bytes go out where it
        can be told (size, mtime, the origin's stated size) and otherwise
        as soon as it shows. Every exception raised once bytes may have
        moved carries ``.transferred``: the bytes written to ``dst``.
        """
        return drive(self.steps(dst, (start, end), timeout, on_progress), timeout)

    def steps(
        self,
        dst: FdLike,
        window: tuple[int, int | None],
        timeout: float | None,
        on_progress: ProgressCallback,
    ) -> Steps[int]:
        """:meth:`splice_to` of ``window`` (``(start, end)``) as a generator
        of waits, for a driver to run with ``timeout``
        (:func:`bytepump.pump.drive`, or ``await bytepump.aio.drive(...)``
        on an event loop); the arguments are checked now, and the generator
        returns the bytes written."""
        start, end = window
        if end is None:
            end = self.size
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
        if not 0 <= start <= end <= self.size:
            raise ValueError(
                f"window [{start}, {end}) is not within the archive's {self.size} bytes"
            )
        check_timeout(timeout)
        if _is_ssl_socket(dst):
            raise TypeError("dst is a TLS socket: records are written to its fd")
        endpoint = Endpoint(dst, "dst")  # TypeError, EBADF, IsADirectoryError
        return self._steps(endpoint, start, end, timeout, on_progress)

    def _steps(
        self,
        dst: Endpoint,
        start: int,
        end: int,
        timeout: float | None,
        on_progress: ProgressCallback,
    ) -> Steps[int]:
        done = 0
        connections = Origins()

        def wrote(n: int) -> None:
            nonlocal done
            done += n
            if on_progress is not None:
                on_progress(n)

        try:
            flush = getattr(dst.obj, "flush", None)
            if flush is not None:
                flush()
            # Made nonblocking once for the whole window (the data transfers
            # then find it so and leave it alone) and restored at the end.
            if dst.kind == SOCKET:
                dst.make_nonblocking()
            target = dst.fd if dst.obj is None else dst.obj
            for piece, first, stop in _zip.window(self._layout, start, end):
                if piece.data is not None:
                    view = memoryview(piece.data)[first:stop]
                    yield from record_steps(dst, view, wrote)  # type: ignore[arg-type]
                    continue
                planned = self._planned[piece.member]
                try:
                    moved = yield from self._data(
                        planned,
                        target,
                        first,
                        stop - first,
                        timeout,
                        on_progress,
                        connections,
                    )
                except BaseException as exc:
                    done += getattr(exc, "transferred", 0)
                    raise
                done += moved
                if moved != stop - first:
                    raise ValueError(
                        f"entry {planned.entry.name!r}: the source gave {moved}"
                        f" of the {stop - first} bytes planned from its byte"
                        f" {first}: it changed since the archive was planned"
                    )
        except BaseException as exc:
            annotate(exc, done)
            raise
        finally:
            connections.close()
            dst.restore()
        return done

    def _data(
        self,
        planned: _Planned,
        dst: FdLike,
        offset: int,
        count: int,
        timeout: float | None,
        on_progress: ProgressCallback,
        connections: Origins,
    ) -> Steps[int]:
        """Move ``count`` bytes of an entry's data from its byte ``offset``
        (a URL's over ``connections``)."""
        entry = planned.entry
        if entry._kind == _URL:
            known = self._validators.get(entry)
            job = Fetch(
                entry.source,
                timeout,
                offset=offset,
                length=count,
                headers=None if known is None else [_precondition(known)],
                retries=3,
                max_redirects=5,
                connections=connections,
            )
            return (yield from self._fetched(planned, job, dst, on_progress))
        with opened_file(entry.source, entry.name) as (obj, st):
            stamp = (st.st_size, st.st_mtime_ns)
            if stamp != planned.stamp:
                what = "the file's (size, mtime_ns)"
                raise _mismatch(entry, what, planned.stamp, stamp)
            transfer = Transfer(obj, dst, timeout, count, offset, on_progress, True)
            return (yield from steps(transfer))

    def _fetched(
        self, planned: _Planned, job: Fetch, dst: FdLike, on_progress: ProgressCallback
    ) -> Steps[int]:
        """:func:`bytepump.splice_from` of a URL entry's bytes (``job``)
        that refuses an origin object that is not the planned one before a
        byte of its body reaches ``dst``: one of another size, or, once this
        archive has fetched the entry before, one whose validator changed
        (``job`` asks with ``If-Match`` / ``If-Unmodified-Since``, so a
        download resumed from this archive never mixes two versions)."""
        entry = planned.entry
        try:
            try:
                yield from job.open()
            except HTTPStatusError as exc:
                why = _CHANGED_STATUS.get(exc.status)
                if why is None:
                    raise
                raise ValueError(f"entry {entry.name!r}: {why}") from exc
            if job.total is not None and job.total != planned.size:
                what = "the origin's object size"
                raise _mismatch(entry, what, planned.size, job.total)
            if job.validator is not None:
                self._validators.setdefault(entry, job.validator)
            return (yield from job.body(dst, on_progress))
        finally:
            job.close()


def _precondition(validator: str) -> tuple[str, str]:
    """The request field that makes the origin answer 412 unless its object
    still has ``validator`` (a strong ETag, or a Last-Modified date)."""
    if validator.startswith('"'):
        return ("If-Match", validator)
    return ("If-Unmodified-Since", validator)


__all__ = ["ZipArchive", "ZipEntry"]
