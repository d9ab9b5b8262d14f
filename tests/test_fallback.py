"""The user-space fallback: TLS sockets, O_APPEND destinations, /proc files.

Same semantics as the splice path (count, offset, position, timeouts,
on_progress, flags), and ``SpliceUnsupported`` before any byte moves when
``fallback=False``.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time

import pytest
from conftest import (
    DST_KINDS,
    MIB,
    SRC_KINDS,
    WAIT,
    Sink,
    Source,
    flags_kept,
    payload,
    pieces,
    position,
    sha,
    tcp_pair,
)

import bytepump

splice_to = bytepump.splice_to
IDLE = 0.3
PREFIX = b"already there\n"


# --- TLS endpoints ---------------------------------------------------------


def tls_pair(cert: str, key: str, bufsize: int | None = None):
    """A connected (client, server) pair of ``ssl.SSLSocket``s on 127.0.0.1."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    raw_client, raw_server = tcp_pair(bufsize)
    raw_client.settimeout(WAIT)
    raw_server.settimeout(WAIT)
    box = {}

    def accept():
        box["server"] = server_ctx.wrap_socket(raw_server, server_side=True)

    handshake = threading.Thread(target=accept, daemon=True)
    handshake.start()
    try:
        client = client_ctx.wrap_socket(raw_client, server_hostname="localhost")
    finally:
        handshake.join(WAIT)
    return client, box["server"]


def close_notify(tls: ssl.SSLSocket) -> None:
    """Send TLS close_notify without waiting for the peer's (clean EOF)."""
    tls.setblocking(False)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            tls.unwrap()
            return
        except ssl.SSLWantReadError:
            return  # ours is out; the peer's reply is not needed
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], deadline - time.monotonic())
    raise AssertionError("could not send close_notify")


class TLSSource(Source):
    def rest(self) -> bytes:
        self.finish()
        self.obj.settimeout(WAIT)
        out = bytearray()
        while True:
            chunk = self.obj.recv(65536)
            if not chunk:
                return bytes(out)
            out += chunk


class TLSSink(Sink):
    def end(self) -> None:
        try:
            close_notify(self.obj)
        except ssl.SSLError:  # a write cut short by a timeout: end without it
            self.obj.shutdown(socket.SHUT_WR)


@pytest.fixture
def tls(endpoints, tls_cert):
    """Factory of TLS sources and sinks, torn down with ``endpoints``."""

    class Factory:
        @staticmethod
        def source(data=b"", *, hold_open=False, timeout=None, bufsize=None):
            mine, peer = tls_pair(*tls_cert, bufsize)
            endpoints.adopt(caller=mine, peer=peer)
            src = TLSSource("tls", mine.fileno(), mine, data)
            endpoints.adopt(event=src.released)

            def feed():
                for piece in pieces(data, [100_000]):
                    peer.sendall(piece)
                if hold_open:
                    src.released.wait(WAIT)
                close_notify(peer)

            endpoints.spawn(feed, "feed-tls")
            mine.settimeout(timeout)
            return src

        @staticmethod
        def sink(*, drain=True, timeout=None, bufsize=None):
            mine, peer = tls_pair(*tls_cert, bufsize)
            endpoints.adopt(caller=mine, peer=peer)
            dst = TLSSink(endpoints, "tls", mine.fileno(), mine)
            dst.peer = peer
            if drain:
                dst.drain()
            mine.settimeout(timeout)
            return dst

    return Factory


@pytest.fixture
def make(endpoints, tls):
    """``make.source(kind, ...)`` / ``make.sink(kind, ...)`` for any kind,
    ``tls`` included."""

    class Make:
        @staticmethod
        def source(kind, data=b"", **kwargs):
            if kind == "tls":
                return tls.source(data, **kwargs)
            return endpoints.source(kind, data, **kwargs)

        @staticmethod
        def sink(kind, **kwargs):
            if kind == "tls":
                return tls.sink(**kwargs)
            return endpoints.sink(kind, **kwargs)

    return Make


TLS_PAIRS = [("tls", dst) for dst in (*DST_KINDS, "tls")] + [
    (src, "tls") for src in SRC_KINDS
]


@pytest.mark.parametrize("timeout", [None, 0.0, 5.0], ids=["blocking", "nb", "t5"])
@pytest.mark.parametrize("size", [0, 1, 65537, 3 * MIB + 7])
@pytest.mark.parametrize(("src_kind", "dst_kind"), TLS_PAIRS)
def test_tls_plaintext(make, src_kind, dst_kind, size, timeout):
    data = payload(size)
    kw = {"timeout": timeout}
    src = make.source(src_kind, data, **(kw if src_kind == "tls" else {}))
    dst = make.sink(dst_kind, **(kw if dst_kind == "tls" else {}))
    with flags_kept(src.fd, dst.fd):
        n = splice_to(src.obj, dst.obj, WAIT)
    assert n == size
    for side in (src, dst):
        if side.kind == "tls":
            assert side.obj.gettimeout() == timeout
    got = dst.received()
    if got is not None:
        assert sha(got) == sha(data)


@pytest.mark.parametrize("count", [1, 16385, MIB + 1])
@pytest.mark.parametrize("dst_kind", ["file", "tcp"])
def test_tls_source_count_leaves_rest(make, dst_kind, count):
    data = payload(2 * MIB + 5)
    src = make.source("tls", data)
    dst = make.sink(dst_kind)
    assert splice_to(src.obj, dst.obj, WAIT, count=count) == count
    assert dst.received() == data[:count]
    assert sha(src.rest()) == sha(data[count:])


def test_tls_on_progress(make):
    data = payload(3 * MIB + 7)
    src = make.source("tls", data)
    dst = make.sink("file")
    calls = []

    def progress(n):
        calls.append(n)
        assert os.fstat(dst.fd).st_size == sum(calls)

    assert splice_to(src.obj, dst.obj, WAIT, on_progress=progress) == len(data)
    assert all(n > 0 for n in calls)
    assert sum(calls) == len(data)
    assert sha(dst.received()) == sha(data)


@pytest.mark.parametrize("side", ["src", "dst"])
def test_tls_without_fallback_is_unsupported(make, side):
    data = payload(65537)
    src = make.source("tls" if side == "src" else "pipe", data)
    dst = make.sink("tls" if side == "dst" else "file")
    timeouts = [s.obj.gettimeout() for s in (src, dst) if s.kind == "tls"]
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.SpliceUnsupported):
        splice_to(src.obj, dst.obj, WAIT, fallback=False)
    assert [s.obj.gettimeout() for s in (src, dst) if s.kind == "tls"] == timeouts
    assert dst.received() == b""
    assert sha(src.rest()) == sha(data)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", [None, 0.0, 5.0], ids=["blocking", "nb", "t5"])
def test_tls_slowloris(make, timeout):
    data = payload(16 * MIB)
    src = make.source("file", data)
    # Default socket buffers: one TLS write is all or nothing, and the
    # fallback's chunk must fit in them for anything to count as written.
    dst = make.sink("tls", drain=False, timeout=timeout)
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.DownstreamTimeout) as info:
        splice_to(src.obj, dst.obj, IDLE)
    assert dst.obj.gettimeout() == timeout
    sent = info.value.transferred
    assert 0 < sent < len(data)
    assert position(src.fd) == sent
    dst.obj.settimeout(WAIT)
    got = dst.received()
    # Every byte counted arrived; a record whose write was cut short by the
    # timeout may arrive too (TLS cannot take it back), but nothing else.
    assert got == data[: len(got)]
    assert len(got) >= sent


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", [None, 0.0, 5.0], ids=["blocking", "nb", "t5"])
def test_tls_silent_peer(make, timeout):
    data = payload(1000)
    src = make.source("tls", data, hold_open=True, timeout=timeout)
    dst = make.sink("file")
    begun = time.monotonic()
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.UpstreamTimeout) as info:
        splice_to(src.obj, dst.obj, IDLE)
    assert time.monotonic() - begun >= IDLE
    assert src.obj.gettimeout() == timeout
    assert info.value.transferred == len(data)
    assert dst.received() == data


# --- files the kernel will not splice: /proc ---------------------------------

PROC = ["/proc/self/cmdline", "/proc/self/environ"]


def proc_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("dst_kind", DST_KINDS)
@pytest.mark.parametrize("path", PROC)
def test_proc_file_copied_fully(endpoints, path, dst_kind):
    expected = proc_bytes(path)
    assert expected
    dst = endpoints.sink(dst_kind)
    with open(path, "rb", buffering=0) as src:
        assert os.fstat(src.fileno()).st_size == 0  # size comes from reading
        with flags_kept(src.fileno(), dst.fd):
            assert splice_to(src, dst.fd, WAIT) == len(expected)
        assert src.tell() == len(expected)
    got = dst.received()
    assert got is None or got == expected


def test_proc_file_offset_and_count(endpoints):
    expected = proc_bytes("/proc/self/environ")[3:53]
    dst = endpoints.sink("pipe")
    with open("/proc/self/environ", "rb") as src:
        assert splice_to(src, dst.fd, WAIT, offset=3, count=50) == len(expected)
        assert src.tell() == 3 + len(expected)
    assert dst.received() == expected


@pytest.mark.parametrize("dst_kind", ["file", "pipe", "tcp"])
@pytest.mark.parametrize("path", PROC)
def test_proc_file_without_fallback_is_unsupported(endpoints, path, dst_kind):
    dst = endpoints.sink(dst_kind)
    with open(path, "rb", buffering=0) as src:
        with (
            flags_kept(src.fileno(), dst.fd),
            pytest.raises(bytepump.SpliceUnsupported),
        ):
            splice_to(src, dst.fd, WAIT, fallback=False)
        assert src.tell() == 0
    assert dst.received() == b""


# --- O_APPEND destinations ---------------------------------------------------


@pytest.mark.parametrize("nonblocking", [False, True], ids=["blocking", "nonblocking"])
@pytest.mark.parametrize("size", [0, 1, 65537, 3 * MIB + 7])
@pytest.mark.parametrize("src_kind", SRC_KINDS)
def test_append_destination(endpoints, src_kind, size, nonblocking):
    data = payload(size)
    src = endpoints.source(src_kind, data, nonblocking=nonblocking)
    dst = endpoints.sink("file", prefix=PREFIX, append=True, nonblocking=nonblocking)
    with flags_kept(src.fd, dst.fd):
        assert splice_to(src.fd, dst.fd, WAIT) == size
    if src_kind == "file":
        assert position(src.fd) == size
    assert sha(dst.received()) == sha(PREFIX + data)


@pytest.mark.parametrize("src_kind", SRC_KINDS)
def test_append_destination_without_fallback_is_unsupported(endpoints, src_kind):
    data = payload(65537)
    src = endpoints.source(src_kind, data)
    dst = endpoints.sink("file", prefix=PREFIX, append=True)
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.SpliceUnsupported):
        splice_to(src.fd, dst.fd, WAIT, fallback=False)
    assert dst.received() == PREFIX
    if src_kind == "file":
        assert position(src.fd) == 0
    assert sha(src.rest()) == sha(data)


@pytest.mark.parametrize("count", [1, 4095, 65537, MIB + 1])
@pytest.mark.parametrize("src_kind", ["pipe", "tcp", "unix"])
def test_append_destination_count_leaves_rest(endpoints, src_kind, count):
    data = payload(2 * MIB + 5)
    src = endpoints.source(src_kind, data, chunks=[1000, 70_000])
    dst = endpoints.sink("file", prefix=PREFIX, append=True)
    assert splice_to(src.fd, dst.fd, WAIT, count=count) == count
    assert dst.received() == PREFIX + data[:count]
    assert sha(src.rest()) == sha(data[count:])


@pytest.mark.parametrize(
    ("kwargs", "start", "length"),
    [({}, 10, None), ({"count": 100}, 10, 100), ({"offset": 7, "count": 9}, 7, 9)],
)
def test_append_destination_file_position(endpoints, kwargs, start, length):
    data = payload(200 * 1024)
    src = endpoints.source("file", data)
    dst = endpoints.sink("file", append=True)
    with open(src.path, "rb") as f:
        f.read(10)
        n = splice_to(f, dst.fd, WAIT, **kwargs)
        expected = data[start:] if length is None else data[start : start + length]
        assert n == len(expected)
        assert f.tell() == start + n
        assert f.read(3) == data[start + n : start + n + 3]
    assert dst.received() == expected


class Stop(Exception):
    pass


def test_append_destination_on_progress(endpoints):
    data = payload(3 * MIB + 7)
    src = endpoints.source("file", data)
    dst = endpoints.sink("file", prefix=PREFIX, append=True)
    calls = []

    def progress(n):
        calls.append(n)
        assert os.fstat(dst.fd).st_size == len(PREFIX) + sum(calls)
        if len(calls) == 2:
            raise Stop

    with open(src.path, "rb") as f:
        f.read(10)
        with flags_kept(src.fd, dst.fd), pytest.raises(Stop) as info:
            splice_to(f, dst.fd, WAIT, on_progress=progress)
        assert all(n > 0 for n in calls)
        assert info.value.transferred == sum(calls)
        assert f.tell() == 10 + sum(calls)
    assert dst.received() == PREFIX + data[10 : 10 + sum(calls)]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("src_kind", ["pipe", "tcp", "unix"])
def test_append_destination_silent_source(endpoints, src_kind):
    data = payload(1000)
    src = endpoints.source(src_kind, data, hold_open=True)
    dst = endpoints.sink("file", append=True)
    begun = time.monotonic()
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.UpstreamTimeout) as info:
        splice_to(src.fd, dst.fd, IDLE)
    assert time.monotonic() - begun >= IDLE
    assert info.value.transferred == len(data)
    assert dst.received() == data
