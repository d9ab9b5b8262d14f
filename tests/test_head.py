"""The sans-IO HTTP/1.1 layer (bytepump._http1): no sockets here.

Every reader is fed its input whole and byte by byte, and must agree with
itself; hypothesis throws arbitrary bytes at the parsers, which may only
answer with a result or ProtocolError.
"""

from __future__ import annotations

import contextlib
import email.utils
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bytepump._errors import ProtocolError
from bytepump._http1 import (
    ChunkedDecoder,
    ChunkLineReader,
    HeadReader,
    LineReader,
    TrailerReader,
    body_framing,
    build_request,
    check_headers,
    keeps_alive,
    parse_chunk_line,
    parse_content_range,
    parse_head,
    parse_url,
    range_value,
    representation_changed,
    validator,
)

HEAD = (
    b"HTTP/1.1 206 Partial Content\r\n"
    b"Content-Type: image/jpeg\r\n"
    b"content-length: 10\r\n"
    b"Content-Range: bytes 5-14/100\r\n"
    b'ETag: "abc"\r\n'
    b"\r\n"
)
BODY = b"0123456789"


# --- drivers: feeding a reader its input whole, byte by byte, or safely ---


def feed_whole(reader: LineReader, stream: bytes) -> int:
    """Feed the whole stream as one look-ahead; returns bytes consumed."""
    return reader.feed(stream)


def feed_bytewise(reader: LineReader, stream: bytes) -> int:
    consumed = 0
    for i in range(len(stream)):
        if reader.done:
            break
        consumed += reader.feed(stream[i : i + 1])
    return consumed


def feed_peeking(reader: LineReader, stream: bytes, step: int = 7) -> int:
    """As skip_headers does: look at up to ``step`` bytes, consume what the
    reader says, look again from there."""
    consumed = 0
    while not reader.done and consumed < len(stream):
        consumed += reader.feed(stream[consumed : consumed + step])
    return consumed


def feed_safely(reader: LineReader, stream: bytes) -> int:
    """As the TLS path does: read only ``safe_size`` bytes at a time; every
    byte read must be taken by the reader."""
    consumed = 0
    while not reader.done and consumed < len(stream):
        piece = stream[consumed : consumed + reader.safe_size]
        assert piece, "safe_size was 0 before the end"
        taken = reader.feed(piece)
        assert taken == len(piece), "safe_size let a read pass the unit's end"
        consumed += taken
    return consumed


DRIVERS = [feed_whole, feed_bytewise, feed_peeking, feed_safely]


def outcome(make_reader, stream: bytes, driver) -> tuple:
    reader = make_reader()
    try:
        consumed = driver(reader, stream)
    except ProtocolError as exc:
        return ("error", str(exc))
    if not reader.done:
        return ("incomplete", consumed)
    return ("done", consumed, reader.result)


def head_summary(head) -> tuple:
    return (head.status, head.reason, head.version, head.headers.items(), head.raw)


# --- response heads -------------------------------------------------------


def test_parse_head_fields():
    head = parse_head(HEAD)
    assert (head.status, head.reason, head.version) == (
        206,
        "Partial Content",
        "HTTP/1.1",
    )
    assert head.headers["CONTENT-LENGTH"] == "10"
    assert head.headers["etag"] == '"abc"'
    assert head.raw == HEAD
    assert "206" in repr(head)


@pytest.mark.parametrize("driver", DRIVERS)
def test_reader_takes_the_head_and_no_body_byte(driver):
    reader = HeadReader()
    consumed = driver(reader, HEAD + BODY)
    assert reader.done
    assert consumed == len(HEAD)
    assert head_summary(reader.result) == head_summary(parse_head(HEAD))


@pytest.mark.parametrize("driver", DRIVERS)
def test_bare_lf_line_ends(driver):
    raw = b"HTTP/1.0 200 OK\nA: 1\nB:2  \n\n"
    reader = HeadReader()
    assert driver(reader, raw + b"\n\nbody") == len(raw)
    head = reader.result
    assert head.version == "HTTP/1.0"
    assert head.headers.items() == [("A", "1"), ("B", "2")]


@pytest.mark.parametrize(
    "line, status, reason",
    [
        (b"HTTP/1.1 200 OK", 200, "OK"),
        (b"HTTP/1.1 404", 404, ""),
        (b"HTTP/1.1 503 ", 503, ""),
        (b"HTTP/1.0 302 Found it \t here", 302, "Found it \t here"),
        (b"HTTP/1.1 200 \xe9t\xe9", 200, "\xe9t\xe9"),
        (b"HTTP/1.1 999 Custom", 999, "Custom"),
    ],
)
def test_status_lines(line, status, reason):
    head = parse_head(line + b"\r\n\r\n")
    assert (head.status, head.reason) == (status, reason)


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 099 Low",
        b"HTTP/1.1 -20 OK",
        b"HTTP/1.1 +200 OK",
        b"HTTP/1.1 2O0 OK",
        "HTTP/1.1 \uff12\uff10\uff10 OK".encode(),
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1\t200 OK",
        b"HTTP/2 200 OK",
        b"HTTP/1.2 200 OK",
        b"http/1.1 200 OK",
        b" HTTP/1.1 200 OK",
        b"HTTP/1.1 200 O\x00K",
        b"HTTP/1.1 200 O\rK",
        b"HTTP/1.1",
        b"",
        b"SSH-2.0-OpenSSH_9.2",
    ],
)
def test_malformed_status_lines(line):
    with pytest.raises(ProtocolError):
        parse_head(line + b"\r\nA: b\r\n\r\n")


@pytest.mark.parametrize(
    "fields",
    [
        b"NoColonHere\r\n",  # http.client would silently drop what follows
        b"Name : value\r\n",
        b"Na me: value\r\n",
        b": value\r\n",
        b"Name: a\x00b\r\n",
        b"Name: a\rb\r\n",
        b"Name: a\x7fb\r\n",
        b"\xe9: x\r\n",
    ],
)
def test_malformed_header_lines(fields):
    with pytest.raises(ProtocolError):
        parse_head(b"HTTP/1.1 200 OK\r\nA: 1\r\n" + fields + b"B: 2\r\n\r\n")


def test_fold_without_a_field_to_continue():
    with pytest.raises(ProtocolError):
        parse_head(b"HTTP/1.1 200 OK\r\n Folded: first\r\n\r\n")


def test_obs_fold_is_replaced_with_a_space():
    head = parse_head(b"HTTP/1.1 200 OK\r\nX: a\r\n  b\r\n\tc\r\nY: d\r\n\r\n")
    assert head.headers.items() == [("X", "a b c"), ("Y", "d")]


def test_too_many_fields_is_a_protocol_error():
    def head(n: int) -> bytes:
        fields = b"".join(b"X-%d: y\r\n" % i for i in range(n))
        return b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n"

    assert len(parse_head(head(99)).headers) == 99  # what http.client takes
    with pytest.raises(ProtocolError):
        parse_head(head(100))  # refused when read, not when headers is asked


@pytest.mark.parametrize("driver", DRIVERS)
def test_max_size_counts_the_blank_line(driver):
    assert outcome(lambda: HeadReader(len(HEAD)), HEAD + BODY, driver)[:2] == (
        "done",
        len(HEAD),
    )
    result = outcome(lambda: HeadReader(len(HEAD) - 1), HEAD + BODY, driver)
    assert result[0] == "error" and "longer than" in result[1]


@pytest.mark.parametrize("driver", DRIVERS)
def test_non_http_is_refused_at_the_first_line(driver):
    # No blank line will ever come; the first line alone gives it away.
    reader = HeadReader()
    with pytest.raises(ProtocolError, match="status line"):
        driver(reader, b"SSH-2.0-OpenSSH_9.2\r\n" + b"x" * 100)


def test_incomplete_head_and_eof():
    reader = HeadReader()
    assert reader.feed(HEAD[:-1]) == len(HEAD) - 1
    assert not reader.done and reader.result is None
    assert isinstance(reader.eof_error(), ProtocolError)
    assert reader.feed(b"\n" + BODY) == 1
    assert reader.done and reader.feed(b"more") == 0 and reader.budget == 0


def test_max_size_must_be_positive():
    with pytest.raises(ValueError):
        HeadReader(0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=400))
@example(HEAD + BODY, 200)
@example(b"HTTP/1.1 200 OK\r\n\r", 18)
def test_fuzz_reader_agrees_with_itself(stream, max_size):
    """Arbitrary bytes: only a head or ProtocolError, and the same outcome
    however the bytes arrive."""
    results = [
        outcome(lambda: HeadReader(max_size), stream, driver) for driver in DRIVERS
    ]
    first = results[0]
    for other in results[1:]:
        assert other[0] == first[0]
        if first[0] == "done":
            assert other[1] == first[1]
            assert head_summary(other[2]) == head_summary(first[2])
    if first[0] == "done":
        assert first[1] <= max_size
        assert first[2].raw == stream[: first[1]]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse_head_raises_only_protocol_error(raw):
    with contextlib.suppress(ProtocolError):
        parse_head(raw)


_token = st.text(
    string.ascii_letters + string.digits + "-!#$%&'*+.^_`|~", min_size=1, max_size=12
)
_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=20,
).map(lambda v: v.strip(" "))
_eol = st.sampled_from([b"\r\n", b"\n"])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["HTTP/1.0", "HTTP/1.1"]),
    st.integers(min_value=100, max_value=999),
    _value,
    st.lists(st.tuples(_token, _value), max_size=8),
    _eol,
    st.binary(max_size=50),
)
def test_fuzz_generated_heads_round_trip(version, status, reason, fields, eol, body):
    lines = [f"{version} {status} {reason}".encode("latin-1")]
    lines += [f"{n}: {v}".encode("latin-1") for n, v in fields]
    raw = eol.join([*lines, b"", b""])
    for driver in DRIVERS:
        reader = HeadReader()
        assert driver(reader, raw + body) == len(raw)
        head = reader.result
        assert (head.version, head.status, head.reason) == (version, status, reason)
        assert head.headers.items() == [(n, v.strip(" \t")) for n, v in fields]
        assert head.raw == raw


# --- chunked framing --------------------------------------------------------


@pytest.mark.parametrize(
    "line, size, extensions",
    [
        (b"0", 0, []),
        (b"1a", 26, []),
        (b"00FF", 255, []),
        (b"ffffffffffffffff", 2**64 - 1, []),
        (b"5;name", 5, [("name", None)]),
        (b"5 ; a=b ;c = d", 5, [("a", "b"), ("c", "d")]),
        (b'5;q="x;y\\"z"', 5, [("q", 'x;y"z')]),
        (b"5\t", 5, []),
    ],
)
def test_chunk_lines(line, size, extensions):
    assert parse_chunk_line(line) == (size, extensions)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"0x1a",
        b"+1a",
        b"-1",
        b"1_0",
        b" 1a",
        b"g",
        b"1a;",
        b"1a;=v",
        b'1a;q="open',
        b"1a;a=b c",
        b"1" * 17,
        b"1a\x00",
        "\u0661".encode(),
    ],
)
def test_malformed_chunk_lines(line):
    with pytest.raises(ProtocolError):
        parse_chunk_line(line)


def test_chunk_line_reader_is_bounded():
    with pytest.raises(ProtocolError, match="longer than"):
        ChunkLineReader(16).feed(b"1;" + b"a" * 20 + b"\r\n")


def encode_chunked(data: bytes, sizes: list[int], exts: list[bytes], trailer: bytes):
    out, pos, i = bytearray(), 0, 0
    while pos < len(data):
        size = min(sizes[i % len(sizes)], len(data) - pos)
        out += b"%x%s\r\n" % (size, exts[i % len(exts)]) + data[pos : pos + size]
        out += b"\r\n"
        pos, i = pos + size, i + 1
    return bytes(out + b"0" + exts[0] + b"\r\n" + trailer + b"\r\n")


def decode_chunked(stream: bytes, driver) -> tuple[bytes, object, int]:
    """Run a ChunkedDecoder over ``stream`` the way splice_from does, the
    data bytes "spliced" by slicing; returns (data, trailers, consumed)."""
    decoder, data, pos = ChunkedDecoder(), bytearray(), 0
    while not decoder.done:
        if decoder.data_due:
            piece = stream[pos : pos + decoder.data_due]
            assert piece, "stream ended inside chunk data"
            data += piece
            pos += len(piece)
            decoder.data_moved(len(piece))
        else:
            pos += driver(decoder.reader, stream[pos:])
            assert decoder.reader.done, "stream ended inside a line"
            decoder.unit_read()
    return bytes(data), decoder.trailers, pos


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=2000),
    st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=5),
    st.lists(
        st.sampled_from([b"", b";a", b";a=b", b' ; n="v\\"q"', b";x=1;y=2"]),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.tuples(_token, _value), max_size=3),
    st.sampled_from(DRIVERS),
)
def test_fuzz_chunked_round_trip(data, sizes, exts, trailers, driver):
    trailer = b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in trailers)
    stream = encode_chunked(data, sizes, exts, trailer)
    decoded, got_trailers, consumed = decode_chunked(stream + b"NEXT", driver)
    assert decoded == data
    assert consumed == len(stream)
    assert got_trailers.items() == [(n, v.strip(" \t")) for n, v in trailers]


@pytest.mark.parametrize("driver", DRIVERS)
def test_chunk_data_must_end_with_crlf(driver):
    with pytest.raises(ProtocolError, match="CRLF"):
        decode_chunked(b"3\r\nabcX\r\n0\r\n\r\n", driver)
    with pytest.raises(ProtocolError, match="CRLF"):
        decode_chunked(b"3\r\nabc\rX0\r\n\r\n", driver)


def test_trailers_are_validated_and_bounded():
    with pytest.raises(ProtocolError):
        TrailerReader().feed(b"No colon\r\n\r\n")
    with pytest.raises(ProtocolError, match="longer than"):
        TrailerReader(10).feed(b"X: " + b"y" * 20 + b"\r\n\r\n")


def test_decoder_misuse_is_caught():
    decoder = ChunkedDecoder()
    with pytest.raises(RuntimeError):
        decoder.unit_read()
    decoder.reader.feed(b"4\r\n")
    decoder.unit_read()
    with pytest.raises(ValueError):
        decoder.data_moved(5)


# --- framing, ranges, validators --------------------------------------------


def head_with(*fields: str, version: str = "HTTP/1.1", status: int = 200):
    lines = [f"{version} {status} X", *fields, "", ""]
    return parse_head("\r\n".join(lines).encode())


@pytest.mark.parametrize(
    "fields, version, chunked, length",
    [
        ((), "HTTP/1.1", False, None),
        (("Content-Length: 42",), "HTTP/1.1", False, 42),
        (("Content-Length: 0",), "HTTP/1.0", False, 0),
        (("Content-Length: 7, 7", "Content-Length: 7"), "HTTP/1.1", False, 7),
        (("Transfer-Encoding: chunked",), "HTTP/1.1", True, None),
        (("Transfer-Encoding: Chunked ",), "HTTP/1.1", True, None),
    ],
)
def test_framing(fields, version, chunked, length):
    assert body_framing(head_with(*fields, version=version)) == (chunked, length)


@pytest.mark.parametrize(
    "fields, version, kept",
    [
        ((), "HTTP/1.1", True),
        (("Connection: keep-alive",), "HTTP/1.1", True),
        (("Connection: close",), "HTTP/1.1", False),
        (("Connection: Keep-Alive, CLOSE",), "HTTP/1.1", False),
        (("Connection: upgrade", "Connection:  close "), "HTTP/1.1", False),
        ((), "HTTP/1.0", False),
        (("Connection: keep-alive",), "HTTP/1.0", False),
    ],
)
def test_keeps_alive(fields, version, kept):
    """RFC 9112 9.3: only HTTP/1.1 persists, unless it says close (in any
    case, among other options, in any of its Connection fields)."""
    assert keeps_alive(head_with(*fields, version=version)) is kept


@pytest.mark.parametrize(
    "fields, version",
    [
        (("Content-Length: 7", "Content-Length: 8"), "HTTP/1.1"),
        (("Content-Length: 7, 8",), "HTTP/1.1"),
        (("Content-Length: -1",), "HTTP/1.1"),
        (("Content-Length: +1",), "HTTP/1.1"),
        (("Content-Length: 1e3",), "HTTP/1.1"),
        (("Content-Length:",), "HTTP/1.1"),
        (("Content-Length: 99999999999999999999",), "HTTP/1.1"),
        (("Transfer-Encoding: chunked", "Content-Length: 5"), "HTTP/1.1"),
        (("Transfer-Encoding: gzip, chunked",), "HTTP/1.1"),
        (("Transfer-Encoding: chunked, chunked",), "HTTP/1.1"),
        (("Transfer-Encoding: identity",), "HTTP/1.1"),
        (("Transfer-Encoding: chunked",), "HTTP/1.0"),
    ],
)
def test_ambiguous_framing_is_refused(fields, version):
    with pytest.raises(ProtocolError):
        body_framing(head_with(*fields, version=version))


@pytest.mark.parametrize(
    "value, expected",
    [
        ("bytes 0-0/1", (0, 0, 1)),
        ("bytes 5-14/100", (5, 14, 100)),
        ("Bytes  100-199/*", (100, 199, None)),
        (" bytes 0-99/100 ", (0, 99, 100)),
    ],
)
def test_content_range(value, expected):
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "bytes */100",
        "bytes 5-4/100",
        "bytes 0-100/100",
        "bytes 0-9",
        "bytes=0-9/10",
        "items 0-9/10",
        "bytes -1-9/10",
        "bytes 0-9/10, 20-29/30",
        "bytes \u0660-9/10",
        "",
    ],
)
def test_invalid_content_range(value):
    with pytest.raises(ProtocolError):
        parse_content_range(value)


@given(
    st.integers(min_value=0, max_value=2**60),
    st.integers(min_value=0, max_value=2**60),
    st.one_of(st.none(), st.integers(min_value=1, max_value=2**60)),
)
def test_fuzz_content_range_round_trip(first, size, extra):
    last = first + size
    complete = None if extra is None else last + extra
    value = f"bytes {first}-{last}/{'*' if complete is None else complete}"
    assert parse_content_range(value) == (first, last, complete)


@given(st.text(max_size=40))
def test_fuzz_content_range_raises_only_protocol_error(value):
    try:
        rng = parse_content_range(value)
    except ProtocolError:
        return
    assert rng.first <= rng.last


def test_range_value():
    assert range_value(0, None) == "bytes=0-"
    assert range_value(5, 15) == "bytes=5-14"


LAST_MODIFIED = email.utils.formatdate(0, usegmt=True)


@pytest.mark.parametrize(
    "fields, expected",
    [
        (('ETag: "v1"', f"Last-Modified: {LAST_MODIFIED}"), '"v1"'),
        (('ETag: W/"v1"', f"Last-Modified: {LAST_MODIFIED}"), LAST_MODIFIED),
        (('ETag: W/"v1"',), None),
        (("Last-Modified: yesterday",), None),
        ((), None),
    ],
)
def test_validator(fields, expected):
    assert validator(head_with(*fields)) == expected


def test_representation_changed():
    same = head_with('ETag: "v1"')
    assert not representation_changed('"v1"', same)
    assert representation_changed('"v1"', head_with('ETag: "v2"'))
    assert representation_changed('"v1"', head_with())  # a 200 must show it
    assert not representation_changed('"v1"', head_with(status=206))
    assert representation_changed('"v1"', head_with('ETag: "v2"', status=206))
    lm = f"Last-Modified: {LAST_MODIFIED}"
    assert not representation_changed(LAST_MODIFIED, head_with(lm))


# --- requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url, host, port, authority, target",
    [
        ("http://example.com", "example.com", 80, "example.com", "/"),
        ("http://Example.COM:80/a", "example.com", 80, "example.com", "/a"),
        ("https://h:443/", "h", 443, "h", "/"),
        ("https://h:8443/x?y=1#frag", "h", 8443, "h:8443", "/x?y=1"),
        ("http://h/p?", "h", 80, "h", "/p?"),
        ("http://127.0.0.1:8080/a b", "127.0.0.1", 8080, "127.0.0.1:8080", "/a%20b"),
        ("http://[::1]:8080/", "::1", 8080, "[::1]:8080", "/"),
        ("http://[::1]/", "::1", 80, "[::1]", "/"),
        # RFC 6874 zone IDs: used to connect, never sent in Host.
        ("http://[fe80::1%25eth0]:81/", "fe80::1%eth0", 81, "[fe80::1]:81", "/"),
        ("http://[fe80::1%eth0]/", "fe80::1%eth0", 80, "[fe80::1]", "/"),
        ("http://bücher.example/ä", "xn--bcher-kva.example", 80,
         "xn--bcher-kva.example", "/%C3%A4"),
        ('http://h/a"<>{}|\\^`', "h", 80, "h", "/a%22%3C%3E%7B%7D%7C%5C%5E%60"),
        ("http://h/%41%zz", "h", 80, "h", "/%41%zz"),
    ],
)  # fmt: skip
def test_parse_url(url, host, port, authority, target):
    origin = parse_url(url)
    assert (origin.host, origin.port, origin.authority, origin.target) == (
        host,
        port,
        authority,
        target,
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/",
        "file:///etc/passwd",
        "h/path",
        "http:///path",
        "http://user:pw@h/",
        "http://h:99999/",
        "http://h:x/",
        "http://exa mple.com/",
        "http://[::1/",
        "http://[zz::1]/",
        "http://h\r\nX-Injected: 1/",
        "http://h/\r\nX-Injected: 1",
        "http://h/path?q=\n",
        "http://h/\0",
        "\nhttp://h/",
        "http://h\0.example/",
        "http://[fe80::1%25a b]/",
        "http://[fe80::1%25a%20b]/",
        "http://[fe80::1%25a\x7fb]/",
        "http://[fe80::1%25]/",
    ],
)
def test_unusable_urls(url):
    with pytest.raises(ValueError):
        parse_url(url)


def test_url_must_be_str():
    with pytest.raises(TypeError):
        parse_url(b"http://h/")


def test_check_headers_accepts_mappings_and_pairs():
    assert check_headers(None) == []
    assert check_headers({"X-A": " 1 ", "Accept": "*/*"}) == [
        ("X-A", "1"),
        ("Accept", "*/*"),
    ]
    assert check_headers([("X-A", "1"), ("X-A", "2")]) == [("X-A", "1"), ("X-A", "2")]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "1\r\nX-Injected: 2"},
        {"X-A": "1\nX-Injected: 2"},
        {"X-A": "1\r"},
        {"X-A": "a\0b"},
        {"X-A\r\nX-Injected": "1"},
        {"X-A\0": "1"},
        {"X A": "1"},
        {"X-A:": "1"},
        {"": "1"},
        {"X-A": "a\x01b"},
        {"X-A": "\u20ac"},
        {"Range": "bytes=0-1"},
        {"connection": "keep-alive"},
        {"Transfer-Encoding": "chunked"},
        {"If-Range": '"x"'},
    ],
)
def test_bad_headers(headers):
    with pytest.raises(ValueError):
        check_headers(headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": 1},
        {b"X-A": "1"},
        [("X-A", None)],
        "X-A: 1",
        [("X",)],
        [("X", "1", "2")],
        ["ab"],
        [None],
    ],
)
def test_header_types(headers):
    with pytest.raises(TypeError):
        check_headers(headers)


def test_build_request():
    origin = parse_url("http://h:8080/a?b")
    request = build_request(origin, [("Host", origin.authority), ("X", "y")])
    assert request == b"GET /a?b HTTP/1.1\r\nHost: h:8080\r\nX: y\r\n\r\n"


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40),
    st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=4),
)
@example("http://h/\r\nX: y", [])
@example("http://h/", [("X", "a\r\nY: b")])
def test_fuzz_no_request_can_be_smuggled(path, headers):
    """Whatever the URL and fields, a request comes out with exactly one
    request line and one line per field, or ValueError/TypeError."""
    try:
        origin = parse_url("http://h/" + path)
        fields = check_headers(headers)
    except (ValueError, TypeError):
        return
    request = build_request(origin, fields)
    assert request.endswith(b"\r\n\r\n")
    lines = request[:-4].split(b"\r\n")
    assert len(lines) == 1 + len(headers)
    for line in lines:
        assert not any(c in line for c in b"\r\n\0")
    method, target, version = lines[0].split(b" ")
    assert (method, version) == (b"GET", b"HTTP/1.1")
    assert target.startswith(b"/") and target.isascii()


_NAMES = st.sampled_from(["Content-Length", "ETag", "x-a", "X-A", "Connection", "Via"])
_VALUES = st.binary(max_size=20).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c != 127).strip(b" \t")
)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12))
def test_get_and_get_all_answer_as_the_http_message(fields):
    raw = b"HTTP/1.1 200 OK\r\n"
    raw += b"".join(n.encode() + b": " + v + b"\r\n" for n, v in fields)
    head = parse_head(raw + b"\r\n")
    for name in ("content-length", "ETAG", "X-a", "connection", "via", "absent"):
        assert head.get(name) == head.headers.get(name)
        assert head.get_all(name) == (head.headers.get_all(name) or [])
    assert head.get("absent", "d") == head.headers.get("absent", "d") == "d"


def test_the_http_message_is_parsed_only_when_asked_for(monkeypatch):
    import http.client

    calls = []
    real = http.client.parse_headers
    monkeypatch.setattr(
        http.client, "parse_headers", lambda fp: calls.append(1) or real(fp)
    )
    head = parse_head(b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "x"\r\n\r\n')
    assert body_framing(head).length == 5 and validator(head) == '"x"'
    assert calls == []
    assert head.headers["content-length"] == "5"
    assert head.headers is head.headers and calls == [1]


def test_a_field_line_parse_headers_would_refuse_is_refused_at_once():
    with pytest.raises(ProtocolError, match="64 KiB"):
        parse_head(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 65536 + b"\r\n\r\n")
