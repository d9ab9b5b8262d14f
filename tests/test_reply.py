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


@pytest.mark.parametrize(
    "value",
    ["bytes=\xb2-", "bytes=0-\xb9", "bytes=1" + "0" * 5000 + "-", "bytes=-" + "9" * 30],
)
def test_a_range_that_is_no_number_is_forwarded_as_none(value):
    """Unicode digits and numbers past any object's size ask for the whole
    object (a server may ignore any Range), never crash the application."""
    assert _reply.forward_range({"Range": value}.get) == _reply.Forward()


def test_content_encoding_is_passed_on_and_connection_named_fields_are_not():
    origin = Origin(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: text/plain\r\n"
        b"Cache-Control: max-age=5\r\nConnection: close, Cache-Control\r\n"
        b"Content-Length: 10\r\n\r\n",
        0, 10, 10,
    )  # fmt: skip
    got = _reply.origin_reply(origin, _reply.Forward(), head=False)
    assert dict(got.fields) == {
        "Content-Encoding": "gzip",
        "Content-Type": "text/plain",
    }


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodiless_status_has_no_body(status):
    assert not _reply.plain_reply(status, 0, 100, head=False).body


@pytest.mark.parametrize("status", [99, 100, 101, 199, 600, True])
def test_a_status_that_is_not_final_is_refused(status):
    with pytest.raises((ValueError, TypeError)):
        _reply.check_status(status)


def test_the_callers_validators_cannot_replace_computed_ones():
    import os

    reply = _reply.file_reply(os.stat(__file__), 0, None, {}.get, head=False)
    for name in ("ETag", "last-modified", "Content-Range", "Accept-Ranges"):
        with pytest.raises(ValueError, match=name.lower()):
            _reply.head_fields(reply, [(name, "x")])
    fields = dict(_reply.head_fields(reply, [("Content-Type", "text/x-python")]))
    assert fields["Content-Type"] == "text/x-python"


def test_a_304_says_the_length_of_the_200():
    import os

    info = os.stat(__file__)
    first = _reply.file_reply(info, 0, None, {}.get, head=False)
    etag = dict(first.fields)["ETag"]
    again = _reply.file_reply(info, 0, None, {"If-None-Match": etag}.get, head=False)
    assert (again.status, again.length, again.body) == (304, info.st_size, False)


def test_content_disposition_carries_any_name():
    value = _reply.content_disposition('Rapport été "final"\\.zip')
    assert value == (
        'attachment; filename="Rapport _t_ _final__.zip"; '
        "filename*=UTF-8''Rapport%20%C3%A9t%C3%A9%20%22final%22%5C.zip"
    )


def test_a_zip_reply_answers_ranges_and_conditionals():
    from datetime import datetime, timezone

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    get = {"Range": "bytes=10-19"}.get
    got = _reply.zip_reply(100, '"z"', when, get, head=False, filename="a.zip")
    fields = dict(got.fields)
    assert (got.status, got.start, got.length) == (206, 10, 10)
    assert fields["Content-Range"] == "bytes 10-19/100"
    assert fields["Content-Type"] == "application/zip"
    assert fields["Last-Modified"] == "Fri, 02 Jan 2026 03:04:05 GMT"
    stale = {"Range": "bytes=10-19", "If-Range": '"old"'}.get
    assert _reply.zip_reply(100, '"z"', when, stale, head=False).status == 200
    dated = {"Range": "bytes=10-19", "If-Range": fields["Last-Modified"]}.get
    assert _reply.zip_reply(100, '"z"', None, dated, head=False).status == 200
    assert (
        _reply.zip_reply(
            100, '"z"', when, {"If-None-Match": '"z"'}.get, head=False
        ).status
        == 304
    )
    assert (
        _reply.zip_reply(
            100, '"z"', when, {"Range": "bytes=100-"}.get, head=False
        ).status
        == 416
    )
