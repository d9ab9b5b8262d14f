"""Streaming zip archives whose entry data bypasses the writer.

:class:`ZipStreamer` writes the zip records (from :mod:`bytepump._zip`)
straight to a descriptor; the entries' data gets there by other means —
:func:`bytepump.splice_to`, :func:`bytepump.splice_from` — and the caller
reports how much of it went out with :meth:`ZipStreamer.simulate_write`.
Entries are STORED (no compression: the data never passes through Python),
with sizes and CRC-32s declared before the data, so no data descriptors.
"""

from __future__ import annotations

import datetime
import os
import select
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Callable, Union

from . import _zip
from ._endpoint import (
    FILE,
    PIPE,
    SOCKET,
    Endpoint,
    FdLike,
    _fileno,
    _is_ssl_socket,
    _kind,
)
from ._errors import DownstreamTimeout
from ._pump import ProgressCallback
from ._transfer import Steps
from ._waiters import WRITE, Wait, check_timeout
from .pump import drive, splice_to

Source = Union[str, bytes, "os.PathLike[str]", FdLike]
"""A path, an ``int`` descriptor or an object with ``fileno()``."""

_CRC_CHUNK = 1 << 20
_PIPE_BUF = select.PIPE_BUF
_BATCH = 1 << 16
"""Central directory headers are written in batches of about this many bytes."""


def file_crc32(fd: int, size: int, filename: str) -> int:
    """CRC-32 of the regular file ``fd``, which must hold ``size`` bytes.

    Read with ``pread``, so the file position is untouched. ``ValueError``
    naming the entry ``filename`` if the file ends before ``size`` bytes
    (it shrank since ``fstat``) or goes on past them: it grew, or it is a
    file whose ``st_size`` says nothing of its contents (``/proc`` files
    report 0). Such a file is refused rather than read to its end: its
    size must be known before its header is written, and two reads of it
    need not agree, so size, CRC and data could not be made to match.
    """
    crc = 0
    done = 0
    while done < size:
        chunk = os.pread(fd, min(_CRC_CHUNK, size - done), done)
        if not chunk:
            raise ValueError(
                f"entry {filename!r}: file ended at byte {done} of {size}: it shrank"
            )
        crc = zlib.crc32(chunk, crc)
        done += len(chunk)
    check_file_end(fd, size, filename)
    return crc


def check_file_end(fd: int, size: int, filename: str) -> None:
    """``ValueError`` naming the entry ``filename`` if the regular file
    ``fd`` has a byte past its ``size`` (see :func:`file_crc32`)."""
    if os.pread(fd, 1, size):
        raise ValueError(
            f"entry {filename!r}: the file has more than the {size} bytes"
            " fstat reports (it grew, or its size is not known before reading"
            " it, as in /proc)"
        )


@contextmanager
def opened_file(src: Source, filename: str) -> Iterator[tuple[FdLike, os.stat_result]]:
    """``(object to splice from, its fstat)`` for the regular file ``src``.

    A path is opened here, nonblocking so that a FIFO or a device cannot
    hang the open, and closed afterwards; a descriptor or file object is
    the caller's and stays open. ``ValueError`` naming the entry
    ``filename`` for anything but a regular file, ``IsADirectoryError`` for
    a directory, ``OSError`` from the open.
    """
    if isinstance(src, (str, bytes, os.PathLike)):
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = _regular(fd, filename)
            os.set_blocking(fd, True)  # a regular file: reads as the caller's would
            yield fd, st
        finally:
            os.close(fd)
    else:
        yield src, _regular(_fileno(src, "src"), filename)


def _regular(fd: int, filename: str) -> os.stat_result:
    st = os.fstat(fd)
    if _kind(st.st_mode) != FILE:  # IsADirectoryError for a directory
        raise ValueError(f"entry {filename!r}: source is not a regular file")
    return st


class ZipStreamer:
    """Writes a zip archive to ``dst`` while the entries' data is written by
    someone else (see the module docstring).

    ``dst``: an ``int`` descriptor or an object with ``fileno()`` (a file,
    pipe or stream socket; not a TLS socket, whose descriptor carries
    ciphertext; ``TypeError``). Records are written to its descriptor with
    ``os.write``, after flushing ``dst`` if it has a ``flush()`` method.
    Writing them waits with ``poll``, at most ``timeout`` seconds without
    progress (``None``: no limit), else :class:`DownstreamTimeout`; a
    blocking socket is switched to ``O_NONBLOCK`` meanwhile and back. Offsets
    in the archive count from the first byte the streamer writes. ``dst`` is
    never closed.

    As a context manager, leaving the block normally calls :meth:`close`;
    leaving it with an exception writes nothing more (no central directory),
    and the streamer cannot be used afterwards.

    Every mistake that would make a corrupt archive — declared size not
    matching the data, use after :meth:`close` or after a failed write — is a
    ``ValueError`` raised before anything more is written.
    """

    def __init__(self, dst: FdLike, *, timeout: float | None = 60.0) -> None:
        if _is_ssl_socket(dst):
            raise TypeError("dst is a TLS socket: records written to its fd")
        check_timeout(timeout)
        Endpoint(dst, "dst")  # TypeError, EBADF, IsADirectoryError: now
        self._dst = dst
        self._timeout = timeout
        self._flush = getattr(dst, "flush", None)
        self._offset = 0
        self._entries: list[_zip.Entry] = []
        self._names = _zip.NameSet()
        self._current: str | None = None  # the entry whose data is going out
        self._written = 0  # of the current entry's data, reported so far
        self._total: int | None = None  # set by close()
        self._broken: str | None = None  # why nothing more may be written

    def __enter__(self) -> ZipStreamer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._total is None and self._broken is None:
            self._broken = "the with block raised"

    def add_stored_entry(
        self,
        filename: str,
        size: int,
        crc32: int,
        *,
        modified: datetime.datetime | None = None,
    ) -> None:
        """Write the local file header of a STORED entry.

        ``size`` (bytes) and ``crc32`` are those of the data that must
        follow, written by the caller and reported with
        :meth:`simulate_write`. ``modified`` defaults to now (local time);
        names are stored as UTF-8.

        ``ValueError`` (before anything is written) if the previous entry's
        data did not add up to its declared size, if the streamer is closed
        or broken, for a bad size or CRC, or for a name that is unsafe
        (absolute, ``..``, a backslash, a control character: see
        :func:`bytepump._zip.check_name`), repeats an earlier one or makes
        a path both a file and a directory.
        """
        self._end_entry()
        if modified is None:
            modified = datetime.datetime.now()
        entry = _zip.make_entry(filename, size, crc32, modified, self._offset)
        self._names.add(filename)
        header = _zip.local_header(entry)
        self._entries.append(entry)
        self._current = filename
        self._written = 0
        self._write(header)

    def simulate_write(self, n: int) -> None:
        """Record that ``n`` bytes of the current entry's data were written
        to ``dst`` by someone else.

        ``ValueError`` for a negative ``n``, with no entry open, or after
        :meth:`close` or a failed write.
        """
        self._check_usable()
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"negative byte count {n}")
        if self._current is None:
            raise ValueError("simulate_write with no entry open")
        self._written += n
        self._offset += n

    def write_stored_file(
        self,
        filename: str,
        src: Source,
        *,
        timeout: float | None = 60.0,
        on_progress: ProgressCallback = None,
    ) -> int:
        """Add the regular file ``src`` (a path, descriptor or file object,
        from its byte 0 whatever its position) as the entry ``filename``.

        The size comes from ``fstat``, the date from its modification time,
        the CRC-32 from reading it (in Python: the header goes first); the
        data is then spliced to ``dst`` with :func:`bytepump.splice_to`
        (``timeout``, ``on_progress`` as there). Returns the entry's data
        size in bytes. ``ValueError`` for a source that is not a regular
        file (a path is opened nonblocking, so a FIFO is refused, not waited
        on; ``IsADirectoryError`` for a directory), for one that holds more
        or less than ``fstat`` says (a ``/proc`` file reporting size 0 is
        refused: see :func:`file_crc32`), and for a bad name as in
        :meth:`add_stored_entry`; errors of ``splice_to`` propagate, after
        which the streamer is broken (the archive is incomplete).
        """
        self._end_entry()  # before reading a file that would go nowhere
        _zip.check_name(filename)
        with opened_file(src, filename) as (obj, st):
            crc = file_crc32(_fileno(obj, "src"), st.st_size, filename)
            modified = datetime.datetime.fromtimestamp(st.st_mtime)
            self.add_stored_entry(filename, st.st_size, crc, modified=modified)
            with self._breaks_on_error():
                n = splice_to(
                    obj,
                    self._dst,
                    timeout,
                    offset=0,
                    count=st.st_size,
                    on_progress=on_progress,
                )
            self.simulate_write(n)
        return n

    def close(self) -> int:
        """Write the central directory and the end records; return the
        archive's total size in bytes. Calling it again returns the same.

        ``ValueError`` (before anything is written) if the last entry's data
        did not add up to its declared size, or the streamer is broken.
        """
        if self._total is not None:
            return self._total
        self._end_entry()
        cd_offset = self._offset
        batch: list[bytes] = []
        batched = 0
        for entry in self._entries:
            header = _zip.central_header(entry)
            batch.append(header)
            batched += len(header)
            if batched >= _BATCH:
                self._write(b"".join(batch))
                batch, batched = [], 0
        cd_size = self._offset + batched - cd_offset
        batch.append(_zip.end_records(len(self._entries), cd_offset, cd_size))
        self._write(b"".join(batch))
        self._total = self._offset
        return self._total

    # --- internals ---

    def _check_usable(self) -> None:
        if self._total is not None:
            raise ValueError("the ZipStreamer is closed")
        if self._broken is not None:
            raise ValueError(f"the archive is incomplete: {self._broken}")

    def _end_entry(self) -> None:
        """Check that the open entry got exactly its declared data."""
        self._check_usable()
        if self._current is None:
            return
        declared = self._entries[-1].size
        if self._written != declared:
            raise ValueError(
                f"entry {self._current!r}: declared {declared} bytes,"
                f" {self._written} written"
            )
        self._current = None

    @contextmanager
    def _breaks_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException as exc:
            self._broken = f"a write to dst failed ({exc!r})"
            raise

    def _write(self, data: bytes) -> None:
        """Write all of ``data`` to dst's descriptor, never waiting longer
        than the timeout without progress."""
        with self._breaks_on_error():
            if self._flush is not None:
                self._flush()
            # Looked at afresh for each write: the caller may change the
            # descriptor's flags between two records.
            end = Endpoint(self._dst, "dst")
            # As splice_to does: a socket is switched to O_NONBLOCK for the
            # write and back, so a stalled peer meets the timeout. Pipes are
            # left alone (their flags are shared with whoever else holds them).
            if end.kind == SOCKET:
                end.make_nonblocking()
            try:
                drive(record_steps(end, data, self._wrote), self._timeout)
            finally:
                end.restore()

    def _wrote(self, n: int) -> None:
        self._offset += n


def record_steps(
    end: Endpoint, data: bytes, wrote: Callable[[int], object]
) -> Steps[None]:
    """Write all of ``data`` (records, small inline data) to ``end``'s
    descriptor, calling ``wrote(n)`` after each write of ``n`` bytes; yields
    a wait whenever the descriptor is full.

    A socket should be made nonblocking by the caller. A blocking pipe is
    waited for, then handed at most PIPE_BUF bytes: a writable pipe has a
    free slot, which such a write fills without blocking.
    """
    paced = end.kind == PIPE and not end.flags & os.O_NONBLOCK
    wait = Wait(end.fd, WRITE, DownstreamTimeout, "destination")
    view = memoryview(data)
    while view:
        if paced:
            yield wait
        try:
            n = os.write(end.fd, view[:_PIPE_BUF] if paced else view)
        except BlockingIOError:
            yield wait
            continue
        wrote(n)
        view = view[n:]
