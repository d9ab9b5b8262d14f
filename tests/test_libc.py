"""The FFI layer: declarations match the kernel, errors map to OSError."""

import errno
import fcntl
import os
import platform
import socket
import time

import pytest
from conftest import WAIT, fill, socket_pair

from bytepump import _libc


def test_epoll_event_has_the_kernel_layout():
    expected = 12 if platform.machine() == "x86_64" else 16
    assert _libc.ffi.sizeof("struct epoll_event") == expected


def test_pipe2_gives_nonblocking_cloexec_ends():
    r, w = _libc.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        for fd in (r, w):
            assert not os.get_inheritable(fd)
            assert not os.get_blocking(fd)
    finally:
        _libc.close(r)
        _libc.close(w)


def test_splice_reports_again_without_raising():
    r, w = _libc.pipe2(os.O_NONBLOCK)
    r2, w2 = _libc.pipe2(os.O_NONBLOCK)
    try:
        assert _libc.splice(r, None, w2, 10, _libc.SPLICE_F_NONBLOCK) == _libc.AGAIN
        os.write(w, b"hello")
        assert _libc.splice(r, None, w2, 10, _libc.SPLICE_F_NONBLOCK) == 5
        assert os.read(r2, 10) == b"hello"
    finally:
        for fd in (r, w, r2, w2):
            os.close(fd)


SPLICES = [_libc._cffi_splice] + ([_libc._os_splice] if hasattr(os, "splice") else [])
SENDFILES = [_libc._cffi_sendfile, _libc._os_sendfile]
COPY_RANGES = [_libc._cffi_copy_file_range] + (
    [_libc._os_copy_file_range] if hasattr(os, "copy_file_range") else []
)
"""Both bindings of each hot call: cffi (PyPy's) and the standard library's
(CPython's), whichever this interpreter would pick."""


@pytest.fixture
def numbers(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("splice", SPLICES)
def test_splice_from_an_offset_leaves_the_file_position(numbers, splice):
    r, w = _libc.pipe2(0)
    try:
        assert splice(numbers, 3, w, 4, 0) == 4
        assert os.read(r, 4) == b"3456"
        assert os.lseek(numbers, 0, os.SEEK_CUR) == 0
        assert splice(numbers, None, w, 2, 0) == 2  # the position, advanced
        assert os.read(r, 2) == b"01"
        assert os.lseek(numbers, 0, os.SEEK_CUR) == 2
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("sendfile", SENDFILES)
def test_sendfile_reads_at_an_offset_and_answers_again(numbers, sendfile):
    a, b = socket.socketpair()
    with a, b:
        assert sendfile(a.fileno(), numbers, 3, 4) == 4
        assert b.recv(10) == b"3456"
        assert os.lseek(numbers, 0, os.SEEK_CUR) == 0
        a.setblocking(False)
        while sendfile(a.fileno(), numbers, 0, 10) != _libc.AGAIN:
            pass  # until the socket is full


@pytest.mark.parametrize("copy_file_range", COPY_RANGES)
def test_copy_file_range_offsets(numbers, copy_file_range, tmp_path):
    out = tmp_path / "out"
    with open(out, "wb", buffering=0) as f:
        assert copy_file_range(numbers, 5, f.fileno(), 3) == 3
        assert os.lseek(numbers, 0, os.SEEK_CUR) == 0
        assert copy_file_range(numbers, None, f.fileno(), 2) == 2
        assert os.lseek(numbers, 0, os.SEEK_CUR) == 2
        assert f.tell() == 5  # the destination's position advances
    assert out.read_bytes() == b"56701"


@pytest.mark.parametrize("binding", [_libc._stdlib_ioctl_int, _libc._cffi_ioctl_int])
def test_socket_options_and_unsent_bytes(binding):
    a, b = socket.socketpair()
    with a, b, pytest.raises(OSError):
        binding(a.fileno(), _libc._SIOCOUTQNSD)  # not TCP
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as c:
        fd = c.fileno()
        assert binding(fd, _libc._SIOCOUTQNSD) == 0
        # A corked socket keeps a partial segment queued (up to 200 ms).
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        c.send(b"x" * 100)
        assert binding(fd, _libc._SIOCOUTQNSD) == 100
        assert _libc.has_unsent(fd) is True
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        assert _libc.has_unsent(fd) is False
        for value in (1, 0):
            _libc.setsockopt(fd, _libc.SOL_TCP, _libc.TCP_NODELAY, value)
            assert _libc.getsockopt(fd, _libc.SOL_TCP, _libc.TCP_NODELAY) == value
            assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == value


@pytest.mark.parametrize("set_blocking", [os.set_blocking, _libc._cffi_set_blocking])
def test_set_blocking_changes_o_nonblocking_alone(set_blocking, tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        before = fcntl.fcntl(fd, fcntl.F_GETFL)
        set_blocking(fd, False)
        assert fcntl.fcntl(fd, fcntl.F_GETFL) == before | os.O_NONBLOCK
        set_blocking(fd, True)
        assert fcntl.fcntl(fd, fcntl.F_GETFL) == before
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        set_blocking(_closed(), True)


@pytest.mark.parametrize("binding", [_libc._stdlib_ioctl_int, _libc._cffi_ioctl_int])
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_queued_counts_what_the_peer_has_not_taken(binding, kind):
    mine, peer = socket_pair(kind)
    with mine, peer:
        assert binding(mine.fileno(), _libc._SIOCOUTQ) == 0
        fill(mine)  # more than the peer's buffer holds: some stays with us
        held = binding(mine.fileno(), _libc._SIOCOUTQ)
        assert held > 0
        peer.recv(65536)
        deadline = time.monotonic() + WAIT
        while binding(mine.fileno(), _libc._SIOCOUTQ) >= held:  # TCP: acked
            assert time.monotonic() < deadline, "the queue never shrank"
            time.sleep(0.001)


def test_queued_is_enotty_for_a_pipe():
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        with pytest.raises(OSError) as info:
            _libc.queued(w)
        assert info.value.errno == errno.ENOTTY
    finally:
        os.close(r)
        os.close(w)


def _closed() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


@pytest.mark.parametrize(
    ("call", "exc_type", "code"),
    [
        (lambda: _libc.close(-1), OSError, errno.EBADF),
        (lambda: _libc.fcntl(_closed(), _libc.F_GETFL), OSError, errno.EBADF),
        (lambda: _libc._cffi_fcntl(-1, _libc.F_GETFL), OSError, errno.EBADF),
        (lambda: _libc.sendfile(-1, -1, 0, 1), OSError, errno.EBADF),
        (lambda: _libc.copy_file_range(-1, 0, -1, 1), OSError, errno.EBADF),
        (lambda: _libc.splice(-1, None, -1, 1, 0), OSError, errno.EBADF),
    ],
)
def test_failures_raise_oserror_with_errno(call, exc_type, code):
    with pytest.raises(exc_type) as info:
        call()
    assert info.value.errno == code
    assert info.value.strerror == os.strerror(code)


def test_errno_picks_the_oserror_subclass(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    r, w = _libc.pipe2(0)
    os.close(r)  # no reader left: writing into the pipe is EPIPE
    try:
        with pytest.raises(BrokenPipeError):
            _libc.splice(fd, None, w, 4, 0)
    finally:
        os.close(fd)
        os.close(w)


def test_epoll_waits_for_the_armed_descriptor_once():
    r, w = os.pipe()
    epoll = _libc.Epoll()
    try:
        epoll.arm(r, _libc.EPOLLIN)
        assert not epoll.wait(0)
        os.write(w, b"x")
        assert epoll.wait(1000)
        # one-shot: the still readable pipe does not fire again until re-armed
        assert not epoll.wait(0)
        epoll.arm(r, _libc.EPOLLIN)
        assert epoll.wait(0)
    finally:
        epoll.close()
        epoll.close()  # closing twice is harmless
        os.close(r)
        os.close(w)


def test_epoll_arms_a_reused_descriptor_number():
    r, w = os.pipe()
    epoll = _libc.Epoll()
    try:
        epoll.arm(r, _libc.EPOLLIN)
        os.close(r)  # drops the registration ...
        r2, w2 = os.pipe()
        if r2 != r:  # ... and a new file takes the number
            os.dup2(r2, r)
            os.close(r2)
        os.write(w2, b"x")
        epoll.arm(r, _libc.EPOLLIN)
        assert epoll.wait(1000)
    finally:
        epoll.close()
        for fd in (r, w, w2):
            os.close(fd)


def test_epoll_refuses_a_regular_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    epoll = _libc.Epoll()
    with open(path, "rb") as f:
        try:
            with pytest.raises(PermissionError):
                epoll.arm(f.fileno(), _libc.EPOLLIN)
        finally:
            epoll.close()
