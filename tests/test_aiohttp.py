"""bytepump.aiohttp against a real aiohttp server, real clients (curl, a
raw socket, http.client on one kept-alive connection), the suite's nginx
and fault-injecting origin."""

from __future__ import annotations

import http.client
import importlib.util
import os
import socket
import ssl
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from conftest import (
    IS_PYPY,
    MIB,
    ORIGIN_FILES,
    WAIT,
    AiohttpServer,
    open_fds,
    payload,
    sha,
)
from test_http import ETAG, HALF, OBJECT, ObjectHandler, chunked, raw_handler

web = pytest.importorskip("aiohttp.web")

import bytepump  # noqa: E402
from bytepump.aiohttp import respond_from, respond_with, respond_zip  # noqa: E402

SIZE = 3 * MIB + 7
BIG = ORIGIN_FILES["big.bin"]
LOOPS = ["asyncio"] if IS_PYPY else ["asyncio", "uvloop"]


def make_app(files: Path, nginx_url, origin_url) -> web.Application:
    async def file(request):
        with open(files / request.match_info["name"], "rb") as src:
            return await respond_with(request, src)

    async def pipe(request):
        r, w = os.pipe()
        path = files / request.match_info["name"]
        proc = subprocess.Popen(["cat", str(path)], stdout=w)
        os.close(w)
        try:
            with open(r, "rb", buffering=0) as src:
                return await respond_with(request, src, headers={"X-Kind": "pipe"})
        finally:
            proc.wait(WAIT)

    async def edge(request):
        try:
            return await respond_from(request, nginx_url(request.match_info["path"]))
        except bytepump.HTTPStatusError as exc:
            return web.Response(status=502, text=f"origin said {exc.status}")

    async def fault(request):
        return await respond_from(request, origin_url(), timeout=1.0)

    async def status(request):
        with open(files / "small.txt", "rb") as src:
            return await respond_with(
                request, src, status=int(request.match_info["code"])
            )

    async def archive(request):
        names = ("body.bin", "small.txt")
        entries = [bytepump.ZipEntry(n, str(files / n)) for n in names]
        plan = bytepump.ZipArchive(entries)
        return await respond_zip(request, plan, filename="données.zip")

    app = web.Application()
    app.router.add_get("/file/{name}", file)
    app.router.add_get("/pipe/{name}", pipe)
    app.router.add_get("/edge/{path:.*}", edge)
    app.router.add_get("/fault", fault)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/zip", archive)
    return app


@pytest.fixture
def files(tmp_path):
    (tmp_path / "body.bin").write_bytes(payload(SIZE))
    (tmp_path / "small.txt").write_bytes(b"hello\n")
    return tmp_path


@pytest.fixture(params=LOOPS)
def site(request, files, nginx, origin):
    server = AiohttpServer(
        make_app(files, lambda p: nginx.url("/" + p), origin.url), request.param
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(WAIT), *args],
        capture_output=True,
        timeout=WAIT + 5,
    )


def keep_alive(site) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", site.port, timeout=WAIT)


def get(conn, path: str, **headers: str):
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response, response.read()


# --- respond_with -------------------------------------------------------------


def test_a_file_every_way_on_one_connection(site):
    conn = keep_alive(site)
    response, body = get(conn, "/file/body.bin")
    assert response.status == 200 and sha(body) == sha(payload(SIZE))
    etag = response.headers["ETag"]
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.headers["Accept-Ranges"] == "bytes"
    response, body = get(conn, "/file/body.bin", Range="bytes=1000-1999")
    assert response.status == 206 and body == payload(SIZE)[1000:2000]
    assert response.headers["Content-Range"] == f"bytes 1000-1999/{SIZE}"
    response, body = get(conn, "/file/body.bin", Range="bytes=-10")
    assert response.status == 206 and body == payload(SIZE)[-10:]
    response, body = get(conn, "/file/body.bin", Range=f"bytes={SIZE}-")
    assert response.status == 416 and body == b""
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"
    response, body = get(conn, "/file/body.bin", **{"If-None-Match": etag})
    assert response.status == 304 and body == b""
    response, body = get(
        conn, "/file/body.bin", Range="bytes=0-9", **{"If-Range": '"stale"'}
    )
    assert response.status == 200 and len(body) == SIZE
    conn.request("HEAD", "/file/small.txt")
    response = conn.getresponse()
    assert response.read() == b"" and response.headers["Content-Length"] == "6"
    assert response.headers["Content-Type"] == "text/plain"
    response, body = get(conn, "/file/small.txt")  # still the same connection
    assert body == b"hello\n"
    assert conn.sock is not None
    conn.close()


def test_curl_several_urls_on_one_connection(site, tmp_path):
    urls = [site.url("/file/body.bin"), site.url("/pipe/body.bin")]
    urls += [site.url("/file/small.txt"), site.url("/edge/big.bin")]
    outs = [tmp_path / f"out{i}" for i in range(len(urls))]
    args = [x for url, out in zip(urls, outs) for x in ("-o", str(out), url)]
    done = curl("-w", "%{num_connects} %{http_code}\n", *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().split()
    assert lines[0::2] == ["1", "0", "0", "0"]  # one connection, reused
    assert set(lines[1::2]) == {"200"}
    expected = [payload(SIZE), payload(SIZE), b"hello\n", payload(BIG)]
    assert [sha(p.read_bytes()) for p in outs] == [sha(e) for e in expected]


def test_curl_range(site, tmp_path):
    done = curl("-r", "100-199", "-w", "%{http_code}", "-o", str(tmp_path / "o"),
                site.url("/file/body.bin"))  # fmt: skip
    assert done.stdout == b"206"
    assert (tmp_path / "o").read_bytes() == payload(SIZE)[100:200]


@pytest.mark.parametrize("version", ["--http1.1", "--http1.0"])
def test_a_pipe_is_chunked_or_close_delimited(site, tmp_path, version):
    out = tmp_path / "o"
    done = curl(version, "-D", "-", "-o", str(out), site.url("/pipe/body.bin"))
    assert done.returncode == 0, done.stderr
    head = done.stdout.decode("latin-1").lower()
    assert ("transfer-encoding: chunked" in head) == (version == "--http1.1")
    assert "content-length" not in head and "x-kind: pipe" in head
    assert sha(out.read_bytes()) == sha(payload(SIZE))


def test_a_pipe_then_another_request_on_the_connection(site):
    conn = keep_alive(site)
    for _ in range(2):
        response, body = get(conn, "/pipe/body.bin")
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert sha(body) == sha(payload(SIZE))
    conn.close()


def test_a_raw_socket_sees_exact_chunked_framing(site):
    with socket.create_connection(("127.0.0.1", site.port), timeout=WAIT) as sock:
        sock.sendall(b"GET /pipe/small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /file/small.txt HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
        data = b""
        while not data.endswith(b"hello\n") or data.count(b"hello\n") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in first
    assert rest.startswith(b"6\r\nhello\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n")


def test_bad_headers_are_refused_before_the_response(files):
    async def handler(request):
        with open(files / "small.txt", "rb") as src:
            try:
                return await respond_with(request, src, headers={"X": "a\r\nB: c"})
            except ValueError:
                return web.Response(status=500, text="refused")

    app = web.Application()
    app.router.add_get("/", handler)
    server = AiohttpServer(app).start()
    try:
        conn = keep_alive(server)
        response, body = get(conn, "/")
        assert (response.status, body) == (500, b"refused")
    finally:
        server.stop()


def test_a_client_that_leaves_mid_body_leaks_nothing(site):
    before = open_fds()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", site.port), timeout=WAIT) as s:
            s.sendall(b"GET /file/body.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    # The server notices and lets go; a full request still works after.
    conn = keep_alive(site)
    assert sha(get(conn, "/file/body.bin")[1]) == sha(payload(SIZE))
    conn.close()
    assert open_fds() <= before + 4  # at most the pool's pipes are new


# --- respond_from -------------------------------------------------------------


def test_an_edge_include_passes_status_and_fields(site, nginx):
    conn = keep_alive(site)
    response, body = get(conn, "/edge/big.bin")
    assert response.status == 200 and sha(body) == sha(payload(BIG))
    direct = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=WAIT)
    origin, _ = get(direct, "/big.bin")
    for name in ("ETag", "Last-Modified", "Content-Type", "Accept-Ranges"):
        assert response.headers[name] == origin.headers[name]
    assert response.headers["Content-Length"] == str(BIG)
    assert "close" not in (response.headers.get("Connection") or "")
    assert response.headers["Server"] != origin.headers["Server"]  # not passed
    response, body = get(conn, "/edge/big.bin", Range="bytes=10-19")
    assert response.status == 206 and body == payload(BIG)[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{BIG}"
    response, body = get(conn, "/edge/big.bin", Range="bytes=-5")
    assert response.status == 206 and body == payload(BIG)[-5:]
    etag = origin.headers["ETag"]
    response, body = get(conn, "/edge/big.bin", Range="bytes=5-",
                         **{"If-Range": '"old"'})  # fmt: skip
    assert response.status == 200 and sha(body) == sha(payload(BIG))
    response, body = get(conn, "/edge/big.bin", Range="bytes=5-",
                         **{"If-Range": etag})  # fmt: skip
    assert response.status == 206 and sha(body) == sha(payload(BIG)[5:])
    response, body = get(conn, "/edge/missing")
    assert response.status == 502 and body == b"origin said 404"
    response, body = get(conn, "/edge/small.bin")  # the connection lives on
    assert body == payload(1000)
    conn.close()


def test_an_origin_cut_mid_body_is_resumed(site, origin):
    origin.serve(ObjectHandler(faults=[("reset", HALF)]))
    conn = keep_alive(site)
    response, body = get(conn, "/fault")
    assert response.headers["Content-Length"] == str(len(OBJECT))
    assert sha(body) == sha(OBJECT) and origin.connections == 2
    assert origin.requests[1].headers["If-Range"] == ETAG
    assert get(conn, "/edge/small.bin")[1] == payload(1000)
    conn.close()


def test_a_chunked_origin_is_chunked_to_the_client(site, origin):
    origin.serve(raw_handler(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"c\"\r\n\r\n"
        + chunked(OBJECT, 8191)
    ))  # fmt: skip
    conn = keep_alive(site)
    response, body = get(conn, "/fault")
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.headers["ETag"] == '"c"' and sha(body) == sha(OBJECT)
    assert get(conn, "/edge/small.bin")[1] == payload(1000)
    conn.close()


def test_a_body_that_cannot_be_completed_aborts_the_connection(site, origin, tmp_path):
    origin.serve(ObjectHandler(etag=None, faults=[("cut", HALF)]))
    done = curl("-o", str(tmp_path / "o"), site.url("/fault"))
    assert done.returncode != 0  # curl: an error, never a short success
    assert (tmp_path / "o").stat().st_size < len(OBJECT)


# --- TLS ------------------------------------------------------------------------


def test_a_tls_site_gets_the_right_bytes_through_the_fallback(files, nginx, tls_cert):
    cert, key = tls_cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    app = make_app(files, lambda p: nginx.url("/" + p), lambda: "")
    server = AiohttpServer(app, ssl_context=context).start()
    try:
        out = files / "out"
        for path, expected in (("/file/body.bin", payload(SIZE)),
                               ("/pipe/body.bin", payload(SIZE)),
                               ("/edge/big.bin", payload(BIG))):  # fmt: skip
            done = curl("--cacert", cert, "-o", str(out),
                        f"https://localhost:{server.port}{path}")  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert sha(out.read_bytes()) == sha(expected)
    finally:
        server.stop()


# --- the README's example -----------------------------------------------------


def test_the_example_app(nginx, files, tmp_path):
    path = Path(__file__).parent.parent / "examples" / "aiohttp_app.py"
    spec = importlib.util.spec_from_file_location("aiohttp_app", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app = example.make_app(nginx.url(""), files.resolve())
    server = AiohttpServer(app).start()
    try:
        conn = keep_alive(server)
        response, body = get(conn, "/edge/big.bin", Range="bytes=7-")
        assert response.status == 206 and sha(body) == sha(payload(BIG)[7:])
        response, body = get(conn, "/files/body.bin", Range="bytes=0-99")
        assert response.status == 206 and body == payload(SIZE)[:100]
        response, body = get(conn, "/ls")
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert b"body.bin" in body and b"small.txt" in body
        assert get(conn, "/edge/missing")[0].status == 502
        assert get(conn, "/files/../etc")[0].status == 404
    finally:
        server.stop()


# --- bodiless statuses and respond_zip ------------------------------------------


@pytest.mark.parametrize("code", [204, 304])
def test_a_bodiless_status_keeps_the_connection(site, code):
    conn = keep_alive(site)
    response, body = get(conn, f"/status/{code}")
    assert (response.status, body) == (code, b"")
    response, body = get(conn, "/file/small.txt")
    assert (response.status, body) == (200, b"hello\n")


def test_a_zip_archive_whole_resumed_and_unchanged_on_one_connection(site, files):
    conn = keep_alive(site)
    response, whole = get(conn, "/zip")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(whole))
    assert response.headers["Content-Type"] == "application/zip"
    disposition = response.headers["Content-Disposition"]
    assert "filename*=UTF-8''donn%C3%A9es.zip" in disposition
    with zipfile.ZipFile(BytesIO(whole)) as archive:
        assert archive.read("body.bin") == (files / "body.bin").read_bytes()
        assert archive.read("small.txt") == b"hello\n"
    etag = response.headers["ETag"]
    response, rest = get(conn, "/zip", Range="bytes=5000-", **{"If-Range": etag})
    assert response.status == 206 and whole[:5000] + rest == whole
    response, body = get(conn, "/zip", **{"If-None-Match": etag})
    assert (response.status, body) == (304, b"")
    response, body = get(conn, "/zip", Range=f"bytes={len(whole)}-")
    assert response.status == 416
