"""Request heads as ``bytepump serve`` reads them (``_request``): strict
RFC 9112 field rules and nginx's bounds, sans-IO, fuzzed with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bytepump._request import (
    MAX_HEAD,
    MAX_LINE,
    HeadError,
    RequestHead,
    RequestReader,
    parse_request_head,
)

GET = b"GET /a.bin?x=1 HTTP/1.1\r\nHost: example\r\nRange: bytes=0-9\r\n\r\n"


def read(data: bytes) -> RequestHead | None:
    return RequestReader().feed(data)


def status_of(data: bytes) -> int:
    with pytest.raises(HeadError) as caught:
        read(data)
    return caught.value.status


def test_a_head() -> None:
    head = read(GET)
    assert (head.method, head.target, head.version) == (
        "GET",
        "/a.bin?x=1",
        "HTTP/1.1",
    )
    assert head.headers.get("range") == "bytes=0-9"
    assert head.headers.get("RANGE") == "bytes=0-9"
    assert head.headers.get("If-Range") is None
    assert "Host" in head.headers
    assert head.keep_alive


def test_bare_lf_and_leading_empty_lines() -> None:
    head = read(b"\r\n\nGET / HTTP/1.1\nHost: x\n\n")
    assert head.target == "/"
    assert head.headers.get("Host") == "x"


def test_incomplete_then_complete_and_the_rest() -> None:
    reader = RequestReader()
    assert reader.feed(GET[:10]) is None
    assert reader.feed(GET[10:] + b"GET /next") is not None
    assert reader.rest == b"GET /next"
    assert RequestReader(reader.rest).feed(b"") is None  # not complete yet


def test_obs_fold_is_unfolded() -> None:
    head = read(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n")
    assert head.headers.get("X-A") == "one two"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 40\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length\t: 40\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\nContent-Length: 4\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / x HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / http/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.11\r\nHost: x\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b" Host: x\r\n\r\n",
    ],
)
def test_malformed_is_400(data) -> None:
    assert status_of(data) == 400


def test_http_1_0_needs_no_host_and_closes() -> None:
    head = read(b"GET / HTTP/1.0\r\n\r\n")
    assert not head.keep_alive
    assert read(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive
    assert not read(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).keep_alive


def test_other_versions() -> None:
    assert status_of(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n") == 505
    assert read(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n").keep_alive  # 1.x: as 1.1


def test_bounds() -> None:
    long_target = b"/" + b"a" * MAX_LINE
    assert status_of(b"GET " + long_target + b" HTTP/1.1\r\n") == 414
    assert status_of(b"GET " + long_target) == 414  # before its line end
    field = b"X-Big: " + b"b" * MAX_LINE
    assert status_of(b"GET / HTTP/1.1\r\n" + field) == 431
    many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(40))
    assert len(many) > MAX_HEAD
    assert status_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + many) == 431
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    assert status_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n") == 431
    # Just within: a line of MAX_LINE bytes is accepted.
    target = b"/" + b"a" * (MAX_LINE - len(b"GET / HTTP/1.1"))
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == MAX_LINE
    assert read(line + b"\r\nHost: x\r\n\r\n").target == target.decode()


def test_whole_head_bound() -> None:
    with pytest.raises(HeadError) as caught:
        parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"\r\n" * MAX_HEAD)
    assert caught.value.status == 431


@given(st.lists(st.integers(0, len(GET)), max_size=6))
def test_any_split_gives_the_same_head(cuts) -> None:
    reader = RequestReader()
    bounds = [0, *sorted(cuts), len(GET)]
    results = [reader.feed(GET[a:b]) for a, b in zip(bounds, bounds[1:])]
    assert [r for r in results if r is not None] == [read(GET)]


@given(st.binary(max_size=300))
def test_any_bytes_are_a_head_an_error_or_incomplete(data) -> None:
    try:
        head = read(data)
    except HeadError as exc:
        assert exc.status in (400, 414, 431, 505)
        return
    if head is not None:
        assert head.method and head.target and head.version.startswith("HTTP/1.")
