"""Waiting on one descriptor with an inactivity timeout: epoll, and the
asyncio loop's waits (both drivers run the same rules)."""

import asyncio
import contextlib
import gc
import math
import os
import signal
import socket
import threading
import time

import pytest
from conftest import MIB, SLOW_READ_BUFFER, WAIT, fill, payload, sha, socket_pair

import bytepump
from bytepump import _waiters, aio

IDLE = 1.0
"""The inactivity timeout of the tests whose readers are slow or stop."""


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(None, -1), (0, 0), (0.0004, 1), (0.001, 1), (1.0001, 1001), (2, 2000)],
)
def test_timeout_ms_rounds_a_positive_remainder_up(seconds, ms):
    assert _waiters.timeout_ms(seconds) == ms


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def _wait(fd, events, error):
    return _waiters.Wait(fd, events, error, "side")


def test_returns_once_ready(pipe):
    r, w = pipe
    waiter = _waiters.EpollWaiter()
    os.write(w, b"x")
    try:
        waiter.wait(_wait(r, _waiters.READ, bytepump.UpstreamTimeout), 5)
    finally:
        waiter.close()


@pytest.mark.parametrize(
    "error", [bytepump.UpstreamTimeout, bytepump.DownstreamTimeout]
)
def test_raises_the_sides_timeout(pipe, error):
    waiter = _waiters.EpollWaiter()
    try:
        with pytest.raises(error, match=r"idle for more than 0\.01 s"):
            waiter.wait(_wait(pipe[0], _waiters.READ, error), 0.01)
    finally:
        waiter.close()


def test_a_file_without_poll_support_counts_as_ready():
    with open(os.devnull, "wb") as null:
        waiter = _waiters.EpollWaiter()
        try:
            waiter.wait(_wait(null.fileno(), _waiters.WRITE, bytepump.Timeout), None)
        finally:
            waiter.close()


@pytest.mark.timeout(10)
def test_a_signal_runs_its_handler_and_the_wait_goes_on(pipe):
    r, w = pipe
    handled = threading.Event()

    def handler(signum, frame):
        handled.set()
        os.write(w, b"x")  # only now is the pipe ready

    previous = signal.signal(signal.SIGUSR1, handler)
    main = threading.main_thread().ident
    timer = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGUSR1))
    timer.start()
    waiter = _waiters.EpollWaiter()
    try:
        waiter.wait(_wait(r, _waiters.READ, bytepump.UpstreamTimeout), 5)
        assert handled.is_set()
    finally:
        waiter.close()
        timer.join()
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize(
    ("events", "timeout", "first"),
    [
        (_waiters.READ, 2.0, 2.0),
        (_waiters.WRITE, 2.0, _waiters.FIRST_LOOK),
        (_waiters.WRITE, 0.02, 0.01),
        (_waiters.WRITE, 0, 0),
        (_waiters.WRITE, None, None),
        (_waiters.READ, math.inf, None),
    ],
)
def test_the_first_timer_of_a_write_wait_comes_early(events, timeout, first):
    assert _waiters.first_timer(_wait(0, events, bytepump.Timeout), timeout) == first


def _wait_epoll(wait, timeout):
    waiter = _waiters.EpollWaiter()
    try:
        waiter.wait(wait, timeout)
    finally:
        waiter.close()


def _wait_asyncio(wait, timeout):
    async def ready():
        await aio._ready(asyncio.get_running_loop(), wait, timeout)

    try:
        asyncio.run(asyncio.wait_for(ready(), WAIT))
    finally:
        gc.collect()


@pytest.fixture(params=[_wait_epoll, _wait_asyncio], ids=["epoll", "asyncio"])
def wait_with(request):
    """One wait through each driver: ``wait_with(wait, timeout)``."""
    return request.param


@pytest.fixture(params=["pipe", "tcp", "unix"])
def full(request):
    """The writing end of a full pipe or socket whose reader never reads."""
    if request.param == "pipe":
        r, w = os.pipe()
        os.set_blocking(w, False)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(w, bytes(65536))
        yield w
        os.close(r)
        os.close(w)
    else:
        mine, peer = socket_pair(request.param)
        with mine, peer:
            fill(mine)
            yield mine.fileno()


@pytest.mark.timeout(30)
def test_a_write_wait_on_a_reader_that_never_reads_times_out(wait_with, full):
    started = time.monotonic()
    with pytest.raises(bytepump.DownstreamTimeout):
        wait_with(_wait(full, _waiters.WRITE, bytepump.DownstreamTimeout), 0.2)
    assert 0.2 <= time.monotonic() - started < 1.0


@pytest.mark.timeout(30)
def test_a_write_wait_that_ends_soon_measures_no_queue(wait_with, monkeypatch):
    def queued(fd):
        raise AssertionError("measured a queue")

    monkeypatch.setattr(_waiters._libc, "queued", queued)
    mine, peer = socket_pair("tcp")
    with mine, peer:
        wait_with(_wait(mine.fileno(), _waiters.WRITE, bytepump.Timeout), WAIT)


def _splice_epoll(src, dst, timeout, **options):
    return bytepump.splice_to(src, dst, timeout, **options)


def _splice_asyncio(src, dst, timeout, **options):
    try:
        return asyncio.run(
            asyncio.wait_for(aio.splice_to(src, dst, timeout, **options), WAIT)
        )
    finally:
        gc.collect()  # KERNEL-NOTES: no stray task garbage during a report


@pytest.fixture(params=[_splice_epoll, _splice_asyncio], ids=["epoll", "asyncio"])
def splice(request):
    """``splice_to`` through each driver's waits."""
    return request.param


SLOW_SINKS = [("tcp", 2 * MIB), ("unix", MIB)]
"""Socket kinds and (doubled by the kernel) send buffer sizes that, read 8
KiB every 20 ms, stay unwritable for longer than :data:`IDLE`: TCP wakes a
writer when a third of the queue is free, a Unix socket when three
quarters are (measured: 2.2 to 4 s)."""


@pytest.fixture(params=SLOW_SINKS, ids=[kind for kind, _ in SLOW_SINKS])
def slow_client(request, endpoints):
    """``make(**sink_options)``: a 32 MiB file and a socket sink read 8 KiB
    every 20 ms, pauses far shorter than :data:`IDLE`."""
    kind, bufsize = request.param

    def make(**options):
        data = payload(32 * MIB)
        src = endpoints.source("file", data)
        dst = endpoints.sink(kind, bufsize=bufsize, chunk=8192, gap=0.02, **options)
        if kind == "tcp":
            dst.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READ_BUFFER)
        return data, src, dst

    return make


@pytest.mark.timeout(60)
def test_a_slow_steady_reader_is_not_idle(splice, slow_client):
    data, src, dst = slow_client()
    started = last = time.monotonic()
    longest = 0.0

    def progress(n):
        nonlocal last, longest
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        if longest > IDLE or now - started > WAIT / 3:
            dst.hurry()  # shown (or never to be shown): the rest at full speed

    assert splice(src.obj, dst.obj, IDLE, on_progress=progress) == len(data)
    assert longest > IDLE, "the socket never stayed unwritable for the timeout"
    assert sha(dst.received()) == sha(data)


@pytest.mark.timeout(60)
def test_a_reader_that_stops_is_a_downstream_timeout(splice, slow_client):
    data, src, dst = slow_client(stop_after=MIB)
    with pytest.raises(bytepump.DownstreamTimeout) as info:
        splice(src.obj, dst.obj, IDLE)
    assert dst.stopped_at is not None, "cut while the reader was reading"
    silent = time.monotonic() - dst.stopped_at
    assert IDLE * 0.8 < silent < 2 * IDLE + 1.0
    received = dst.received()
    assert info.value.transferred == len(received)
    assert sha(received) == sha(data[: len(received)])
