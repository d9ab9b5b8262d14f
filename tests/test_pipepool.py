"""The pool of intermediate pipes: sized, reused only when empty, bounded."""

import os

import pytest

from bytepump import _libc, _pipepool


def _pipe_size():
    with open("/proc/sys/fs/pipe-max-size") as f:
        return min(int(f.read()), 1 << 20)


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_pipes_are_grown_and_nonblocking():
    pool = _pipepool.PipePool()
    pipe = pool.acquire()
    try:
        assert pipe.capacity == _pipe_size()
        assert _libc.fcntl(pipe.w, _libc.F_GETPIPE_SZ) == pipe.capacity
        assert not os.get_blocking(pipe.r)
        assert not os.get_blocking(pipe.w)
    finally:
        pipe.close()


def test_an_empty_pipe_is_reused_a_dirty_one_closed():
    pool = _pipepool.PipePool()
    pipe = pool.acquire()
    pool.release(pipe, empty=True)
    assert pool.acquire() is pipe
    before = _open_fds()
    pool.release(pipe, empty=False)
    assert _open_fds() == before - 2
    assert pool.acquire() is not pipe
    pool.clear()


def test_the_pool_keeps_at_most_max_idle_pipes():
    pool = _pipepool.PipePool(max_idle=2)
    pipes = [pool.acquire() for _ in range(5)]
    baseline = _open_fds()
    for pipe in pipes:
        pool.release(pipe, empty=True)
    assert _open_fds() == baseline - 6  # three pipes closed, two kept
    pool.clear()
    assert _open_fds() == baseline - 10


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_eperm_on_growing_keeps_the_default_size():
    # An unprivileged process asking for more than pipe-max-size gets EPERM,
    # as one past pipe-user-pages-soft does: the pipe keeps its size.
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setuid(65534)
            pipe = _pipepool.Pipe(_pipe_size() * 4)
            code = 0 if pipe.capacity == 65536 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_does_not_share_the_pools_pipes():
    pipe = _pipepool.pool.acquire()
    _pipepool.pool.release(pipe, empty=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, b"%d" % len(_pipepool.pool._idle))
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 10) == b"0"
    os.close(r)
