"""No descriptor leaks on any path, and the pipe pool stays bounded.

The process's descriptors (``/proc/self/fd``) are counted before and after;
the only ones allowed to remain are idle pooled pipes, ``FD_SLACK`` at most.
"""

from __future__ import annotations

import errno
import gc
import io
import itertools
import os
import threading

import pytest
from conftest import MIB, WAIT, Endpoints, fill, open_fds, payload

import bytepump

FD_SLACK = 16
"""Descriptors a bounded pipe pool may keep (8 idle pipes), beyond baseline."""
ROUNDS = 1000
splice_to = bytepump.splice_to
DATA = payload(65537)
BIG = payload(MIB)


class Stop(Exception):
    pass


def _stop(n: int) -> None:
    raise Stop


def _closed_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


# Each scenario does one transfer on fresh endpoints; the failing ones check
# that they failed the expected way.
def ok(src_kind, dst_kind, **kwargs):
    def scenario(ep: Endpoints) -> None:
        src = ep.source(src_kind, DATA)
        dst = ep.sink(dst_kind, **kwargs)
        assert splice_to(src.fd, dst.fd, WAIT) == len(DATA)

    return scenario


def counted(ep: Endpoints) -> None:
    src = ep.source("unix", DATA)
    dst = ep.sink("tcp")
    assert splice_to(src.fd, dst.fd, WAIT, count=1000) == 1000


def upstream_timeout(ep: Endpoints) -> None:
    src = ep.source("unix", b"abc", hold_open=True)
    dst = ep.sink("tcp")
    with pytest.raises(bytepump.UpstreamTimeout):
        splice_to(src.fd, dst.fd, 0)


def downstream_timeout(ep: Endpoints) -> None:
    src = ep.source("file", BIG)
    dst = ep.sink("unix", drain=False)
    fill(dst.obj)
    with pytest.raises(bytepump.DownstreamTimeout):
        splice_to(src.fd, dst.fd, 0)


def broken_pipe(ep: Endpoints) -> None:
    src = ep.source("file", BIG)
    dst = ep.sink("unix", drain=False)
    dst.peer.close()
    with pytest.raises(BrokenPipeError):
        splice_to(src.fd, dst.fd, WAIT)


def callback_raises(ep: Endpoints) -> None:
    src = ep.source("file", BIG)
    dst = ep.sink("tcp")
    with pytest.raises(Stop):
        splice_to(src.fd, dst.fd, WAIT, on_progress=_stop)


def unsupported(ep: Endpoints) -> None:
    src = ep.source("tcp", DATA)
    dst = ep.sink("file", append=True)
    with pytest.raises(bytepump.SpliceUnsupported):
        splice_to(src.fd, dst.fd, WAIT, fallback=False)


def bad_input(ep: Endpoints) -> None:
    dst = ep.sink("file")
    with pytest.raises(OSError) as info:
        splice_to(_closed_fd(), dst.fd, WAIT)
    assert info.value.errno == errno.EBADF
    with pytest.raises(TypeError):
        splice_to(io.BytesIO(b"x"), dst.fd, WAIT)
    fd = os.open(ep.directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(IsADirectoryError):
            splice_to(fd, dst.fd, WAIT)
    finally:
        os.close(fd)


SCENARIOS = [
    ok("file", "tcp"),
    ok("tcp", "unix"),
    ok("pipe", "file"),
    ok("file", "file"),
    ok("unix", "devnull"),
    ok("file", "file", append=True),
    counted,
    upstream_timeout,
    downstream_timeout,
    broken_pipe,
    callback_raises,
    unsupported,
    bad_input,
]


def settled_fds() -> int:
    gc.collect()
    return open_fds()


@pytest.mark.timeout(120)
def test_no_descriptor_leaks(tmp_path):
    for scenario in SCENARIOS:  # warm up: the pool has what it keeps
        with Endpoints(tmp_path) as ep:
            scenario(ep)
    baseline = settled_fds()
    for scenario in itertools.islice(itertools.cycle(SCENARIOS), ROUNDS):
        with Endpoints(tmp_path) as ep:
            scenario(ep)
    grown = settled_fds() - baseline
    assert grown <= FD_SLACK, f"{grown} more descriptors after {ROUNDS} transfers"


@pytest.mark.timeout(60)
def test_pipe_pool_is_bounded(tmp_path):
    """32 transfers each holding a pooled pipe at once; afterwards the pool
    keeps no more than its bound."""
    baseline = settled_fds()
    with Endpoints(tmp_path) as ep:
        jobs = [
            (ep.source("file", BIG), ep.sink("tcp", drain=False, bufsize=65536))
            for _ in range(32)
        ]
        started = [threading.Event() for _ in jobs]
        results: list[object] = []

        def run(src, dst, started) -> None:
            results.append(
                splice_to(src.fd, dst.fd, WAIT, on_progress=lambda n: started.set())
            )

        threads = [
            threading.Thread(target=run, args=(*job, event), daemon=True)
            for job, event in zip(jobs, started)
        ]
        for thread in threads:
            thread.start()
        # Every transfer has written some bytes and is stuck on its sink with
        # the rest of 1 MiB in its pipe: 32 pipes in use at once.
        assert all(event.wait(WAIT) for event in started)
        for _, dst in jobs:
            dst.drain()
        for thread in threads:
            thread.join(WAIT)
        assert results == [len(BIG)] * len(jobs)
    grown = settled_fds() - baseline
    assert grown <= FD_SLACK, f"{grown} descriptors kept after 32 transfers at once"
