"""The first attempt at a transfer that need not wait (DESIGN.md §1, "cheap
to call").

Most of what a web server sends is a small regular file into a client's
socket, and most of those go in one ``sendfile(2)``: the socket buffer has
room (a small file copy goes in one ``copy_file_range(2)`` likewise).
There, the general machinery (the endpoints, the path table, the pumps,
the steps and their driver) costs more than the syscalls do (callgrind,
CPython 3.11: about 48,000 instructions a call beside 22,000 for the
syscalls' own wrappers; benchmarks/RESULTS.md). :func:`at_once` makes the
calls the §1 rules need for that case and nothing else. All that does not
fit it goes to the machinery: any other kind of end or argument, or a
socket with no room yet (it returns ``None`` and has changed nothing); a
socket buffer that fills or a short copy once some bytes moved, or a path
the kernel refused (it returns a :class:`Rest`: what is left, from where,
and what not to ask again). Any other error of the kernel's is raised, as
the machinery would raise it.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import stat
from typing import NamedTuple, Union

from . import _libc
from ._endpoint import FdLike, file_position, push_tail
from ._errors import annotate
from ._pump import MAX_CALL, CopyRangePump, ProgressCallback, SendfilePump, _Pump
from ._transfer import KERNEL_MAX, Transfer

_S_ISREG = stat.S_ISREG
_DSTS = (socket.socket, io.BufferedWriter, io.FileIO)
Dst = Union[socket.socket, io.BufferedWriter, io.FileIO]
"""What :func:`at_once` writes to: a plain socket object or file object
(exactly these types, :data:`_DSTS`: a subclass may do more in its write
or have a TLS layer)."""


class Rest(NamedTuple):
    """What is left of a transfer that :func:`at_once` began: ``moved``
    bytes are in ``dst``, the rest is read from ``offset`` on, ``left``
    more of them (``None``: to the end of the file)."""

    moved: int
    offset: int
    left: int | None
    refused: type[_Pump] | None = None
    """The kernel path the attempt found refused (nothing moved then): the
    machinery does not ask the kernel again."""


def _plain_int(value: int, low: int) -> bool:
    return value.__class__ is int and low <= value <= KERNEL_MAX


def at_once(
    src: FdLike,
    dst: Dst,
    timeout: float | None,
    count: int | None,
    offset: int | None,
    on_progress: ProgressCallback,
) -> int | Rest | None:
    """Move a regular file into the plain socket or file object ``dst``
    without waiting, with every §1 rule the machinery would apply: with
    sendfile(2) into a socket, copy_file_range(2) into a file.

    Returns the bytes written when the transfer is complete; ``None``,
    having changed nothing (but perhaps flushed ``dst``, as the machinery
    would), when this is not that case (the machinery then does all of it);
    a :class:`Rest` when bytes moved and the socket would block or the copy
    came up short (the flags restored, the file position just past them),
    or when the kernel refused the path before a byte moved. Another error
    of the kernel's is raised as the machinery would raise it; that and an
    exception raised once bytes moved (``on_progress``'s, a signal's) carry
    ``.transferred``, with the flags restored and the position set.
    """
    buffered = type(src) is io.BufferedReader
    if type(src) is int:
        fd = src
        if not 0 <= fd < 2**31:
            return None
    elif type(src) is io.BufferedReader or type(src) is io.FileIO:
        try:
            fd = src.fileno()
        except ValueError:  # closed: the machinery says so
            return None
    else:
        return None
    if (
        (count is not None and not _plain_int(count, 1))
        or (offset is not None and not _plain_int(offset, 0))
        or (
            timeout is not None
            and (timeout.__class__ not in (int, float) or not timeout >= 0)
        )  # not a number, negative or NaN
    ):
        return None
    try:
        out = dst.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError):  # closed: the machinery says so
        return None
    if out < 0 or not _S_ISREG(st.st_mode):
        return None
    to_socket = type(dst) is socket.socket
    if not to_socket and not _plain_file(dst, out, st):
        return None
    start = file_position(src, fd) if offset is None else offset
    ask = st.st_size - start
    if not 0 < ask <= MAX_CALL:
        return None  # empty, /proc (st_size 0), past the end, or large
    if count is not None and count < ask:
        ask = count
    # Python keeps a socket object with a timeout O_NONBLOCK; a blocking
    # one is switched for the call (a blocking sendfile would wait).
    switch = (
        to_socket
        and dst.gettimeout() is None  # type: ignore[union-attr]
        and not _libc.fcntl(out, _libc.F_GETFL) & os.O_NONBLOCK
    )
    if switch:
        _libc.set_blocking(out, False)
    moved = 0
    try:
        if not to_socket:
            # Once the checks are passed, as in the machinery: its error is
            # one of the transfer's, with .transferred.
            dst.flush()  # type: ignore[union-attr]
        try:
            n = _move(to_socket, fd, start, out, ask)
        except OSError as exc:
            # Nothing moved: the machinery falls back without asking again
            # where the kernel refused this path for the pair, and retries
            # after a signal (PEP 475). Any other error is raised, as the
            # machinery would: asking again may not get it again (a reset
            # peer is ECONNRESET once, EPIPE after).
            pump = SendfilePump if to_socket else CopyRangePump
            if exc.errno in pump._refusals:
                return Rest(0, start, count, pump)
            if exc.errno == errno.EINTR:
                return None
            raise
        if n <= 0:
            return None  # full (AGAIN) or nothing there after all
        moved = n
        if on_progress is not None:
            on_progress(n)
        if n == ask and (count is None or count > moved):
            # Size comes from reading to the end, never from st_size alone.
            more = MAX_CALL if count is None else min(count - moved, MAX_CALL)
            try:
                n = _move(to_socket, fd, start + moved, out, more)
            except InterruptedError:  # cffi's EINTR: the machinery retries
                n = _libc.AGAIN
            if n > 0:  # the file grew
                moved += n
                if on_progress is not None:
                    on_progress(n)
            done = n == 0
        else:
            done = n == ask
        if done:
            return moved
        return Rest(moved, start + moved, None if count is None else count - moved)
    except BaseException as exc:
        annotate(exc, moved)
        raise
    finally:
        # As the machinery's finish(): the position and the tail first, the
        # caller's flags back whatever happens to those.
        try:
            if moved:
                if buffered:
                    src.seek(start + moved)  # type: ignore[union-attr]
                else:
                    os.lseek(fd, start + moved, os.SEEK_SET)
                if to_socket:
                    push_tail(out, dst)
        finally:
            if switch:
                _libc.set_blocking(out, True)


def _plain_file(dst: Dst, out: int, src_stat: os.stat_result) -> bool:
    """Whether the file object ``dst`` is a regular file that
    copy_file_range may write: not ``O_APPEND``, not the source itself."""
    st = os.fstat(out)
    return (
        _S_ISREG(st.st_mode)
        and (st.st_dev, st.st_ino) != (src_stat.st_dev, src_stat.st_ino)
        and not _libc.fcntl(out, _libc.F_GETFL) & os.O_APPEND
    )


def _move(to_socket: bool, fd: int, at: int, out: int, n: int) -> int:
    if to_socket:
        return _libc.sendfile(out, fd, at, n)
    return _libc.copy_file_range(fd, at, out, n)


def begin(
    src: FdLike,
    dst: FdLike,
    timeout: float | None,
    count: int | None,
    offset: int | None,
    on_progress: ProgressCallback,
    fallback: bool,
) -> int | Transfer:
    """A transfer :func:`at_once` where it can: the bytes written when that
    finished it, else the :class:`Transfer` that the drivers run (the whole
    transfer, or what is left of it)."""
    if type(dst) in _DSTS:
        done = at_once(src, dst, timeout, count, offset, on_progress)  # type: ignore[arg-type]
        if isinstance(done, int):
            return done
        if done is not None:
            return Transfer(
                src, dst, timeout, done.left, done.offset, on_progress, fallback,
                done.moved, done.refused,
            )  # fmt: skip
    return Transfer(src, dst, timeout, count, offset, on_progress, fallback)
