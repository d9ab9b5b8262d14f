"""bytepump.aio.splice_to: the same transfer, waiting on the asyncio loop."""

from __future__ import annotations

import asyncio
import gc
import math
import os

import pytest
from conftest import (
    DST_KINDS,
    MIB,
    SRC_KINDS,
    WAIT,
    flags_kept,
    open_fds,
    payload,
    position,
    sha,
)

import bytepump
from bytepump import aio

IDLE = 0.2
"""Inactivity timeout for the tests that expect one to strike."""


def run(coro):
    try:
        return asyncio.run(asyncio.wait_for(coro, WAIT))
    finally:
        gc.collect()  # KERNEL-NOTES: no stray task garbage during a report


@pytest.mark.parametrize("size", [0, 65537, 3 * MIB + 7])
@pytest.mark.parametrize("dst_kind", DST_KINDS)
@pytest.mark.parametrize("src_kind", SRC_KINDS)
def test_every_pair_arrives_intact(endpoints, src_kind, dst_kind, size):
    data = payload(size)
    src = endpoints.source(src_kind, data, chunks=[7000, 65536])
    dst = endpoints.sink(dst_kind)
    with flags_kept(src.fd, dst.fd):
        assert run(aio.splice_to(src.obj, dst.obj, WAIT)) == size
    received = dst.received()
    assert received is None or sha(received) == sha(data)


def test_the_loop_runs_while_the_transfer_waits(endpoints):
    src = endpoints.source("pipe", payload(1000), hold_open=True)
    dst = endpoints.sink("file")

    async def main():
        transfer = asyncio.ensure_future(aio.splice_to(src.obj, dst.obj, WAIT))
        for _ in range(3):  # the transfer is waiting on the silent pipe
            await asyncio.sleep(0)
        assert not transfer.done()
        src.finish()  # only the loop's other task can end the source
        return await transfer

    assert run(main()) == 1000
    assert dst.received() == payload(1000)


def test_a_silent_source_is_an_upstream_timeout(endpoints):
    src = endpoints.source("tcp", payload(10), hold_open=True)
    dst = endpoints.sink("file")
    with pytest.raises(bytepump.UpstreamTimeout) as info:
        run(aio.splice_to(src.obj, dst.obj, IDLE))
    assert info.value.transferred == 10


def test_a_slowloris_destination_is_a_downstream_timeout(endpoints):
    data = payload(8 * MIB)
    src = endpoints.source("file", data)
    dst = endpoints.sink("tcp", drain=False, bufsize=65536)
    with flags_kept(dst.fd), pytest.raises(bytepump.DownstreamTimeout) as info:
        run(aio.splice_to(src.obj, dst.obj, IDLE))
    assert 0 < info.value.transferred < len(data)
    assert position(src.fd) == info.value.transferred


def test_cancellation_reports_transferred_and_restores_everything(endpoints):
    data = payload(8 * MIB)
    src = endpoints.source("file", data)
    dst = endpoints.sink("tcp", drain=False, bufsize=65536)
    fds = open_fds()

    async def main():
        progressed = asyncio.Event()
        seen = []

        async def serve():
            # The code awaiting splice_to sees the CancelledError with
            # .transferred; a Task awaited from outside may raise a new one
            # (asyncio before 3.11 does).
            try:
                await aio.splice_to(
                    src.obj, dst.obj, None, on_progress=lambda n: progressed.set()
                )
            except asyncio.CancelledError as exc:
                seen.append(exc.transferred)
                raise

        transfer = asyncio.ensure_future(serve())
        await progressed.wait()
        await asyncio.sleep(0)  # let it reach its wait on the full socket
        transfer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await transfer
        return seen[0]

    with flags_kept(src.fd, dst.fd):
        sent = run(main())
    assert 0 < sent < len(data)
    assert position(src.fd) == sent
    assert open_fds() <= fds + 2  # at most one pipe went back to the pool
    assert dst.received() == data[:sent]


def test_the_fallback_works_on_the_loop(endpoints):
    data = payload(300_000)
    src = endpoints.source("tcp", data)
    dst = endpoints.sink("file", append=True, prefix=b"head")
    assert run(aio.splice_to(src.obj, dst.obj, WAIT)) == len(data)
    assert dst.received() == b"head" + data


@pytest.mark.parametrize("src_kind", ["file", "tcp"])
def test_uvloop_drives_it_too(endpoints, src_kind):
    uvloop = pytest.importorskip("uvloop")  # CPython only; a test extra
    data = payload(3 * MIB + 7)
    src = endpoints.source(src_kind, data, chunks=[65536])
    dst = endpoints.sink("tcp", bufsize=65536)  # small: the transfer must wait
    loop = uvloop.new_event_loop()
    try:
        coro = aio.splice_to(src.obj, dst.obj, WAIT)
        assert loop.run_until_complete(asyncio.wait_for(coro, WAIT)) == len(data)
    finally:
        loop.close()
    assert sha(dst.received()) == sha(data)


def test_bad_input_is_refused_before_the_loop_waits(endpoints):
    dst = endpoints.sink("file")
    with pytest.raises(TypeError):
        run(aio.splice_to(object(), dst.obj))
    with pytest.raises(ValueError):
        run(aio.splice_to(dst.obj, dst.obj))


def test_a_cancel_arriving_with_readiness_is_never_lost():
    """A cancel() in the same loop pass as the descriptor's readiness must
    still cancel (asyncio.wait_for before 3.12 swallowed it: the transfer
    then ran on until its timeout)."""

    async def one_try(passes: int) -> BaseException | None:
        r, w = os.pipe()
        try:
            with open(os.devnull, "wb") as sink:
                task = asyncio.ensure_future(aio.splice_to(r, sink, WAIT))
                await asyncio.sleep(0)  # now it waits on the empty pipe
                os.write(w, b"x")
                for _ in range(passes):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.wait([task], timeout=IDLE * 5)
                os.close(w)  # a transfer that ran on ends now
                w = -1
                try:
                    await task
                except BaseException as exc:
                    return exc
                return None
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    async def main() -> None:
        for attempt in range(200):
            outcome = await one_try(attempt % 4)
            assert isinstance(outcome, asyncio.CancelledError), (attempt, outcome)

    run(main())


@pytest.mark.parametrize("timeout", [math.inf, math.nan])
def test_infinite_timeout_is_no_limit_and_nan_refused(endpoints, timeout):
    src = endpoints.source("pipe", b"x", hold_open=True)
    dst = endpoints.sink("file")

    async def main():
        return await aio.splice_to(
            src.obj, dst.obj, timeout, on_progress=lambda n: src.finish()
        )

    if timeout != timeout:
        with pytest.raises(ValueError):
            run(main())
        assert src.rest() == b"x"
    else:
        assert run(main()) == 1
    assert dst.received() == (b"x" if timeout == math.inf else b"")
