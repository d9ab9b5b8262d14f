"""Waiting on one descriptor with epoll and an inactivity timeout."""

import os
import signal
import threading

import pytest

import bytepump
from bytepump import _waiters


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
