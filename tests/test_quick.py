"""The first attempt at a transfer that need not wait (bytepump._quick): a
regular file into a plain socket object goes in its syscalls alone, every
§1 rule holds on it, and what does not fit is the machinery's, before a byte
moved or, once the socket filled, from where the attempt stopped.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    LINGER_0,
    MIB,
    WAIT,
    getfl,
    payload,
    position,
    read_to_eof,
    sha,
    tcp_pair,
)

import bytepump
from bytepump import _quick
from bytepump._pump import CopyRangePump

ROOT = Path(__file__).resolve().parents[1]

# One warm call, then one traced between two getpid() marks: a 4 KiB file
# object into a connected, blocking TCP socket with a reader draining it
# (TCP_NODELAY: no Nagle tail to push, so the calls are always the same).
SCRIPT = r"""
import os, socket, sys, threading
import bytepump

path = sys.argv[1]
listener = socket.create_server(("127.0.0.1", 0))
dst = socket.create_connection(listener.getsockname())
dst.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no tail to push
peer, _ = listener.accept()
threading.Thread(target=lambda: [None for _ in iter(lambda: peer.recv(65536), b"")],
                 daemon=True).start()
src = open(path, "rb")
bytepump.splice_to(src, dst)
src.seek(0)
os.getpid()
n = bytepump.splice_to(src, dst)
os.getpid()
print(n)
"""

TRACED = "getpid,fstat,newfstatat,statx,lseek,fcntl,ioctl,sendfile,splice,pipe2,"
TRACED += "epoll_create1,epoll_ctl,epoll_wait,poll,setsockopt,getsockopt"


def test_a_small_file_into_a_socket_is_its_syscalls(tmp_path):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    path = tmp_path / "small"
    path.write_bytes(payload(4096))
    done = subprocess.run(
        ["strace", "-qq", "-e", f"trace={TRACED}", sys.executable, "-c", SCRIPT,
         str(path)],
        capture_output=True, text=True, timeout=WAIT, cwd=ROOT, check=True,
    )  # fmt: skip
    assert int(done.stdout) == 4096
    lines = [line for line in done.stderr.splitlines() if "(" in line]
    marks = [i for i, line in enumerate(lines) if line.startswith("getpid(")]
    calls = [line.split("(")[0] for line in lines[marks[-2] + 1 : marks[-1]]]
    calls = ["fstat" if "stat" in name else name for name in calls]
    # fstat, tell()'s lseek, F_GETFL, O_NONBLOCK on, the file's 4 KiB and its
    # end, seek()'s lseek, SIOCOUTQNSD, O_NONBLOCK off: nothing else.
    assert calls == [
        "fstat", "lseek", "fcntl", "ioctl", "sendfile", "sendfile", "lseek",
        "ioctl", "ioctl",
    ]  # fmt: skip


def _spy(monkeypatch) -> list[object]:
    seen: list[object] = []
    real = _quick.at_once

    def at_once(*args):
        seen.append(real(*args))
        return seen[-1]

    monkeypatch.setattr(_quick, "at_once", at_once)
    return seen


@contextlib.contextmanager
def destination(
    kind: str, tmp_path: Path
) -> Iterator[tuple[object, Callable[[], bytes]]]:
    """A plain socket or file object for at_once, and what it finally got."""
    if kind == "tcp":
        client, server = tcp_pair()
        with client, server:
            yield client, lambda: (client.close(), read_to_eof(server.fileno()))[1]
        return
    path = tmp_path / "out"
    with open(path, "wb", buffering=0 if kind == "raw file" else -1) as f:
        f.write(b"ab")  # still in a buffered object's buffer: flushed first
        yield f, lambda: (f.close(), path.read_bytes()[2:])[1]


@pytest.mark.parametrize(
    ("size", "count", "offset"),
    [(4096, None, None), (100_000, 1000, None), (100_000, None, 99_000),
     (5000, 9000, 10), (5000, 5000, None), (1, None, 0)],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["buffered", "raw", "int"])
@pytest.mark.parametrize("to", ["tcp", "file", "raw file"])
def test_at_once_keeps_every_rule(tmp_path, monkeypatch, size, count, offset, kind, to):
    data = payload(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    seen = _spy(monkeypatch)
    with (
        open(path, "rb", buffering=-1 if kind == "buffered" else 0) as src,
        destination(to, tmp_path) as (dst, received),
    ):
        src.read(3)  # the caller's position (and a buffered object's buffer)
        obj = src.fileno() if kind == "int" else src
        if kind == "int":
            os.lseek(src.fileno(), 3, os.SEEK_SET)
        flags = getfl(dst.fileno())
        progress: list[int] = []
        start = 3 if offset is None else offset
        want = data[start:] if count is None else data[start : start + count]
        n = bytepump.splice_to(
            obj, dst, count=count, offset=offset, on_progress=progress.append
        )
        assert seen == [n]  # done in the attempt
        assert n == len(want) == sum(progress)
        assert getfl(dst.fileno()) == flags
        assert src.tell() == start + n
        if kind != "buffered":  # a buffered object may seek within its buffer
            assert position(src.fileno()) == start + n
        assert sha(received()) == sha(want)


BIG = payload(4 * MIB)


@pytest.fixture
def big(tmp_path) -> Path:
    """A file of 4 MiB: far more than the 64 KiB socket buffers take."""
    path = tmp_path / "big"
    path.write_bytes(BIG)
    return path


def test_a_full_socket_hands_the_rest_to_the_machinery(big, monkeypatch):
    data, seen = BIG, _spy(monkeypatch)
    client, server = tcp_pair(bufsize=64 * 1024)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(read_to_eof(server.fileno())))
    with open(big, "rb") as src, client, server:
        flags = getfl(client.fileno())
        progress: list[int] = []
        reader.start()
        n = bytepump.splice_to(src, client, WAIT, on_progress=progress.append)
        assert isinstance(seen[0], _quick.Rest)
        assert 0 < seen[0].moved < len(data)
        assert seen[0].offset == seen[0].moved and seen[0].left is None
        assert n == len(data) == sum(progress)
        assert getfl(client.fileno()) == flags
        assert src.tell() == len(data)
        client.close()
        reader.join(WAIT)
    assert sha(got[0]) == sha(data)


def test_a_timeout_after_the_attempt_counts_its_bytes(big, monkeypatch):
    data, seen = BIG, _spy(monkeypatch)
    client, server = tcp_pair(bufsize=64 * 1024)
    with open(big, "rb") as src, client, server:
        flags = getfl(client.fileno())
        with pytest.raises(bytepump.DownstreamTimeout) as caught:
            bytepump.splice_to(src, client, 0.2, count=3 * MIB)
        moved = caught.value.transferred
        assert isinstance(seen[0], _quick.Rest) and moved >= seen[0].moved > 0
        assert getfl(client.fileno()) == flags
        assert src.tell() == moved
        client.close()
        assert sha(read_to_eof(server.fileno())) == sha(data[:moved])


def test_a_failing_callback_in_the_attempt(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(payload(4096))

    def stop(n: int) -> None:
        raise RuntimeError(f"stop at {n}")

    client, server = tcp_pair()
    with open(path, "rb") as src, client, server:
        flags = getfl(client.fileno())
        with pytest.raises(RuntimeError, match="stop at 4096") as caught:
            bytepump.splice_to(src, client, on_progress=stop)
        assert caught.value.transferred == 4096
        assert getfl(client.fileno()) == flags
        assert src.tell() == 4096
        client.close()
        assert read_to_eof(server.fileno()) == payload(4096)


@pytest.mark.parametrize(
    "case",
    ["pipe", "empty", "proc", "closed", "negative timeout", "bool count",
     "socket source", "custom object", "past the end"],
)  # fmt: skip
def test_what_does_not_fit_is_left_untouched(tmp_path, case):
    path = tmp_path / "f"
    path.write_bytes(b"" if case == "empty" else payload(1000))
    client, server = tcp_pair()
    with contextlib.ExitStack() as stack, client, server:
        src: object
        if case == "pipe":
            src, w = os.pipe()
            stack.callback(os.close, src)
            stack.callback(os.close, w)
        elif case == "socket source":
            src = server
        else:
            f = stack.enter_context(
                open("/proc/self/status" if case == "proc" else path, "rb")
            )
            src = f
            if case == "closed":
                f.close()
            elif case == "custom object":
                src = type("Wrapped", (), {"fileno": f.fileno})()
            elif case == "past the end":
                f.seek(5000)
        timeout = -1.0 if case == "negative timeout" else 60.0
        count = True if case == "bool count" else None
        flags = getfl(client.fileno())
        assert _quick.at_once(src, client, timeout, count, None, None) is None
        assert getfl(client.fileno()) == flags
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.recv(1)  # nothing was sent


@pytest.mark.parametrize("case", ["append", "same file", "other file system"])
def test_a_file_destination_that_does_not_fit(tmp_path, case):
    path = tmp_path / "f"
    path.write_bytes(payload(1000))
    if case == "other file system":
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm")
        shm = Path(f"/dev/shm/bytepump-quick-{os.getpid()}")
        shm.write_bytes(payload(1000))
        src_path = shm
    else:
        src_path = path
    out = path if case == "same file" else tmp_path / "out"
    mode = {"append": "ab", "same file": "r+b", "other file system": "wb"}[case]
    try:
        with open(src_path, "rb") as src, open(out, mode, buffering=0) as dst:
            before = out.read_bytes()
            refused = None
            if case == "other file system":  # EXDEV: not asked again
                refused = _quick.Rest(0, 0, None, CopyRangePump)
            assert _quick.at_once(src, dst, 60.0, None, None, None) == refused
            assert out.read_bytes() == before
            assert src.tell() == 0
            if case == "same file":
                with pytest.raises(ValueError, match="same file"):
                    bytepump.splice_to(src, dst)
            else:
                assert bytepump.splice_to(src, dst) == 1000  # the machinery's
    finally:
        if case == "other file system":
            shm.unlink()
    if case != "same file":
        assert out.read_bytes() == payload(1000)


def test_a_failing_flush_of_the_destination_carries_transferred(tmp_path):
    # As in the machinery (Transfer.start, inside steps): the flush is part
    # of the transfer, so its error says that nothing was written.
    path = tmp_path / "f"
    path.write_bytes(payload(1000))
    with open(path, "rb") as src, open("/dev/full", "wb") as dst:
        dst.write(b"ab")
        with pytest.raises(OSError, match="No space") as caught:
            bytepump.splice_to(src, dst)
        assert caught.value.transferred == 0
        assert src.tell() == 0
        with contextlib.suppress(OSError):
            dst.close()  # its buffer still holds the two bytes


def test_bad_input_fails_before_the_destination_is_flushed(tmp_path):
    # The same file as src and dst is refused before a byte moves, the
    # caller's buffered ones included (the machinery checks, then flushes).
    path = tmp_path / "f"
    path.write_bytes(payload(1000))
    with open(path, "rb") as src, io.BufferedWriter(io.FileIO(path, "r+")) as dst:
        dst.write(b"ab")
        with pytest.raises(ValueError, match="same file"):
            bytepump.splice_to(src, dst)
        assert path.read_bytes() == payload(1000)
    assert path.read_bytes()[:2] == b"ab"


@pytest.mark.parametrize("mode", ["blocking", "timeout"])
def test_an_error_in_the_attempt_is_the_one_the_kernel_gave(tmp_path, mode):
    # A reset peer is reported once (ECONNRESET), then as EPIPE: the
    # attempt must raise what it got, not leave the machinery to ask again.
    path = tmp_path / "f"
    path.write_bytes(payload(4096))
    client, server = tcp_pair()
    with open(path, "rb") as src, client, server:
        if mode == "timeout":
            client.settimeout(WAIT)
        client.sendall(b"x")  # unread: the peer's close sends a reset
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        server.close()
        poll = select.poll()
        poll.register(client, select.POLLERR)
        assert poll.poll(WAIT * 1000)  # the reset has arrived
        flags = getfl(client.fileno())
        with pytest.raises(ConnectionResetError) as caught:
            bytepump.splice_to(src, client)
        assert caught.value.transferred == 0
        assert getfl(client.fileno()) == flags
        assert src.tell() == 0


def test_a_signal_in_the_end_of_file_call_leaves_the_rest_to_the_machinery(
    tmp_path, monkeypatch
):
    # cffi (PyPy) raises InterruptedError where os.sendfile retries itself.
    path = tmp_path / "f"
    path.write_bytes(payload(4096))
    calls = []
    real = _quick._move

    def move(*args):
        calls.append(args)
        if len(calls) == 2:
            raise InterruptedError(4, "Interrupted system call")
        return real(*args)

    monkeypatch.setattr(_quick, "_move", move)
    seen = _spy(monkeypatch)
    client, server = tcp_pair()
    with open(path, "rb") as src, client, server:
        assert bytepump.splice_to(src, client) == 4096
        assert seen == [_quick.Rest(4096, 4096, None)]
        assert src.tell() == 4096
        client.close()
        assert read_to_eof(server.fileno()) == payload(4096)
