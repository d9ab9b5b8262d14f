"""bytepump._reply's edge-include rules, sans-IO (the file rules are tested
through both adapters): the origin's answer passed on, a range that was
forwarded asking for what the server itself would send, the framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bytepump import _ranges, _reply
from bytepump._errors import ProtocolError
from bytepump._http1 import parse_head


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.integers(0, 10_000))
def test_forwarding_agrees_with_serving(value, size):
    """A forwarded range asks the origin for exactly the bytes this server
    would send for the same Range itself."""
    forwarded = _reply.forward_range(lambda n: value if n == "Range" else None)
    decision = _ranges.parse_range(value, size)
    if forwarded == _reply.Forward() or not isinstance(decision, _ranges.ByteRange):
        return
    if forwarded.suffix is not None:
        start, end = max(0, size - forwarded.suffix), size
    else:
        start = forwarded.offset
        end = size if forwarded.length is None else min(size, start + forwarded.length)
    assert (start, end) == decision


class Origin:
    """What origin_reply reads of a fetched OriginResponse."""

    def __init__(self, raw: bytes, offset=0, length=None, total=None) -> None:
        head = parse_head(raw)
        self.status, self.headers = head.status, head.headers
        self.offset, self.length, self.total = offset, length, total


def test_an_origin_answer_passes_on_what_it_may():
    origin = Origin(
        b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-9/100\r\nContent-Type: a/b\r\n"
        b'ETag: "e"\r\nConnection: close\r\nKeep-Alive: 5\r\nServer: o\r\n'
        b"Content-Length: 10\r\nSet-Cookie: x\r\n\r\n",
        0, 10, 100,
    )  # fmt: skip
    got = _reply.origin_reply(origin, _reply.Forward(0, 10), head=False)
    assert (got.status, got.length, got.body) == (206, 10, True)
    assert dict(got.fields) == {
        "Content-Type": "a/b",
        "Content-Range": "bytes 0-9/100",
        "ETag": '"e"',
    }


def test_an_origin_that_ignored_the_range_becomes_a_206():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    got = _reply.origin_reply(
        Origin(raw, 10, 20, 100), _reply.Forward(10, 20), head=False
    )
    assert got.status == 206 and got.length == 20
    assert dict(got.fields)["Content-Range"] == "bytes 10-29/100"
    # With If-Range, a 200 is the whole object, passed on as it is.
    whole = _reply.origin_reply(
        Origin(raw, 0, 100, 100), _reply.Forward(10, 20, None, '"e"'), head=True
    )
    assert (whole.status, whole.length, whole.body) == (200, 100, False)
    with pytest.raises(ProtocolError):
        _reply.origin_reply(
            Origin(b"HTTP/1.1 200 OK\r\n\r\n", 10), _reply.Forward(10), head=False
        )


def test_framing():
    unknown = _reply.Reply(200, [], 0, None)
    assert _reply.framing(unknown, (1, 1)) == _reply.CHUNKED
    assert _reply.framing(unknown, (1, 0)) == _reply.CLOSE
    assert _reply.framing(_reply.Reply(200, [], 0, 5), (1, 0)) == _reply.LENGTH
    assert _reply.framing(_reply.Reply(304, [], body=False), (1, 1)) == _reply.LENGTH
