"""``bytepump serve``: a static file server whose bodies are spliced.

One thread per connection (:class:`http.server.ThreadingHTTPServer`); the
request head is parsed by :class:`http.server.BaseHTTPRequestHandler`, the
decisions come from :mod:`bytepump._ranges`, and each body goes from the
file to the client's socket with :func:`bytepump.splice_to`, never through
Python. HTTP/1.1 keep-alive is supported.

A client gets ``timeout`` seconds to send a whole request head (a deadline,
so trickling one byte at a time buys nothing), including the wait for the
next request on a kept-alive connection, and a body write that makes no
progress for ``timeout`` seconds drops the connection.
"""

from __future__ import annotations

import http.server
import io
import mimetypes
import os
import socket
import stat
import sys
import time
from typing import Any, BinaryIO

from . import __version__, _ranges
from ._errors import DownstreamTimeout
from .pump import splice_to

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
"""O_NONBLOCK: opening a FIFO someone put in the directory must not hang the
thread (it is then refused as not a regular file). O_NOFOLLOW: the last
component was resolved already; a symlink swapped in since is refused."""


def resolve(root: str, target: str) -> str | None:
    """The real path of the file ``target`` names below ``root`` (itself a
    real path), or ``None`` if it names nothing there or leads outside it
    (through ``..``, encoded separators or a symbolic link)."""
    parts = _ranges.path_parts(target)
    if parts is None:
        return None
    real = os.path.realpath(os.path.join(root, *parts))
    if os.path.commonpath([root, real]) != root:
        return None
    return real


def open_regular(path: str) -> BinaryIO | None:
    """``path`` opened for reading if it is a regular file, else ``None``
    (missing, unreadable, a directory, a device, a FIFO, or a symlink
    swapped in since it was resolved)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return open(fd, "rb", buffering=0, closefd=True)
    os.close(fd)
    return None


class _HeadDeadline(io.RawIOBase):
    """Reads from a socket, each ``recv`` waiting no later than the handler's
    deadline, so a slowloris client cannot stretch a request head out."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._handler.connection
        remaining = self._handler.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("request head not received in time")
        sock.settimeout(remaining)
        try:
            return sock.recv_into(buffer)
        finally:
            sock.settimeout(self._handler.server.idle_timeout)


class Server(http.server.ThreadingHTTPServer):
    """Serves the regular files below ``root``; ``idle_timeout`` bounds every
    wait on a client."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], root: str, timeout: float) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.root = os.path.realpath(root)
        mimetypes.init()  # once, here: a lazy first init races between threads
        self.idle_timeout = timeout
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # One log line, not socketserver's traceback: a client that resets
        # the connection mid-request is not the server's bug.
        exc = sys.exc_info()[1]
        sys.stderr.write(f"{client_address[0]} - - {type(exc).__name__}: {exc}\n")


class Handler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD for files, with single ranges and conditional requests."""

    server: Server
    protocol_version = "HTTP/1.1"
    server_version = f"bytepump/{__version__}"
    deadline = 0.0

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout
        super().setup()
        # Closed now, not by the garbage collector: until then the socket's
        # descriptor would stay open after the connection ends.
        self.rfile.close()
        self.rfile = io.BufferedReader(_HeadDeadline(self))

    def handle_one_request(self) -> None:
        self.deadline = time.monotonic() + self.server.idle_timeout
        super().handle_one_request()

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        if "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
            # A request body is never read, so what follows it cannot be
            # framed: answer this request, then close.
            self.close_connection = True
        path = resolve(self.server.root, self.path)
        file = None if path is None else open_regular(path)
        if file is None:
            self.send_error(404)
            return
        with file:
            self._send_file(file, os.fstat(file.fileno()), path, body)

    def _send_file(
        self, file: BinaryIO, info: os.stat_result, path: str, body: bool
    ) -> None:
        etag = _ranges.make_etag(info.st_mtime_ns, info.st_size, info.st_ino)
        mtime = info.st_mtime
        size = info.st_size
        validators = {
            "ETag": etag,
            "Last-Modified": self.date_time_string(int(mtime)),
        }
        get = self.headers.get
        if _ranges.not_modified(
            get("If-None-Match"), get("If-Modified-Since"), etag, mtime
        ):
            self._send_head(304, validators)
            return
        decision = None
        if body and _ranges.range_applies(get("If-Range"), etag, mtime):
            decision = _ranges.parse_range(get("Range"), size)
        if isinstance(decision, _ranges.Unsatisfiable):
            self._send_head(
                416, {"Content-Range": decision.content_range(), "Content-Length": "0"}
            )
            return
        fields = {
            **validators,
            "Accept-Ranges": "bytes",
            "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
        }
        part = decision or _ranges.ByteRange(0, size)
        fields["Content-Length"] = str(part.length)
        if decision is not None:
            fields["Content-Range"] = decision.content_range(size)
        self._send_head(206 if decision else 200, fields)
        if body and part.length:
            self._send_body(file, part)

    def _send_head(self, status: int, fields: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in fields.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_body(self, file: BinaryIO, part: _ranges.ByteRange) -> None:
        self.wfile.flush()  # the head goes out before the spliced bytes
        timeout = self.server.idle_timeout
        try:
            sent = splice_to(
                file, self.connection, timeout, count=part.length, offset=part.start
            )
        except DownstreamTimeout as exc:
            self.close_connection = True
            self.log_error(
                "dropped: client accepted nothing for %s s (%d bytes sent)",
                timeout,
                exc.transferred,  # type: ignore[attr-defined]
            )
            return
        except OSError as exc:
            self.close_connection = True
            self.log_error("dropped: %s", exc.strerror or exc)
            return
        if sent < part.length:
            # The file shrank under us: the promised length cannot be met,
            # and only closing tells the client so.
            self.close_connection = True
            self.log_error("file shrank: %d of %d bytes sent", sent, part.length)
