"""The FFI layer: declarations match the kernel, errors map to OSError."""

import errno
import os
import platform

import pytest

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


def test_splice_from_an_offset_leaves_the_file_position(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    r, w = _libc.pipe2(0)
    try:
        offset = _libc.Offset(3)
        assert _libc.splice(fd, offset, w, 4, 0) == 4
        assert offset.value == 7
        assert os.read(r, 4) == b"3456"
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        for f in (fd, r, w):
            os.close(f)


@pytest.mark.parametrize(
    ("call", "exc_type", "code"),
    [
        (lambda: _libc.close(-1), OSError, errno.EBADF),
        (lambda: _libc.fcntl(-1, _libc.F_GETFL), OSError, errno.EBADF),
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
