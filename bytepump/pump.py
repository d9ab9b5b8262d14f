"""``splice_to``: move bytes between two descriptors, blocking the caller."""

from __future__ import annotations

from ._endpoint import FdLike
from ._pump import ProgressCallback
from ._quick import begin
from ._transfer import Steps, T, steps
from ._waiters import EpollWaiter


def splice_to(
    src: FdLike,
    dst: FdLike,
    timeout: float | None = 60.0,
    *,
    count: int | None = None,
    offset: int | None = None,
    on_progress: ProgressCallback = None,
    fallback: bool = True,
) -> int:
    """Copy from ``src`` to ``dst`` until end of file or ``count`` bytes.

    ``src`` and ``dst`` are int file descriptors or objects with
    ``fileno()``: regular files, pipes, stream sockets, character devices.
    The data stays in the kernel (splice(2)) unless the pair cannot be
    spliced (TLS sockets, ``O_APPEND`` destinations, some ``/proc`` files),
    where one reusable user-space buffer carries it instead, or
    :class:`SpliceUnsupported` is raised before any byte moves if
    ``fallback`` is false.

    ``timeout`` is an inactivity limit in seconds (``None``: none):
    :class:`UpstreamTimeout` when ``src`` yields nothing that long,
    :class:`DownstreamTimeout` when ``dst`` accepts nothing. ``on_progress``
    is called with each positive byte count written to ``dst``.

    Returns the number of bytes written to ``dst``. Every exception raised
    once bytes may have moved carries ``.transferred``; the caller's
    ``O_NONBLOCK`` flags are restored on every path, and a regular-file
    source is left just past the last byte delivered.

    Raises ``TypeError`` for an object without a descriptor, ``ValueError``
    for negative numbers, the same descriptor twice, a closed file object
    or ``offset`` on a non-seekable source, ``OSError`` (``EBADF``) for a
    closed descriptor and ``IsADirectoryError`` for a directory.
    """
    begun = begin(src, dst, timeout, count, offset, on_progress, fallback)
    if isinstance(begun, int):
        return begun
    return drive(steps(begun), timeout)


def drive(run: Steps[T], timeout: float | None) -> T:
    """Run ``run`` to its end, doing each wait it yields with epoll.

    A wait that fails (a timeout, a signal's exception) is thrown back into
    ``run`` so that its cleanup runs; ``run``'s return value is returned.
    """
    waiter = None
    try:
        wait = next(run)
        # Made only once something would block (trio's rule: try the
        # syscall first): most small transfers never wait.
        waiter = EpollWaiter()
        while True:
            try:
                waiter.wait(wait, timeout)
            except BaseException as exc:
                wait = run.throw(exc)
            else:
                wait = next(run)
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        if waiter is not None:
            waiter.close()
