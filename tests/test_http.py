"""skip_headers and splice_from against real sockets: a real nginx, and a
fault-injecting origin that cuts, resets, stalls, changes and garbles."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import socket
import threading
from pathlib import Path

import pytest
from conftest import (
    LINGER_0,
    ORIGIN_FILES,
    WAIT,
    open_fds,
    payload,
    read_to_eof,
    tcp_pair,
    unix_pair,
)

import bytepump
from bytepump._errors import (
    DownstreamTimeout,
    HTTPStatusError,
    IncompleteBody,
    ProtocolError,
    UpstreamTimeout,
)
from bytepump.edge import skip_headers, splice_from

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Test: yes\r\n\r\n"
BODY = b"hello world"
OBJECT = payload(200_003)
ETAG = '"v1"'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- skip_headers -----------------------------------------------------------


class CountingSocket:
    """A socket wrapper that counts recv calls and signals each take."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.peeks = 0
        self.takes = 0
        self.took = threading.Event()

    def fileno(self) -> int:
        return self.sock.fileno()

    def gettimeout(self):
        return self.sock.gettimeout()

    def recv(self, n: int, flags: int = 0) -> bytes:
        data = self.sock.recv(n, flags)
        if flags & socket.MSG_PEEK:
            self.peeks += 1
        else:
            self.takes += 1
            self.took.set()
        return data


def queued(sock: socket.socket, n: int) -> None:
    """Wait until ``n`` bytes are in ``sock``'s receive queue."""
    sock.settimeout(WAIT)
    assert len(sock.recv(n, socket.MSG_PEEK | socket.MSG_WAITALL)) == n
    sock.settimeout(None)


@pytest.mark.parametrize("pair", [tcp_pair, unix_pair])
def test_head_and_body_in_one_segment(pair):
    client, server = pair()
    with client, server:
        server.sendall(HEAD + BODY)  # one write, one segment
        queued(client, len(HEAD + BODY))
        counting = CountingSocket(client)
        head = skip_headers(counting)
        assert (head.status, head.reason, head.version) == (200, "OK", "HTTP/1.1")
        assert head.headers["x-test"] == "yes"
        assert head.raw == HEAD
        assert (counting.peeks, counting.takes) == (1, 1)  # never byte by byte
        server.shutdown(socket.SHUT_WR)
        assert read_to_eof(client.fileno()) == BODY


def test_head_in_pieces():
    """Head bytes are consumed while the blank line is not in sight; the
    body still stays."""
    client, server = tcp_pair()
    counting = CountingSocket(client)
    cuts = [0, 10, len(HEAD) - 2, len(HEAD + BODY)]

    def send() -> None:
        for a, b in zip(cuts, cuts[1:]):
            server.sendall((HEAD + BODY)[a:b])
            if b < len(HEAD):  # wait until skip_headers has taken this piece
                assert counting.took.wait(WAIT)
                counting.took.clear()
        server.shutdown(socket.SHUT_WR)

    with client, server:
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        assert skip_headers(counting, timeout=WAIT).raw == HEAD
        sender.join(WAIT)
        assert counting.takes == 3
        assert read_to_eof(client.fileno()) == BODY


def test_head_larger_than_the_receive_queue():
    big = b"".join(b"X-Big-%d: %s\r\n" % (i, b"a" * 30_000) for i in range(10))
    head = b"HTTP/1.1 200 OK\r\n" + big + b"\r\n"
    client, server = unix_pair(bufsize=16384)
    with client, server:
        sender = threading.Thread(
            target=lambda: server.sendall(head + BODY), daemon=True
        )
        sender.start()
        got = skip_headers(client, max_size=len(head), timeout=WAIT)
        sender.join(WAIT)
        assert got.raw == head and got.headers["x-big-9"] == "a" * 30_000
        server.shutdown(socket.SHUT_WR)
        assert read_to_eof(client.fileno()) == BODY


def test_max_size():
    for limit, fits in ((len(HEAD), True), (len(HEAD) - 1, False)):
        client, server = unix_pair()
        with client, server:
            server.sendall(HEAD + BODY)
            if fits:
                assert skip_headers(client, max_size=limit).raw == HEAD
            else:
                with pytest.raises(ProtocolError, match="longer than"):
                    skip_headers(client, max_size=limit)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",  # then end of stream
        b"",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
)
def test_bad_or_truncated_heads(data):
    client, server = unix_pair()
    with client, server:
        server.sendall(data)
        server.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError):
            skip_headers(client, timeout=WAIT)


def test_silent_peer_times_out():
    client, server = unix_pair()
    with client, server:
        server.sendall(HEAD[:20])
        with pytest.raises(UpstreamTimeout):
            skip_headers(client, timeout=0.2)
        with pytest.raises(UpstreamTimeout):
            skip_headers(client, timeout=0)


def test_zero_timeout_reads_what_is_there():
    client, server = unix_pair()
    with client, server:
        server.sendall(HEAD + BODY)
        assert skip_headers(client, timeout=0).raw == HEAD


def test_negative_timeout():
    client, server = unix_pair()
    with client, server, pytest.raises(ValueError):
        skip_headers(client, timeout=-1)


def test_expect():
    client, server = unix_pair()
    with client, server:
        server.sendall(b"HTTP/1.1 404 Not Found\r\nA: b\r\n\r\n" * 3)
        with pytest.raises(HTTPStatusError) as info:
            skip_headers(client)
        assert info.value.status == 404 and info.value.head.headers["a"] == "b"
        assert skip_headers(client, expect=None).status == 404
        assert skip_headers(client, expect=(404,)).status == 404


@pytest.mark.parametrize("mode", ["blocking", "timeout", "nonblocking"])
def test_socket_mode_is_kept(mode):
    client, server = tcp_pair()
    with client, server:
        client.settimeout({"blocking": None, "timeout": 5.0, "nonblocking": 0.0}[mode])
        server.sendall(HEAD + BODY)
        queued_timeout = client.gettimeout()
        assert skip_headers(client, timeout=WAIT).raw == HEAD
        assert client.gettimeout() == queued_timeout
        assert os.get_blocking(client.fileno()) == (mode == "blocking")


def test_tls_socket(tls_cert):
    import ssl

    cert, key = tls_cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    raw_client, raw_server = tcp_pair()

    def serve() -> None:
        with server_ctx.wrap_socket(raw_server, server_side=True) as tls:
            tls.sendall(HEAD + BODY)  # one TLS record: head and body together
            tls.recv(1)  # until the client is done

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    with client_ctx.wrap_socket(raw_client, server_hostname="localhost") as tls:
        tls.settimeout(WAIT)
        assert skip_headers(tls, timeout=WAIT).raw == HEAD
        assert tls.gettimeout() == WAIT
        assert tls.recv(100) == BODY
    server.join(WAIT)


# --- splice_from against nginx ---------------------------------------------


def fetch(tmp_path: Path, url: str, **kwargs) -> tuple[int, bytes]:
    """splice_from into a fresh file; returns (result, file contents)."""
    path = tmp_path / "dst"
    with open(path, "wb") as dst:
        n = splice_from(dst, url, **kwargs)
    return n, path.read_bytes()


@pytest.mark.parametrize("name", sorted(ORIGIN_FILES))
def test_nginx_whole_objects(nginx, tmp_path, name):
    calls = []
    url = nginx.url("/" + name.replace(" ", "%20"))
    n, data = fetch(tmp_path, url, on_progress=calls.append)
    expected = payload(ORIGIN_FILES[name])
    assert n == len(expected) == sum(calls)
    assert sha(data) == sha(expected)
    assert all(c > 0 for c in calls)


def test_nginx_url_is_quoted(nginx, tmp_path):
    assert fetch(tmp_path, nginx.url("/odd name.bin"))[1] == payload(4095)


@pytest.mark.parametrize("kind", ["int", "pipe", "tcp", "unix"])
def test_nginx_destinations(nginx, endpoints, kind):
    big = payload(ORIGIN_FILES["big.bin"])
    if kind == "int":
        sink = endpoints.sink("file")
        n = splice_from(sink.fd, nginx.url("/big.bin"))
    else:
        sink = endpoints.sink(kind)
        n = splice_from(sink.obj, nginx.url("/big.bin"))
    assert n == len(big)
    assert sha(sink.received()) == sha(big)


BIG = ORIGIN_FILES["big.bin"]


@pytest.mark.parametrize(
    "offset, length",
    [(1, None), (1000, 5000), (0, 1), (0, 70_000), (BIG - 1, None), (BIG - 10, 100)],
)
def test_nginx_ranges(nginx, tmp_path, offset, length):
    n, data = fetch(tmp_path, nginx.url("/big.bin"), offset=offset, length=length)
    expected = payload(BIG)[offset : None if length is None else offset + length]
    assert n == len(expected) and data == expected


def test_nginx_zero_length_fetches_nothing(nginx, tmp_path):
    assert fetch(tmp_path, nginx.url("/big.bin"), length=0) == (0, b"")


@pytest.mark.parametrize("path", ["/missing", "/empty.bin"])
def test_nginx_errors_write_nothing(nginx, tmp_path, path):
    kwargs = {"offset": 10} if path == "/empty.bin" else {}  # → 416
    with pytest.raises(HTTPStatusError) as info:
        fetch(tmp_path, nginx.url(path), **kwargs)
    assert info.value.status == (404 if path == "/missing" else 416)
    assert info.value.transferred == 0
    assert (tmp_path / "dst").read_bytes() == b""


@pytest.mark.parametrize(
    "path, name",
    [
        ("/redirect-relative", "small.bin"),
        ("/redirect-absolute", "big.bin"),
        ("/hop1", "small.bin"),
    ],
)
def test_nginx_redirects(nginx, tmp_path, path, name):
    n, data = fetch(tmp_path, nginx.url(path))
    assert data == payload(ORIGIN_FILES[name]) and n == len(data)


def test_nginx_redirect_limit(nginx, tmp_path):
    assert fetch(tmp_path, nginx.url("/hop1"), max_redirects=3)[0] == 1000
    with pytest.raises(HTTPStatusError) as info:
        fetch(tmp_path, nginx.url("/hop1"), max_redirects=2)
    assert info.value.status == 308
    with pytest.raises(HTTPStatusError) as info:
        fetch(tmp_path, nginx.url("/loop"))
    assert info.value.status == 302 and "redirects" in str(info.value)
    with pytest.raises(HTTPStatusError):
        fetch(tmp_path, nginx.url("/redirect-relative"), max_redirects=0)
    assert (tmp_path / "dst").read_bytes() == b""


def test_nginx_concurrent_fetches(nginx, tmp_path):
    results: dict[int, bytes] = {}

    def one(i: int) -> None:
        offset = i * 1000
        results[i] = fetch(tmp_path / str(i), nginx.url("/big.bin"), offset=offset)[1]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for i, thread in enumerate(threads):
        (tmp_path / str(i)).mkdir()
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    big = payload(BIG)
    assert {i: sha(d) for i, d in results.items()} == {
        i: sha(big[i * 1000 :]) for i in range(8)
    }


# --- the fault-injecting origin: helpers ------------------------------------


def send_head(conn, status: str, fields, version: str = "HTTP/1.1") -> None:
    lines = [f"{version} {status}", *(f"{k}: {v}" for k, v in fields), "", ""]
    conn.sendall("\r\n".join(lines).encode("latin-1"))


def wait_for_close(conn) -> None:
    """Stall: send nothing until the client hangs up (bounded by WAIT)."""
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass


def requested_range(request, size: int) -> tuple[int, int] | None:
    value = request.headers.get("Range")
    if value is None:
        return None
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", value)
    assert m and (m[1] or m[2]), f"bad Range {value!r}"
    if not m[1]:  # a suffix
        return max(0, size - int(m[2])), size - 1
    last = int(m[2]) if m[2] else size - 1
    return int(m[1]), min(last, size - 1)


class ObjectHandler:
    """Serves ``data`` as a real origin would (Range, If-Range, a
    validator), with one scripted fault per connection: ``("cut", at)``
    closes, ``("reset", at)`` resets and ``("stall", at)`` goes silent once
    the object's byte ``at`` is reached."""

    def __init__(self, data=OBJECT, etag=ETAG, faults=(), **options) -> None:
        self.data = data
        self.etag = etag
        self.faults = list(faults)
        self.ignore_range = options.get("ignore_range", False)
        self.ignore_if_range = options.get("ignore_if_range", False)
        self.chunked = options.get("chunked", False)

    def __call__(self, conn, request, index: int) -> None:
        rng = requested_range(request, len(self.data))
        if_range = request.headers.get("If-Range")
        fields = [("ETag", self.etag)] if self.etag else []
        if_range_ok = self.ignore_if_range or if_range in (None, self.etag)
        if rng and not self.ignore_range and if_range_ok:
            first, last = rng
            status = "206 Partial Content"
            fields.append(("Content-Range", f"bytes {first}-{last}/{len(self.data)}"))
        else:
            first, last, status = 0, len(self.data) - 1, "200 OK"
        body = self.data[first : last + 1]
        fault = self.faults[index] if index < len(self.faults) else None
        cut = len(body) if fault is None else max(0, fault[1] - first)
        if self.chunked:
            fields.append(("Transfer-Encoding", "chunked"))
            send_head(conn, status, fields)
            conn.sendall(b"%x\r\n" % len(body) + body[:cut])
            if fault is None:
                conn.sendall(b"\r\n0\r\n\r\n")
        else:
            fields.append(("Content-Length", str(len(body))))
            send_head(conn, status, fields)
            conn.sendall(body[:cut])
        if fault is None:
            return
        if fault[0] == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        elif fault[0] == "stall":
            wait_for_close(conn)


def raw_handler(data: bytes):
    """Answer every request with exactly ``data``."""

    def handler(conn, request, index):
        conn.sendall(data)

    return handler


# --- requests as sent -------------------------------------------------------


def test_request_fields(origin, tmp_path):
    origin.serve(ObjectHandler())
    url = origin.url("/a/b?c=d&e")
    headers = [("X-Trace", "abc"), ("X-Trace", "def"), ("user-agent", "mine/1")]
    fetch(tmp_path, url, offset=5, length=10, headers=headers)
    (request,) = origin.requests
    assert request.line == "GET /a/b?c=d&e HTTP/1.1"
    fields = request.headers
    assert fields["Host"] == f"127.0.0.1:{origin.port}"
    assert fields["Connection"] == "close"
    assert fields["Range"] == "bytes=5-14"
    assert fields["Accept-Encoding"] == "identity"
    assert fields.get_all("X-Trace") == ["abc", "def"]
    assert fields.get_all("User-Agent") == ["mine/1"]
    assert "If-Range" not in fields


def test_default_user_agent_and_no_range(origin, tmp_path):
    origin.serve(ObjectHandler())
    assert fetch(tmp_path, origin.url(), headers={"Accept": "*/*"})[1] == OBJECT
    fields = origin.requests[0].headers
    assert re.fullmatch(r"bytepump/\S+", fields["User-Agent"])
    assert "Range" not in fields and fields["Accept"] == "*/*"


@pytest.mark.parametrize(
    "url_tail, headers",
    [
        ("/x\r\nX-Injected: 1", None),
        ("/x\nX-Injected: 1", None),
        ("/x\0", None),
        ("/x?q=\r\n", None),
        ("/x", {"X-A": "1\r\nX-Injected: 2"}),
        ("/x", {"X-A": "1\n"}),
        ("/x", {"X-A": "a\0"}),
        ("/x", {"X-A\r\nX-Injected": "1"}),
        ("/x", [("X-A\n", "1")]),
    ],
)
def test_injection_is_refused_before_connecting(origin, tmp_path, url_tail, headers):
    origin.serve(ObjectHandler())
    with pytest.raises(ValueError):
        fetch(tmp_path, origin.url() + url_tail, headers=headers)
    with pytest.raises(ValueError):  # in the host too
        fetch(tmp_path, f"http://127.0.0.1\r\nX: 1:{origin.port}/", headers=headers)
    assert origin.connections == 0


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"offset": -1}, ValueError),
        ({"length": -1}, ValueError),
        ({"retries": -1}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"offset": 1.5}, TypeError),
        ({"length": True}, TypeError),
    ],
)
def test_bad_arguments_fail_before_connecting(origin, tmp_path, kwargs, error):
    origin.serve(ObjectHandler())
    with pytest.raises(error):
        fetch(tmp_path, origin.url(), **kwargs)
    assert origin.connections == 0


@pytest.mark.parametrize("dst", [None, "path", 10**6])
def test_bad_destinations_fail_before_connecting(origin, dst):
    origin.serve(ObjectHandler())
    with pytest.raises((TypeError, OSError)):
        splice_from(dst, origin.url())
    assert origin.connections == 0


def test_other_schemes(origin):
    with pytest.raises(ValueError):
        splice_from(1, f"ftp://127.0.0.1:{origin.port}/")


# --- first-request failures are not retried ---------------------------------


def test_refused_connection(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        fetch(tmp_path, f"http://127.0.0.1:{port}/")


def test_silent_origin(origin, tmp_path):
    origin.serve(lambda conn, request, index: wait_for_close(conn))
    with pytest.raises(UpstreamTimeout):
        fetch(tmp_path, origin.url(), timeout=0.2)
    assert origin.connections == 1


OVERSIZED = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: %s\r\n" % (b"p" * 70_000) + b"\r\n"


@pytest.mark.parametrize(
    "response",
    [
        OVERSIZED,
        b"HTTP/1.1 200 OK\r\nNo colon\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 206 Partial\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"",
    ],
)
def test_bad_heads(origin, tmp_path, response):
    origin.serve(raw_handler(response))
    with pytest.raises(ProtocolError) as info:
        fetch(tmp_path, origin.url(), timeout=WAIT)
    assert not isinstance(info.value, IncompleteBody)
    assert info.value.transferred == 0
    assert (tmp_path / "dst").read_bytes() == b""
    assert origin.connections == 1


def test_206_at_the_wrong_byte(origin, tmp_path):
    def handler(conn, request, index):
        send_head(conn, "206 Partial Content", [
            ("Content-Range", f"bytes 10-19/{len(OBJECT)}"), ("Content-Length", "10"),
        ])  # fmt: skip
        conn.sendall(OBJECT[10:20])

    origin.serve(handler)
    with pytest.raises(ProtocolError, match="starts at byte 10, not at 5"):
        fetch(tmp_path, origin.url(), offset=5, length=10)
    assert (tmp_path / "dst").read_bytes() == b""


def test_status_error_carries_the_head(origin, tmp_path):
    origin.serve(raw_handler(b"HTTP/1.1 503 Busy\r\nRetry-After: 5\r\n\r\n"))
    with pytest.raises(HTTPStatusError) as info:
        fetch(tmp_path, origin.url())
    assert info.value.status == 503
    assert info.value.head.headers["Retry-After"] == "5"


# --- framing ----------------------------------------------------------------


def chunked(data: bytes, size: int) -> bytes:
    out = bytearray()
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += b'%x;ext=%d;q="a;b"\r\n' % (len(piece), i) + piece + b"\r\n"
    return bytes(out + b"0;last\r\nX-Checksum: %s\r\nX-Other: 1\r\n\r\n" % (
        sha(data).encode()
    ))  # fmt: skip


CHUNKED_HEAD = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: "c"\r\n\r\n'


@pytest.mark.parametrize(
    "offset, length", [(0, None), (0, 1), (7000, None), (12_345, 40_000)]
)
def test_chunked_with_extensions_and_trailers(origin, tmp_path, offset, length):
    origin.serve(raw_handler(CHUNKED_HEAD + chunked(OBJECT, 8191)))
    calls = []
    n, data = fetch(
        tmp_path, origin.url(), offset=offset, length=length, on_progress=calls.append
    )
    expected = OBJECT[offset : None if length is None else offset + length]
    assert n == len(expected) == sum(calls)
    assert sha(data) == sha(expected)


def test_chunked_keeps_what_follows_in_the_socket(origin, tmp_path):
    # The trailer section is read, and nothing after it: an origin that
    # kept talking would not have its next bytes swallowed or spliced.
    origin.serve(raw_handler(CHUNKED_HEAD + chunked(b"abc", 2) + b"GARBAGE"))
    assert fetch(tmp_path, origin.url())[1] == b"abc"


def test_malformed_chunk_is_not_retried(origin, tmp_path):
    origin.serve(raw_handler(CHUNKED_HEAD + b"3\r\nabc\r\nzz\r\n"))
    with pytest.raises(ProtocolError, match="chunk-size") as info:
        fetch(tmp_path, origin.url())
    assert info.value.transferred == 3
    assert origin.connections == 1


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_read_until_close(origin, tmp_path, version):
    origin.serve(raw_handler(f"{version} 200 OK\r\nX: y\r\n\r\n".encode() + OBJECT))
    assert fetch(tmp_path, origin.url())[1] == OBJECT
    assert fetch(tmp_path, origin.url(), offset=100, length=50)[1] == OBJECT[100:150]


def test_interim_responses_are_skipped(origin, tmp_path):
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x.css>; rel=preload\r\n\r\n"
    origin.serve(
        raw_handler(early + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    )
    assert fetch(tmp_path, origin.url())[1] == b"abc"


def test_interim_responses_are_bounded(origin, tmp_path):
    # An origin that answers nothing but "100 Continue" for ever is given
    # the head size limit for all of them together.
    def handler(conn, request, index):
        with contextlib.suppress(OSError):
            for _ in range(100_000):
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)

    origin.serve(handler)
    with pytest.raises(ProtocolError, match="longer than") as info:
        fetch(tmp_path, origin.url(), timeout=WAIT)
    assert info.value.transferred == 0


def test_206_to_a_request_without_range(origin, tmp_path):
    origin.serve(raw_handler(
        b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-4/100\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    ))  # fmt: skip
    with pytest.raises(ProtocolError, match="without Range") as info:
        fetch(tmp_path, origin.url())
    assert not isinstance(info.value, IncompleteBody)
    assert (tmp_path / "dst").read_bytes() == b""


def test_206_without_content_length_stops_at_its_content_range(origin, tmp_path):
    # Each answer covers ten bytes, is delimited by closing, and is followed
    # by bytes that are no part of it: none reach dst, and the rest of what
    # the first response promised is asked for again.
    data = payload(30)

    def handler(conn, request, index):
        first = requested_range(request, len(data))[0]
        last = min(first + 9, len(data) - 1)
        send_head(conn, "206 Partial Content", [
            ("Content-Range", f"bytes {first}-{last}/{len(data)}"), ("ETag", ETAG),
        ])  # fmt: skip
        conn.sendall(data[first : last + 1] + b"GARBAGE")

    origin.serve(handler)
    assert fetch(tmp_path, origin.url(), offset=5) == (25, data[5:])
    ranges = [r.headers["Range"] for r in origin.requests]
    assert ranges == ["bytes=5-", "bytes=15-", "bytes=25-"]


def short_resume(conn, request, index):
    """200 with the whole length, cut at 100,000 bytes; every resume is
    answered with a well-framed 206 of 1000 bytes only."""
    if index == 0:
        return ObjectHandler(faults=[("cut", 100_000)])(conn, request, index)
    first = requested_range(request, len(OBJECT))[0]
    send_head(conn, "206 Partial Content", [
        ("Content-Range", f"bytes {first}-{first + 999}/{len(OBJECT)}"),
        ("Content-Length", 1000), ("ETag", ETAG),
    ])  # fmt: skip
    conn.sendall(OBJECT[first : first + 1000])


def test_short_206_on_a_resume_is_never_a_short_success(origin, tmp_path):
    origin.serve(short_resume)
    with pytest.raises(IncompleteBody) as info:
        fetch(tmp_path, origin.url(), retries=3)
    assert info.value.transferred == 103_000
    assert (tmp_path / "dst").read_bytes() == OBJECT[:103_000]
    ranges = [r.headers.get("Range") for r in origin.requests]
    assert ranges == [None, "bytes=100000-", "bytes=101000-", "bytes=102000-"]


def test_short_206_on_a_resume_asks_for_the_rest(origin, tmp_path):
    def handler(conn, request, index):
        if index < 2:
            return short_resume(conn, request, index)
        ObjectHandler()(conn, request, index)

    origin.serve(handler)
    n, data = fetch(tmp_path, origin.url(), retries=2)
    assert n == len(OBJECT) and sha(data) == sha(OBJECT)
    assert origin.requests[2].headers["Range"] == "bytes=101000-"


def test_200_to_a_range_request_skips_without_writing(origin, tmp_path):
    origin.serve(ObjectHandler(ignore_range=True))
    calls = []
    n, data = fetch(tmp_path, origin.url(), offset=150_000, on_progress=calls.append)
    assert data == OBJECT[150_000:] and n == sum(calls) == len(data)


# --- resuming ---------------------------------------------------------------

HALF = len(OBJECT) // 2


@pytest.mark.parametrize("fault", ["cut", "reset", "stall"])
@pytest.mark.parametrize("chunked_body", [False, True])
def test_resume_after_a_break(origin, tmp_path, fault, chunked_body):
    origin.serve(ObjectHandler(faults=[(fault, HALF)], chunked=chunked_body))
    calls = []
    n, data = fetch(tmp_path, origin.url(), timeout=0.5, on_progress=calls.append)
    assert sha(data) == sha(OBJECT) and n == len(OBJECT) == sum(calls)
    first, second = origin.requests
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={HALF}-"
    assert second.headers["If-Range"] == ETAG


def test_resume_a_range(origin, tmp_path):
    origin.serve(ObjectHandler(faults=[("cut", 1000), ("reset", 60_000)]))
    n, data = fetch(tmp_path, origin.url(), offset=500, length=100_000)
    assert data == OBJECT[500:100_500] and n == 100_000
    ranges = [r.headers["Range"] for r in origin.requests]
    assert ranges == ["bytes=500-100499", "bytes=1000-100499", "bytes=60000-100499"]


def test_resume_by_last_modified(origin, tmp_path):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    def handler(conn, request, index):
        rng = requested_range(request, len(OBJECT))
        if index == 0:
            send_head(conn, "200 OK", [
                ("Content-Length", len(OBJECT)), ("Last-Modified", stamp),
                ("ETag", 'W/"weak"'),
            ])  # fmt: skip
            conn.sendall(OBJECT[:HALF])
            return
        assert request.headers["If-Range"] == stamp
        send_head(conn, "206 Partial Content", [
            ("Content-Range", f"bytes {rng[0]}-{rng[1]}/{len(OBJECT)}"),
            ("Content-Length", rng[1] - rng[0] + 1), ("Last-Modified", stamp),
        ])  # fmt: skip
        conn.sendall(OBJECT[rng[0] : rng[1] + 1])

    origin.serve(handler)
    assert fetch(tmp_path, origin.url())[1] == OBJECT


def test_resumed_200_of_the_same_object_is_skipped_forward(origin, tmp_path):
    handler = ObjectHandler(faults=[("cut", HALF)], ignore_range=True)
    origin.serve(handler)
    assert sha(fetch(tmp_path, origin.url())[1]) == sha(OBJECT)
    assert origin.requests[1].headers["Range"] == f"bytes={HALF}-"


@pytest.mark.parametrize("ignores_if_range", [False, True])
def test_changed_object_on_resume(origin, tmp_path, ignores_if_range):
    old = ObjectHandler(faults=[("cut", HALF)])
    # If-Range mismatch: a 200 of the new object; or, from an origin that
    # ignores If-Range, a 206 of it.
    new = ObjectHandler(
        data=payload(HALF * 3), etag='"v2"', ignore_if_range=ignores_if_range
    )
    origin.serve(lambda conn, req, i: (old if i == 0 else new)(conn, req, i))
    with pytest.raises(ProtocolError, match="changed") as info:
        fetch(tmp_path, origin.url())
    assert not isinstance(info.value, IncompleteBody)
    assert info.value.transferred == HALF
    assert (tmp_path / "dst").read_bytes() == OBJECT[:HALF]  # nothing new, no mix
    assert origin.connections == 2


def test_resumed_206_at_the_wrong_byte(origin, tmp_path):
    def handler(conn, request, index):
        if index == 0:
            return ObjectHandler(faults=[("cut", HALF)])(conn, request, index)
        send_head(conn, "206 Partial Content", [
            ("Content-Range", f"bytes 0-99/{len(OBJECT)}"), ("Content-Length", 100),
            ("ETag", ETAG),
        ])  # fmt: skip
        conn.sendall(OBJECT[:100])

    origin.serve(handler)
    with pytest.raises(ProtocolError, match="starts at byte 0") as info:
        fetch(tmp_path, origin.url())
    assert info.value.transferred == HALF
    assert (tmp_path / "dst").read_bytes() == OBJECT[:HALF]


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_run_out(origin, tmp_path, retries):
    step = 10_000
    origin.serve(ObjectHandler(faults=[("cut", step * (i + 1)) for i in range(5)]))
    with pytest.raises(IncompleteBody) as info:
        fetch(tmp_path, origin.url(), retries=retries)
    delivered = step * (retries + 1)
    assert info.value.transferred == delivered
    assert (tmp_path / "dst").read_bytes() == OBJECT[:delivered]
    assert origin.connections == retries + 1
    ranges = [r.headers.get("Range") for r in origin.requests]
    assert ranges == [None] + [f"bytes={step * i}-" for i in range(1, retries + 1)]
    assert isinstance(info.value.__cause__, ProtocolError)


def test_no_validator_no_resume(origin, tmp_path):
    origin.serve(ObjectHandler(etag=None, faults=[("cut", HALF)]))
    with pytest.raises(IncompleteBody, match="no ETag or Last-Modified") as info:
        fetch(tmp_path, origin.url())
    assert info.value.transferred == HALF
    assert origin.connections == 1


def test_failing_reconnections_use_up_the_retries(origin, tmp_path):
    def handler(conn, request, index):
        if index == 0:
            return ObjectHandler(faults=[("cut", HALF)])(conn, request, index)
        wait_for_close(conn)  # resumed requests get no answer at all

    origin.serve(handler)
    with pytest.raises(IncompleteBody) as info:
        fetch(tmp_path, origin.url(), timeout=0.2, retries=2)
    assert isinstance(info.value.__cause__, UpstreamTimeout)
    assert info.value.transferred == HALF and origin.connections == 3


# --- the destination's failures are never retried ---------------------------


def test_closed_destination(origin):
    origin.serve(ObjectHandler())
    r, w = os.pipe()
    os.close(r)
    with pytest.raises(BrokenPipeError) as info:
        splice_from(w, origin.url())
    os.close(w)
    assert info.value.transferred == 0
    assert origin.connections == 1


def test_slow_destination(origin, endpoints):
    origin.serve(ObjectHandler(data=payload(8 * 1024 * 1024)))
    sink = endpoints.sink("unix", drain=False, bufsize=4096)
    with pytest.raises(DownstreamTimeout) as info:
        splice_from(sink.obj, origin.url(), timeout=0.3)
    assert info.value.transferred > 0
    assert origin.connections == 1


def test_progress_callback_errors_propagate(origin, tmp_path):
    origin.serve(ObjectHandler())

    def progress(n):
        raise KeyError("stop")

    with pytest.raises(KeyError) as info:
        fetch(tmp_path, origin.url(), on_progress=progress)
    assert info.value.transferred > 0
    assert origin.connections == 1


def test_no_descriptor_leaks(origin, nginx, tmp_path):
    def round_of_fetches() -> None:
        fetch(tmp_path, nginx.url("/small.bin"))
        with pytest.raises(HTTPStatusError):
            fetch(tmp_path, nginx.url("/missing"))
        with pytest.raises(IncompleteBody):
            fetch(tmp_path, origin.url(), retries=1)
        with pytest.raises(ProtocolError):
            fetch(tmp_path, origin.url("/bad"))

    def handler(conn, request, index):
        if request.target == "/bad":
            return conn.sendall(b"HTTP/1.1 200 OK\r\nBad\r\n\r\n")
        ObjectHandler(faults=[("cut", 1000)] * 2)(conn, request, 0)

    origin.serve(handler)
    round_of_fetches()  # the pipe pool warms up
    origin.wait_idle()  # the origin's sockets are in this process too
    before = open_fds()
    for _ in range(10):
        round_of_fetches()
    origin.wait_idle()
    assert open_fds() <= before


# --- fetch: the head first, the body when the caller says -----------------


def body_of(origin, tmp_path: Path) -> bytes:
    path = tmp_path / "body"
    with open(path, "wb") as dst:
        assert origin.splice_to(dst) == path.stat().st_size
    return path.read_bytes()


@pytest.mark.parametrize(
    "path, kwargs, status, length, offset",
    [
        ("/small.bin", {}, 200, 1000, 0),
        ("/big.bin", {"offset": 10, "length": 100}, 206, 100, 10),
        ("/big.bin", {"offset": BIG - 5}, 206, 5, BIG - 5),
        ("/big.bin", {"suffix": 10}, 206, 10, BIG - 10),
        ("/big.bin", {"suffix": BIG + 10}, 206, BIG, 0),
        ("/empty.bin", {}, 200, 0, 0),
    ],
)
def test_fetch_against_nginx(nginx, tmp_path, path, kwargs, status, length, offset):
    with bytepump.fetch(nginx.url(path), **kwargs) as origin:
        assert (origin.status, origin.length, origin.offset) == (status, length, offset)
        assert origin.total == ORIGIN_FILES[path[1:]]
        assert origin.headers["Content-Type"] == origin.head.headers["Content-Type"]
        data = body_of(origin, tmp_path)
    whole = payload(ORIGIN_FILES[path[1:]])
    assert sha(data) == sha(whole[offset : offset + length])


@pytest.mark.parametrize("matches", [True, False])
def test_fetch_passes_if_range_on(nginx, tmp_path, matches):
    with bytepump.fetch(nginx.url("/big.bin")) as whole:
        etag = whole.headers["ETag"]
    tag = etag if matches else '"other"'
    with bytepump.fetch(nginx.url("/big.bin"), offset=7, if_range=tag) as origin:
        # A validator that no longer matches gets the whole object, whole.
        assert origin.status == (206 if matches else 200)
        assert origin.offset == (7 if matches else 0)
        assert origin.length == BIG - origin.offset and origin.total == BIG
        assert sha(body_of(origin, tmp_path)) == sha(payload(BIG)[origin.offset :])


@pytest.mark.parametrize(
    "response, kwargs, length, total, body",
    [
        (CHUNKED_HEAD + chunked(OBJECT, 8191), {}, None, None, OBJECT),
        (b"HTTP/1.1 200 OK\r\n\r\n" + OBJECT, {}, None, None, OBJECT),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
         {"offset": 4}, 6, 10, b"456789"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
         {"suffix": 3}, 3, 10, b"789"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
         {"offset": 4, "length": 2}, 2, 10, b"45"),
        (b"HTTP/1.1 206 P\r\nContent-Range: bytes 4-9/*\r\n\r\n456789",
         {"offset": 4}, 6, None, b"456789"),
    ],
)  # fmt: skip
def test_fetch_length_and_total(
    origin, tmp_path, response, kwargs, length, total, body
):
    origin.serve(raw_handler(response))
    with bytepump.fetch(origin.url(), **kwargs) as fetched:
        assert (fetched.length, fetched.total) == (length, total)
        assert body_of(fetched, tmp_path) == body


def test_fetch_suffix_of_unknown_length_is_refused(origin):
    origin.serve(raw_handler(CHUNKED_HEAD + chunked(OBJECT, 8191)))
    with pytest.raises(ProtocolError, match="suffix"):
        bytepump.fetch(origin.url(), suffix=5)


def test_fetch_resumes_in_splice_to(origin, tmp_path):
    origin.serve(ObjectHandler(faults=[("reset", HALF)]))
    with bytepump.fetch(origin.url()) as fetched:
        assert origin.connections == 1 and fetched.length == len(OBJECT)
        assert sha(body_of(fetched, tmp_path)) == sha(OBJECT)
        with open(os.devnull, "wb") as sink, pytest.raises(ValueError, match="alr"):
            fetched.splice_to(sink)
    assert origin.requests[1].headers["Range"] == f"bytes={HALF}-"


def test_closing_a_fetch_unread_closes_the_origin_connection(origin):
    def handler(conn, request, index):
        send_head(conn, "200 OK", [("Content-Length", len(OBJECT))])
        conn.sendall(OBJECT[:1000])
        wait_for_close(conn)  # returns when the client hangs up

    origin.serve(handler)
    fds = open_fds()
    with bytepump.fetch(origin.url()) as fetched:
        assert fetched.status == 200
    origin.wait_idle()
    assert open_fds() <= fds


def test_fetch_errors_before_the_body(origin, nginx):
    with pytest.raises(HTTPStatusError) as info:
        bytepump.fetch(nginx.url("/missing"))
    assert info.value.status == 404
    origin.serve(ObjectHandler())
    for kwargs in ({"suffix": 0}, {"suffix": 1, "offset": 1}, {"if_range": '"x"'}):
        with pytest.raises(ValueError):
            bytepump.fetch(origin.url(), **kwargs)
    with pytest.raises(ValueError):
        bytepump.fetch(origin.url(), offset=1, if_range='"x"\r\nX: y')
    assert origin.connections == 0


def test_fetch_of_nothing_connects_nowhere(origin):
    origin.serve(ObjectHandler())
    with bytepump.fetch(origin.url(), length=0) as fetched:
        assert (fetched.head, fetched.length) == (None, 0)
        with open(os.devnull, "wb") as sink:
            assert fetched.splice_to(sink) == 0
    assert origin.connections == 0


# --- https ------------------------------------------------------------------


def test_https(tls_origin, tmp_path):
    tls_origin.serve(ObjectHandler(faults=[("cut", HALF)]))
    calls = []
    n, data = fetch(tmp_path, tls_origin.url(), on_progress=calls.append)
    assert sha(data) == sha(OBJECT) and n == sum(calls)
    assert tls_origin.requests[0].headers["Host"] == f"localhost:{tls_origin.port}"
    assert tls_origin.requests[1].headers["Range"] == f"bytes={HALF}-"


def test_https_chunked(tls_origin, tmp_path):
    tls_origin.serve(raw_handler(CHUNKED_HEAD + chunked(OBJECT, 5000)))
    assert fetch(tmp_path, tls_origin.url(), offset=3)[1] == OBJECT[3:]


def test_https_certificate_is_checked(origin, tls_cert, tmp_path):
    import ssl

    from bytepump import edge

    edge._tls_context.cache_clear()  # the default trust store
    cert, key = tls_cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    origin.tls_context = context
    origin.serve(ObjectHandler())
    with pytest.raises(ssl.SSLError):
        fetch(tmp_path, origin.url())


# --- the example ------------------------------------------------------------


def test_edge_include_example(nginx):
    path = Path(__file__).parent.parent / "examples" / "edge_include.py"
    spec = importlib.util.spec_from_file_location("edge_include", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    client, server = tcp_pair()
    with client:
        worker = threading.Thread(
            target=example.handle_client,
            args=(server, nginx.url("/big.bin"), WAIT),
            daemon=True,
        )
        worker.start()
        client.sendall(b"GET / HTTP/1.1\r\nHost: edge\r\n\r\n")
        response = read_to_eof(client.fileno())
        worker.join(WAIT)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sha(body) == sha(payload(ORIGIN_FILES["big.bin"]))
