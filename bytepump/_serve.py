"""``bytepump serve``: a static file server whose bodies are spliced.

One asyncio event loop in one thread holds every connection. It was one
thread per connection (``http.server.ThreadingHTTPServer``) until 500
kept-alive wrk connections on a 1 MiB file got 42 timeouts: hundreds of
threads contending for one GIL on 2 CPUs answer late, and each holds a
stack. A bounded thread pool with a selector for the idle connections
would still funnel every request through the GIL and add a hand-off per
request; the loop needs neither, and :func:`bytepump.aio.splice_to` moves
the bodies (file to socket in the kernel, waiting on the loop only when the
client's socket is full). An idle or slow client costs a registered
descriptor and a head buffer, nothing else. Measured side by side (wrk,
500 connections, 1 MiB file, a busy 2-vCPU machine): threads 11 and 18
timeouts, the loop none. The price: one thread does all the kernel copying,
~25 % fewer bytes per second there than the threads on both CPUs (large
bodies in ``timeout=0`` chunks on a thread pool gained nothing measurable,
so the loop stays simple; benchmarks/RESULTS.md), and a file read that
misses the page cache blocks the loop for that read (as in an nginx worker
without ``aio threads``).

The request head is parsed by :mod:`bytepump._request` (strict, bounded),
the decisions come from :mod:`bytepump._ranges`, the file is opened beneath
the root by :mod:`bytepump._beneath`. A client gets ``timeout`` seconds to
send a whole request head (a deadline, so trickling one byte at a time buys
nothing), including the wait for the next request on a kept-alive
connection; a response write that makes no progress for ``timeout`` seconds
drops the connection. At most ``max_connections`` connections are open;
further clients wait in the listen backlog until one closes.
"""

from __future__ import annotations

import asyncio
import email.utils
import mimetypes
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from . import __version__, _ranges, aio
from ._beneath import open_beneath, open_root
from ._errors import DownstreamTimeout
from ._request import MAX_HEAD, HeadError, RequestHead, RequestReader

_METHODS = ("GET", "HEAD")
_SERVER = f"bytepump/{__version__}"
_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_MSG_MORE = getattr(socket, "MSG_MORE", 0x8000)
LINGER = 2.0
"""Seconds to wait for a client to close after the response that ends its
connection."""


class _Expired(Exception):
    """A deadline on a client passed."""


def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


class _Clock:
    """The Date field and the log's time stamp, formatted once a second
    rather than per response."""

    def __init__(self) -> None:
        self._second = -1
        self.date = self.stamp = ""

    def tick(self) -> None:
        second = int(time.time())
        if second != self._second:
            self._second, self.date = second, _http_date(second)
            self.stamp = time.strftime("%d/%b/%Y %H:%M:%S", time.localtime(second))


class Server:
    """Serves the regular files below ``root`` on ``address``; ``timeout``
    bounds every wait on a client, ``max_connections`` the connections open
    at once. The listening socket is bound on construction (``OSError`` if
    it cannot be); :meth:`serve_forever` runs until interrupted."""

    def __init__(
        self,
        address: tuple[str, int],
        root: str,
        timeout: float,
        max_connections: int = 512,
    ) -> None:
        self.root = os.path.realpath(root)
        self.timeout = timeout
        self.max_connections = max_connections
        mimetypes.init()
        self.clock = _Clock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.root_fd = open_root(self.root)
        try:
            self.socket = socket.create_server(
                address, family=family, backlog=max(128, max_connections)
            )
        except BaseException:
            os.close(self.root_fd)
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.socket.close()
        if self.root_fd >= 0:
            fd, self.root_fd = self.root_fd, -1
            os.close(fd)

    def serve_forever(self) -> None:
        asyncio.run(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.max_connections)
        connections: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            connections.discard(task)
            slots.release()

        while True:
            await slots.acquire()
            try:
                conn, peer = await loop.sock_accept(self.socket)
            except OSError as exc:  # EMFILE and the like: try again shortly
                slots.release()
                self.log("-", f"accept failed: {exc}")
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(Connection(self, conn, peer[0]).run())
            connections.add(task)  # the loop keeps only weak references
            task.add_done_callback(finished)

    def log(self, client: str, message: str) -> None:
        self.clock.tick()
        sys.stderr.write(f"{client} - - [{self.clock.stamp}] {message}\n")


class Connection:
    """One client connection: requests read and answered in turn."""

    def __init__(self, server: Server, conn: socket.socket, client: str) -> None:
        self.server = server
        self.conn = conn
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.fd = conn.fileno()
        # Where request bytes are received: one buffer per connection, not a
        # new MAX_HEAD-byte one per recv, twice a request (PyPy: ~15% more
        # small requests a second on one connection, RESULTS.md).
        self._buffer = memoryview(bytearray(MAX_HEAD))

    async def run(self) -> None:
        conn = self.conn
        try:
            conn.setblocking(False)
            # Nothing this server sends may wait for an acknowledgement
            # (Nagle): heads go out with MSG_MORE, so they join their body
            # instead of leaving alone (as nginx does on kept-alive ones).
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rest = b""
            while True:
                reader = RequestReader(rest)
                try:
                    head = await self._read_head(reader)
                except HeadError as exc:
                    await self._send_error(exc.status, None, close=True)
                    self._log_request(None, exc.status, str(exc))
                    await self._linger()
                    return
                if head is None:
                    return
                rest = reader.rest
                if not await self._respond(head):
                    await self._linger()
                    return
        except _Expired:
            pass  # nothing was said in time: just close
        except DownstreamTimeout as exc:
            self.log(
                f"dropped: client accepted nothing for {self.server.timeout:g} s"
                f" ({exc.transferred} bytes sent)"  # type: ignore[attr-defined]
            )
        except OSError as exc:
            self.log(f"dropped: {exc.strerror or exc}")
        except Exception as exc:  # a bug here must not end the server
            self.log(f"dropped: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def log(self, message: str) -> None:
        self.server.log(self.client, message)

    def _log_request(self, head: RequestHead | None, status: int, size: Any) -> None:
        line = "-"
        if head is not None:
            target = head.target.encode("latin-1").decode("ascii", "backslashreplace")
            line = f"{head.method} {target} {head.version}"
        self.log(f'"{line}" {status} {size}')

    # --- waiting, with deadlines --------------------------------------------

    async def _ready(
        self,
        add: Callable[..., Any],
        remove: Callable[[int], Any],
        deadline: float,
        expired: Callable[[], BaseException],
    ) -> None:
        """Wait until the socket is ready (``add``: the loop's add_reader or
        add_writer) or raise ``expired()`` at ``deadline`` (loop time)."""
        future = self.loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)

        add(self.fd, settle, None)
        timer = self.loop.call_at(deadline, lambda: settle(expired()))
        try:
            await future
        finally:
            timer.cancel()
            remove(self.fd)

    async def _read_head(self, reader: RequestReader) -> RequestHead | None:
        """The next request head, or None when the client closed between
        requests. ``_Expired`` after ``timeout`` without a whole head."""
        head = reader.feed(b"")
        deadline = self.loop.time() + self.server.timeout
        while head is None:
            try:
                n = self.conn.recv_into(self._buffer)
            except BlockingIOError:
                loop = self.loop
                await self._ready(
                    loop.add_reader, loop.remove_reader, deadline, _Expired
                )
                continue
            if not n:
                return None
            head = reader.feed(self._buffer[:n])
        return head

    async def _linger(self) -> None:
        """End the connection gently after its last response: stop sending,
        then read and drop what the client still sends, for up to
        :data:`LINGER` seconds, until it closes. Closing with unread bytes
        would send a reset, which can destroy the response before the
        client has read it (nginx's lingering close)."""
        try:
            self.conn.shutdown(socket.SHUT_WR)
        except OSError:
            return
        loop = self.loop
        deadline = loop.time() + min(LINGER, self.server.timeout)
        while True:
            try:
                if not self.conn.recv(65536):
                    return
            except BlockingIOError:
                await self._ready(
                    loop.add_reader, loop.remove_reader, deadline, _Expired
                )

    async def _send_head(self, head: bytes, more: bool) -> None:
        """Send a response head; with ``more`` as MSG_MORE, so it leaves in
        one segment with the start of the body spliced after it, not alone
        to be held by the client's delayed acknowledgement (~40 ms)."""
        view = memoryview(head)
        flags = _MSG_MORE if more else 0
        loop = self.loop
        while view:
            try:
                view = view[self.conn.send(view, flags) :]
            except BlockingIOError:
                deadline = loop.time() + self.server.timeout
                await self._ready(
                    loop.add_writer, loop.remove_writer, deadline, self._stalled
                )

    @staticmethod
    def _stalled() -> BaseException:
        exc = DownstreamTimeout("client accepted nothing")
        exc.transferred = 0  # type: ignore[attr-defined]
        return exc

    # --- responses --------------------------------------------------------------

    def _head(self, status: int, fields: dict[str, str], close: bool) -> bytes:
        self.server.clock.tick()
        lines = [
            f"HTTP/1.1 {status} {_PHRASES[status]}",
            f"Server: {_SERVER}",
            f"Date: {self.server.clock.date}",
        ]
        lines += [f"{name}: {value}" for name, value in fields.items()]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_error(
        self, status: int, head: RequestHead | None, close: bool = False
    ) -> None:
        body = f"{status} {_PHRASES[status]}\n".encode()
        fields = {
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Length": str(len(body)),
        }
        if status == 405:
            fields["Allow"] = ", ".join(_METHODS)
        data = self._head(status, fields, close)
        if head is None or head.method != "HEAD":
            data += body
        await self._send_head(data, more=False)

    async def _respond(self, head: RequestHead) -> bool:
        """Answer one request; returns whether the connection stays open."""
        # A request body is never read, so what follows it cannot be
        # framed: answer this request, then close.
        keep = head.keep_alive and not (
            "Content-Length" in head.headers or "Transfer-Encoding" in head.headers
        )
        if head.method not in _METHODS:
            await self._send_error(405, head, close=not keep)
            self._log_request(head, 405, "-")
            return keep
        fd = self._open(head.target)
        if fd is None:
            await self._send_error(404, head, close=not keep)
            self._log_request(head, 404, "-")
            return keep
        try:
            return await self._send_file(head, fd, keep)
        finally:
            os.close(fd)

    def _open(self, target: str) -> int | None:
        """A descriptor of the regular file ``target`` names beneath the
        root, or None: whatever goes wrong resolving or opening it (a link
        leading out or swapped in, a missing file, a FIFO) is a 404."""
        parts = _ranges.path_parts(target)
        if parts is None:
            return None
        try:
            fd = open_beneath(self.server.root_fd, parts)
        except OSError:
            return None
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        return None

    async def _send_file(self, head: RequestHead, fd: int, keep: bool) -> bool:
        info = os.fstat(fd)
        size, mtime = info.st_size, info.st_mtime
        etag = _ranges.make_etag(info.st_mtime_ns, size, info.st_ino)
        validators = {"ETag": etag, "Last-Modified": _http_date(int(mtime))}
        get = head.headers.get
        body = head.method == "GET"
        if _ranges.not_modified(
            get("If-None-Match"), get("If-Modified-Since"), etag, mtime
        ):
            await self._send_head(self._head(304, validators, not keep), more=False)
            self._log_request(head, 304, "-")
            return keep
        decision = None
        if body and _ranges.range_applies(get("If-Range"), etag, mtime):
            decision = _ranges.parse_range(get("Range"), size)
        if isinstance(decision, _ranges.Unsatisfiable):
            fields = {"Content-Range": decision.content_range(), "Content-Length": "0"}
            await self._send_head(self._head(416, fields, not keep), more=False)
            self._log_request(head, 416, "-")
            return keep
        part = decision or _ranges.ByteRange(0, size)
        name = head.target.split("?", 1)[0]
        fields = {
            **validators,
            "Accept-Ranges": "bytes",
            "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "Content-Length": str(part.length),
        }
        if decision is not None:
            fields["Content-Range"] = decision.content_range(size)
        status = 206 if decision else 200
        more = body and part.length > 0
        await self._send_head(self._head(status, fields, not keep), more=more)
        self._log_request(head, status, part.length if body else "-")
        if not more:
            return keep
        timeout = self.server.timeout
        sent = await aio.splice_to(
            fd, self.conn, timeout, count=part.length, offset=part.start
        )
        if sent < part.length:
            # The file shrank under us: the promised length cannot be met,
            # and only closing tells the client so.
            self.log(f"file shrank: {sent} of {part.length} bytes sent")
            return False
        return keep
