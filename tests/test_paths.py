"""The kernel's shortest path per pair (DESIGN.md §1, bytepump._paths), the
fallbacks while nothing was written, and nothing held back at the end.

Which syscalls carry a pair is observed from outside: a subprocess makes
the transfer under ``strace -f -e trace=sendfile,copy_file_range,splice``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MIB, WAIT, payload, position, sha, tcp_pair

import bytepump
from bytepump import _libc

ROOT = Path(__file__).resolve().parents[1]
SIZE = 100_000

# The transfer, alone in a process: SRC and DST are "file:PATH",
# "append:PATH", "proc:PATH" (a source read from its start), "pipe" or "tcp".
# The helper threads never splice.
SCRIPT = r"""
import os, socket, sys, threading
import bytepump

src_spec, dst_spec, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = os.urandom(size)


def tcp():
    listener = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(listener.getsockname())
    b, _ = listener.accept()
    listener.close()
    return a, b


def feed(write, close):
    def run():
        write(data)
        close()
    threading.Thread(target=run).start()


def drain(read):
    def run():
        while read(1 << 20):
            pass
    thread = threading.Thread(target=run)
    thread.start()
    return thread


kind, _, path = src_spec.partition(":")
if kind in ("file", "proc"):
    if kind == "file":
        with open(path, "wb") as f:
            f.write(data)
    src = open(path, "rb")
elif kind == "pipe":
    r, w = os.pipe()
    src = os.fdopen(r, "rb", buffering=0)
    writer = os.fdopen(w, "wb", buffering=0)
    feed(writer.write, writer.close)
else:
    src, peer = tcp()
    feed(peer.sendall, peer.close)

kind, _, path = dst_spec.partition(":")
drained = None
if kind in ("file", "append"):
    dst = open(path, "ab" if kind == "append" else "wb")
elif kind == "pipe":
    r, w = os.pipe()
    dst = os.fdopen(w, "wb", buffering=0)
    drained = drain(os.fdopen(r, "rb", buffering=0).read)
else:
    dst, peer = tcp()
    drained = drain(peer.recv)

n = bytepump.splice_to(src, dst, 30)
dst.close()
if drained:
    drained.join()
print(n)
"""

CALL = re.compile(
    r"^(?:\[pid\s+\d+\]\s+)?(sendfile|copy_file_range|splice)\(.*=\s*(.*)$"
)


def traced(src: str, dst: str, size: int = SIZE) -> tuple[int, list[tuple[str, str]]]:
    """Run one transfer under strace: (bytes moved, [(syscall, result)])."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    command = ["strace", "-f", "-qq", "-e", "trace=sendfile,copy_file_range,splice"]
    command += [sys.executable, "-c", SCRIPT, src, dst, str(size)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=WAIT, cwd=ROOT, check=True
    )
    calls = []
    for line in done.stderr.splitlines():
        found = CALL.match(line)
        if found:
            calls.append((found[1], found[2]))
    return int(done.stdout), calls


def names(calls: list[tuple[str, str]]) -> set[str]:
    return {name for name, _ in calls}


@pytest.fixture
def shm_dir():
    """A directory on tmpfs (/dev/shm), removed afterwards."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    path = Path(f"/dev/shm/bytepump-test-{os.getpid()}-{time.monotonic_ns()}")
    path.mkdir()
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [
        ("file", "tcp", {"sendfile"}),
        ("file", "file", {"copy_file_range"}),
        ("file", "pipe", {"splice"}),
        ("pipe", "file", {"splice"}),
        ("pipe", "tcp", {"splice"}),
        ("tcp", "file", {"splice"}),
        ("tcp", "tcp", {"splice"}),
        ("file", "append", set()),
    ],
)
def test_each_pair_takes_its_path(tmp_path, src, dst, expected):
    spec = {
        "file": lambda name: f"file:{tmp_path / name}",
        "append": lambda name: f"append:{tmp_path / name}",
    }
    src_spec = spec.get(src, lambda _: src)("src")
    dst_spec = spec.get(dst, lambda _: dst)("dst")
    n, calls = traced(src_spec, dst_spec)
    assert n == SIZE
    assert names(calls) == expected, calls
    assert not [c for c in calls if c[1].startswith("-1") and "EAGAIN" not in c[1]]


def test_tmpfs_into_another_file_system_falls_back_to_splice(tmp_path, shm_dir):
    if os.stat(shm_dir).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm and the test directory share a file system")
    n, calls = traced(f"file:{shm_dir / 'src'}", f"file:{tmp_path / 'dst'}")
    assert n == SIZE
    assert calls[0][0] == "copy_file_range"
    assert "EXDEV" in calls[0][1]
    assert names(calls[1:]) == {"splice"}


@pytest.mark.parametrize("path", ["/proc/1/cmdline", "/proc/version"])
def test_proc_files_are_read_to_their_end(tmp_path, path):
    # st_size 0: no sendfile, no copy_file_range; splice where the file
    # splices (/proc/version), else (/proc/1/cmdline) the user-space copy.
    with open(path, "rb") as f:
        expected = len(f.read())
    n, calls = traced(f"proc:{path}", "tcp")
    assert n == expected
    assert names(calls) <= {"splice"}


@pytest.mark.parametrize("dst_kind", ["file", "append", "tcp"])
def test_tmpfs_source_arrives_intact(endpoints, shm_dir, dst_kind):
    data = payload(3 * MIB + 7)
    source = shm_dir / "src"
    source.write_bytes(data)
    append = dst_kind == "append"
    dst = endpoints.sink("file" if append else dst_kind, append=append)
    with open(source, "rb") as f:
        f.read(10)
        assert bytepump.splice_to(f, dst.fd, WAIT) == len(data) - 10
        assert f.tell() == len(data)
    assert sha(dst.received()) == sha(data[10:])


def test_file_position_after_each_path(endpoints, tmp_path):
    data = payload(200_000)
    source = tmp_path / "src"
    source.write_bytes(data)
    fd = os.open(source, os.O_RDONLY)
    try:
        for dst_kind in ("tcp", "file", "pipe", "unix"):
            os.lseek(fd, 1000, os.SEEK_SET)
            dst = endpoints.sink(dst_kind)
            assert bytepump.splice_to(fd, dst.fd, WAIT, count=5000) == 5000
            assert position(fd) == 6000
            assert bytepump.splice_to(fd, dst.fd, WAIT, offset=10, count=7) == 7
            assert position(fd) == 17
            assert dst.received() == data[1000:6000] + data[10:17]
    finally:
        os.close(fd)


# --- nothing held back at the end --------------------------------------------

HEAD = b"H" * 200
BODY = payload(4096)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("nodelay", [0, 1])
def test_a_small_body_after_a_head_is_not_held_back(tmp_path, nodelay):
    server, client = tcp_pair()
    body = tmp_path / "body"
    body.write_bytes(BODY)
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, nodelay)
    rounds: list[float] = []
    failures: list[BaseException] = []

    def client_side():
        # A client that keeps the connection open and only receives between
        # its requests: it delays its acknowledgements.
        try:
            for _ in range(20):
                begun = time.monotonic()
                client.sendall(b"GET\n")
                want = len(HEAD) + len(BODY)
                got = bytearray()
                while len(got) < want:
                    chunk = client.recv(want - len(got))
                    assert chunk, "server closed"
                    got += chunk
                rounds.append(time.monotonic() - begun)
                assert bytes(got) == HEAD + BODY
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=client_side, daemon=True)
    thread.start()
    with server, client, open(body, "rb") as f:
        server.settimeout(WAIT)
        for _ in range(20):
            request = b""
            while not request.endswith(b"\n"):
                request += server.recv(4)
            server.sendall(HEAD)
            f.seek(0)
            assert bytepump.splice_to(f, server, WAIT) == len(BODY)
            assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == nodelay
        thread.join(WAIT)
    assert not failures, failures
    assert len(rounds) == 20
    # A bound on a protocol behaviour (a delayed ACK is ~40 ms), not a speed.
    assert statistics.median(rounds) < 0.020, rounds


def test_a_corked_socket_is_respected(endpoints):
    server, client = tcp_pair()
    src = endpoints.source("file", BODY)
    with server, client:
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        server.sendall(HEAD)
        assert bytepump.splice_to(src.fd, server, WAIT) == len(BODY)
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert _libc.has_unsent(server.fileno())  # still held, as asked
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        client.settimeout(WAIT)
        got = b""
        while len(got) < len(HEAD) + len(BODY):
            got += client.recv(65536)
        assert got == HEAD + BODY
