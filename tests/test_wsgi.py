"""bytepump.wsgi under real WSGI servers, with curl and raw sockets as
clients (DESIGN.md §6).

Each server runs tests/wsgi_app.py in a subprocess: gunicorn's sync and
gthread workers (the body spliced), gthread with TLS, waitress and wsgiref
(the body through the server's write path). Every body is checked by
sha256 against the file or origin object it came from.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IS_PYPY, MIB, WAIT, sha, stop_process
from test_http import OBJECT, ObjectHandler

import bytepump
import bytepump.wsgi
from bytepump import _reply

TESTS = Path(__file__).resolve().parent
CURL = shutil.which("curl")
FILES = {"small.bin": 4096, "medium.bin": 3 * MIB + 7, "empty.bin": 0}
SPLICING = ("gunicorn-sync", "gunicorn-gthread")
SERVERS = (*SPLICING, "gunicorn-tls", "waitress", "wsgiref")
KEEP_ALIVE = ("gunicorn-gthread", "gunicorn-tls")
"""Servers that keep a connection after every kind of response (waitress
closes after a 304 or a chunked body by its own rules)."""

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("wsgi-data")
    for name, size in FILES.items():
        (where / name).write_bytes(os.urandom(size))
    return where


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _command(kind: str, port: int, tls_cert: tuple[str, str]) -> list[str]:
    py = sys.executable
    bind = f"127.0.0.1:{port}"
    if kind == "waitress":
        return [py, "-m", "waitress", f"--listen={bind}", "--threads=4", "wsgi_app:app"]
    if kind == "wsgiref":
        return [py, str(TESTS / "wsgi_app.py"), str(port)]
    worker = "sync" if kind == "gunicorn-sync" else "gthread"
    command = [py, "-m", "gunicorn", "-w", "1", "-k", worker, "--threads", "4"]
    command += ["--keep-alive", "10", "-b", bind, "--log-level", "warning"]
    if kind == "gunicorn-tls":
        command += ["--certfile", tls_cert[0], "--keyfile", tls_cert[1]]
    return [*command, "wsgi_app:app"]


class Server:
    """A WSGI server running tests/wsgi_app.py on a loopback port."""

    def __init__(self, kind: str, data: Path, origin: str, tls_cert, prefix=()):
        self.kind = kind
        self.port = _free_port()
        scheme = "https" if kind == "gunicorn-tls" else "http"
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        env = {**os.environ, "BP_DATA": str(data), "BP_ORIGIN": origin}
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [*prefix, *_command(kind, self.port, tls_cert)],
            cwd=TESTS,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                break
            assert self.process.poll() is None, f"{kind} exited"
            assert time.monotonic() < deadline, f"{kind} did not start"
            time.sleep(0.05)  # polling a port that is not open yet: no event to wait on

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        # Under strace the server is strace's child: stopping the server
        # ends strace too (a terminated strace would detach and leave the
        # server running).
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError, ValueError):
            for child in children.read_text().split():
                os.kill(int(child), signal.SIGTERM)
        stop_process(self.process)


@pytest.fixture(scope="module", params=SERVERS)
def server(request, data, nginx, tls_cert) -> Iterator[Server]:
    running = Server(request.param, data, nginx.url(""), tls_cert)
    try:
        yield running
    finally:
        running.stop()


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [CURL, "-sS", "-k", "--max-time", "20", *args],
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def get(url: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    """Status, head fields (lower-case names) and body of one request."""
    done = curl("-D", "-", "-o", "-", *args, url)
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields, body


def test_whole_file(server, data):
    status, fields, body = get(server.url("/file/medium.bin"))
    expected = (data / "medium.bin").read_bytes()
    assert status == 200
    assert fields["content-length"] == str(len(expected))
    assert sha(body) == sha(expected)
    assert "etag" in fields and "last-modified" in fields
    assert fields["accept-ranges"] == "bytes"


def test_empty_file(server):
    status, fields, body = get(server.url("/file/empty.bin"))
    assert (status, fields["content-length"], body) == (200, "0", b"")


@pytest.mark.parametrize(
    "spec, part",
    [
        ("100-4999", slice(100, 5000)),
        ("-700", slice(-700, None)),
        ("3145000-", slice(3145000, None)),
    ],
)
def test_range(server, data, spec, part):
    expected = (data / "medium.bin").read_bytes()
    status, fields, body = get(server.url("/file/medium.bin"), "-r", spec)
    assert status == 206
    assert sha(body) == sha(expected[part])
    assert fields["content-range"].endswith(f"/{len(expected)}")


def test_unsatisfiable_range(server, data):
    status, fields, body = get(server.url("/file/small.bin"), "-r", "99999-")
    assert status == 416
    assert fields["content-range"] == "bytes */4096"
    assert body == b""


def test_if_none_match_is_304(server):
    _, fields, _ = get(server.url("/file/small.bin"))
    status, _, body = get(
        server.url("/file/small.bin"), "-H", f"If-None-Match: {fields['etag']}"
    )
    assert (status, body) == (304, b"")


def test_if_range_that_no_longer_matches_gets_all(server, data):
    status, _, body = get(
        server.url("/file/small.bin"), "-r", "0-9", "-H", 'If-Range: "old"'
    )
    assert status == 200 and body == (data / "small.bin").read_bytes()


def test_head(server):
    # curl -I prints the head as its output: any body bytes would follow it.
    done = curl("-I", server.url("/file/medium.bin"))
    head, _, rest = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    assert f"content-length: {FILES['medium.bin']}".encode() in head.lower()
    assert rest == b""


def test_window_of_a_file(server, data):
    status, fields, body = get(server.url("/window/medium.bin?offset=10&count=1000"))
    assert status == 200 and fields["content-length"] == "1000"
    assert body == (data / "medium.bin").read_bytes()[10:1010]


@pytest.mark.parametrize("http10", [False, True], ids=["http1.1", "http1.0"])
def test_pipe_of_unknown_length(server, data, http10):
    status, fields, body = get(
        server.url("/pipe/medium.bin"), *(["--http1.0"] if http10 else [])
    )
    assert status == 200
    assert sha(body) == sha((data / "medium.bin").read_bytes())
    assert "content-length" not in fields
    if http10 or server.kind == "wsgiref":
        assert "transfer-encoding" not in fields
    else:
        assert fields["transfer-encoding"] == "chunked"


def test_edge_include(server, nginx):
    expected = (nginx.directory / "www" / "big.bin").read_bytes()
    status, fields, body = get(server.url("/edge/big.bin"))
    assert status == 200
    assert sha(body) == sha(expected)
    assert fields["content-length"] == str(len(expected))
    assert "etag" in fields and "last-modified" in fields
    # The origin's "Connection: close" is hop-by-hop: not passed on.
    if server.kind in KEEP_ALIVE:
        assert fields.get("connection", "keep-alive").lower() != "close"


def test_edge_include_forwards_the_range(server, nginx):
    expected = (nginx.directory / "www" / "big.bin").read_bytes()
    status, fields, body = get(server.url("/edge/big.bin"), "-r", "1000-1999999")
    assert status == 206
    assert body == expected[1000:2000000]
    assert fields["content-range"] == f"bytes 1000-1999999/{len(expected)}"


def test_edge_include_of_a_missing_object_lets_the_app_answer(server):
    status, _, body = get(server.url("/edge/missing.bin"))
    assert (status, body) == (404, b"")


def test_flask_view(server, nginx):
    expected = (nginx.directory / "www" / "big.bin").read_bytes()
    status, _, body = get(server.url("/flask/edge/big.bin"))
    assert status == 200 and sha(body) == sha(expected)


def test_several_requests_on_one_connection(server, data, nginx):
    paths = [
        "/file/small.bin",
        "/file/medium.bin",
        "/edge/small.bin",
        "/file/small.bin",
    ]
    args = []
    for i, path in enumerate(paths):
        args += ["-o", str(data / f"out{i}"), server.url(path)]
    done = curl("-w", "%{num_connects}\n", *args)
    connects = sum(int(n) for n in done.stdout.split())
    if server.kind in KEEP_ALIVE:
        assert connects == 1
    origin = nginx.directory / "www"
    sources = [
        data / "small.bin",
        data / "medium.bin",
        origin / "small.bin",
        data / "small.bin",
    ]
    for i, source in enumerate(sources):
        assert (data / f"out{i}").read_bytes() == source.read_bytes()


def _abort_on_the_way(conn, request, index):
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nETag: "x"\r\n\r\n')
    conn.sendall(b"a" * 300000)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")


def test_a_body_that_cannot_be_completed_is_aborted(server, origin):
    origin.serve(_abort_on_the_way)
    done = curl(
        "-o", "/dev/null", server.url(f"/fetch?url={origin.url()}"), check=False
    )
    # 18: partial file; 56: failure receiving (a reset): never a clean 0.
    assert done.returncode in (18, 56), done


def test_a_broken_origin_is_resumed(server, origin):
    origin.serve(ObjectHandler(faults=[("reset", 70000), ("cut", 150000)]))
    status, _, body = get(server.url(f"/fetch?url={origin.url()}"))
    assert status == 200 and sha(body) == sha(OBJECT)
    assert len(origin.requests) == 3
    assert origin.requests[1].headers["Range"] == "bytes=70000-"


def test_every_kind_of_response_keeps_the_connection(server, data, nginx):
    """curl --next keeps one connection across requests with other options:
    each response must leave the connection ready for the next request."""
    plan = [
        (
            ["-r", "10-19"],
            "/file/medium.bin",
            (data / "medium.bin").read_bytes()[10:20],
        ),
        (["-r", "99999999-"], "/file/small.bin", b""),
        (["-H", "If-None-Match: *"], "/file/small.bin", b""),
        (["-I"], "/file/small.bin", None),
        ([], "/pipe/small.bin", (data / "small.bin").read_bytes()),
        (
            ["-r", "-100"],
            "/edge/big.bin",
            (nginx.directory / "www" / "big.bin").read_bytes()[-100:],
        ),
        ([], "/edge/missing.bin", b""),
        ([], "/file/small.bin", (data / "small.bin").read_bytes()),
    ]
    args: list[str] = []
    for i, (options, path, _) in enumerate(plan):
        if i:
            args.append("--next")
        args += [
            "-sS",
            "-k",
            *options,
            "-o",
            str(data / f"kind{i}"),
            "-w",
            "%{num_connects}\n",
        ]
        args.append(server.url(path))
    done = curl(*args)
    if server.kind in KEEP_ALIVE:
        assert sum(int(n) for n in done.stdout.split()) == 1
    for i, (_, _, expected) in enumerate(plan):
        out = data / f"kind{i}"  # curl makes no file for an empty body
        if expected is not None:
            assert (out.read_bytes() if out.exists() else b"") == expected, plan[i]


@pytest.mark.parametrize("code", [204, 304])
def test_a_bodiless_status_sends_no_body(server, data, code):
    """The next response on the connection starts right after the head."""
    args = ["-sS", "-k", "-o", str(data / "first"), "-w", "%{http_code} "]
    args += [server.url(f"/status/{code}/small.bin"), "--next", "-sS", "-k"]
    args += ["-o", str(data / "second"), "-w", "%{http_code}"]
    done = curl(*args, server.url("/file/small.bin"))
    assert done.stdout.split() == [str(code).encode(), b"200"]
    assert (data / "second").read_bytes() == (data / "small.bin").read_bytes()


def test_the_callers_reason_phrase_is_kept(server):
    done = curl("-D", "-", "-o", "/dev/null", server.url("/status/203/small.bin"))
    assert done.stdout.split(b"\r\n")[0].endswith(b" 203 Mine")


def test_a_zip_archive_and_a_resumed_download_of_it(server, data, tmp_path):
    whole = tmp_path / "whole.zip"
    status, fields, body = get(server.url("/zip"))
    assert status == 200
    whole.write_bytes(body)
    assert int(fields["content-length"]) == len(body)
    assert fields["content-type"] == "application/zip"
    assert "filename*=UTF-8''donn%C3%A9es.zip" in fields["content-disposition"]
    with zipfile.ZipFile(whole) as archive:
        for name in FILES:
            assert archive.read(f"files/{name}") == (data / name).read_bytes()
    subprocess.run(["unzip", "-tq", str(whole)], check=True, capture_output=True)
    # A download broken at byte 1000 resumes with If-Range: the rest fits.
    cut = 1000
    resumed = get(
        server.url("/zip"), "-r", f"{cut}-", "-H", f"If-Range: {fields['etag']}"
    )
    assert resumed[0] == 206
    assert body[:cut] + resumed[2] == body


def test_a_pipe_nobody_closes_is_closed_by_the_collector(tmp_path):
    """A middleware that drops the iterable without close(): the pipe and
    the mover thread still go."""
    import gc
    import threading

    from conftest import open_fds

    (tmp_path / "f").write_bytes(os.urandom(300_000))
    before_fds, before_threads = open_fds(), threading.active_count()
    with open(tmp_path / "f", "rb") as f:
        environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1"}
        body = bytepump.wsgi.respond_with(f)(environ, lambda s, h: None)
        assert next(iter(body))
        del body
        gc.collect()
        deadline = time.monotonic() + WAIT
        while threading.active_count() > before_threads:
            assert time.monotonic() < deadline, "the mover thread did not end"
            time.sleep(0.01)  # a thread's end has no event to wait on here
    assert open_fds() == before_fds


def test_bad_arguments_fail_at_once():
    with pytest.raises(ValueError):
        bytepump.wsgi.respond_with(0, headers={"X": "a\r\nb"})
    with pytest.raises(ValueError):
        bytepump.wsgi.respond_with(0, headers={"Content-Length": "5"})
    with pytest.raises(TypeError):
        bytepump.wsgi.respond_with(object())
    with pytest.raises(ValueError):
        bytepump.wsgi.respond_with(0, status="OK")
    with pytest.raises(ValueError):
        bytepump.wsgi.respond_with(0, count=-1)
    with pytest.raises(ValueError):
        bytepump.wsgi.respond_from("http://127.0.0.1/", headers={"Range": "bytes=1-"})
    for status in ("100 Continue", "099 X", "600 X", "2OO OK", "200 \u00e9"):
        with pytest.raises(ValueError):
            bytepump.wsgi.respond_with(0, status=status)
    with open(__file__, "rb") as f, pytest.raises(ValueError, match="etag"):
        bytepump.wsgi.respond_with(f, headers={"ETag": '"mine"'})


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, _reply.Forward()),
        ("bytes=5-9", _reply.Forward(5, 5)),
        ("bytes=5-", _reply.Forward(5)),
        ("bytes=-7", _reply.Forward(suffix=7)),
        ("bytes=0-", _reply.Forward()),
        ("bytes=9-5", _reply.Forward()),
        ("bytes=1-2,4-5", _reply.Forward()),
        ("items=1-2", _reply.Forward()),
        ("bytes=-0", _reply.Forward()),
        ("bytes=x-1", _reply.Forward()),
    ],
)
def test_forward_range(value, expected):
    fields = {"Range": value} if value is not None else {}
    assert _reply.forward_range(fields.get) == expected


# -- where the body went: spliced in the kernel, or bounded in memory ------


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
@pytest.mark.parametrize("kind", SPLICING)
def test_splicing_servers_move_the_body_in_the_kernel(
    kind, data, nginx, tls_cert, tmp_path
):
    log = tmp_path / "strace.log"
    traced = "trace=splice,sendfile,sendto,sendmsg,write,writev"
    # --seccomp-bpf: the kernel filters the syscalls, so the rest run at
    # full speed (ptrace would stop the worker at every one).
    prefix = [STRACE, "-f", "--seccomp-bpf", "-qq", "-e", traced, "-o", str(log)]
    running = Server(kind, data, nginx.url(""), tls_cert, prefix=prefix)
    try:
        for path, size in (
            ("/file/medium.bin", FILES["medium.bin"]),
            ("/edge/big.bin", 3 * MIB + 7),
        ):
            before = log.read_text() if log.exists() else ""
            _, _, body = get(running.url(path))
            assert len(body) == size
            calls = log.read_text()[len(before) :]
            moved = sum(
                int(n) for n in re.findall(r"(?:splice|sendfile)\(.*\) = (\d+)", calls)
            )
            written = sum(
                int(n)
                for n in re.findall(
                    r"(?:sendto|sendmsg|write|writev)\(.*\) = (\d+)", calls
                )
            )
            # The kernel moved the body at least once; Python wrote only heads.
            assert moved >= size, calls[-2000:]
            assert written < 4096, calls[-2000:]
    finally:
        running.stop()


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


@pytest.mark.skipif(
    IS_PYPY, reason="PyPy's RSS moves with its GC and JIT, not with the body"
)
@pytest.mark.parametrize("kind", ["waitress", "wsgiref"])
def test_fallback_keeps_memory_bounded(kind, tmp_path, nginx, tls_cert):
    with (tmp_path / "big.bin").open("wb") as f:
        f.truncate(256 * MIB)
    (tmp_path / "small.bin").write_bytes(os.urandom(70000))
    running = Server(kind, tmp_path, nginx.url(""), tls_cert)
    try:
        get(running.url("/file/small.bin"))  # the modules loaded, the pipe made
        pid = running.process.pid
        warm = _peak_rss_kib(pid)
        done = curl(
            "-o", "/dev/null", "-w", "%{size_download}", running.url("/file/big.bin")
        )
        assert int(done.stdout) == 256 * MIB
        assert _peak_rss_kib(pid) - warm < 32 * 1024
    finally:
        running.stop()
