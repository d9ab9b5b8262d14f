"""bytepump.aio.splice_from and aio.skip_headers: the edge-include fetch on
the asyncio loop, against the same nginx and fault-injecting origin as
test_http.py (whose origin scripts are reused here)."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from pathlib import Path

import pytest
from conftest import (
    MIB,
    ORIGIN_FILES,
    WAIT,
    flags_kept,
    open_fds,
    payload,
    sha,
    unix_pair,
)
from test_http import (
    BODY,
    CHUNKED_HEAD,
    ETAG,
    HALF,
    HEAD,
    OBJECT,
    ObjectHandler,
    chunked,
    raw_handler,
    wait_for_close,
)

import bytepump
from bytepump import aio

IDLE = 0.2
"""Inactivity timeout for the tests that expect one to strike."""
BIG = ORIGIN_FILES["big.bin"]


def run(coro):
    try:
        return asyncio.run(asyncio.wait_for(coro, WAIT))
    finally:
        gc.collect()  # no stray task garbage during a report


async def afetch(path: Path, url: str, **kwargs) -> tuple[int, bytes]:
    """aio.splice_from into a fresh file; returns (result, file contents)."""
    with open(path, "wb") as dst:
        n = await aio.splice_from(dst, url, **kwargs)
    return n, path.read_bytes()


def fetch(tmp_path: Path, url: str, **kwargs) -> tuple[int, bytes]:
    return run(afetch(tmp_path / "dst", url, **kwargs))


# --- nginx ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.bin", "odd name.bin", "big.bin"])
def test_whole_objects(nginx, tmp_path, name):
    calls = []
    url = nginx.url("/" + name.replace(" ", "%20"))
    n, data = fetch(tmp_path, url, timeout=WAIT, on_progress=calls.append)
    expected = payload(ORIGIN_FILES[name])
    assert n == len(expected) == sum(calls)
    assert sha(data) == sha(expected)


@pytest.mark.parametrize("offset, length", [(1000, 5000), (BIG - 10, None), (0, 1)])
def test_ranges(nginx, tmp_path, offset, length):
    n, data = fetch(tmp_path, nginx.url("/big.bin"), offset=offset, length=length)
    expected = payload(BIG)[offset : None if length is None else offset + length]
    assert n == len(expected) and data == expected


def test_redirects(nginx, tmp_path):
    assert fetch(tmp_path, nginx.url("/hop1"))[1] == payload(1000)


def test_404_writes_nothing(nginx, tmp_path):
    with pytest.raises(bytepump.HTTPStatusError) as info:
        fetch(tmp_path, nginx.url("/missing"))
    assert info.value.status == 404 and info.value.transferred == 0
    assert (tmp_path / "dst").read_bytes() == b""


def test_zero_length_does_not_resolve_or_connect(origin, tmp_path):
    origin.serve(ObjectHandler())
    assert fetch(tmp_path, "http://no-such-host.invalid/", length=0) == (0, b"")
    assert fetch(tmp_path, origin.url(), length=0) == (0, b"")
    assert origin.connections == 0


def test_bad_arguments_fail_before_connecting(origin, tmp_path):
    origin.serve(ObjectHandler())
    with pytest.raises(ValueError):
        fetch(tmp_path, origin.url() + "\r\nX-Injected: 1")
    with pytest.raises(ValueError):
        fetch(tmp_path, origin.url(), offset=-1)
    with pytest.raises(TypeError):
        run(aio.splice_from(object(), origin.url()))
    assert origin.connections == 0


# --- the fault-injecting origin ----------------------------------------------


@pytest.mark.parametrize("fault", ["cut", "reset", "stall"])
@pytest.mark.parametrize("chunked_body", [False, True])
def test_resume_after_a_break(origin, tmp_path, fault, chunked_body):
    origin.serve(ObjectHandler(faults=[(fault, HALF)], chunked=chunked_body))
    n, data = fetch(tmp_path, origin.url(), timeout=0.5)
    assert n == len(OBJECT) and sha(data) == sha(OBJECT)
    ranges = [(r.headers["Range"], r.headers["If-Range"]) for r in origin.requests]
    assert ranges == [(None, None), (f"bytes={HALF}-", ETAG)]


def test_chunked_range(origin, tmp_path):
    origin.serve(raw_handler(CHUNKED_HEAD + chunked(OBJECT, 8191)))
    n, data = fetch(tmp_path, origin.url(), offset=7000, length=40_000)
    assert n == 40_000 and data == OBJECT[7000:47_000]


def test_a_silent_origin_is_an_upstream_timeout(origin, tmp_path):
    origin.serve(lambda conn, request, index: wait_for_close(conn))
    with pytest.raises(bytepump.UpstreamTimeout) as info:
        fetch(tmp_path, origin.url(), timeout=IDLE)
    assert info.value.transferred == 0
    assert origin.connections == 1


def test_stalls_use_up_the_retries(origin, tmp_path):
    origin.serve(ObjectHandler(faults=[("stall", HALF)] * 3))
    with pytest.raises(bytepump.IncompleteBody) as info:
        fetch(tmp_path, origin.url(), timeout=IDLE, retries=1)
    assert isinstance(info.value.__cause__, bytepump.UpstreamTimeout)
    assert info.value.transferred == HALF and origin.connections == 2


def test_a_slow_destination_is_a_downstream_timeout(origin, endpoints):
    origin.serve(ObjectHandler(data=payload(8 * MIB)))
    sink = endpoints.sink("unix", drain=False, bufsize=4096)
    with flags_kept(sink.fd), pytest.raises(bytepump.DownstreamTimeout) as info:
        run(aio.splice_from(sink.obj, origin.url(), timeout=IDLE))
    assert info.value.transferred > 0
    assert origin.connections == 1


def test_cancellation_reports_transferred_and_closes_the_origin(origin, endpoints):
    # The origin sends half the object, then stalls until we hang up.
    origin.serve(ObjectHandler(faults=[("stall", HALF)]))
    sink = endpoints.sink("pipe")
    fds = open_fds()

    async def main():
        halfway = asyncio.Event()
        seen = []
        delivered = 0

        def progress(n: int) -> None:
            nonlocal delivered
            delivered += n
            if delivered == HALF:  # now it waits on the silent origin
                halfway.set()

        async def serve():
            # The code awaiting splice_from sees the CancelledError with
            # .transferred; a Task awaited from outside may raise a new one
            # (asyncio before 3.11 does).
            try:
                await aio.splice_from(
                    sink.obj, origin.url(), None, on_progress=progress
                )
            except asyncio.CancelledError as exc:
                seen.append(exc.transferred)
                raise

        transfer = asyncio.ensure_future(serve())
        await halfway.wait()
        transfer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await transfer
        return seen

    with flags_kept(sink.fd):
        assert run(main()) == [HALF]
    origin.wait_idle()  # the origin saw the connection close
    assert origin.connections == 1
    assert open_fds() <= fds + 2  # at most one pipe went back to the pool
    assert sha(sink.received()) == sha(OBJECT[:HALF])


def test_the_loop_runs_while_the_origin_is_silent(origin, nginx, tmp_path):
    asked = threading.Event()
    go = threading.Event()
    serve = ObjectHandler()

    def silent_until_released(conn, request, index):
        asked.set()
        assert go.wait(WAIT)
        serve(conn, request, index)

    origin.serve(silent_until_released)

    async def main():
        loop = asyncio.get_running_loop()
        slow = asyncio.ensure_future(
            afetch(tmp_path / "slow", origin.url(), timeout=WAIT)
        )
        # The wait on the silent origin must leave the loop free: a thread
        # waits for the request, and a whole second fetch runs meanwhile.
        assert await loop.run_in_executor(None, asked.wait, WAIT)
        other = await afetch(tmp_path / "other", nginx.url("/big.bin"), timeout=WAIT)
        assert not slow.done()
        go.set()
        return other, await slow

    other, slow = run(main())
    assert sha(other[1]) == sha(payload(BIG))
    assert slow == (len(OBJECT), OBJECT)


def test_the_host_name_is_resolved_off_the_loop(origin, tmp_path, monkeypatch):
    origin.serve(ObjectHandler())
    lookups = []
    real = socket.getaddrinfo

    def recording(*args, **kwargs):
        lookups.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    # localhost may resolve to ::1 first: refused, the next address answers.
    url = f"http://localhost:{origin.port}/object"
    assert fetch(tmp_path, url)[1] == OBJECT
    assert lookups == [False]


def test_https(tls_origin, tmp_path):
    tls_origin.serve(ObjectHandler(faults=[("cut", HALF)]))
    calls = []
    n, data = fetch(tmp_path, tls_origin.url(), on_progress=calls.append)
    assert sha(data) == sha(OBJECT) and n == sum(calls) == len(OBJECT)
    assert tls_origin.requests[1].headers["Range"] == f"bytes={HALF}-"


# --- skip_headers -----------------------------------------------------------


def test_skip_headers_leaves_the_body():
    client, server = unix_pair()
    with client, server:
        server.sendall(HEAD + BODY)
        server.shutdown(socket.SHUT_WR)
        head = run(aio.skip_headers(client, timeout=WAIT))
        assert head.raw == HEAD and head.headers["x-test"] == "yes"
        assert client.recv(100) == BODY


def test_skip_headers_times_out_and_checks_the_status():
    client, server = unix_pair()
    with client, server:
        server.sendall(HEAD[:20])
        with pytest.raises(bytepump.UpstreamTimeout):
            run(aio.skip_headers(client, timeout=IDLE))
        server.sendall(b"HTTP/1.1 404 Not Found\r\n\r\n")
        with pytest.raises(bytepump.HTTPStatusError) as info:
            run(aio.skip_headers(client, timeout=WAIT))
        assert info.value.status == 404
        with pytest.raises(ValueError):
            run(aio.skip_headers(client, timeout=-1))


# --- aio.fetch ----------------------------------------------------------------


def test_fetch_head_first_then_the_body(nginx, tmp_path):
    async def main():
        async with aio.fetch(nginx.url("/big.bin"), offset=5, length=100) as origin:
            assert (origin.status, origin.length, origin.total) == (206, 100, BIG)
            with open(tmp_path / "dst", "wb") as dst:
                return await origin.splice_to(dst)

    assert run(main()) == 100
    assert (tmp_path / "dst").read_bytes() == payload(BIG)[5:105]


def test_fetch_awaited_resumes_and_closes(origin, tmp_path):
    origin.serve(ObjectHandler(faults=[("cut", HALF)]))

    async def main():
        fetched = await aio.fetch(origin.url(), suffix=len(OBJECT) - 7)
        assert (fetched.offset, fetched.length) == (7, len(OBJECT) - 7)
        with open(tmp_path / "dst", "wb") as dst:
            return await fetched.splice_to(dst)

    assert run(main()) == len(OBJECT) - 7
    assert sha((tmp_path / "dst").read_bytes()) == sha(OBJECT[7:])
    ranges = [r.headers["Range"] for r in origin.requests]
    assert ranges == [f"bytes=-{len(OBJECT) - 7}", f"bytes={HALF}-"]


def test_fetch_errors_are_raised_by_the_open(nginx):
    async def main():
        async with aio.fetch(nginx.url("/missing")):
            pass

    with pytest.raises(bytepump.HTTPStatusError):
        run(main())
