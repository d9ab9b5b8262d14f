"""The foreign-function layer: libc's splice, pipe2, fcntl, close and epoll.

The only module that declares or calls into cffi. It is loaded in ABI mode
(``ffi.dlopen`` of the C library, nothing compiled), so the same code runs on
CPython and PyPy. Every wrapper speaks Python ints and raises ``OSError``
subclasses; ``-1`` plus ``ffi.errno`` becomes an exception in one place,
:func:`_raise`. cffi releases the GIL around each call, and ``ffi.errno`` is
thread-local, so it is read right after the failing call.
"""

from __future__ import annotations

import errno
import os
import platform
from typing import NoReturn

import cffi

_CDEF = """
typedef union epoll_data {
    void *ptr;
    int fd;
    uint32_t u32;
    uint64_t u64;
} epoll_data_t;

struct epoll_event {
    uint32_t events;
    epoll_data_t data;
};

ssize_t splice(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out,
               size_t len, unsigned int flags);
int pipe2(int pipefd[2], int flags);
int fcntl(int fd, int cmd, int arg);
int close(int fd);
int epoll_create1(int flags);
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
"""
# fcntl is variadic in C. Declaring its third argument as a plain int is
# sound where int varargs are passed like fixed arguments (x86-64 and
# aarch64 Linux), and spares a cast per call.

ffi = cffi.FFI()
# The kernel packs struct epoll_event on x86-64 only (12 bytes, the 8-byte
# data right after the 4-byte mask); elsewhere it has natural alignment.
ffi.cdef(_CDEF, packed=platform.machine() == "x86_64")
_lib = ffi.dlopen(None)

SPLICE_F_NONBLOCK = 0x02

F_GETFL = 3
F_SETFL = 4
F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032

EPOLLIN = 0x001
EPOLLOUT = 0x004
EPOLLERR = 0x008
EPOLLHUP = 0x010
EPOLLONESHOT = 1 << 30
_EPOLL_CLOEXEC = os.O_CLOEXEC
_EPOLL_CTL_ADD = 1
_EPOLL_CTL_MOD = 3

AGAIN = -1
"""What :func:`splice` returns instead of raising ``BlockingIOError``: an
``EAGAIN`` is the pump's everyday business, not an exceptional event."""

_INT_MAX = 2**31 - 1


def _raise() -> NoReturn:
    code = ffi.errno
    raise OSError(code, os.strerror(code))


class Offset:
    """A file offset the kernel reads and advances (splice's ``off_in``)."""

    __slots__ = ("_ptr",)

    def __init__(self, value: int) -> None:
        self._ptr = ffi.new("int64_t[1]", [value])

    @property
    def value(self) -> int:
        return int(self._ptr[0])


def splice(
    fd_in: int, off_in: Offset | None, fd_out: int, length: int, flags: int
) -> int:
    """Move up to ``length`` bytes from ``fd_in`` to ``fd_out``.

    Returns the bytes moved (0 at end of input) or :data:`AGAIN` when the
    call would block; raises ``OSError`` for any other failure.
    """
    n = _lib.splice(
        fd_in, ffi.NULL if off_in is None else off_in._ptr, fd_out, ffi.NULL,
        length, flags,
    )  # fmt: skip
    if n >= 0:
        return n
    if ffi.errno == errno.EAGAIN:
        return AGAIN
    _raise()


def pipe2(flags: int) -> tuple[int, int]:
    """Create a pipe; returns ``(read_fd, write_fd)``."""
    fds = ffi.new("int[2]")
    if _lib.pipe2(fds, flags) < 0:
        _raise()
    return fds[0], fds[1]


def fcntl(fd: int, cmd: int, arg: int = 0) -> int:
    """``fcntl(2)`` with an int argument; returns its non-negative result."""
    r = _lib.fcntl(fd, cmd, arg)
    if r < 0:
        _raise()
    return r


def close(fd: int) -> None:
    if _lib.close(fd) < 0:
        _raise()


class Epoll:
    """An epoll instance that watches one descriptor at a time.

    Each registration is one-shot: once it fired, or before another
    descriptor is armed, nothing else can wake a wait, so a descriptor that
    is ready but not the one waited on (a writable socket, a hung-up peer)
    never turns a wait into a busy loop.
    """

    __slots__ = ("_epfd", "_event", "_ready", "_registered")

    def __init__(self) -> None:
        self._epfd = _lib.epoll_create1(_EPOLL_CLOEXEC)
        if self._epfd < 0:
            _raise()
        self._event = ffi.new("struct epoll_event *")
        self._ready = ffi.new("struct epoll_event[1]")
        self._registered: set[int] = set()

    def arm(self, fd: int, events: int) -> None:
        """Watch ``fd`` for ``events`` until it fires once."""
        self._event.events = events | EPOLLONESHOT
        self._event.data.fd = fd
        op = _EPOLL_CTL_MOD if fd in self._registered else _EPOLL_CTL_ADD
        if _lib.epoll_ctl(self._epfd, op, fd, self._event) < 0:
            # ENOENT: the file once armed under this number was closed,
            # which dropped its registration, and the number was reused (a
            # reconnect); the new file is added afresh.
            if op != _EPOLL_CTL_MOD or ffi.errno != errno.ENOENT:
                _raise()
            if _lib.epoll_ctl(self._epfd, _EPOLL_CTL_ADD, fd, self._event) < 0:
                _raise()
        self._registered.add(fd)

    def wait(self, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` (-1: forever) for the armed descriptor.

        Returns whether it fired; raises ``InterruptedError`` on a signal.
        """
        n = _lib.epoll_wait(self._epfd, self._ready, 1, min(timeout_ms, _INT_MAX))
        if n < 0:
            _raise()
        return n > 0

    def close(self) -> None:
        if self._epfd >= 0:
            fd, self._epfd = self._epfd, -1
            close(fd)


# --- openat2(2), for bytepump serve ------------------------------------------
# glibc (2.36 on Debian 12) has no openat2 wrapper: it is called through
# syscall(2). syscall is variadic; as with fcntl above, its arguments are
# declared fixed, which is sound where integer and pointer varargs are passed
# like fixed arguments (x86-64 and aarch64 Linux; the syscall stub reads them
# from the argument registers either way).
_OPENAT2_CDEF = """
struct open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
long syscall(long number, int dirfd, const char *path, struct open_how *how,
             size_t size);
"""
ffi.cdef(_OPENAT2_CDEF)

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}.get(platform.machine(), -1)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08


def openat2(dirfd: int, path: bytes, flags: int, resolve: int) -> int:
    """``openat2(2)``: open ``path`` relative to ``dirfd`` under the
    ``RESOLVE_*`` rules in ``resolve``; returns the new descriptor.

    ``OSError(ENOSYS)`` where the kernel (before 5.6) or the architecture
    has no openat2.
    """
    if _SYS_OPENAT2 < 0:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    how = ffi.new("struct open_how *", {"flags": flags, "resolve": resolve})
    fd = _lib.syscall(_SYS_OPENAT2, dirfd, path, how, ffi.sizeof("struct open_how"))
    if fd < 0:
        _raise()
    return int(fd)


# --- connect(2) to AF_UNSPEC, for the web adapters ---------------------------
# Aborting a connection without closing its descriptor, which belongs to
# the web server: connect() to an AF_UNSPEC address disconnects a TCP
# socket, and the kernel sends RST (tcp_disconnect) so that the client sees
# an error, never a clean end of a short body.
ffi.cdef("int connect(int fd, const void *addr, unsigned int addrlen);")
_AF_UNSPEC_ADDRESS = ffi.new("unsigned short[8]")  # sa_family 0, 16 bytes


def disconnect(fd: int) -> None:
    """Reset the connected stream socket ``fd`` (TCP: an RST goes out); the
    descriptor stays open, its owner closes it. ``OSError`` on failure."""
    if _lib.connect(fd, _AF_UNSPEC_ADDRESS, 16) < 0:
        _raise()
