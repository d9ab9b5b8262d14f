"""The foreign-function layer: libc's splice, sendfile, copy_file_range,
pipe2, fcntl, ioctl, socket options, close and epoll.

The only module that declares or calls into cffi. It is loaded in ABI mode
(``ffi.dlopen`` of the C library, nothing compiled), so the same code runs on
CPython and PyPy. Every wrapper speaks Python ints and raises ``OSError``
subclasses; ``-1`` plus ``ffi.errno`` becomes an exception in one place,
:func:`_raise`. cffi releases the GIL around each call, and ``ffi.errno`` is
thread-local, so it is read right after the failing call.

Per-call cost decides which binding runs a hot call. PyPy's JIT compiles a
cffi call to little more than the syscall (fcntl: 0.17 µs measured), but on
CPython an ABI-mode call costs about 1 µs more than the standard library's
C wrapper for the same syscall (fcntl: 1.3 to 1.6 against 0.4 µs; sendfile 6.3
against 5.5 µs; 2026-12-02, this machine). A transfer that moves 4 KiB
makes several of these calls, so on CPython the calls the standard library
offers (``os.sendfile``, ``os.copy_file_range``, ``os.splice`` from 3.10,
``fcntl.fcntl``) go through it, and cffi carries the rest.
"""

from __future__ import annotations

import errno
import fcntl as _fcntl
import os
import platform
import sys
import termios
from typing import Any, Callable, NoReturn

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
ssize_t sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
ssize_t copy_file_range(int fd_in, int64_t *off_in, int fd_out,
                        int64_t *off_out, size_t len, unsigned int flags);
int pipe2(int pipefd[2], int flags);
int fcntl(int fd, int cmd, int arg);
int ioctl(int fd, unsigned long request, int *arg);
int getsockopt(int fd, int level, int optname, int *optval, uint32_t *optlen);
int setsockopt(int fd, int level, int optname, const int *optval,
               uint32_t optlen);
int close(int fd);
int epoll_create1(int flags);
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
"""
# fcntl and ioctl are variadic in C. Declaring their third argument as a
# plain int (a pointer for ioctl) is sound where such varargs are passed like
# fixed arguments (x86-64 and aarch64 Linux), and spares a cast per call.

ffi = cffi.FFI()
# The kernel packs struct epoll_event on x86-64 only (12 bytes, the 8-byte
# data right after the 4-byte mask); elsewhere it has natural alignment.
ffi.cdef(_CDEF, packed=platform.machine() == "x86_64")
_lib: Any = ffi.dlopen(None)  # its functions come from the cdef: untyped

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

SOL_TCP = 6
TCP_NODELAY = 1
TCP_CORK = 3
_SIOCOUTQ = termios.TIOCOUTQ  # sockets answer it as SIOCOUTQ
_SIOCOUTQNSD = 0x894B

AGAIN = -1
"""What :func:`splice`, :func:`sendfile` and :func:`copy_file_range` return
instead of raising ``BlockingIOError``: an ``EAGAIN`` is the pump's everyday
business, not an exceptional event."""

_INT_MAX = 2**31 - 1
_STDLIB = sys.implementation.name == "cpython"
"""Whether the standard library's wrappers are the cheaper binding here."""


def _raise() -> NoReturn:
    code = ffi.errno
    raise OSError(code, os.strerror(code))


_INT_P = ffi.typeof("int *")
_SIZE_P = ffi.typeof("uint32_t *")
_INT_SIZE = ffi.sizeof("int")
_OFFSET_P = ffi.typeof("int64_t *")


def _offset_ptr(offset: int | None) -> object:
    return ffi.NULL if offset is None else ffi.new(_OFFSET_P, offset)


def _cffi_splice(
    fd_in: int, off_in: int | None, fd_out: int, length: int, flags: int
) -> int:
    n = _lib.splice(fd_in, _offset_ptr(off_in), fd_out, ffi.NULL, length, flags)
    if n >= 0:
        return n
    if ffi.errno == errno.EAGAIN:
        return AGAIN
    _raise()


def _cffi_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    n = _lib.sendfile(out_fd, in_fd, _offset_ptr(offset), count)
    if n >= 0:
        return n
    if ffi.errno == errno.EAGAIN:
        return AGAIN
    _raise()


def _cffi_copy_file_range(
    fd_in: int, off_in: int | None, fd_out: int, length: int
) -> int:
    try:
        call = _lib.copy_file_range
    except AttributeError:  # a C library older than the syscall's wrapper
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS)) from None
    n = call(fd_in, _offset_ptr(off_in), fd_out, ffi.NULL, length, 0)
    if n < 0:
        _raise()
    return n


def _cffi_fcntl(fd: int, cmd: int, arg: int = 0) -> int:
    r = _lib.fcntl(fd, cmd, arg)
    if r < 0:
        _raise()
    return r


def _os_splice(
    fd_in: int, off_in: int | None, fd_out: int, length: int, flags: int
) -> int:
    try:
        return os.splice(fd_in, fd_out, length, off_in, None, flags)
    except BlockingIOError:
        return AGAIN


def _os_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    try:
        return os.sendfile(out_fd, in_fd, offset, count)
    except BlockingIOError:
        return AGAIN


def _os_copy_file_range(
    fd_in: int, off_in: int | None, fd_out: int, length: int
) -> int:
    return os.copy_file_range(fd_in, fd_out, length, off_in)


splice: Callable[[int, int | None, int, int, int], int] = (
    _os_splice if _STDLIB and hasattr(os, "splice") else _cffi_splice
)
"""``splice(fd_in, off_in, fd_out, length, flags)``: move up to ``length``
bytes, reading ``fd_in`` at ``off_in`` (``None``: at and advancing its file
position). Returns the bytes moved (0 at end of input) or :data:`AGAIN`
when the call would block; raises ``OSError`` for any other failure."""

sendfile: Callable[[int, int, int | None, int], int] = (
    _os_sendfile if _STDLIB else _cffi_sendfile
)
"""``sendfile(out_fd, in_fd, offset, count)``: as :data:`splice`, from a
file that supports pread into any descriptor."""

copy_file_range: Callable[[int, int | None, int, int], int] = (
    _os_copy_file_range
    if _STDLIB and hasattr(os, "copy_file_range")
    else _cffi_copy_file_range
)
"""``copy_file_range(fd_in, off_in, fd_out, length)``: regular file to
regular file (at ``fd_out``'s position); files never answer ``EAGAIN``."""

fcntl: Callable[..., int] = _fcntl.fcntl if _STDLIB else _cffi_fcntl
"""``fcntl(fd, cmd, arg=0)`` with an int argument; returns its result."""


def _cffi_ioctl_int(fd: int, request: int) -> int:
    value = ffi.new(_INT_P)
    if _lib.ioctl(fd, request, value) < 0:
        _raise()
    return value[0]


def _stdlib_ioctl_int(fd: int, request: int) -> int:
    # A writable buffer is what fcntl.ioctl tries first: given bytes, it
    # fails to get a writable one and formats an error message before
    # taking them (about 2,500 instructions a call, callgrind).
    value = bytearray(_INT_SIZE)
    _fcntl.ioctl(fd, request, value, True)
    return int.from_bytes(value, sys.byteorder)


_ioctl_int: Callable[[int, int], int] = (
    _stdlib_ioctl_int if _STDLIB else _cffi_ioctl_int
)
"""``_ioctl_int(fd, request)``: an ioctl that answers one int."""


def has_unsent(fd: int) -> bool:
    """Whether the TCP socket ``fd`` holds bytes queued but not sent yet
    (SIOCOUTQNSD); ``OSError`` for a descriptor that is no TCP socket."""
    return _ioctl_int(fd, _SIOCOUTQNSD) != 0


def queued(fd: int) -> int:
    """Bytes the stream socket ``fd`` still holds for its peer (SIOCOUTQ):
    on TCP those not sent yet or not acknowledged, on a Unix socket those
    its peer has not read (counted with the kernel's per-buffer overhead).
    ``OSError`` (``ENOTTY``) for a pipe or another descriptor without a
    send queue."""
    return _ioctl_int(fd, _SIOCOUTQ)


_FIONBIO_ARGS = (ffi.new(_INT_P, 1), ffi.new(_INT_P, 0))
"""FIONBIO's argument for nonblocking and for blocking: the kernel only
reads it, so two made once serve every thread (a cffi allocation a call
cost PyPy half the call)."""


def _cffi_set_blocking(fd: int, blocking: bool) -> None:
    if _lib.ioctl(fd, termios.FIONBIO, _FIONBIO_ARGS[blocking]) < 0:
        _raise()


set_blocking: Callable[[int, bool], None] = (
    os.set_blocking if _STDLIB else _cffi_set_blocking
)
"""``set_blocking(fd, blocking)``: clear or set ``O_NONBLOCK`` alone, in one
ioctl (FIONBIO, as CPython's ``os.set_blocking`` does on Linux): cheaper
than ``F_GETFL`` and ``F_SETFL``, and no other flag is touched."""


def getsockopt(fd: int, level: int, name: int) -> int:
    """An int socket option."""
    value = ffi.new(_INT_P)
    if _lib.getsockopt(fd, level, name, value, ffi.new(_SIZE_P, _INT_SIZE)) < 0:
        _raise()
    return value[0]


def setsockopt(fd: int, level: int, name: int, value: int) -> None:
    """Set an int socket option."""
    if _lib.setsockopt(fd, level, name, ffi.new(_INT_P, value), _INT_SIZE) < 0:
        _raise()


def pipe2(flags: int) -> tuple[int, int]:
    """Create a pipe; returns ``(read_fd, write_fd)``."""
    fds = ffi.new("int[2]")
    if _lib.pipe2(fds, flags) < 0:
        _raise()
    return fds[0], fds[1]


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
        self._event: Any = ffi.new("struct epoll_event *")
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
