"""bytepump._respond: the answer to a request, sans-IO (no sockets here)."""

from __future__ import annotations

import email.utils
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bytepump import _ranges, _respond
from bytepump._errors import ProtocolError
from bytepump._http1 import parse_head

MTIME = 1_700_000_000.5
INFO = SimpleNamespace(  # what file_answer reads of an os.stat_result
    st_size=1000, st_ino=42, st_mtime=MTIME, st_mtime_ns=int(MTIME * 1e9)
)
ETAG = _ranges.make_etag(INFO.st_mtime_ns, 1000, 42)
STAMP = email.utils.formatdate(int(MTIME), usegmt=True)


def getter(**fields: str):
    named = {k.replace("_", "-").lower(): v for k, v in fields.items()}
    return lambda name: named.get(name.lower())


def answer(method="GET", **fields):
    return _respond.file_answer(INFO, getter(**fields), method=method)


def test_a_whole_file():
    got = answer()
    assert (got.status, got.start, got.length, got.body) == (200, 0, 1000, True)
    fields = dict(got.headers)
    assert fields["ETag"] == ETAG and fields["Last-Modified"] == STAMP
    assert fields["Content-Length"] == "1000" and fields["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    "fields, status, start, length",
    [
        ({"Range": "bytes=10-19"}, 206, 10, 10),
        ({"Range": "bytes=-10"}, 206, 990, 10),
        ({"Range": "bytes=990-"}, 206, 990, 10),
        ({"Range": "bytes=5-5000"}, 206, 5, 995),
        ({"Range": "bytes=1000-"}, 416, None, 0),
        ({"Range": "bytes=1-2,5-6"}, 200, 0, 1000),
        ({"Range": "bytes=10-19", "If-Range": ETAG}, 206, 10, 10),
        ({"Range": "bytes=10-19", "If-Range": '"old"'}, 200, 0, 1000),
        ({"Range": "bytes=10-19", "If-Range": STAMP}, 206, 10, 10),
        ({"If-None-Match": ETAG}, 304, None, 0),
        ({"If-None-Match": '"x", W/' + ETAG}, 304, None, 0),
        ({"If-Modified-Since": STAMP}, 304, None, 0),
        ({"If-None-Match": '"x"', "If-Modified-Since": STAMP}, 200, 0, 1000),
    ],
)
def test_ranges_and_conditionals(fields, status, start, length):
    got = _respond.file_answer(INFO, lambda n: fields.get(n))
    assert (got.status, got.start, got.length) == (status, start, length)
    assert got.body == (status in (200, 206))
    if status == 416:
        assert dict(got.headers)["Content-Range"] == "bytes */1000"


def test_head_gets_the_head_and_ranges_only_apply_to_get():
    got = answer("HEAD", Range="bytes=1-2")
    assert (got.status, got.length, got.body) == (200, 1000, False)


def test_a_window_of_the_file_is_its_own_representation():
    got = _respond.file_answer(INFO, getter(Range="bytes=0-9"), start=100, count=50)
    assert (got.status, got.start, got.length) == (206, 100, 10)
    fields = dict(got.headers)
    assert fields["Content-Range"] == "bytes 0-9/50" and fields["ETag"] != ETAG


def test_another_status_sends_the_window_as_it_is():
    got = _respond.file_answer(INFO, getter(Range="bytes=0-9"), status=404)
    assert (got.status, got.length, dict(got.headers)["Content-Length"]) == (
        404,
        1000,
        "1000",
    )


def test_the_callers_fields_replace_ours():
    extra = _respond.user_fields({"Content-Type": "text/html", "X-A": "1"})
    got = _respond.file_answer(INFO, getter(), extra=extra)
    assert [v for n, v in got.headers if n == "Content-Type"] == ["text/html"]
    with pytest.raises(ValueError):
        _respond.user_fields({"X": "a\r\nB: c"})
    with pytest.raises(ValueError):
        _respond.user_fields({"Content-Length": "5"})


def test_streams_and_framing():
    unknown = _respond.stream_answer()
    assert unknown.length is None and "Content-Length" not in dict(unknown.headers)
    assert _respond.framing(unknown, (1, 1)) == _respond.CHUNKED
    assert _respond.framing(unknown, (1, 0)) == _respond.CLOSE
    known = _respond.stream_answer(count=5)
    assert _respond.framing(known, (1, 0)) == _respond.LENGTH
    assert dict(known.headers)["Content-Length"] == "5"


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({}, _respond.ForwardedRange()),
        ({"Range": "bytes=0-"}, _respond.ForwardedRange()),
        ({"Range": "bytes=10-19"}, _respond.ForwardedRange(10, 10)),
        ({"Range": "bytes=10-"}, _respond.ForwardedRange(10)),
        ({"Range": "bytes=-5"}, _respond.ForwardedRange(suffix=5)),
        ({"Range": "bytes=-5", "If-Range": '"e"'},
         _respond.ForwardedRange(suffix=5, if_range='"e"')),
        ({"Range": "bytes=1-2,4-5"}, _respond.ForwardedRange()),
        ({"Range": "items=1-2"}, _respond.ForwardedRange()),
        ({"Range": "bytes=5-1"}, _respond.ForwardedRange()),
        ({"Range": "bytes=1-", "If-Range": "\x01"}, _respond.ForwardedRange()),
    ],
)  # fmt: skip
def test_forward_range(fields, expected):
    assert _respond.forward_range(lambda n: fields.get(n)) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.integers(0, 10_000))
def test_forwarding_agrees_with_serving(value, size):
    """A forwarded range asks the origin for exactly the bytes this server
    would send for the same Range itself."""
    forwarded = _respond.forward_range(lambda n: value if n == "Range" else None)
    decision = _ranges.parse_range(value, size)
    if forwarded == _respond.ForwardedRange() or not isinstance(
        decision, _ranges.ByteRange
    ):
        return
    if forwarded.suffix is not None:
        start = max(0, size - forwarded.suffix)
        end = size
    else:
        start = forwarded.offset
        end = size if forwarded.length is None else min(size, start + forwarded.length)
    assert (start, end) == decision


class Origin:
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
    got = _respond.origin_answer(origin, asked=_respond.ForwardedRange(0, 10))
    assert got.status == 206 and got.length == 10
    assert dict(got.headers) == {
        "Content-Type": "a/b",
        "Content-Range": "bytes 0-9/100",
        "ETag": '"e"',
        "Content-Length": "10",
    }


def test_an_origin_that_ignored_the_range_becomes_a_206():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    got = _respond.origin_answer(
        Origin(raw, 10, 20, 100), asked=_respond.ForwardedRange(10, 20)
    )
    assert got.status == 206
    assert dict(got.headers)["Content-Range"] == "bytes 10-29/100"
    # With If-Range, a 200 is the whole object, passed on as it is.
    whole = _respond.origin_answer(
        Origin(raw, 0, 100, 100), asked=_respond.ForwardedRange(10, 20, None, '"e"')
    )
    assert whole.status == 200 and whole.length == 100
    with pytest.raises(ProtocolError):
        _respond.origin_answer(
            Origin(b"HTTP/1.1 200 OK\r\n\r\n", 10), asked=_respond.ForwardedRange(10)
        )
