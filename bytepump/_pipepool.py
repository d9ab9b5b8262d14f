"""A process-wide pool of intermediate pipes for splicing between two non-pipes.

splice(2) needs a pipe on one side, so file → socket, socket → socket and
file → file go through a kernel pipe. Creating and sizing one costs three
syscalls, so empty pipes are kept for the next transfer. A pipe that may
still hold bytes (an error struck mid-transfer) is closed instead: its stale
bytes must never reach another transfer's destination.
"""

from __future__ import annotations

import os
import threading

from . import _libc

MAX_IDLE = 8
"""Empty pipes kept for reuse; each costs two descriptors."""

_WANTED_SIZE = 1 << 20
"""Capacity asked for with F_SETPIPE_SZ: one splice moves at most this much
(Go's internal/poll settles on 1 MiB too)."""


def _max_pipe_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65536


class Pipe:
    """An intermediate pipe: read end, write end and capacity in bytes."""

    __slots__ = ("capacity", "r", "w")

    def __init__(self, size: int) -> None:
        self.r, self.w = _libc.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self.capacity = _libc.fcntl(self.w, _libc.F_SETPIPE_SZ, size)
        except PermissionError:
            # Past pipe-user-pages-soft an unprivileged user may not grow
            # pipes; the default size works, only with more syscalls.
            self.capacity = _libc.fcntl(self.w, _libc.F_GETPIPE_SZ)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        _libc.close(self.r)
        _libc.close(self.w)


class PipePool:
    """Thread-safe, bounded pool of empty :class:`Pipe` objects."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self._idle: list[Pipe] = []
        self._max_idle = max_idle
        self._size = min(_WANTED_SIZE, _max_pipe_size())
        self._lock = threading.Lock()

    def acquire(self) -> Pipe:
        """An empty pipe, from the pool or new."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Pipe(self._size)

    def release(self, pipe: Pipe, empty: bool) -> None:
        """Give ``pipe`` back; it is closed unless ``empty`` and there is room."""
        if empty:
            with self._lock:
                if len(self._idle) < self._max_idle:
                    self._idle.append(pipe)
                    return
        pipe.close()

    def clear(self) -> None:
        """Close every idle pipe."""
        with self._lock:
            idle, self._idle = self._idle, []
        for pipe in idle:
            pipe.close()

    def _forget_after_fork(self) -> None:
        # A child must not share pipes with its parent: both would splice
        # through the same kernel buffer. Its copies are closed; the lock
        # may have been held by another thread at fork time, so it is new.
        self._lock = threading.Lock()
        self.clear()


pool = PipePool()
os.register_at_fork(after_in_child=pool._forget_after_fork)
