"""bytepump._chunked: chunk-size lines between splices, the data spliced."""

from __future__ import annotations

import pytest
from conftest import MIB, flags_kept, payload, sha
from hypothesis import given, settings
from hypothesis import strategies as st

import bytepump
from bytepump._chunked import ChunkedWriter, ChunkFramer
from bytepump.pump import drive


def dechunk(data: bytes) -> tuple[bytes, list[int]]:
    """The body of a complete chunked stream (no trailers) and its chunk
    sizes; asserts that the framing is exact and nothing follows it."""
    body, sizes, pos = bytearray(), [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end], 16)
        pos = end + 2
        if not size:
            assert data[pos:] == b"\r\n", "bytes after the last chunk"
            return bytes(body), sizes
        sizes.append(size)
        body += data[pos : pos + size]
        assert data[pos + size : pos + size + 2] == b"\r\n"
        pos += size + 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 5000), max_size=20))
def test_framer_round_trip(sizes):
    framer = ChunkFramer()
    stream = bytearray()
    data = payload(sum(sizes))
    pos = 0
    for n in sizes:
        stream += framer.size_line(n) + data[pos : pos + n]
        pos += n
    stream += framer.last_chunk()
    assert dechunk(bytes(stream)) == (data, sizes)


def test_framer_refuses_empty_chunks_and_can_leave_the_end():
    framer = ChunkFramer()
    with pytest.raises(ValueError):
        framer.size_line(0)
    assert framer.end_data() == b""
    framer.size_line(3)
    assert framer.end_data() == b"\r\n"
    assert framer.last_chunk() == b"0\r\n\r\n"


def write_chunked(src, dst, count=None, timeout=5.0, calls=None) -> int:
    writer = ChunkedWriter(dst, timeout)

    def run():
        n = yield from writer.splice(src, count, calls.append if calls else None)
        yield from writer.finish()
        return n

    try:
        return drive(run(), timeout)
    finally:
        writer.close()


@pytest.mark.parametrize("dst_kind", ["tcp", "unix", "pipe", "file"])
@pytest.mark.parametrize("src_kind", ["pipe", "tcp"])
@pytest.mark.parametrize("size", [0, 1, 70_000, 3 * MIB + 7])
def test_a_stream_of_unknown_length_arrives_chunked(
    endpoints, src_kind, dst_kind, size
):
    data = payload(size)
    src = endpoints.source(src_kind, data, chunks=[1000, 65536, 7])
    dst = endpoints.sink(dst_kind)
    calls = [0]
    with flags_kept(src.fd, dst.fd):
        assert write_chunked(src.obj, dst.obj, calls=calls) == size
    assert sum(calls) == size
    body, sizes = dechunk(dst.received())
    assert sha(body) == sha(data)
    assert all(0 < n <= size for n in sizes)


def test_count_stops_exactly(endpoints):
    data = payload(100_000)
    src = endpoints.source("tcp", data, hold_open=True)
    dst = endpoints.sink("tcp")
    assert write_chunked(src.obj, dst.obj, count=60_000) == 60_000
    assert dechunk(dst.received())[0] == data[:60_000]
    assert src.rest() == data[60_000:]


def test_a_silent_source_times_out(endpoints):
    src = endpoints.source("pipe", payload(10), hold_open=True)
    dst = endpoints.sink("tcp")
    with pytest.raises(bytepump.UpstreamTimeout):
        write_chunked(src.obj, dst.obj, timeout=0.2)


def test_a_reset_source_is_not_an_end(endpoints):
    src = endpoints.source("tcp", payload(5000), reset=True)
    dst = endpoints.sink("tcp")
    with pytest.raises(ConnectionResetError):
        write_chunked(src.obj, dst.obj)


@pytest.mark.parametrize("src_kind", ["pipe", "tcp"])
def test_a_nonblocking_destination_stays_nonblocking(endpoints, src_kind):
    # PyPy's socket(fileno=...) would make the shared description blocking.
    src = endpoints.source(src_kind, payload(70_000))
    dst = endpoints.sink("tcp", nonblocking=True)
    with flags_kept(src.fd, dst.fd):
        assert write_chunked(src.obj, dst.fd) == 70_000
    assert dechunk(dst.received())[0] == payload(70_000)
