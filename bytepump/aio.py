"""asyncio versions of the blocking calls (DESIGN.md §4).

Same arguments and semantics as :func:`bytepump.splice_to`; waits go
through the running loop's ``add_reader`` / ``add_writer`` instead of epoll,
so they work under uvloop too. Cancellation raises ``CancelledError`` with
``.transferred``, releases the pipe, restores the descriptors' flags and
leaves a regular-file source just past the last byte delivered. (The
``CancelledError`` with ``.transferred`` is the one the awaiting coroutine
sees; asyncio before Python 3.11 raises a new one to whoever awaits the
cancelled Task from outside, with the original as its ``__context__``.)

The descriptors must not be registered with the loop by someone else (an
asyncio transport's socket) during the call: ``add_reader`` would replace
their callback.
"""

from __future__ import annotations

import asyncio

from ._endpoint import FdLike
from ._pump import ProgressCallback
from ._transfer import Steps, T, Transfer, steps
from ._waiters import READ, Wait, timeout_error

__all__ = ["splice_to"]


async def _ready(
    loop: asyncio.AbstractEventLoop, wait: Wait, timeout: float | None
) -> None:
    future = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    if wait.events == READ:
        add, remove = loop.add_reader, loop.remove_reader
    else:
        add, remove = loop.add_writer, loop.remove_writer
    try:
        add(wait.fd, wake)
    except PermissionError:
        return  # the file does not support polling (/dev/null): always ready
    try:
        await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        raise timeout_error(wait, timeout) from None
    finally:
        remove(wait.fd)


async def splice_to(
    src: FdLike,
    dst: FdLike,
    timeout: float | None = 60.0,
    *,
    count: int | None = None,
    offset: int | None = None,
    on_progress: ProgressCallback = None,
    fallback: bool = True,
) -> int:
    """Await a copy from ``src`` to ``dst``; see :func:`bytepump.splice_to`."""
    run = steps(Transfer(src, dst, timeout, count, offset, on_progress, fallback))
    return await drive(run, timeout)


async def drive(run: Steps[T], timeout: float | None) -> T:
    """Run ``run`` to its end, doing each wait it yields on the running loop;
    see :func:`bytepump.pump.drive`."""
    loop = asyncio.get_running_loop()
    try:
        wait = next(run)
        while True:
            try:
                await _ready(loop, wait, timeout)
            except BaseException as exc:
                wait = run.throw(exc)
            else:
                wait = next(run)
    except StopIteration as done:
        return done.value
