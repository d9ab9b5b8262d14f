"""Heap use stays flat however much is moved (allocation counts, not timings).

CPython: ``tracemalloc`` peak at most 64 KiB during a 256 MiB transfer.
PyPy (no ``tracemalloc``): a handful of minor collections, counted with
``gc.hooks``, where a read/write loop over the same bytes causes hundreds.
The sink is a ``cat`` process where it is a pipe or socket, so that nothing
on the reading side allocates in this process.
"""

from __future__ import annotations

import gc
import os
import subprocess

import pytest
from conftest import IS_PYPY, MIB, WAIT, tcp_pair, write_all

import bytepump

SIZE = 256 * MIB
PEAK = 64 * 1024


@pytest.fixture(scope="module")
def sparse_path(tmp_path_factory):
    """A 256 MiB file of zeros that takes no disk space."""
    path = tmp_path_factory.mktemp("memory") / "sparse"
    with open(path, "wb") as f:
        f.truncate(SIZE)
    return path


@pytest.fixture
def source(sparse_path):
    fd = os.open(sparse_path, os.O_RDONLY)
    yield fd
    os.close(fd)


def _cat(stdin) -> subprocess.Popen:
    return subprocess.Popen(["cat"], stdin=stdin, stdout=subprocess.DEVNULL)


@pytest.fixture(params=["devnull", "pipe", "tcp", "append-fallback"])
def sink(request):
    """A destination fd; ``append-fallback`` (/dev/null with O_APPEND) makes
    the transfer go through the user-space fallback."""
    kind = request.param
    if kind in ("devnull", "append-fallback"):
        flags = os.O_WRONLY | (os.O_APPEND if kind == "append-fallback" else 0)
        fd = os.open(os.devnull, flags)
        yield fd
        os.close(fd)
    elif kind == "pipe":
        r, w = os.pipe()
        with _cat(r) as cat:
            os.close(r)
            yield w
            os.close(w)
            assert cat.wait(WAIT) == 0
    else:
        mine, peer = tcp_pair()
        with _cat(peer) as cat:
            peer.close()
            yield mine.fileno()
            mine.close()
            assert cat.wait(WAIT) == 0


def spliced(src: int, dst: int, count=None) -> int:
    os.lseek(src, 0, os.SEEK_SET)
    return bytepump.splice_to(src, dst, WAIT, count=count)


def naive(src: int, dst: int) -> int:
    """What splice_to replaces: every chunk becomes a bytes object."""
    os.lseek(src, 0, os.SEEK_SET)
    total = 0
    while True:
        chunk = os.read(src, 65536)
        if not chunk:
            return total
        write_all(dst, memoryview(chunk))
        total += len(chunk)


@pytest.mark.timeout(60)
@pytest.mark.skipif(IS_PYPY, reason="PyPy has no tracemalloc (see the gc.hooks test)")
def test_tracemalloc_peak(source, sink):
    import tracemalloc

    spliced(source, sink, count=4 * MIB)  # warm up: pipe pool, buffers, imports
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        n = spliced(source, sink)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == SIZE
    assert peak - base <= PEAK, f"{peak - base} bytes allocated at the peak"


def minor_collections(work) -> int:
    counted = [0]

    def hook(stats) -> None:
        counted[0] += stats.count

    gc.hooks.on_gc_minor = hook
    try:
        work()
    finally:
        gc.hooks.on_gc_minor = None
    return counted[0]


@pytest.mark.timeout(60)
@pytest.mark.skipif(not IS_PYPY, reason="gc.hooks is PyPy's")
def test_minor_collections(request, source, sink):
    # Tracing and compiling allocate too, and that is not what is measured:
    # warm up, then keep the best of a few runs (a run may still compile a
    # bridge for a path it had not taken yet).
    for _ in range(2):
        spliced(source, sink)
    loop = minor_collections(lambda: naive(source, sink))
    pump = min(minor_collections(lambda: spliced(source, sink)) for _ in range(3))
    assert loop >= 100, f"the read/write loop caused only {loop} minor collections"
    if request.node.callspec.params["sink"] == "append-fallback":
        # The user-space fallback reuses its buffer but not every helper
        # object per chunk; it must still allocate far less than the loop.
        assert pump * 4 <= loop, f"{pump} minor collections (loop: {loop})"
    else:
        assert pump <= 10, f"{pump} minor collections (read/write loop: {loop})"
