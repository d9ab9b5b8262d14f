"""Waiting for a descriptor to become ready, with an inactivity timeout.

The pump decides which descriptor it needs and in which direction
(``Wait``); a waiter does the waiting. This one uses epoll; ``bytepump.aio``
has one that uses the running event loop.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from . import _libc
from ._errors import Timeout

READ = _libc.EPOLLIN
WRITE = _libc.EPOLLOUT


class Wait(NamedTuple):
    """Wait until ``fd`` is ready for ``events``, else raise ``timeout_error``."""

    fd: int
    events: int
    timeout_error: type[Timeout]
    what: str


def check_timeout(timeout: float | None) -> None:
    """``ValueError`` for a negative or NaN timeout (``None`` and
    ``math.inf``: no limit)."""
    if timeout is None:
        return
    if timeout < 0:
        raise ValueError(f"timeout must not be negative, got {timeout!r}")
    if timeout != timeout:  # NaN compares unequal to itself
        raise ValueError("timeout must be a number of seconds, not NaN")


def timeout_ms(seconds: float | None) -> int:
    """epoll's milliseconds for ``seconds``; ``None`` and ``math.inf`` mean
    forever (-1).

    A positive remainder is rounded up: rounded down, a 0.4 ms remainder
    would become a zero-timeout busy spin.
    """
    if seconds is None or seconds == math.inf:
        return -1
    return math.ceil(seconds * 1000) if seconds > 0 else 0


def timeout_error(wait: Wait, timeout: float | None) -> Timeout:
    return wait.timeout_error(f"{wait.what} idle for more than {timeout} s")


# --- a slow reader is not an idle one ----------------------------------------
# epoll calls a socket writable only once a large part of its send buffer is
# free: TCP when a third is (sk_stream_wspace >= sk_stream_min_wspace), a
# Unix stream socket when three quarters are (unix_writable). A client that
# reads steadily but slowly can keep a big buffer "not writable" for longer
# than the timeout (measured, SO_SNDBUF as read back: 8 KiB read every 20
# ms, 1.2 to 2 s between wake-ups for a 2 MiB TCP buffer, 2.2 s for 4 MiB,
# 2 s for a 1 MiB Unix one; 16 KiB every 200 ms against 4 MiB, more than 12
# s). So a write wait that reaches its timeout asks the socket how much it
# still holds (SIOCOUTQ), and goes on while that shrinks.
#
# On TCP the queue shrinks only when the client's window updates arrive,
# which a slow client sends only once it has read a good part of its
# receive buffer (else the sender's zero-window probes find the room, every
# 0.2 s or more). Measured, reading 8 KiB every 20 ms: steps of 129 KB 0.1
# to 0.35 s apart for a 128 KiB receive buffer, of 130 to 280 KB up to 0.8 s
# apart for a 2 MiB one. A client that reads too little to reopen its
# window within the timeout still looks idle.
#
# The comparison needs a starting point, but measuring the queue as every
# wait begins would add a syscall to every wait (1.5 us on CPython; a fast
# reader makes a socket wait every third of its buffer, a pipe every 64
# KiB), so a write wait gets an early first timer instead (FIRST_LOOK):
# only a wait still going then measures anything. Bytes the reader takes
# before that first look are not counted, which can cut a wait at most
# FIRST_LOOK seconds early.
#
# A pipe is not affected: it is writable as soon as one of its page-sized
# slots is free (measured: a reader of 16 KiB every 200 ms wakes the writer
# every 200 ms; only one taking less than a page per timeout would be cut),
# and it answers no SIOCOUTQ (ENOTTY): its waits keep the plain timeout.

FIRST_LOOK = 0.05
"""Seconds into a write wait when the socket's queue is first measured:
the starting point the timeout's look compares with."""


def first_timer(wait: Wait, timeout: float | None) -> float | None:
    """Seconds from the start of ``wait`` to its first timer (``None``:
    none, it waits until ready)."""
    if timeout is None or timeout == math.inf:
        return None
    if wait.events == WRITE and timeout > 0:
        return min(FIRST_LOOK, timeout / 2)
    return timeout


class Shrinking:
    """A size looked at again and again, to tell whether a reader is taking
    bytes from it while nothing else says so."""

    __slots__ = ("_last", "_measure")

    def __init__(self, measure: Callable[[], int]) -> None:
        self._measure = measure
        self._last = measure()

    def shrank(self) -> bool:
        """Whether the size went down since the last look (or since this
        was made); this look becomes the last."""
        size = self._measure()
        shrank, self._last = size < self._last, size
        return shrank


def send_queue(fd: int) -> Shrinking:
    """What the socket ``fd`` still holds for its peer (SIOCOUTQ); on a
    descriptor that cannot say (a pipe), it never shrinks."""
    return Shrinking(functools.partial(_held, fd))


def _held(fd: int) -> int:
    try:
        return _libc.queued(fd)
    except OSError:
        return _UNKNOWN


_UNKNOWN = sys.maxsize
"""What :func:`_held` answers when the kernel does not (a pipe): more than
any queue holds, so that such a look never counts as shrinking."""


def later_timers(wait: Wait, timeout: float | None) -> Iterator[float]:
    """The delays between the timers of ``wait`` after its first one
    (:func:`first_timer`) fired; when they run out, the wait has been idle
    for ``timeout`` seconds and raises its timeout.

    A write wait on a socket looks at its queue at its first timer and at
    each timeout from then on; while bytes left the queue since the last
    look, it waits another ``timeout``.
    """
    first = first_timer(wait, timeout)
    if timeout is None or first is None or first == timeout:
        return  # the first timer was the timeout itself
    queue = send_queue(wait.fd)
    yield timeout - first
    while queue.shrank():
        yield timeout


class EpollWaiter:
    """Waits on one descriptor at a time; the epoll fd is made on first need.

    A transfer that never has to wait (file to file, a fast reader) makes no
    epoll syscall at all.
    """

    __slots__ = ("_epoll",)

    def __init__(self) -> None:
        self._epoll: _libc.Epoll | None = None

    def wait(self, wait: Wait, timeout: float | None) -> None:
        """Return once ``wait.fd`` is ready (or in error: the next syscall
        on it reports that); raise ``wait.timeout_error`` after ``timeout``
        seconds of nothing (for a write wait on a socket: of nothing
        leaving its queue, see :func:`later_timers`).

        A signal interrupts epoll_wait with EINTR; by the time the Python
        code sees ``InterruptedError`` the signal handlers have run (and a
        ``KeyboardInterrupt`` has propagated instead), so the wait goes on
        with what remains of the timeout (PEP 475).
        """
        if self._epoll is None:
            self._epoll = _libc.Epoll()
        try:
            self._epoll.arm(wait.fd, wait.events)
        except PermissionError:
            return  # the file does not support polling (/dev/null): always ready
        delay = first_timer(wait, timeout)
        later = None
        while not _fired(self._epoll, delay):
            if later is None:
                later = later_timers(wait, timeout)
            delay = next(later, None)
            if delay is None:
                raise timeout_error(wait, timeout)

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None


def _fired(epoll: _libc.Epoll, delay: float | None) -> bool:
    """Whether the armed descriptor fired within ``delay`` seconds
    (``None``: wait until it does)."""
    deadline = None if delay is None else time.monotonic() + delay
    ms = timeout_ms(delay)
    while True:
        try:
            return epoll.wait(ms)
        except InterruptedError:
            if deadline is not None:
                ms = timeout_ms(max(0.0, deadline - time.monotonic()))
