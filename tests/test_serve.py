"""``bytepump serve``: a real server process tested with the real curl, plus
the sans-IO range, conditional and path logic it runs on (``_ranges``),
fuzzed with hypothesis."""

from __future__ import annotations

import email.utils
import errno
import http.client
import io
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MIB, WAIT, payload, read_to_eof, sha
from hypothesis import given
from hypothesis import strategies as st

from bytepump import _ranges
from bytepump._beneath import open_beneath, open_root, open_walking
from bytepump._ranges import ByteRange, Unsatisfiable, parse_range

CURL = shutil.which("curl") or "/usr/bin/curl"
FILES = {
    "big.bin": payload(3 * MIB + 7),
    "small.bin": payload(1000),
    "4k.bin": payload(4096),
    "empty.bin": b"",
    "odd name.txt": b"spaces and a type\n",
    "sub/inner.bin": payload(4095),
}
SECRET = b"top secret, outside the served directory\n"
SERVE = (sys.executable, "-m", "bytepump", "serve")
HUGE = 256 * MIB
SHORT = 0.5
"""The --timeout of the server that drops idle clients."""


class Server:
    """``python -m bytepump serve`` in a subprocess on 127.0.0.1, port 0.

    Its stderr (one line per request, and the drops) is collected by a
    thread, so a test can wait for a line instead of sleeping.
    """

    def __init__(self, root: Path, timeout: float, *options: str) -> None:
        self.process = subprocess.Popen(
            [*SERVE, str(root), "--port", "0", "--timeout", str(timeout), *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._changed = threading.Condition()
        try:
            self.port = self._port()
        except BaseException:
            self.process.kill()
            self.process.communicate(timeout=WAIT)
            raise
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _port(self) -> int:
        ready, _, _ = select.select([self.process.stdout], [], [], WAIT)
        assert ready, "the server printed nothing"
        line = self.process.stdout.readline()
        match = re.fullmatch(r"Serving (.*) on http://127\.0\.0\.1:(\d+)/\n", line)
        assert match, f"unexpected first line {line!r}"
        return int(match.group(2))

    def _drain(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.log.append(line)
                self._changed.notify_all()

    def wait_for_log(self, pattern: str) -> str:
        """The first log line matching ``pattern``, waiting up to WAIT."""

        def matching() -> list[str]:
            return [line for line in self.log if re.search(pattern, line)]

        with self._changed:
            found = self._changed.wait_for(matching, WAIT)
            assert found, f"no log line matching {pattern!r} in {self.log}"
            return found[0]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self, how: int = signal.SIGTERM) -> int:
        """Signal the server, wait for its end; returns its exit status."""
        self.process.send_signal(how)
        status = self.process.wait(WAIT)
        self._drainer.join(WAIT)
        self.process.stdout.close()
        self.process.stderr.close()
        return status


@pytest.fixture(scope="module")
def www(tmp_path_factory) -> Path:
    """The served directory, and around it what must never be served."""
    base = tmp_path_factory.mktemp("serve")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_bytes(SECRET)
    root = base / "www"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "link-out").symlink_to(base / "secret.txt")
    (root / "dir-out").symlink_to(base / "outside")
    (root / "link-in").symlink_to("sub/inner.bin")  # relative, stays inside
    (root / "dir-in").symlink_to("sub")
    (root / "link-abs").symlink_to(root / "sub" / "inner.bin")  # absolute: 404
    (root / "link-up").symlink_to("../secret.txt")
    (root / "link-dangling").symlink_to(root / "nothing")
    os.mkfifo(root / "fifo")
    with (root / "huge.bin").open("wb") as huge:
        huge.truncate(HUGE)  # sparse: costs no disk, more than any socket buffer
    return root


@pytest.fixture(scope="module")
def server(www) -> Server:
    running = Server(www, WAIT)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def strict_server(www) -> Server:
    """A server that drops clients idle for :data:`SHORT` seconds."""
    running = Server(www, SHORT)
    yield running
    running.stop()


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


def curl(url: str, *options: str) -> Response:
    """One request with the curl command line (``--path-as-is``: the path
    goes out exactly as written)."""
    result = subprocess.run(
        [CURL, "-sS", "--path-as-is", "--max-time", str(WAIT), "-i", *options, url],
        capture_output=True,
        timeout=WAIT + 5,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    status_line, _, fields = head.partition(b"\r\n")
    headers = http.client.parse_headers(io.BytesIO(fields + b"\r\n\r\n"))
    return Response(int(status_line.split()[1]), headers, body)


# --- over the wire ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILES))
def test_get(server, www, name) -> None:
    got = curl(server.url("/" + name.replace(" ", "%20")))
    assert got.status == 200
    assert sha(got.body) == sha(FILES[name])
    assert got.headers["Content-Length"] == str(len(FILES[name]))
    assert got.headers["Accept-Ranges"] == "bytes"
    mtime = int((www / name).stat().st_mtime)
    assert got.headers["Last-Modified"] == email.utils.formatdate(mtime, usegmt=True)
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"', got.headers["ETag"])


def test_content_type(server) -> None:
    assert curl(server.url("/odd%20name.txt")).headers["Content-Type"] == "text/plain"
    assert (
        curl(server.url("/big.bin")).headers["Content-Type"]
        == "application/octet-stream"
    )


def test_head(server) -> None:
    got = curl(server.url("/big.bin"), "-I")
    assert got.status == 200
    assert got.headers["Content-Length"] == str(len(FILES["big.bin"]))
    assert got.body == b""


def test_head_ignores_range(server) -> None:
    got = curl(server.url("/small.bin"), "-I", "-H", "Range: bytes=0-9")
    assert got.status == 200
    assert got.headers["Content-Length"] == "1000"


@pytest.mark.parametrize("path", ["/link-in", "/dir-in/inner.bin"])
def test_symlink_inside_is_served(server, path) -> None:
    # A relative link that stays inside is followed (DESIGN.md §5), as
    # openat2(RESOLVE_BENEATH) follows it.
    got = curl(server.url(path))
    assert got.status == 200
    assert got.body == FILES["sub/inner.bin"]


BIG = len(FILES["big.bin"])


@pytest.mark.parametrize(
    "name, value, first, end",
    [
        ("small.bin", "bytes=10-19", 10, 20),
        ("small.bin", "bytes=990-", 990, 1000),
        ("small.bin", "bytes=-100", 900, 1000),
        ("small.bin", "bytes=-5000", 0, 1000),
        ("small.bin", "bytes=990-5000", 990, 1000),
        ("small.bin", "bytes=999-999", 999, 1000),
        ("small.bin", "BYTES = 5-6", 5, 7),
        ("big.bin", f"bytes={MIB}-{2 * MIB - 1}", MIB, 2 * MIB),
        ("big.bin", "bytes=1-", 1, BIG),
    ],
)
def test_range(server, name, value, first, end) -> None:
    got = curl(server.url("/" + name), "-H", f"Range: {value}")
    assert got.status == 206
    size = len(FILES[name])
    assert got.headers["Content-Range"] == f"bytes {first}-{end - 1}/{size}"
    assert got.headers["Content-Length"] == str(end - first)
    assert sha(got.body) == sha(FILES[name][first:end])


@pytest.mark.parametrize("value", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range(server, value) -> None:
    got = curl(server.url("/small.bin"), "-H", f"Range: {value}")
    assert got.status == 416
    assert got.headers["Content-Range"] == "bytes */1000"
    assert got.body == b""


@pytest.mark.parametrize(
    "value", ["bytes=0-1,5-6", "bytes=5-3", "items=0-1", "bytes=x-", "bytes=-"]
)
def test_range_ignored(server, value) -> None:
    got = curl(server.url("/small.bin"), "-H", f"Range: {value}")
    assert got.status == 200
    assert got.body == FILES["small.bin"]
    assert "Content-Range" not in got.headers


def test_conditional_requests(server) -> None:
    url = server.url("/small.bin")
    first = curl(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for header in (
        f"If-None-Match: {etag}",
        f"If-None-Match: W/{etag}",
        f'If-None-Match: "other", {etag}',
        "If-None-Match: *",
        f"If-Modified-Since: {modified}",
    ):
        got = curl(url, "-H", header)
        assert got.status == 304, header
        assert got.body == b""
        assert got.headers["ETag"] == etag
    for header in ('If-None-Match: "other"', "If-Modified-Since: Thu, 01 Jan 1970"):
        assert curl(url, "-H", header).status == 200, header
    # If-Range: the range only while the representation is the same one.
    ranged = ("-H", "Range: bytes=0-9")
    assert curl(url, *ranged, "-H", f"If-Range: {etag}").status == 206
    assert curl(url, *ranged, "-H", f"If-Range: {modified}").status == 206
    got = curl(url, *ranged, "-H", 'If-Range: "stale"')
    assert got.status == 200
    assert got.body == FILES["small.bin"]


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/sub/../small.bin",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
        "/link-out",
        "/dir-out/secret.txt",
        "/link-abs",
        "/link-up",
        "/link-dangling",
        "/sub",
        "/",
        "/fifo",
        "/small.bin%00",
        "/missing.bin",
    ],
)
def test_not_found(server, path) -> None:
    got = curl(server.url(path))
    assert got.status == 404
    assert SECRET not in got.body
    assert b"root:" not in got.body


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchanger():
    """renameat2(RENAME_EXCHANGE) through cffi: swaps two names atomically."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("int renameat2(int, const char *, int, const char *, unsigned int);")
    lib = ffi.dlopen(None)

    def exchange(a: Path, b: Path) -> None:
        if lib.renameat2(
            _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE
        ):
            raise OSError(ffi.errno, os.strerror(ffi.errno))

    return exchange


@pytest.mark.parametrize("last", [False, True], ids=["directory", "file"])
def test_swapped_in_symlink_never_leads_out(server, www, last) -> None:
    # A directory (or the file itself) on the requested path flips with a
    # symlink leading out, as fast as it can, while a kept-alive client
    # asks for the file in a loop: every answer is the inside file or a
    # 404, never the outside one, and the connection is never dropped.
    race, swap = www / "race", www / "race-swap"
    inside = b"inside the served directory\n"
    if last:
        race.mkdir()
        (race / "secret.txt").write_bytes(inside)
        (swap).symlink_to("../../secret.txt")
        flipped, other = race / "secret.txt", swap
    else:
        race.mkdir()
        (race / "secret.txt").write_bytes(inside)
        swap.symlink_to("../outside")
        flipped, other = race, swap
    exchange = _exchanger()
    stop = threading.Event()
    flips = 0

    def flip() -> None:
        nonlocal flips
        while not stop.is_set():
            exchange(flipped, other)
            flips += 1

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    statuses: dict[int, int] = {}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        end = time.monotonic() + 3
        for _ in range(3000):
            if time.monotonic() > end:
                break
            conn.request("GET", "/race/secret.txt")
            response = conn.getresponse()
            body = response.read()
            assert body != SECRET
            if response.status == 200:
                assert body == inside
            statuses[response.status] = statuses.get(response.status, 0) + 1
    finally:
        stop.set()
        flipper.join(WAIT)
        conn.close()
        if os.path.islink(flipped):
            exchange(flipped, other)
        (race / "secret.txt").unlink()
        race.rmdir()
        swap.unlink()
    assert set(statuses) <= {200, 404}, statuses
    assert flips > 100
    assert statuses.get(200), statuses


def test_keep_alive(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        for method, path, status, body in [
            ("GET", "/small.bin", 200, FILES["small.bin"]),
            ("HEAD", "/big.bin", 200, b""),
            ("GET", "/missing", 404, None),
            ("GET", "/sub/inner.bin", 200, FILES["sub/inner.bin"]),
        ]:
            conn.request(method, path)
            response = conn.getresponse()
            data = response.read()
            assert response.status == status
            if body is not None:
                assert data == body
            if status == 404:  # http.server closes after an error
                conn.close()
    finally:
        conn.close()


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection, then everything the server sends
    until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), WAIT) as sock:
        sock.sendall(data)
        return read_to_eof(sock.fileno())


def statuses(received: bytes) -> list[int]:
    # Not anchored at a line start: a body (random bytes) precedes the next.
    found = re.findall(rb"HTTP/1\.1 (\d{3}) [-A-Za-z ]+\r\n", received)
    return [int(status) for status in found]


def test_smuggled_content_length_is_one_400(server) -> None:
    # http.server dropped "Content-Length : 40" (and every field after it),
    # kept the connection, and served the "body" as a second request.
    smuggled = b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    request = b"GET /small.bin HTTP/1.1\r\nHost: x\r\nContent-Length : %d\r\n\r\n%s" % (
        len(smuggled),
        smuggled,
    )
    received = exchange(server.port, request)
    assert statuses(received) == [400]
    assert FILES["small.bin"] not in received


@pytest.mark.parametrize(
    "head, status",
    [
        (b"GET /small.bin HTTP/1.1\r\nno colon\r\nHost: x\r\n\r\n", 400),
        (b"GET /small.bin HTTP/1.1\r\n\r\n", 400),
        (b"GET /small.bin HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: aaaaaaaa\r\n" * 2500, 431),
        (b"GET /small.bin HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    ],
    ids=["no-colon", "no-host", "two-hosts", "long-line", "long-field", "big", "v3"],
)
def test_bad_request_head(server, head, status) -> None:
    received = exchange(server.port, head)
    assert statuses(received) == [status]
    assert b"\r\nConnection: close\r\n" in received


def test_other_methods(server) -> None:
    received = exchange(server.port, b"POST /small.bin HTTP/1.0\r\n\r\n")
    assert statuses(received) == [405]
    assert b"\r\nAllow: GET, HEAD\r\n" in received


def test_http_1_0_and_pipelining(server) -> None:
    get = b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    received = exchange(server.port, get + get + b"GET /4k.bin HTTP/1.0\r\n\r\n")
    assert statuses(received) == [200, 200, 200]
    assert received.endswith(FILES["4k.bin"])
    assert received.count(FILES["small.bin"]) == 2


def test_kept_alive_small_responses_do_not_stall(server) -> None:
    # The head went out alone and the spliced body waited behind it for the
    # client's delayed acknowledgement: ~40 ms a request. A protocol-stall
    # bound, not a speed test.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    times = []
    try:
        conn.connect()
        for _ in range(50):
            start = time.perf_counter()
            conn.request("GET", "/4k.bin")
            response = conn.getresponse()
            body = response.read()
            times.append(time.perf_counter() - start)
            assert response.status == 200
            assert sha(body) == sha(FILES["4k.bin"])
            assert not response.will_close
    finally:
        conn.close()
    times.sort()
    assert times[len(times) // 2] < 0.020, times


def test_max_connections(www) -> None:
    running = Server(www, WAIT, "--max-connections", "2")
    try:
        held = [socket.create_connection(("127.0.0.1", running.port), WAIT)]
        held.append(socket.create_connection(("127.0.0.1", running.port), WAIT))
        get = b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        for sock in held:  # both accepted: each is answered
            sock.sendall(get)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        with socket.create_connection(("127.0.0.1", running.port), WAIT) as third:
            third.sendall(get)
            # Waits in the backlog while two are open (a bounded wait for
            # something that must not happen)...
            assert select.select([third], [], [], 0.5)[0] == []
            held.pop().close()
            # ...and is served once one of them closes.
            third.settimeout(WAIT)
            assert third.recv(65536).startswith(b"HTTP/1.1 200 OK")
        for sock in held:
            sock.close()
    finally:
        running.stop()


def test_many_clients_at_once(server, tmp_path) -> None:
    # A stalled client holds a connection (and its thread) all along.
    with socket.create_connection(("127.0.0.1", server.port), WAIT) as stalled:
        stalled.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n")
        outs = [tmp_path / f"out{i}" for i in range(16)]
        url = server.url("/big.bin")
        clients = [
            subprocess.Popen(
                [CURL, "-sS", "--max-time", str(WAIT), "-o", str(out), url]
            )
            for out in outs
        ]
        try:
            codes = [client.wait(WAIT + 5) for client in clients]
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                    client.wait(WAIT)
    assert codes == [0] * len(clients)
    for out in outs:
        assert sha(out.read_bytes()) == sha(FILES["big.bin"])


def _closed_within(sock: socket.socket, drip: bool) -> float:
    """Seconds until the server closes ``sock``; with ``drip``, one more
    header byte is sent every 0.1 s meanwhile (a slowloris)."""
    start = time.monotonic()
    while time.monotonic() - start < WAIT:
        readable, _, _ = select.select([sock], [], [], 0.1 if drip else WAIT)
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return time.monotonic() - start
            except ConnectionResetError:
                return time.monotonic() - start
        elif drip:
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
    raise AssertionError("the server kept the connection open")


@pytest.mark.parametrize("drip", [False, True], ids=["idle", "dripping"])
def test_slow_request_head_dropped(strict_server, drip) -> None:
    with socket.create_connection(("127.0.0.1", strict_server.port), WAIT) as sock:
        sock.sendall(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        elapsed = _closed_within(sock, drip)
    assert SHORT * 0.8 <= elapsed < SHORT + 5


def test_idle_keep_alive_dropped(strict_server) -> None:
    with socket.create_connection(("127.0.0.1", strict_server.port), WAIT) as sock:
        sock.sendall(b"GET /empty.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _closed_within(sock, drip=False) < SHORT + 5


def test_stalled_reader_dropped(strict_server) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT)
        sock.connect(("127.0.0.1", strict_server.port))
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: stalled\r\n\r\n")
        line = strict_server.wait_for_log(r"dropped: client accepted nothing")
        sent = int(re.search(r"\((\d+) bytes sent\)", line).group(1))
        assert 0 < sent < HUGE
        received = read_to_eof(sock.fileno())
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == bytes(sent)
    assert curl(strict_server.url("/small.bin")).status == 200  # still serving


# --- the command's errors ---------------------------------------------------


def _serve_fails(*args: str) -> str:
    result = subprocess.run(
        [*SERVE, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_serve_missing_directory(tmp_path) -> None:
    assert "not a directory" in _serve_fails(str(tmp_path / "nope"))


def test_serve_port_in_use(tmp_path, server) -> None:
    err = _serve_fails(str(tmp_path), "--port", str(server.port))
    assert "cannot listen on 127.0.0.1 port" in err
    assert "Address already in use" in err


def test_serve_stops_on_sigint_without_traceback(www) -> None:
    running = Server(www, WAIT)
    assert running.stop(signal.SIGINT) == 0
    assert running.log == []


# --- sans-IO: paths ------------------------------------------------------------


OPENERS = {"openat2": open_beneath, "walk": open_walking}
"""open_beneath tries openat2 and walks only where the kernel has none:
the walk is tested directly."""


@pytest.mark.parametrize("opener", sorted(OPENERS))
@pytest.mark.parametrize(
    "name, content",
    [
        ("small.bin", FILES["small.bin"]),
        ("sub/inner.bin", FILES["sub/inner.bin"]),
        ("odd name.txt", FILES["odd name.txt"]),
    ],
)
def test_open_beneath(www, opener, name, content) -> None:
    root = open_root(str(www))
    try:
        fd = OPENERS[opener](root, name.split("/"))
        with open(fd, "rb") as f:
            assert f.read() == content
    finally:
        os.close(root)


@pytest.mark.parametrize("opener", sorted(OPENERS))
@pytest.mark.parametrize(
    "name",
    ["link-out", "dir-out/secret.txt", "link-abs", "link-up", "link-dangling", "nope"],
)
def test_open_beneath_refuses(www, opener, name) -> None:
    root = open_root(str(www))
    try:
        with pytest.raises(OSError):
            os.close(OPENERS[opener](root, name.split("/")))
    finally:
        os.close(root)


@pytest.mark.parametrize("name", ["link-in", "dir-in/inner.bin"])
def test_walk_refuses_every_link(www, name) -> None:
    root = open_root(str(www))
    try:
        with open(open_beneath(root, name.split("/")), "rb") as f:
            assert f.read() == FILES["sub/inner.bin"]
        with pytest.raises(OSError):
            os.close(open_walking(root, name.split("/")))
    finally:
        os.close(root)


def test_walk_where_the_kernel_has_no_openat2(www, monkeypatch) -> None:
    from bytepump import _beneath, _libc

    def enosys(*args: object) -> int:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(_libc, "openat2", enosys)
    monkeypatch.setattr(_beneath, "_have_openat2", True)
    root = open_root(str(www))
    try:
        with open(open_beneath(root, ["sub", "inner.bin"]), "rb") as f:
            assert f.read() == FILES["sub/inner.bin"]
        assert not _beneath._have_openat2  # asked once, not per request
        with pytest.raises(OSError):
            os.close(open_beneath(root, ["link-in"]))
    finally:
        os.close(root)


@given(st.text())
def test_path_parts_never_climb(target) -> None:
    parts = _ranges.path_parts(target)
    if parts is None:
        return
    for part in parts:
        assert part not in ("", ".", "..")
        assert "/" not in part
        assert "\0" not in part
    joined = os.path.normpath(os.path.join("/root", *parts))
    assert joined == "/root" or joined.startswith("/root/")


@given(st.lists(st.sampled_from(["..", ".", "%2e%2e", "%2E.", "%2f", "a", ""])))
def test_encoded_dots_and_slashes(segments) -> None:
    parts = _ranges.path_parts("/" + "/".join(segments))
    unsafe = {"..", "%2e%2e", "%2E.", "%2f"}
    if unsafe & set(segments):
        assert parts is None
    else:
        assert parts == [s for s in segments if s == "a"]


def test_path_parts_decoding() -> None:
    assert _ranges.path_parts("/a%20b/c%C3%A9") == ["a b", "c\u00e9"]
    assert _ranges.path_parts("/caf%e9") == ["caf\udce9"]  # as os.fsdecode has it
    assert _ranges.path_parts("/caf\xc3\xa9") == ["caf\u00e9"]  # raw UTF-8 bytes
    assert _ranges.path_parts("/\u20ac") is None  # not a byte: not off the wire
    assert _ranges.path_parts("/a?../..") == ["a"]


# --- sans-IO: ranges -------------------------------------------------------------

sizes = st.integers(min_value=0, max_value=10**12)
positions = st.integers(min_value=0, max_value=10**13)


@given(sizes, positions, st.one_of(st.none(), positions))
def test_first_last(size, first, last) -> None:
    value = f"bytes={first}-" + ("" if last is None else str(last))
    decision = parse_range(value, size)
    if last is not None and last < first:
        assert decision is None  # invalid: ignored
    elif size == 0:
        assert decision is None
    elif first >= size:
        assert decision == Unsatisfiable(size)
    else:
        end = size if last is None else min(last + 1, size)
        assert decision == ByteRange(first, end)


@given(sizes, positions)
def test_suffix(size, suffix) -> None:
    decision = parse_range(f"bytes=-{suffix}", size)
    if size == 0:
        assert decision is None
    elif suffix == 0:
        assert decision == Unsatisfiable(size)
    else:
        assert decision == ByteRange(max(size - suffix, 0), size)


@given(st.text(), sizes)
def test_any_text_is_a_decision(value, size) -> None:
    decision = parse_range(value, size)
    if isinstance(decision, ByteRange):
        assert 0 <= decision.start < decision.end <= size
        assert decision.content_range(size).startswith("bytes ")
    else:
        assert decision is None or decision == Unsatisfiable(size)


@given(st.text(alphabet="0123456789", min_size=1, max_size=5000), st.integers(0, 10**9))
def test_huge_numbers(digits, size) -> None:
    # More digits than int() accepts must not raise: a huge first byte is
    # past the end, a huge last byte is clamped.
    decision = parse_range(f"bytes={digits}-", size)
    assert decision is None or isinstance(decision, (ByteRange, Unsatisfiable))
    clamped = parse_range(f"bytes=0-{digits}", size)
    assert clamped is None or clamped.end <= size


def test_range_examples() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == ByteRange(0, 1)
    assert parse_range(" bytes = 2 - 3 ".replace(" ", ""), 10) == ByteRange(2, 4)
    assert parse_range("bytes=0-1, 3-4", 10) is None
    assert parse_range("bytes=1-2-3", 10) is None
    assert parse_range("bytes=+1-2", 10) is None
    assert parse_range("bytes=0x1-2", 10) is None
    assert Unsatisfiable(10).content_range() == "bytes */10"
    assert ByteRange(2, 4).content_range(10) == "bytes 2-3/10"


# --- sans-IO: conditional requests ---------------------------------------------

ETAG = _ranges.make_etag(1_700_000_000_123_456_789, 1000, 42)
MTIME = 1_700_000_000.5
LAST_MODIFIED = email.utils.formatdate(int(MTIME), usegmt=True)
tags = st.text(
    alphabet=st.characters(
        min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"'
    ),
    max_size=20,
).map(lambda t: f'"{t}"')


@given(st.lists(tags, max_size=5), st.lists(tags, max_size=5), st.booleans())
def test_if_none_match_lists(before, after, weak) -> None:
    listed = [*before, ("W/" if weak else "") + ETAG, *after]
    assert _ranges.entity_tags(", ".join(listed)) == listed
    assert _ranges.not_modified(", ".join(listed), None, ETAG, MTIME)
    others = [t for t in before + after if t != ETAG]
    if others:
        assert not _ranges.not_modified(",".join(others), None, ETAG, MTIME)


def test_not_modified_rules() -> None:
    nm = _ranges.not_modified
    assert nm("*", None, ETAG, MTIME)
    assert not nm(None, None, ETAG, MTIME)
    assert not nm("garbage", None, ETAG, MTIME)
    assert not nm('"a" "b"', None, ETAG, MTIME)
    assert nm(None, LAST_MODIFIED, ETAG, MTIME)
    assert not nm(None, "not a date", ETAG, MTIME)
    assert not nm(None, "Sat, 01 Jan 2000 00:00:00 GMT", ETAG, MTIME)
    # If-None-Match wins over If-Modified-Since.
    assert not nm('"other"', LAST_MODIFIED, ETAG, MTIME)


def test_if_range_rules() -> None:
    applies = _ranges.range_applies
    assert applies(None, ETAG, MTIME)
    assert applies(ETAG, ETAG, MTIME)
    assert not applies("W/" + ETAG, ETAG, MTIME)  # If-Range compares strongly
    assert not applies('"other"', ETAG, MTIME)
    assert applies(LAST_MODIFIED, ETAG, MTIME)
    assert not applies("Sat, 01 Jan 2000 00:00:00 GMT", ETAG, MTIME)
    assert not applies("garbage", ETAG, MTIME)
