"""One side of a transfer: its descriptor, what kind of file it is, its flags.

Everything here runs before the first byte moves, so bad input fails early,
and the flags a transfer changes are put back exactly as the caller had them.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import socket
import stat
import sys
from typing import Any, Callable, Protocol, Union

from . import _libc


class HasFileno(Protocol):
    """What ``src`` and ``dst`` may be besides an ``int``: a file, socket or
    any object whose ``fileno()`` returns its descriptor."""

    def fileno(self) -> int: ...


FdLike = Union[int, HasFileno]
"""An ``int`` file descriptor or an object with ``fileno()``."""

FILE, PIPE, SOCKET, CHAR, OTHER = "file", "pipe", "socket", "char", "other"


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISFIFO(mode):
        return PIPE
    if stat.S_ISSOCK(mode):
        return SOCKET
    if stat.S_ISCHR(mode):
        return CHAR
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    return OTHER


def _is_ssl_socket(obj: object) -> bool:
    # An SSLSocket exists only once ssl is imported; looking it up in
    # sys.modules spares every transfer the import.
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(obj, ssl.SSLSocket)


_C_INT = range(-(2**31), 2**31)


def _checked_fd(fd: object, role: str, origin: str) -> int:
    # bool is an int subclass: True would be taken for descriptor 1.
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(
            f"{role}{origin} must be an int file descriptor, not {type(fd).__name__}"
        )
    if fd not in _C_INT:
        raise ValueError(f"{role}{origin} is no C int file descriptor: {fd}")
    return fd


def _fileno(obj: FdLike, role: str) -> int:
    if isinstance(obj, int):
        if isinstance(obj, bool):
            raise TypeError(f"{role} must be a file descriptor, not bool")
        if obj in _C_INT:
            return obj
        return _checked_fd(obj, role, "")
    if isinstance(obj, socket.socket):
        return obj.fileno()  # -1 once closed: EBADF below
    try:
        fileno = obj.fileno
    except AttributeError:
        raise TypeError(
            f"{role} must be an int fd or have fileno(), not {obj!r}"
        ) from None
    try:
        fd = fileno()
    except io.UnsupportedOperation as exc:
        raise TypeError(f"{role} has no file descriptor: {obj!r}") from exc
    except ValueError as exc:  # what io's objects raise once closed
        raise ValueError(f"{role} is a closed file object: {exc}") from exc
    if fd.__class__ is int and fd in _C_INT:
        return fd
    return _checked_fd(fd, role, ".fileno()")


def file_position(obj: FdLike, fd: int) -> int:
    """Where a regular file's next byte is for its caller: a Python file
    object's ``tell()`` (which counts its read buffer), else the
    descriptor's offset."""
    tell = None if isinstance(obj, int) else getattr(obj, "tell", None)
    if tell is not None:
        return int(tell())
    return os.lseek(fd, 0, os.SEEK_CUR)


class Endpoint:
    """The source or destination of a transfer, resolved and checked."""

    __slots__ = (
        "fd", "flags", "ident", "kind", "nonblocking_set", "obj", "size", "ssl",
        "ssl_timeout",
    )  # fmt: skip

    def __init__(self, obj: FdLike, role: str) -> None:
        self.fd = fd = _fileno(obj, role)
        if fd < 0:  # a closed socket object's fileno()
            raise OSError(errno.EBADF, f"{role}: {os.strerror(errno.EBADF)}")
        # The caller's object (an SSLSocket among others), used for what an
        # fd cannot do: typed loosely on purpose.
        self.obj: Any = None if isinstance(obj, int) else obj
        self.nonblocking_set = False
        self.ssl_timeout: float | None = None
        if isinstance(obj, socket.socket):
            # A socket object needs no fstat to know its kind; and Python
            # keeps one with a timeout O_NONBLOCK (a TLS one is switched
            # through settimeout and needs its flags).
            self.kind = SOCKET
            self.size = 0
            self.ident: tuple[int, int] | None = None
            timeout = obj.gettimeout()
            self.ssl = _is_ssl_socket(obj)
            if self.ssl:
                self.ssl_timeout = timeout
            elif timeout is not None:
                self.flags = os.O_NONBLOCK
                return
            self.flags = _libc.fcntl(fd, _libc.F_GETFL)
            return
        self.ssl = False
        st = os.fstat(fd)
        mode = st.st_mode
        self.kind = kind = FILE if stat.S_ISREG(mode) else _kind(mode)
        self.size = st.st_size
        """``st_size`` of a regular file (a hint: /proc files say 0)."""
        self.ident = (st.st_dev, st.st_ino)
        """Device and inode, where an ``fstat`` was made."""
        # A regular-file source's flags are never changed nor consulted
        # (only a destination's O_APPEND is).
        self.flags = (
            0 if kind == FILE and role == "src" else _libc.fcntl(fd, _libc.F_GETFL)
        )

    @property
    def pollable(self) -> bool:
        """Whether readiness can be waited for; regular files are always ready."""
        return self.kind != FILE

    def make_nonblocking(self) -> None:
        """Set ``O_NONBLOCK`` until :meth:`restore`.

        A socket, terminal or other device end must itself be nonblocking:
        the kernel honours SPLICE_F_NONBLOCK on the pipe only, and a blocking
        TCP socket blocks a splice (KERNEL-NOTES: 1 s measured), a pty
        nobody types into a read forever. An ``SSLSocket`` is switched
        through ``settimeout(0.0)`` so that its own state agrees.
        """
        if self.nonblocking_set:
            return
        if self.ssl:
            self.obj.settimeout(0.0)
            self.nonblocking_set = True
        elif not self.flags & os.O_NONBLOCK:
            _libc.set_blocking(self.fd, False)
            self.nonblocking_set = True

    def restore(self) -> None:
        """Put the caller's ``O_NONBLOCK`` (and TLS timeout) back; no other
        flag was touched."""
        if not self.nonblocking_set:
            return
        self.nonblocking_set = False
        if self.ssl:
            self.obj.settimeout(self.ssl_timeout)
        _libc.set_blocking(self.fd, not self.flags & os.O_NONBLOCK)

    def push_tail(self) -> None:
        """Put on the wire what a TCP socket still holds back (see
        :func:`push_tail`)."""
        if self.kind == SOCKET:
            push_tail(self.fd, self.obj)


def push_tail(fd: int, obj: object) -> None:
    """Put on the wire what the TCP socket ``fd`` still holds back.

    Nagle's algorithm keeps a last partial segment while an earlier one is
    unacknowledged, and a client delays that acknowledgement ~40 ms
    (KERNEL-NOTES, "the 40 ms stall"). Setting TCP_NODELAY pushes the
    pending segments at once (tcp_push_pending_frames); it is put back as
    the caller had it. Nothing is done when nothing is queued unsent (one
    ioctl: the usual case), when ``fd`` is no TCP socket, or when the caller
    corked the socket: that caller holds bytes back on purpose. ``obj`` is
    the caller's object for ``fd``; a socket object's own option methods are
    the cheaper call on CPython.
    """
    try:
        if not _libc.has_unsent(fd):
            return
    except OSError:
        # No TCP socket (a Unix one answers ENOTTY): asking is cheaper than
        # a socket object's family and type, which build enums.
        return
    get: Callable[[int, int], int]
    set_: Callable[[int, int, int], object]
    if isinstance(obj, socket.socket):
        get, set_ = obj.getsockopt, obj.setsockopt
    else:
        get = functools.partial(_libc.getsockopt, fd)
        set_ = functools.partial(_libc.setsockopt, fd)
    if get(_libc.SOL_TCP, _libc.TCP_CORK):
        return
    nodelay = get(_libc.SOL_TCP, _libc.TCP_NODELAY)
    set_(_libc.SOL_TCP, _libc.TCP_NODELAY, 1)
    if not nodelay:
        set_(_libc.SOL_TCP, _libc.TCP_NODELAY, 0)


class SourcePosition:
    """Where a regular-file source is read from, and the §1 position rule.

    Two ways to read. Where bytes read are bytes delivered (sendfile,
    copy_file_range, a splice straight into a pipe), a descriptor with no
    read buffer in front of it is read at, and advanced through, its own
    file position: no ``lseek`` at all. Otherwise (``offset`` given, a
    Python buffered file object, or a path that holds bytes in flight) the
    kernel reads through an explicit offset that leaves the position alone,
    and :meth:`settle` then leaves it just past the last byte delivered, as
    ``socket.sendfile`` does.
    """

    __slots__ = ("_buffered", "_endpoint", "_raw", "start")

    def __init__(self, endpoint: Endpoint, offset: int | None) -> None:
        self._endpoint = endpoint
        self._raw: int | None = None
        obj = endpoint.obj
        self._buffered = hasattr(obj, "tell") and not isinstance(obj, io.FileIO)
        self.start: int | None = offset
        """The explicit offset the transfer started at; ``None`` while the
        descriptor's own position is used."""
        if offset is None and self._buffered:
            # A Python file object may have read ahead into its buffer; its
            # tell() is where the caller's next byte is, not the fd's.
            self.start = obj.tell()

    def offset(self, explicit: bool) -> int | None:
        """Where a pump starts reading: an offset, or ``None`` for the file
        position, which only a pump whose bytes read are bytes delivered
        may use; an ``explicit`` offset is always an int. Called while
        nothing has been delivered."""
        if self.start is None and explicit:
            self.start = os.lseek(self._endpoint.fd, 0, os.SEEK_CUR)
        return self.start

    def read_ahead(self) -> None:
        """Position the descriptor at the start for a user-space copy,
        which reads through the file position and may read ahead."""
        fd = self._endpoint.fd
        self._raw = os.lseek(fd, 0, os.SEEK_CUR)
        if self.start is None:
            self.start = self._raw
        else:
            os.lseek(fd, self.start, os.SEEK_SET)

    def settle(self, delivered: int) -> None:
        """Leave the source just past the last delivered byte; unchanged
        when nothing was delivered.

        After a user-space copy the raw position is first put back where it
        was: a Python file object trusts its cached raw position when it
        seeks within its buffer.
        """
        fd, obj = self._endpoint.fd, self._endpoint.obj
        if self._raw is not None:
            os.lseek(fd, self._raw, os.SEEK_SET)
        if not delivered or self.start is None:
            return  # nothing moved, or the kernel advanced the position
        if self._buffered:
            obj.seek(self.start + delivered)
        else:
            os.lseek(fd, self.start + delivered, os.SEEK_SET)
