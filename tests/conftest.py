"""Shared fixtures: fd-pair factories, origins, leak checks."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import itertools
import os
import platform
import select
import socket
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

IS_PYPY = platform.python_implementation() == "PyPy"

SRC_KINDS = ("file", "pipe", "tcp", "unix")
"""Descriptor kinds a source can be; every one of them is a sink kind too."""
DST_KINDS = (*SRC_KINDS, "devnull")
"""Sink kinds: ``devnull`` keeps nothing, so only the byte count is checked."""
SIZES = (0, 1, 4095, 65537, 3 * 1024 * 1024 + 7)
MIB = 1024 * 1024

WAIT = 30.0
"""Upper bound, in seconds, of every wait on a helper thread or a peer."""
LINGER_0 = struct.pack("ii", 1, 0)
SLOW_READ_BUFFER = 65536
"""The receive buffer (doubled by the kernel) of a TCP client that reads
slowly. The sender learns of what the client read only from its window
updates, which come about once per receive buffer read (or per zero-window
probe, 0.2 s and more): 0.1 to 0.35 s apart when 8 KiB are read every 20
ms. With a 2 MiB buffer they come 0.8 s apart."""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def payload(size: int) -> bytes:
    """``size`` random bytes, the same ones for a given size within a run."""
    return os.urandom(size)


def getfl(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def position(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)  # Python < 3.10 lacks it


def fd_state(fd: int) -> tuple[int, int | None]:
    """A descriptor's file status flags, and its capacity if it is a pipe."""
    is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    return getfl(fd), fcntl.fcntl(fd, F_GETPIPE_SZ) if is_pipe else None


@contextlib.contextmanager
def flags_kept(*fds: int) -> Iterator[None]:
    """Check that the file status flags of ``fds`` (and the size of a pipe)
    are the same afterwards.

    Put it outside ``pytest.raises`` so that it checks after an error too.
    """
    before = [fd_state(fd) for fd in fds]
    yield
    assert [fd_state(fd) for fd in fds] == before, "flags or pipe size changed"


PATHS = ("shortest", "pooled")
"""How a test may force the engine's path for a pair: ``shortest`` is the
table's own choice (sendfile for file → socket, copy_file_range for file →
file), ``pooled`` takes those two away, so that such a pair goes through
the pooled pipe, their fallback."""


@contextlib.contextmanager
def forced_path(name: str) -> Iterator[None]:
    """Run the block with the engine's path table forced to ``name``."""
    from bytepump import _paths, _pump, _transfer

    table = _transfer.kernel_path
    skipped = (_pump.SendfilePump, _pump.CopyRangePump)

    def pooled(src, dst):
        path, why = table(src, dst)
        return tuple(p for p in path if p not in skipped), why

    _transfer.kernel_path = table if name == "shortest" else pooled
    try:
        yield
    finally:
        _transfer.kernel_path = _paths.kernel_path


@pytest.fixture(params=PATHS)
def path(request) -> Iterator[str]:
    """Runs a test once per way through the engine (see :data:`PATHS`)."""
    with forced_path(request.param):
        yield request.param


def open_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def set_buffers(sock: socket.socket, size: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def tcp_pair(bufsize: int | None = None) -> tuple[socket.socket, socket.socket]:
    """A connected pair of blocking TCP sockets on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        if bufsize:
            set_buffers(listener, bufsize)  # inherited by the accepted socket
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(WAIT)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if bufsize:
            set_buffers(client, bufsize)
        client.settimeout(WAIT)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    client.settimeout(None)
    server.settimeout(None)
    return client, server


def unix_pair(bufsize: int | None = None) -> tuple[socket.socket, socket.socket]:
    """A connected pair of blocking Unix stream sockets."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if bufsize:
        set_buffers(a, bufsize)
        set_buffers(b, bufsize)
    return a, b


def socket_pair(kind: str, bufsize: int | None = None):
    return tcp_pair(bufsize) if kind == "tcp" else unix_pair(bufsize)


def read_to_eof(fd: int, timeout: float = WAIT) -> bytes:
    """Everything ``fd`` (pipe or socket, blocking or not) yields until EOF."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    out = bytearray()
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no end of file on fd {fd} within {timeout} s"
        if not poller.poll(left * 1000):
            continue
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            return bytes(out)
        out += chunk


def fill(sock: socket.socket) -> int:
    """Write into ``sock`` until it would block; return the bytes written."""
    was = sock.gettimeout()
    sock.setblocking(False)
    total = 0
    block = b"\0" * 65536
    try:
        while True:
            try:
                total += sock.send(block)
            except BlockingIOError:
                return total
    finally:
        sock.settimeout(was)


def pieces(data: bytes, sizes: Sequence[int] | None) -> Iterator[memoryview]:
    """``data`` cut in pieces whose sizes cycle through ``sizes``."""
    view = memoryview(data)
    if not sizes:
        yield view
        return
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(view):
            return
        yield view[start : start + size]
        start += size


def write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


class _Thread(threading.Thread):
    """A daemon thread that keeps the exception that ended it."""

    def __init__(self, target, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except OSError as exc:  # the test closed our peer: expected
            self.error = exc


class Source:
    """A descriptor that yields ``data`` then end of file.

    Pipes and sockets are fed by a thread writing ``data`` (in pieces of
    ``chunks`` bytes when given) into the other end. With ``hold_open`` the
    feeder keeps its end open after the data (a silent peer) until
    :meth:`finish`; with ``reset`` a socket feeder resets the connection
    instead of ending it.
    """

    def __init__(self, kind: str, fd: int, obj, data: bytes) -> None:
        self.kind = kind
        self.fd = fd
        self.obj = obj
        self.data = data
        self.path: Path | None = None
        self.released = threading.Event()

    def finish(self) -> None:
        """Let a ``hold_open`` feeder close its end (end of file)."""
        self.released.set()

    def rest(self) -> bytes:
        """What is left to read from the source, up to end of file."""
        if self.kind == "file":
            out = bytearray()
            while True:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    return bytes(out)
                out += chunk
        self.finish()
        return read_to_eof(self.fd)


class Sink:
    """A descriptor whose received bytes can be collected with :meth:`received`.

    Pipes and sockets are drained by a thread reading from the other end
    (``chunk`` bytes per read), unless ``drain=False``: then nobody reads (a
    slowloris peer) until :meth:`received` is called. ``close_after``: the
    reader closes its end once it has that many bytes (a peer going away).
    ``gap``: the reader pauses that long after each read (a slow but steady
    client); ``stop_after``: it stops reading once it has that many bytes
    (a client gone silent). Both last until :meth:`hurry` or
    :meth:`received`.
    """

    def __init__(self, endpoints: Endpoints, kind: str, fd: int, obj) -> None:
        self._endpoints = endpoints
        self.kind = kind
        self.fd = fd
        self.obj = obj
        self.path: Path | None = None
        self.peer = None
        self.buffer = bytearray()
        self.chunk = 65536
        self.close_after: int | None = None
        self.gap = 0.0
        self.stop_after: int | None = None
        self.stopped_at: float | None = None
        """``time.monotonic()`` when the reader stopped for ``stop_after``."""
        self.hurried = threading.Event()
        self.drainer: _Thread | None = None

    def drain(self) -> None:
        """Start reading from the peer end (once)."""
        if self.drainer is None and self.peer is not None:
            self.drainer = self._endpoints.spawn(self._drain, "drain")

    def _drain(self) -> None:
        peer = self.peer
        read = peer.recv if isinstance(peer, socket.socket) else peer.read
        while True:
            chunk = read(self.chunk)
            if not chunk:
                return
            self.buffer += chunk
            if self.close_after is not None and len(self.buffer) >= self.close_after:
                peer.close()
                return
            if self.hurried.is_set():
                continue
            if self.stop_after is not None and len(self.buffer) >= self.stop_after:
                self.stopped_at = time.monotonic()
                self.hurried.wait(WAIT)
            elif self.gap:
                self.hurried.wait(self.gap)  # the client's pace, not a sync

    def hurry(self) -> None:
        """From now on read as fast as the bytes come (``gap`` and
        ``stop_after`` end)."""
        self.hurried.set()

    def end(self) -> None:
        """End the caller's side of the stream, so that the reader sees EOF."""
        if isinstance(self.obj, socket.socket):
            with contextlib.suppress(OSError):
                self.obj.shutdown(socket.SHUT_WR)
        else:
            self.obj.close()

    def received(self) -> bytes | None:
        """All bytes that reached the sink (``None`` for /dev/null).

        For a pipe or socket this ends the caller's side of the stream.
        """
        if self.kind == "devnull":
            return None
        if self.path is not None:
            return self.path.read_bytes()
        self.hurry()
        self.drain()
        self.end()
        self.drainer.join(WAIT)
        assert not self.drainer.is_alive(), "sink never saw end of file"
        return bytes(self.buffer)


class Endpoints:
    """Makes sources and sinks and cleans up after them (usable without pytest).

    Teardown closes the caller's ends first (so that blocked feeders fail and
    drains see end of file), then joins the helper threads (bounded), then
    closes the helper ends.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._names = itertools.count()
        self._callers: list[object] = []
        self._peers: list[object] = []
        self._threads: list[_Thread] = []
        self._events: list[threading.Event] = []
        self._files: list[Path] = []

    def __enter__(self) -> Endpoints:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def adopt(self, caller=None, peer=None, event=None) -> None:
        """Have teardown close ``caller`` and ``peer`` and set ``event``."""
        if caller is not None:
            self._callers.append(caller)
        if peer is not None:
            self._peers.append(peer)
        if event is not None:
            self._events.append(event)

    def spawn(self, target, name: str) -> _Thread:
        thread = _Thread(target, name)
        self._threads.append(thread)
        thread.start()
        return thread

    def new_path(self, prefix: str) -> Path:
        path = self.directory / f"{prefix}-{next(self._names)}"
        self._files.append(path)
        return path

    def pipe(self):
        """A pipe as two unbuffered file objects (read end, write end), both
        closed at teardown."""
        r, w = os.pipe()
        ends = os.fdopen(r, "rb", buffering=0), os.fdopen(w, "wb", buffering=0)
        self._peers.extend(ends)
        return ends

    def source(
        self,
        kind: str,
        data: bytes = b"",
        *,
        nonblocking: bool = False,
        chunks: Sequence[int] | None = None,
        hold_open: bool = False,
        reset: bool = False,
        bufsize: int | None = None,
    ) -> Source:
        if kind == "file":
            path = self.new_path("src")
            path.write_bytes(data)
            obj = open(path, "rb", buffering=0)  # noqa: SIM115
            self._callers.append(obj)
            src = Source(kind, obj.fileno(), obj, data)
            src.path = path
        elif kind == "pipe":
            r, w = self.pipe()
            self._callers.append(r)
            self._peers.append(w)
            src = Source(kind, r.fileno(), r, data)
            self._feed(src, w, chunks, hold_open, reset)
        elif kind in ("tcp", "unix"):
            mine, peer = socket_pair(kind, bufsize)
            self._callers.append(mine)
            self._peers.append(peer)
            src = Source(kind, mine.fileno(), mine, data)
            self._feed(src, peer, chunks, hold_open, reset)
        else:
            raise ValueError(f"no source kind {kind!r}")
        os.set_blocking(src.fd, not nonblocking)
        return src

    def _feed(self, src: Source, peer, chunks, hold_open: bool, reset: bool) -> None:
        self._events.append(src.released)

        def feed() -> None:
            is_socket = isinstance(peer, socket.socket)
            for piece in pieces(src.data, chunks):
                if is_socket:
                    peer.sendall(piece)
                else:
                    write_all(peer.fileno(), piece)
            if hold_open:
                src.released.wait(WAIT)
            if reset:  # close with SO_LINGER 0: the reader gets ECONNRESET
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
                peer.close()
            elif is_socket:
                peer.shutdown(socket.SHUT_WR)
            else:
                peer.close()

        self.spawn(feed, f"feed-{src.kind}")

    def sink(
        self,
        kind: str,
        *,
        nonblocking: bool = False,
        drain: bool = True,
        chunk: int = 65536,
        close_after: int | None = None,
        gap: float = 0.0,
        stop_after: int | None = None,
        bufsize: int | None = None,
        prefix: bytes = b"",
        append: bool = False,
    ) -> Sink:
        if kind == "file":
            path = self.new_path("dst")
            path.write_bytes(prefix)
            flags = os.O_WRONLY | (os.O_APPEND if append else 0)
            obj = os.fdopen(os.open(path, flags), "wb", buffering=0)
            sink = Sink(self, kind, obj.fileno(), obj)
            sink.path = path
        elif kind == "devnull":
            obj = open(os.devnull, "wb", buffering=0)  # noqa: SIM115
            sink = Sink(self, kind, obj.fileno(), obj)
        elif kind == "pipe":
            r, obj = self.pipe()
            self._peers.append(r)
            sink = Sink(self, kind, obj.fileno(), obj)
            sink.peer = r
        elif kind in ("tcp", "unix"):
            obj, peer = socket_pair(kind, bufsize)
            self._peers.append(peer)
            sink = Sink(self, kind, obj.fileno(), obj)
            sink.peer = peer
        else:
            raise ValueError(f"no sink kind {kind!r}")
        self._callers.append(obj)
        sink.chunk = chunk
        sink.close_after = close_after
        sink.gap = gap
        sink.stop_after = stop_after
        self._events.append(sink.hurried)
        if drain:
            sink.drain()
        os.set_blocking(sink.fd, not nonblocking)
        return sink

    def close(self) -> None:
        for obj in self._callers:
            obj.close()
        for event in self._events:
            event.set()
        stuck = []
        for thread in self._threads:
            thread.join(WAIT)
            if thread.is_alive():
                stuck.append(thread.name)
        for obj in self._peers:
            obj.close()
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        assert not stuck, f"helper threads did not finish: {stuck}"


@pytest.fixture
def endpoints(tmp_path: Path) -> Iterator[Endpoints]:
    with Endpoints(tmp_path) as made:
        yield made


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for ``localhost``: (certfile, keyfile)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-days", "1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )  # fmt: skip
    return str(cert), str(key)


# --- HTTP origins (nginx, fault-injecting origin) ---

NGINX = "/usr/sbin/nginx"
ORIGIN_FILES = {
    "empty.bin": 0,
    "small.bin": 1000,
    "odd name.bin": 4095,
    "big.bin": 3 * MIB + 7,
}
"""Files the nginx origin serves: name → size (random bytes from payload())."""

_NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location = /redirect-relative {{
            absolute_redirect off;
            return 302 /small.bin;
        }}
        location = /redirect-absolute {{ return 301 /big.bin; }}
        location = /loop {{ return 302 /loop; }}
        location = /hop1 {{ return 302 /hop2; }}
        location = /hop2 {{ return 307 /hop3; }}
        location = /hop3 {{ absolute_redirect off; return 308 /small.bin; }}
    }}
}}
"""


def stop_process(process: subprocess.Popen) -> None:
    """Terminate a server a fixture started, killing it if it lingers."""
    process.terminate()
    try:
        process.wait(WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(WAIT)


class Nginx:
    """A running nginx on 127.0.0.1 serving :data:`ORIGIN_FILES`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.drainer: threading.Thread | None = None
        self.log: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        www = self.directory / "www"
        www.mkdir()
        for name, size in ORIGIN_FILES.items():
            (www / name).write_bytes(payload(size))
        # A port chosen free may be taken before nginx binds it: try again.
        for _ in range(5):
            if self._try_start():
                return
        raise RuntimeError("nginx did not start:\n" + "".join(self.log))

    def _try_start(self) -> bool:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        conf = self.directory / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(dir=self.directory, port=self.port))
        self.log = []
        ready = threading.Event()
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.directory), "-c", str(conf), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stderr = self.process.stderr

        def drain() -> None:
            # nginx logs its rlimit once its listening sockets are open (and
            # connections queue in the backlog): that line is the signal.
            # Reading on keeps the pipe from ever filling.
            for line in stderr:
                self.log.append(line)
                if "getrlimit" in line:
                    ready.set()
            ready.set()

        self.drainer = threading.Thread(target=drain, name="nginx-log", daemon=True)
        self.drainer.start()
        assert ready.wait(WAIT), "nginx said nothing"
        if self.process.poll() is None:
            return True
        self.process.wait(WAIT)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        self.drainer.join(WAIT)  # it ends at the pipe's EOF, after the exit
        self.process.stderr.close()


@pytest.fixture(scope="session")
def nginx(tmp_path_factory) -> Iterator[Nginx]:
    """A real nginx (Debian nginx-light) with a generated configuration."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed")
    server = Nginx(tmp_path_factory.mktemp("nginx"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


class OriginRequest:
    """A request as the fault-injecting origin received it."""

    def __init__(self, line: str, headers) -> None:
        self.line = line
        self.headers = headers

    @property
    def target(self) -> str:
        return self.line.split(" ")[1]


class FaultOrigin:
    """A loopback HTTP origin whose every answer a test scripts.

    Each connection's request head is parsed and recorded, then
    ``handler(conn, request, index)`` writes whatever bytes it likes (index
    counts connections from 0). ``connections`` counts accepted ones, so a
    test can tell that nothing connected at all.
    """

    def __init__(self, tls_context=None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls_context = tls_context
        self.handler = None
        self.requests: list[OriginRequest] = []
        self.connections = 0
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def url(self, path: str = "/object") -> str:
        if self.tls_context is not None:
            return f"https://localhost:{self.port}{path}"
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, handler) -> FaultOrigin:
        self.handler = handler
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was shut down
            with self._lock:
                index = self.connections
                self.connections += 1
            thread = threading.Thread(
                target=self._serve_one, args=(conn, index), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve_one(self, conn: socket.socket, index: int) -> None:
        import http.client

        try:
            conn.settimeout(WAIT)
            if self.tls_context is not None:
                conn = self.tls_context.wrap_socket(conn, server_side=True)
            with conn.makefile("rb") as rfile:
                line = rfile.readline(65537).decode("latin-1").rstrip("\r\n")
                headers = http.client.parse_headers(rfile)
            request = OriginRequest(line, headers)
            with self._lock:
                self.requests.append(request)
            self.handler(conn, request, index)
        except (OSError, ValueError) as exc:  # the client went away
            self.errors.append(exc)
        finally:
            conn.close()

    def wait_idle(self) -> None:
        """Wait until every connection so far has been answered and closed."""
        for thread in list(self._threads):
            thread.join(WAIT)
        stuck = [t for t in self._threads if t.is_alive()]
        assert not stuck, "origin handlers did not finish"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()
        self._accepting.join(WAIT)
        self.wait_idle()


@pytest.fixture
def origin() -> Iterator[FaultOrigin]:
    """A fault-injecting origin on 127.0.0.1 (plain HTTP)."""
    server = FaultOrigin()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tls_origin(tls_cert, monkeypatch) -> Iterator[FaultOrigin]:
    """The fault-injecting origin behind TLS, at ``https://localhost:port``,
    its self-signed certificate trusted by ``ssl.create_default_context``."""
    import ssl

    from bytepump import edge

    cert, key = tls_cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    edge._tls_context.cache_clear()
    server = FaultOrigin(context)
    try:
        yield server
    finally:
        server.close()
        edge._tls_context.cache_clear()


# --- zip archives ---

UNZIP = "/usr/bin/unzip"
SEVEN_ZIP = "/usr/bin/7z"
BSDTAR = "/usr/bin/bsdtar"

UNSAFE_ZIP_NAMES = (
    "../../evil.txt",
    "a/../../b",
    "..",
    "/etc/abs.txt",
    "C:/win.txt",
    "c:win.txt",
    "a\\..\\..\\win.txt",
    "new\nline",
    "esc\x1b[2Jape",
    "del\x7f",
    "c1\x85",
    "nul\0",
    "a//b",
    "./a",
    "a/./b",
)
"""Entry names every zip writer refuses (DESIGN §3): zip-slip, forged
listings, and two spellings of one path."""
CLASHING_ZIP_NAMES = (
    ("a", "a"),
    ("d/", "d/"),
    ("a", "a/"),
    ("a/", "a"),
    ("a", "a/b"),
    ("a/b", "a"),
    ("x/y/z", "x/y"),
)
"""Pairs of entry names whose second one is refused after the first."""


def tool(*args: str) -> str:
    """Run an archive tool; its stdout, after checking it succeeded."""
    # A UTF-8 locale, so that the tools print UTF-8 names as they are.
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=WAIT, check=False, env=env
    )
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def check_zip(path: Path, expected: dict[str, bytes], *, tools: bool = True) -> None:
    """The zip at ``path`` holds exactly ``expected`` (name → content), in
    that order: by zipfile (``testzip``, each entry by sha256) and, with
    ``tools``, by Info-ZIP ``unzip -t``, 7-Zip ``7z t`` and libarchive
    ``bsdtar -tf``."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == list(expected)
        for name, content in expected.items():
            assert sha(archive.read(name)) == sha(content), name
    if not tools:
        return
    tested = tool(UNZIP, "-t", str(path))
    assert tested.count("OK\n") == len(expected)
    assert "Everything is Ok" in tool(SEVEN_ZIP, "t", str(path))
    listed = tool(BSDTAR, "-tf", str(path)).splitlines()
    assert listed == list(expected)


# --- an aiohttp server in a thread of its own --------------------------------


class AiohttpServer:
    """A real aiohttp server (``web.AppRunner`` + ``TCPSite`` on 127.0.0.1)
    whose loop runs in a thread, so blocking clients (curl, sockets) can
    talk to it from the test. ``loop_kind``: ``asyncio`` or ``uvloop``."""

    def __init__(self, app, loop_kind: str = "asyncio", ssl_context=None) -> None:
        import asyncio

        if loop_kind == "uvloop":
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.app = app
        self.ssl_context = ssl_context
        self.port = 0
        self.errors: list[BaseException] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aiohttp", daemon=True)

    def _run(self) -> None:
        self.loop.run_forever()

    def start(self) -> AiohttpServer:
        import asyncio

        from aiohttp import web

        self._thread.start()

        async def setup():
            self.runner = web.AppRunner(self.app, handle_signals=False)
            await self.runner.setup()
            site = web.TCPSite(
                self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context
            )
            await site.start()
            return site._server.sockets[0].getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(setup(), self.loop).result(WAIT)
        return self

    def url(self, path: str) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        import asyncio
        import gc

        future = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        future.result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()
        gc.collect()  # KERNEL-NOTES: no stray task garbage during a report
