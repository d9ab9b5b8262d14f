"""One side of a transfer: its descriptor, what kind of file it is, its flags.

Everything here runs before the first byte moves, so bad input fails early,
and the flags a transfer changes are put back exactly as the caller had them.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import stat
import sys
from typing import Any, Union

from . import _libc

FdLike = Union[int, Any]
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


def _fileno(obj: FdLike, role: str) -> int:
    if isinstance(obj, bool):
        raise TypeError(f"{role} must be a file descriptor, not bool")
    if isinstance(obj, int):
        return obj
    if getattr(obj, "closed", False):
        raise ValueError(f"{role} is a closed file object")
    fileno = getattr(obj, "fileno", None)
    if fileno is None:
        raise TypeError(f"{role} must be an int fd or have fileno(), not {obj!r}")
    try:
        return fileno()
    except io.UnsupportedOperation as exc:
        raise TypeError(f"{role} has no file descriptor: {obj!r}") from exc


class Endpoint:
    """The source or destination of a transfer, resolved and checked."""

    __slots__ = ("fd", "flags", "kind", "nonblocking_set", "obj", "ssl", "ssl_timeout")

    def __init__(self, obj: FdLike, role: str) -> None:
        self.fd = _fileno(obj, role)
        self.obj = None if isinstance(obj, int) else obj
        # A socket object needs no fstat to know its kind (a closed one has
        # fd -1: the F_GETFL below still reports EBADF).
        is_socket = isinstance(obj, socket.socket)
        self.kind = SOCKET if is_socket else _kind(os.fstat(self.fd).st_mode)
        # A regular-file source's flags are never changed nor consulted (only
        # a destination's O_APPEND is): one syscall less per transfer.
        reads_file = role == "src" and self.kind == FILE
        self.flags = 0 if reads_file else _libc.fcntl(self.fd, _libc.F_GETFL)
        self.ssl = _is_ssl_socket(obj)
        self.ssl_timeout: float | None = obj.gettimeout() if self.ssl else None
        self.nonblocking_set = False

    @property
    def pollable(self) -> bool:
        """Whether readiness can be waited for; regular files are always ready."""
        return self.kind != FILE

    def make_nonblocking(self) -> None:
        """Set ``O_NONBLOCK`` until :meth:`restore`.

        A pipe or socket end must itself be nonblocking: the kernel honours
        SPLICE_F_NONBLOCK on the pipe only, and a blocking TCP socket blocks
        a splice (KERNEL-NOTES: 1 s measured). An ``SSLSocket`` is switched
        through ``settimeout(0.0)`` so that its own state agrees.
        """
        if self.nonblocking_set:
            return
        if self.ssl:
            self.obj.settimeout(0.0)
            self.nonblocking_set = True
        elif not self.flags & os.O_NONBLOCK:
            _libc.fcntl(self.fd, _libc.F_SETFL, self.flags | os.O_NONBLOCK)
            self.nonblocking_set = True

    def restore(self) -> None:
        """Put the caller's file status flags (and TLS timeout) back."""
        if not self.nonblocking_set:
            return
        self.nonblocking_set = False
        if self.ssl:
            self.obj.settimeout(self.ssl_timeout)
        _libc.fcntl(self.fd, _libc.F_SETFL, self.flags)


class SourcePosition:
    """Where a regular-file source is read from, and the §1 position rule.

    Splicing reads through an explicit offset, so the descriptor's position
    is not touched while bytes are in flight; :meth:`settle` then leaves it
    just past the last byte delivered, as ``socket.sendfile`` does.
    """

    __slots__ = ("_endpoint", "_raw", "start")

    def __init__(self, endpoint: Endpoint, offset: int | None) -> None:
        self._endpoint = endpoint
        self._raw: int | None = None
        obj = endpoint.obj
        if offset is not None:
            self.start = offset
        elif obj is not None and hasattr(obj, "tell"):
            # A Python file object may have read ahead into its buffer; its
            # tell() is where the caller's next byte is, not the fd's.
            self.start = obj.tell()
        else:
            self.start = os.lseek(endpoint.fd, 0, os.SEEK_CUR)

    def read_ahead(self) -> None:
        """Position the descriptor at :attr:`start` for a user-space copy,
        which reads through the file position and may read ahead."""
        fd = self._endpoint.fd
        self._raw = os.lseek(fd, 0, os.SEEK_CUR)
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
        if not delivered:
            return
        if obj is not None and hasattr(obj, "seek"):
            obj.seek(self.start + delivered)
        else:
            os.lseek(fd, self.start + delivered, os.SEEK_SET)
