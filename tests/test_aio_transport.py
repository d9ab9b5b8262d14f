"""bytepump.aio with an asyncio.Transport as dst (DESIGN §4): the socket of
an asyncio server's connection, borrowed for the call and given back."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import ssl
import tempfile
import threading

import pytest
from conftest import (
    MIB,
    SLOW_READ_BUFFER,
    WAIT,
    getfl,
    open_fds,
    payload,
    read_to_eof,
    set_buffers,
    sha,
)

import bytepump
from bytepump import aio

IDLE = 0.2


class Recorder(asyncio.Protocol):
    """Server side: keeps the transport and what the client sends."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.got_data = asyncio.Event()
        self.made = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.made.set()

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.got_data.set()


LOOPS = ["asyncio", "uvloop"]


def run_on(loop_kind: str, main):
    """Run the coroutine function ``main`` on a new loop of that kind."""
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")  # CPython only
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), WAIT))
    finally:
        loop.close()
        gc.collect()


@contextlib.asynccontextmanager
async def connection(kind: str, server_tls=None, client_tls=None):
    """A served connection: (server Protocol, client socket)."""
    loop = asyncio.get_running_loop()
    protocol = Recorder()
    with tempfile.TemporaryDirectory() as where:
        if kind == "tcp":
            server = await loop.create_server(
                lambda: protocol, "127.0.0.1", 0, ssl=server_tls
            )
            address = server.sockets[0].getsockname()
            client = socket.create_connection(address, timeout=WAIT)
        else:
            path = os.path.join(where, "s")
            server = await loop.create_unix_server(lambda: protocol, path)
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(WAIT)
            client.connect(path)
        if client_tls is not None:
            client.setblocking(False)
            client = await _tls_client(client, client_tls)
        try:
            await asyncio.wait_for(protocol.made.wait(), WAIT)
            yield protocol, client
        finally:
            client.close()
            server.close()
            protocol.transport.close()
            await server.wait_closed()


async def _tls_client(sock, context):
    loop = asyncio.get_running_loop()
    tls = context.wrap_socket(
        sock, server_hostname="localhost", do_handshake_on_connect=False
    )

    def handshake():
        tls.setblocking(True)
        tls.settimeout(WAIT)
        tls.do_handshake()

    await loop.run_in_executor(None, handshake)
    return tls


def reader(client, n: int | None = None):
    """Read ``n`` bytes (None: to end of file) off the loop, in a thread."""

    def read() -> bytes:
        if n is None:
            if isinstance(client, ssl.SSLSocket):
                out = bytearray()
                while chunk := client.recv(1 << 20):
                    out += chunk
                return bytes(out)
            return read_to_eof(client.fileno())
        out = bytearray()
        while len(out) < n:
            chunk = client.recv(n - len(out))
            assert chunk, "end of stream before all bytes came"
            out += chunk
        return bytes(out)

    return asyncio.get_running_loop().run_in_executor(None, read)


def state(transport):
    sock = transport.get_extra_info("socket")
    return transport.is_reading(), getfl(sock.fileno())


@pytest.mark.parametrize("loop_kind", LOOPS)
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_buffered_bytes_first_then_the_body_then_keep_alive(tmp_path, loop_kind, kind):
    head = payload(4 * MIB)  # more than a socket takes: some stays buffered
    body = payload(3 * MIB + 7)
    path = tmp_path / "body"
    path.write_bytes(body)

    async def main():
        async with connection(kind) as (protocol, client):
            transport = protocol.transport
            before = state(transport)
            got = reader(client, len(head) + len(body) + 4)
            transport.write(head)
            with open(path, "rb") as src:
                assert await aio.splice_to(src, transport, WAIT) == len(body)
            assert state(transport) == before
            transport.write(b"tail")  # the transport is its own again
            data = await got
            # ...and it reads again: the next request arrives.
            client.sendall(b"next request")
            await asyncio.wait_for(protocol.got_data.wait(), WAIT)
            return data, bytes(protocol.received)

    data, received = run_on(loop_kind, main)
    assert sha(data) == sha(head + body + b"tail")
    assert received == b"next request"


@pytest.mark.parametrize("loop_kind", LOOPS)
@pytest.mark.parametrize("outcome", ["timeout", "cancel", "disconnect"])
def test_everything_is_restored_on_failure(tmp_path, loop_kind, outcome):
    path = tmp_path / "body"
    path.write_bytes(payload(16 * MIB))

    async def main():
        async with connection("tcp") as (protocol, client):
            transport = protocol.transport
            before = state(transport)
            fds = open_fds()
            with open(path, "rb") as src:
                if outcome == "timeout":
                    with pytest.raises(bytepump.DownstreamTimeout) as info:
                        await aio.splice_to(src, transport, IDLE)
                elif outcome == "cancel":
                    moved = asyncio.Event()
                    task = asyncio.ensure_future(
                        aio.splice_to(src, transport, None,
                                      on_progress=lambda n: moved.set())
                    )  # fmt: skip
                    await moved.wait()
                    await asyncio.sleep(0)
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      b"\1\0\0\0\0\0\0\0")  # fmt: skip
                    client.close()
                    with pytest.raises(OSError) as info:
                        await aio.splice_to(src, transport, WAIT)
                    assert info.value.transferred >= 0
            assert open_fds() <= fds  # the borrowed duplicate is closed
            if outcome != "disconnect":
                assert state(transport) == before

    run_on(loop_kind, main)


def test_a_closing_or_foreign_transport_is_refused(tmp_path):
    path = tmp_path / "body"
    path.write_bytes(b"x")

    class Foreign(asyncio.Transport):
        def get_extra_info(self, name, default=None):
            return self._sock if name == "socket" else default

        def is_closing(self):
            return False

    async def main():
        async with connection("tcp") as (protocol, _client):
            foreign = Foreign()
            foreign._sock = protocol.transport.get_extra_info("socket")
            with open(path, "rb") as src:
                with pytest.raises(TypeError, match="borrow"):
                    await aio.splice_to(src, foreign)
                protocol.transport.close()
                with pytest.raises(ValueError, match="closing"):
                    await aio.splice_to(src, protocol.transport)

    run_on("asyncio", main)


def tls_contexts(tls_cert) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a TLS connection."""
    cert, key = tls_cert
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    return server_tls, ssl.create_default_context(cafile=cert)


def test_tls_transport_goes_through_write(tmp_path, tls_cert):
    server_tls, client_tls = tls_contexts(tls_cert)
    body = payload(3 * MIB + 7)
    path = tmp_path / "body"
    path.write_bytes(body)

    async def main():
        async with connection("tcp", server_tls, client_tls) as (protocol, client):
            transport = protocol.transport
            got = reader(client, len(body) + 4)
            transport.write(b"head")
            with open(path, "rb") as src:
                assert await aio.splice_to(src, transport, WAIT) == len(body)
            return await got

    assert sha(run_on("asyncio", main)) == sha(b"head" + body)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_a_slow_steady_client_is_not_idle(tmp_path, tls_cert, tls):
    # As test_waiters' slow readers: the client reads 8 KiB every 20 ms, and
    # the server's 4 MiB send buffer stays unwritable for longer than the
    # timeout; with TLS the transport's own buffer then stops draining too.
    server_tls, client_tls = tls_contexts(tls_cert) if tls else (None, None)
    body = payload(32 * MIB)
    path = tmp_path / "body"
    path.write_bytes(body)
    timeout = 1.0
    hurried = threading.Event()

    def read_slowly(client) -> bytes:
        out = bytearray()
        while len(out) < len(body):
            chunk = client.recv(8192)
            assert chunk, "end of stream before all bytes came"
            out += chunk
            if not hurried.is_set():
                hurried.wait(0.02)  # the client's pace, not a sync
        return bytes(out)

    async def main():
        async with connection("tcp", server_tls, client_tls) as (protocol, client):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READ_BUFFER)
            set_buffers(protocol.transport.get_extra_info("socket"), 2 * MIB)
            got = asyncio.get_running_loop().run_in_executor(None, read_slowly, client)
            last = asyncio.get_running_loop().time()
            longest = 0.0

            def progress(n):
                nonlocal last, longest
                now = asyncio.get_running_loop().time()
                longest, last = max(longest, now - last), now
                if longest > timeout:
                    hurried.set()  # shown: the rest at full speed

            try:
                with open(path, "rb") as src:
                    n = await aio.splice_to(
                        src, protocol.transport, timeout, on_progress=progress
                    )
            finally:
                hurried.set()
            return n, longest, await got

    n, longest, received = run_on("asyncio", main)
    assert n == len(body)
    assert longest > timeout, "the client never held the server up that long"
    assert sha(received) == sha(body)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_splice_from_into_a_transport(nginx, loop_kind):
    big = payload(3 * MIB + 7)

    async def main():
        async with connection("tcp") as (protocol, client):
            got = reader(client, len(big))
            url = nginx.url("/big.bin")
            assert await aio.splice_from(protocol.transport, url) == len(big)
            async with aio.fetch(url, offset=10) as origin:
                assert origin.length == len(big) - 10
                data = await got
                got2 = reader(client, len(big) - 10)
                assert await origin.splice_to(protocol.transport) == len(big) - 10
            return data, await got2

    whole, tail = run_on(loop_kind, main)
    assert sha(whole) == sha(big) and sha(tail) == sha(big[10:])
