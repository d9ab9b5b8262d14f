"""Waiting for a descriptor to become ready, with an inactivity timeout.

The pump decides which descriptor it needs and in which direction
(``Wait``); a waiter does the waiting. This one uses epoll; ``bytepump.aio``
has one that uses the running event loop.
"""

from __future__ import annotations

import math
import time
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
        seconds of nothing.

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
        deadline = None if timeout is None else time.monotonic() + timeout
        ms = timeout_ms(timeout)
        while True:
            try:
                if self._epoll.wait(ms):
                    return
                raise timeout_error(wait, timeout)
            except InterruptedError:
                if deadline is not None:
                    ms = timeout_ms(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
