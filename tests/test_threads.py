"""Many transfers at once, and other threads running while one waits."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from conftest import DST_KINDS, MIB, SRC_KINDS, WAIT, payload, sha

import bytepump

PAIRS = list(itertools.product(SRC_KINDS, DST_KINDS))
N = 32


@pytest.mark.timeout(60)
def test_concurrent_transfers(endpoints):
    blob = payload(2 * MIB)
    jobs = []
    for i in range(N):
        src_kind, dst_kind = PAIRS[i % len(PAIRS)]
        data = blob[i * 1009 : i * 1009 + MIB + i]  # a different stream each
        src = endpoints.source(src_kind, data, chunks=[4096 * (i + 1)])
        dst = endpoints.sink(dst_kind)
        jobs.append((src, dst, data))
    barrier = threading.Barrier(N, timeout=WAIT)
    results: list[object] = [None] * N

    def run(i: int) -> None:
        src, dst, _ = jobs[i]
        try:
            barrier.wait()
            results[i] = bytepump.splice_to(src.fd, dst.fd, WAIT)
        except BaseException as exc:  # reported below, with the pair
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(N)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "transfers hung"
    for (src, dst, data), result in zip(jobs, results):
        pair = f"{src.kind} -> {dst.kind}"
        assert result == len(data), pair
        got = dst.received()
        if got is not None:
            assert sha(got) == sha(data), pair


# If a transfer held the GIL while it waits, this thread could never run
# again: the whole process would hang, so pytest-timeout's thread method.
@pytest.mark.timeout(20, method="thread")
@pytest.mark.parametrize(
    ("src_kind", "dst_kind"), [("tcp", "file"), ("pipe", "tcp"), ("unix", "unix")]
)
def test_gil_released_while_waiting(endpoints, src_kind, dst_kind):
    src = endpoints.source(src_kind, b"x", hold_open=True)  # one byte, then silence
    dst = endpoints.sink(dst_kind)
    moved = threading.Event()
    outcome: dict[str, object] = {}

    def transfer() -> None:
        try:
            outcome["n"] = bytepump.splice_to(
                src.fd, dst.fd, None, on_progress=lambda n: moved.set()
            )
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=transfer, daemon=True)
    worker.start()
    assert moved.wait(WAIT)
    # The worker now waits in a syscall for the source's next byte. Keep this
    # thread busy for many switch intervals: the worker gets to its wait, and
    # this thread must still run.
    spins = 0
    until = time.monotonic() + 0.2
    while time.monotonic() < until:
        spins += 1
    assert spins > 1000
    assert worker.is_alive()
    src.finish()
    worker.join(WAIT)
    assert outcome == {"n": 1}
    assert dst.received() == b"x"
