"""bytepump.splice_to: the public contract of DESIGN.md §1 over every fd pair."""

from __future__ import annotations

import errno
import io
import math
import os
import signal
import socket
import threading
import time

import pytest
from conftest import (
    DST_KINDS,
    MIB,
    PATHS,
    SIZES,
    SRC_KINDS,
    WAIT,
    Endpoints,
    fill,
    flags_kept,
    forced_path,
    payload,
    pieces,
    position,
    sha,
    unix_pair,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bytepump
from bytepump._pump import MAX_CALL

splice_to = bytepump.splice_to
STREAMS = ("pipe", "tcp", "unix")
"""Source kinds that can run dry without ending: pipes and sockets."""
IDLE = 0.3
"""Inactivity timeout for the tests that expect one to strike."""


def test_error_classes():
    assert issubclass(bytepump.Timeout, TimeoutError)
    assert issubclass(bytepump.UpstreamTimeout, bytepump.Timeout)
    assert issubclass(bytepump.DownstreamTimeout, bytepump.Timeout)
    assert issubclass(bytepump.SpliceUnsupported, OSError)


# --- every pair ------------------------------------------------------------


@pytest.mark.parametrize("nonblocking", [False, True], ids=["blocking", "nonblocking"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dst_kind", DST_KINDS)
@pytest.mark.parametrize("src_kind", SRC_KINDS)
def test_every_pair(endpoints, src_kind, dst_kind, size, nonblocking):
    data = payload(size)
    src = endpoints.source(src_kind, data, nonblocking=nonblocking)
    dst = endpoints.sink(dst_kind, nonblocking=nonblocking)
    with flags_kept(src.fd, dst.fd):
        n = splice_to(src.fd, dst.fd, WAIT)
    assert n == size
    if src_kind == "file":
        assert position(src.fd) == size
    got = dst.received()
    if got is not None:
        assert len(got) == size
        assert sha(got) == sha(data)


@pytest.mark.parametrize("timeout", [None, 2, 7.5, math.inf])
def test_timeout_values_accepted(endpoints, timeout):
    data = payload(65537)
    src = endpoints.source("tcp", data, chunks=[1000, 20000])
    dst = endpoints.sink("unix")
    assert splice_to(src.fd, dst.fd, timeout) == len(data)
    assert dst.received() == data


@pytest.mark.timeout(20)
def test_infinite_timeout_is_no_limit(endpoints):
    # One byte, then silence until it has been delivered: the transfer
    # waits on its source with no limit, then sees the end of the stream.
    src = endpoints.source("tcp", b"x", hold_open=True)
    dst = endpoints.sink("file")
    with flags_kept(src.fd, dst.fd):
        n = splice_to(src.fd, dst.fd, math.inf, on_progress=lambda n: src.finish())
    assert n == 1
    assert dst.received() == b"x"


@pytest.mark.parametrize(
    ("src_timeout", "dst_timeout"), [(None, None), (0.0, 2.5), (2.5, 0.0)]
)
def test_socket_objects_keep_their_timeout(endpoints, src_timeout, dst_timeout):
    data = payload(3 * MIB + 7)
    src = endpoints.source("tcp", data)
    dst = endpoints.sink("unix")
    src.obj.settimeout(src_timeout)
    dst.obj.settimeout(dst_timeout)
    with flags_kept(src.fd, dst.fd):
        assert splice_to(src.obj, dst.obj, timeout=WAIT) == len(data)
    assert (src.obj.gettimeout(), dst.obj.gettimeout()) == (src_timeout, dst_timeout)
    dst.obj.settimeout(WAIT)
    assert sha(dst.received()) == sha(data)


# --- a property over sizes, count, offset, position and chunking ------------

BLOB = payload(300_000)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    src_kind=st.sampled_from(SRC_KINDS),
    dst_kind=st.sampled_from(DST_KINDS),
    size=st.integers(0, len(BLOB)),
    writes=st.lists(st.integers(1, 70_000), min_size=1, max_size=4),
    read_chunk=st.integers(1, 100_000),
    nonblocking=st.booleans(),
    path=st.sampled_from(PATHS),
    choices=st.data(),
)
def test_property(
    tmp_path, src_kind, dst_kind, size, writes, read_chunk, nonblocking, path, choices
):
    data = BLOB[:size]
    count = choices.draw(st.none() | st.integers(0, size + 10), label="count")
    pos = offset = None
    if src_kind == "file":
        pos = choices.draw(st.integers(0, size), label="position")
        offset = choices.draw(st.none() | st.integers(0, size + 10), label="offset")
    with Endpoints(tmp_path) as made, forced_path(path):
        src = made.source(src_kind, data, chunks=writes, nonblocking=nonblocking)
        dst = made.sink(dst_kind, chunk=read_chunk, nonblocking=nonblocking)
        if pos is not None:
            os.lseek(src.fd, pos, os.SEEK_SET)
        start = offset if offset is not None else (pos or 0)
        expected = data[start:]
        if count is not None:
            expected = expected[:count]
        with flags_kept(src.fd, dst.fd):
            n = splice_to(src.fd, dst.fd, WAIT, count=count, offset=offset)
        assert n == len(expected)
        if src_kind == "file":
            assert position(src.fd) == (start + n if n else pos)
        else:
            assert src.rest() == data[n:]
        got = dst.received()
        if got is not None:
            assert got == expected


# --- count -------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4095, 65537, MIB + 1, 5 * MIB])
@pytest.mark.parametrize("dst_kind", ["file", "pipe", "tcp"])
@pytest.mark.parametrize("src_kind", STREAMS)
def test_count_takes_nothing_more_from_a_stream(endpoints, src_kind, dst_kind, count):
    data = payload(2 * MIB + 5)
    src = endpoints.source(src_kind, data)
    dst = endpoints.sink(dst_kind)
    n = splice_to(src.fd, dst.fd, WAIT, count=count)
    assert n == min(count, len(data))
    assert dst.received() == data[:n]
    assert sha(src.rest()) == sha(data[n:])


@pytest.mark.parametrize("src_kind", SRC_KINDS)
def test_count_zero_returns_at_once(endpoints, src_kind):
    data = payload(4095)
    # A source with no end: count=0 must not wait for it.
    src = endpoints.source(src_kind, data, hold_open=True)
    dst = endpoints.sink("file")
    begun = time.monotonic()
    with flags_kept(src.fd, dst.fd):
        assert splice_to(src.fd, dst.fd, WAIT, count=0) == 0
    assert time.monotonic() - begun < 1
    assert dst.received() == b""
    if src_kind == "file":
        assert position(src.fd) == 0
    assert src.rest() == data


# --- offset and the file-position rule -------------------------------------


@pytest.fixture
def source_file(tmp_path):
    """A 200 KiB file of random bytes: (path, data)."""
    data = payload(200 * 1024)
    path = tmp_path / "source"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize(
    ("kwargs", "start", "length"),
    [
        ({}, 10, None),
        ({"count": 100}, 10, 100),
        ({"count": 150_000}, 10, 150_000),
        ({"offset": 1000, "count": 10}, 1000, 10),
        ({"offset": 0}, 0, None),
        ({"offset": 5}, 5, None),
    ],
    ids=["to-eof", "count", "count-big", "offset-count", "offset-0", "offset"],
)
@pytest.mark.parametrize("dst_kind", ["pipe", "tcp", "file"])
def test_file_object_position(
    endpoints, source_file, path, dst_kind, kwargs, start, length
):
    source, data = source_file
    dst = endpoints.sink(dst_kind)
    with open(source, "rb") as f:
        assert f.read(10) == data[:10]  # the read buffer holds far more
        n = splice_to(f, dst.fd, WAIT, **kwargs)
        expected = data[start:] if length is None else data[start : start + length]
        assert n == len(expected)
        assert f.tell() == start + n
        assert f.read(5) == data[start + n : start + n + 5]
    assert dst.received() == expected


@pytest.mark.parametrize(
    "kwargs", [{"count": 0}, {"offset": 200 * 1024}, {"offset": 10**9}]
)
def test_file_object_position_unchanged_when_nothing_written(
    endpoints, source_file, kwargs
):
    path, data = source_file
    dst = endpoints.sink("file")
    with open(path, "rb") as f:
        f.read(10)
        assert splice_to(f, dst.fd, WAIT, **kwargs) == 0
        assert f.tell() == 10
        assert f.read(5) == data[10:15]
    assert dst.received() == b""


def test_file_object_at_end(endpoints, source_file):
    path, data = source_file
    dst = endpoints.sink("tcp")
    with open(path, "rb") as f:
        f.read()
        assert splice_to(f, dst.fd, WAIT) == 0
        assert f.tell() == len(data)
    assert dst.received() == b""


@pytest.mark.parametrize("dst_kind", ["unix", "tcp", "file"])
def test_raw_descriptor_position(endpoints, source_file, path, dst_kind):
    source, data = source_file
    dst = endpoints.sink(dst_kind)
    fd = os.open(source, os.O_RDONLY)
    try:
        os.lseek(fd, 7, os.SEEK_SET)
        assert splice_to(fd, dst.fd, WAIT, count=70_000) == 70_000
        assert position(fd) == 70_007
        assert splice_to(fd, dst.fd, WAIT, offset=100, count=3) == 3
        assert position(fd) == 103
        assert splice_to(fd, dst.fd, WAIT) == len(data) - 103
        assert position(fd) == len(data)
    finally:
        os.close(fd)
    assert dst.received() == data[7:70_007] + data[100:103] + data[103:]


# --- flush first -----------------------------------------------------------


@pytest.mark.parametrize("dst_kind", ["file", "pipe", "tcp", "unix"])
def test_destination_flushed_first(endpoints, dst_kind):
    data = payload(65537)
    src = endpoints.source("file", data)
    dst = endpoints.sink(dst_kind)
    with os.fdopen(dst.fd, "wb", closefd=False) as writer:
        writer.write(b"pending head ")
        assert splice_to(src.fd, writer, WAIT) == len(data)
        writer.write(b" tail")
    assert dst.received() == b"pending head " + data + b" tail"


# --- timeouts --------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("dst_kind", ["tcp", "unix"])
@pytest.mark.parametrize("src_kind", ["file", "pipe", "unix"])
def test_slowloris_downstream_timeout(endpoints, path, src_kind, dst_kind):
    data = payload(8 * MIB)
    src = endpoints.source(src_kind, data)
    dst = endpoints.sink(dst_kind, drain=False, bufsize=4096)  # never reads
    skip, target = 0, src.fd
    if src_kind == "file":
        target = open(src.path, "rb")  # noqa: SIM115
        skip = len(target.read(10))
    begun = time.monotonic()
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.DownstreamTimeout) as info:
        splice_to(target, dst.fd, IDLE)
    assert time.monotonic() - begun >= IDLE
    assert isinstance(info.value, TimeoutError)
    sent = info.value.transferred
    assert 0 < sent < len(data) - skip
    if src_kind == "file":
        assert target.tell() == skip + sent
        target.close()
    # Exactly the bytes counted reached dst: none lost, none extra.
    assert sha(dst.received()) == sha(data[skip : skip + sent])


@pytest.mark.timeout(20)
@pytest.mark.parametrize("dst_kind", ["file", "pipe", "tcp"])
@pytest.mark.parametrize("src_kind", STREAMS)
def test_silent_peer_upstream_timeout(endpoints, src_kind, dst_kind):
    data = payload(1000)
    src = endpoints.source(src_kind, data, hold_open=True)
    dst = endpoints.sink(dst_kind)
    begun = time.monotonic()
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.UpstreamTimeout) as info:
        splice_to(src.fd, dst.fd, IDLE)
    assert time.monotonic() - begun >= IDLE
    # What was read is delivered before waiting for more.
    assert info.value.transferred == len(data)
    assert dst.received() == data


@pytest.mark.timeout(20)
def test_timeout_is_for_inactivity_not_the_whole_transfer(endpoints):
    data = payload(8000)
    mine, peer = unix_pair()
    endpoints.adopt(caller=mine, peer=peer)
    dst = endpoints.sink("file")
    delivered = threading.Event()

    def feed():
        for piece in pieces(data, [1000]):
            peer.sendall(piece)
            delivered.wait(WAIT)
            delivered.clear()
            time.sleep(IDLE / 3)  # pacing, not synchronisation: idle < timeout
        peer.shutdown(socket.SHUT_WR)

    endpoints.spawn(feed, "paced")
    begun = time.monotonic()
    n = splice_to(mine, dst.fd, IDLE, on_progress=lambda n: delivered.set())
    assert time.monotonic() - begun > 2 * IDLE  # far longer than the timeout
    assert n == len(data)
    assert dst.received() == data


@pytest.fixture
def pty(endpoints):
    """A pseudo-terminal nobody types into nor reads: (master, slave)."""
    master, slave = os.openpty()
    endpoints.adopt(caller=os.fdopen(slave, "rb", buffering=0))
    endpoints.adopt(peer=os.fdopen(master, "rb", buffering=0))
    return master, slave


@pytest.mark.timeout(10)
@pytest.mark.parametrize("nonblocking", [False, True], ids=["blocking", "nonblocking"])
def test_timeout_holds_for_a_silent_terminal(endpoints, pty, nonblocking):
    _, slave = pty
    os.set_blocking(slave, not nonblocking)
    dst = endpoints.sink("file")
    begun = time.monotonic()
    with flags_kept(slave, dst.fd), pytest.raises(bytepump.UpstreamTimeout) as info:
        splice_to(slave, dst.fd, IDLE)
    assert IDLE <= time.monotonic() - begun < 5
    assert info.value.transferred == 0


@pytest.mark.timeout(10)
def test_timeout_holds_for_a_terminal_nobody_reads(pty):
    _, slave = pty  # what is written to it waits for a read of the master
    with open("/dev/zero", "rb", buffering=0) as zero:
        begun = time.monotonic()
        with (
            flags_kept(zero.fileno(), slave),
            pytest.raises(bytepump.DownstreamTimeout) as info,
        ):
            splice_to(zero, slave, IDLE, count=64 * MIB)
    assert IDLE <= time.monotonic() - begun < 5
    assert 0 < info.value.transferred < 64 * MIB


@pytest.mark.timeout(10)
@pytest.mark.parametrize("src_kind", STREAMS)
def test_timeout_zero_does_not_wait_for_source(endpoints, src_kind):
    src = endpoints.source(src_kind, hold_open=True)
    dst = endpoints.sink("file")
    begun = time.monotonic()
    with flags_kept(src.fd, dst.fd), pytest.raises(bytepump.UpstreamTimeout) as info:
        splice_to(src.fd, dst.fd, 0)
    assert time.monotonic() - begun < 0.5
    assert info.value.transferred == 0


@pytest.mark.timeout(10)
@pytest.mark.parametrize("src_kind", ["file", "pipe"])
def test_timeout_zero_does_not_wait_for_destination(endpoints, src_kind):
    if src_kind == "file":
        src = endpoints.source("file", payload(MIB))
        src_fd = src.fd
    else:  # data ready in the pipe before the call, and no end of file
        r, w = endpoints.pipe()
        w.write(payload(65536))
        src_fd = r.fileno()
    dst = endpoints.sink("unix", drain=False)
    fill(dst.obj)
    begun = time.monotonic()
    with flags_kept(src_fd, dst.fd), pytest.raises(bytepump.DownstreamTimeout):
        splice_to(src_fd, dst.fd, 0)
    assert time.monotonic() - begun < 0.5


@pytest.mark.parametrize("dst_kind", ["file", "devnull", "pipe"])
def test_timeout_zero_moves_what_is_ready(endpoints, dst_kind):
    data = payload(4095)  # fits in any pipe
    r, w = endpoints.pipe()
    w.write(data)
    w.close()
    dst = endpoints.sink(dst_kind)
    assert splice_to(r, dst.fd, 0) == len(data)
    src = endpoints.source("file", data)
    assert splice_to(src.fd, dst.fd, 0) == len(data)
    got = dst.received()
    assert got is None or got == data + data


@pytest.mark.timeout(20)
@pytest.mark.parametrize("dst_kind", ["pipe", "tcp", "unix"])
@pytest.mark.parametrize("src_kind", ["file", "tcp"])
def test_peer_closing_mid_transfer(endpoints, path, src_kind, dst_kind):
    data = payload(8 * MIB)
    src = endpoints.source(src_kind, data)
    dst = endpoints.sink(dst_kind, close_after=65536, bufsize=65536)
    with (
        flags_kept(src.fd, dst.fd),
        pytest.raises((BrokenPipeError, ConnectionResetError)) as info,
    ):
        splice_to(src.fd, dst.fd, WAIT)
    dst.drainer.join(WAIT)
    assert len(dst.buffer) <= info.value.transferred < len(data)
    assert dst.buffer == data[: len(dst.buffer)]
    if src_kind == "file":
        assert position(src.fd) == info.value.transferred


@pytest.mark.timeout(20)
@pytest.mark.parametrize("dst_kind", ["file", "tcp"])
def test_source_reset_mid_transfer(endpoints, dst_kind):
    data = payload(65537)
    src = endpoints.source("tcp", data, reset=True)
    dst = endpoints.sink(dst_kind)
    with flags_kept(src.fd, dst.fd), pytest.raises(ConnectionResetError) as info:
        splice_to(src.fd, dst.fd, WAIT)
    assert 0 <= info.value.transferred <= len(data)
    assert dst.received() == data[: info.value.transferred]


@pytest.mark.parametrize("dst_kind", ["file", "tcp", "unix", "pipe"])
def test_no_stale_bytes_after_an_error(endpoints, dst_kind):
    # A transfer that fails with bytes still in its intermediate pipe...
    src = endpoints.source("file", payload(8 * MIB))
    dst = endpoints.sink("unix", drain=False)
    fill(dst.obj)
    with pytest.raises(bytepump.DownstreamTimeout):
        splice_to(src.fd, dst.fd, 0)
    # ...must not hand them to the next transfers that take a pipe.
    for i in range(3):
        data = payload(65537 + i)
        src = endpoints.source("file", data)
        sink = endpoints.sink(dst_kind)
        assert splice_to(src.fd, sink.fd, WAIT) == len(data)
        assert sink.received() == data


@pytest.mark.parametrize("size", [65536, 2 * 65536, MIB, 2 * MIB])
@pytest.mark.parametrize("dst_kind", ["pipe", "tcp"])
def test_end_of_file_while_the_pipe_is_full(endpoints, dst_kind, size):
    # A splice into a full pipe answers EAGAIN even at end of file; with a
    # slow reader and a source that ends just as a pipe fills, that EAGAIN
    # must lead to waiting for the reader, not to a stall or a spin.
    data = payload(size)
    src = endpoints.source("file", data)
    dst = endpoints.sink(dst_kind, chunk=4096)
    assert splice_to(src.fd, dst.fd, WAIT) == size
    assert sha(dst.received()) == sha(data)


# --- on_progress -------------------------------------------------------------


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"),
    [("file", "file"), ("file", "tcp"), ("tcp", "pipe"), ("pipe", "unix")],
)
def test_on_progress_adds_up(endpoints, path, src_kind, dst_kind):
    data = payload(3 * MIB + 7)
    src = endpoints.source(src_kind, data)
    dst = endpoints.sink(dst_kind)
    calls = []

    def progress(n):
        calls.append(n)
        if dst.path is not None:  # the bytes are already in dst
            assert os.fstat(dst.fd).st_size == sum(calls)

    assert splice_to(src.fd, dst.fd, WAIT, on_progress=progress) == len(data)
    assert calls
    assert all(isinstance(n, int) and n > 0 for n in calls)
    assert sum(calls) == len(data)
    assert sha(dst.received()) == sha(data)


class Stop(Exception):
    pass


@pytest.mark.parametrize("dst_kind", ["file", "tcp"])
@pytest.mark.parametrize("src_kind", ["file", "unix"])
def test_on_progress_exception_propagates(endpoints, path, src_kind, dst_kind):
    # More than one call of any path moves (16 MiB at most), so the first
    # on_progress call stops the transfer short, whatever its chunk size.
    data = payload(MAX_CALL + 4 * MIB + 7)
    src = endpoints.source(src_kind, data)
    dst = endpoints.sink(dst_kind)
    calls = []

    def progress(n):
        calls.append(n)
        raise Stop

    with flags_kept(src.fd, dst.fd), pytest.raises(Stop) as info:
        splice_to(src.fd, dst.fd, WAIT, on_progress=progress)
    assert len(calls) == 1
    assert 0 < calls[0] < len(data)
    assert info.value.transferred == calls[0]
    if src_kind == "file":
        assert position(src.fd) == calls[0]
    assert sha(dst.received()) == sha(data[: calls[0]])


def test_on_progress_at_least_every_16_mib(endpoints, path):
    data = payload(64 * MIB)
    src = endpoints.source("file", data)
    dst = endpoints.sink("file")
    calls = []
    assert splice_to(src.fd, dst.fd, WAIT, on_progress=calls.append) == len(data)
    assert len(calls) >= 4
    assert max(calls) <= MAX_CALL
    assert sha(dst.received()) == sha(data)


# --- KeyboardInterrupt --------------------------------------------------------


@pytest.mark.timeout(10)
def test_keyboard_interrupt_stops_a_waiting_transfer(endpoints):
    assert threading.current_thread() is threading.main_thread()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    src = endpoints.source("tcp", b"x", hold_open=True)  # one byte, then silence
    dst = endpoints.sink("file")
    moved = threading.Event()

    def interrupt():
        # Once the first byte has been delivered, the transfer waits on src.
        if moved.wait(WAIT):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    helper = threading.Thread(target=interrupt, daemon=True)
    helper.start()
    try:
        with flags_kept(src.fd, dst.fd), pytest.raises(KeyboardInterrupt) as info:
            splice_to(src.fd, dst.fd, None, on_progress=lambda n: moved.set())
    finally:
        moved.set()
        helper.join(WAIT)
    assert info.value.transferred == 1
    assert dst.received() == b"x"


# --- bad input -----------------------------------------------------------------


def _closed_fd():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def _closed_file(path):
    f = open(path, "rb")  # noqa: SIM115
    f.close()
    return f


def _directory(ctx):
    fd = os.open(ctx.tmp, os.O_RDONLY | os.O_DIRECTORY)
    ctx.cleanup.append(lambda: os.close(fd))
    return fd


class BadInput:
    """What the bad-input cases are built from: a pipe and a file source, each
    holding ``data``, and a file sink."""

    def __init__(self, endpoints, tmp):
        self.tmp = tmp
        self.data = payload(4095)
        self.pipe = endpoints.source("pipe", self.data)
        self.file = endpoints.source("file", self.data)
        self.dst = endpoints.sink("file")
        self.cleanup = []


def _appending_to(ctx):
    f = open(ctx.file.path, "ab")  # noqa: SIM115
    ctx.cleanup.append(f.close)
    return f


def _pipe_ends(ctx):
    r, w = os.pipe()
    ctx.cleanup += [lambda: os.close(r), lambda: os.close(w)]
    return r, w


class _Fileno:
    def __init__(self, value):
        self.value = value

    def fileno(self):
        return self.value


# id -> (build(ctx) -> (src, dst, kwargs), exception, errno or None)
BAD = {
    "same-file-appended": (lambda c: (c.file.obj, _appending_to(c), {}), ValueError),
    "same-file-two-objects": (
        lambda c: (open(c.file.path, "rb"), c.file.fd, {}),  # noqa: SIM115
        ValueError,
    ),
    "same-pipe-both-ends": (lambda c: (*_pipe_ends(c), {}), ValueError),
    "timeout-nan": (lambda c: (c.pipe.fd, c.dst.fd, {"timeout": math.nan}), ValueError),
    "offset-past-kernel": (
        lambda c: (c.file.fd, c.dst.fd, {"offset": 2**63}),
        ValueError,
    ),
    "count-past-kernel": (
        lambda c: (c.pipe.fd, c.dst.fd, {"count": 2**63}),
        ValueError,
    ),
    "fd-no-c-int": (lambda c: (2**31, c.dst.fd, {}), ValueError),
    "fileno-no-c-int": (lambda c: (c.pipe.fd, _Fileno(2**32 + 1), {}), ValueError),
    "fileno-bool": (lambda c: (_Fileno(True), c.dst.fd, {}), TypeError),
    "fileno-str": (lambda c: (c.pipe.fd, _Fileno("1"), {}), TypeError),
    "src-no-fileno": (lambda c: (object(), c.dst.fd, {}), TypeError),
    "dst-no-fileno": (lambda c: (c.pipe.fd, object(), {}), TypeError),
    "src-str": (lambda c: ("/etc/hostname", c.dst.fd, {}), TypeError),
    "src-bytesio": (lambda c: (io.BytesIO(b"abc"), c.dst.fd, {}), TypeError),
    "dst-bytesio": (lambda c: (c.pipe.fd, io.BytesIO(), {}), TypeError),
    "count-negative": (lambda c: (c.pipe.fd, c.dst.fd, {"count": -1}), ValueError),
    "offset-negative": (lambda c: (c.file.fd, c.dst.fd, {"offset": -1}), ValueError),
    "timeout-negative": (
        lambda c: (c.pipe.fd, c.dst.fd, {"timeout": -0.001}),
        ValueError,
    ),
    "same-fd": (lambda c: (c.pipe.fd, c.pipe.fd, {}), ValueError),
    "same-fd-file-object": (lambda c: (c.dst.obj, c.dst.fd, {}), ValueError),
    "closed-file-object-src": (
        lambda c: (_closed_file(c.file.path), c.dst.fd, {}),
        ValueError,
    ),
    "closed-file-object-dst": (
        lambda c: (c.pipe.fd, _closed_file(c.file.path), {}),
        ValueError,
    ),
    "offset-on-pipe": (lambda c: (c.pipe.fd, c.dst.fd, {"offset": 0}), ValueError),
    "closed-fd-src": (lambda c: (_closed_fd(), c.dst.fd, {}), OSError, errno.EBADF),
    "closed-fd-dst": (lambda c: (c.pipe.fd, _closed_fd(), {}), OSError, errno.EBADF),
    "directory-src": (lambda c: (_directory(c), c.dst.fd, {}), IsADirectoryError),
    "directory-dst": (lambda c: (c.pipe.fd, _directory(c), {}), IsADirectoryError),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_moves_nothing(endpoints, tmp_path, case):
    build, exception, *code = BAD[case]
    ctx = BadInput(endpoints, tmp_path)
    src, dst, kwargs = build(ctx)
    kwargs.setdefault("timeout", WAIT)
    timeout = kwargs.pop("timeout")
    try:
        with (
            flags_kept(ctx.pipe.fd, ctx.file.fd, ctx.dst.fd),
            pytest.raises(exception) as info,
        ):
            splice_to(src, dst, timeout, **kwargs)
    finally:
        for undo in ctx.cleanup:
            undo()
    if code:
        assert info.value.errno == code[0]
    assert ctx.dst.received() == b""
    assert position(ctx.file.fd) == 0
    assert ctx.pipe.rest() == ctx.data


@pytest.mark.parametrize("src_kind", ["tcp", "unix"])
def test_offset_on_socket_is_value_error(endpoints, src_kind):
    data = payload(4095)
    src = endpoints.source(src_kind, data)
    dst = endpoints.sink("file")
    with pytest.raises(ValueError):
        splice_to(src.fd, dst.fd, WAIT, offset=0)
    assert dst.received() == b""
    assert src.rest() == data
