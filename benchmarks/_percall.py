"""The per-call scenario: what one small transfer costs (issue #12).

Most of what a web server sends is small, so the cost of one call matters
more than throughput there. A 4 KiB and a 64 KiB file go, over and over,
into one kept-open TCP connection to the sink peer (another process,
draining) and into a regular file. Each round times a batch of calls per
contender, the contenders interleaved round after round; the figure is the
median of the rounds' microseconds per call.

file → TCP runs twice: on a connection with Nagle's algorithm on (the
default) and with ``TCP_NODELAY`` set (as asyncio, Go and nginx set it).
With Nagle on, calls in a row to one connection let the kernel hold each
small tail until the previous segment is acknowledged and coalesce it with
the next; ``bytepump.splice_to`` pushes its tail out before it returns
(DESIGN §1, "nothing held back"), the others leave it queued. With
``TCP_NODELAY`` every contender's bytes leave at once.

Contenders: ``bytepump.splice_to``; ``socket.sendfile``; a bare
``os.sendfile`` (one syscall: the limit), and ``os.copy_file_range`` for
file → file; ``f.read()`` + ``sock.sendall`` and ``shutil.copyfileobj``.
Each call starts with the same ``seek(0)`` on its file objects.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import sys
import time
from typing import Any, Callable

from _ends import Bench
from _report import Target, X

KIB = 1 << 10
SIZES = (4 * KIB, 64 * KIB)
IMPL = sys.implementation.name
ROUNDS = {"quick": 9, "full": 25}
BATCH = 200
WARMUP = 2000 if IMPL == "pypy" else 200
"""Untimed calls per contender first: PyPy's JIT compiles after ~1,600."""

Call = Callable[[], object]
TITLES = {
    "file-tcp": "file → TCP",
    "file-tcp-nodelay": "file → TCP (TCP_NODELAY)",
    "file-file": "file → file",
}


def _file_to_tcp(src: Any, sock: socket.socket, size: int) -> dict[str, Call]:
    import bytepump

    fd, out = src.fileno(), sock.fileno()

    def splice_to() -> None:
        src.seek(0)
        bytepump.splice_to(src, sock)

    def sendfile() -> None:
        src.seek(0)
        sock.sendfile(src)

    def bare() -> None:
        os.sendfile(out, fd, 0, size)

    def read_sendall() -> None:
        src.seek(0)
        sock.sendall(src.read())

    return {
        "bytepump": splice_to,
        "socket.sendfile": sendfile,
        "os.sendfile": bare,
        "read+sendall": read_sendall,
    }


def _file_to_file(src: Any, dst: Any, size: int) -> dict[str, Call]:
    import bytepump

    fd, out = src.fileno(), dst.fileno()

    def splice_to() -> None:
        src.seek(0)
        dst.seek(0)
        bytepump.splice_to(src, dst)

    def copyfileobj() -> None:
        src.seek(0)
        dst.seek(0)
        shutil.copyfileobj(src, dst)
        dst.flush()

    def bare() -> None:
        os.copy_file_range(fd, out, size, 0, 0)

    calls: dict[str, Call] = {"bytepump": splice_to, "copyfileobj": copyfileobj}
    if hasattr(os, "copy_file_range"):
        calls["os.copy_file_range"] = bare
    return calls


def _interleaved(calls: dict[str, Call], rounds: int, warmup: int) -> dict[str, float]:
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            begun = time.perf_counter()
            for _ in range(BATCH):
                call()
            samples[name].append((time.perf_counter() - begun) / BATCH * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(
    bench: Bench, work: str, mode: str, rounds: int | None, warmup: int | None
) -> list[dict[str, Any]]:
    """Per scenario and size, every contender's median µs per call."""
    rounds = rounds or ROUNDS.get(mode, ROUNDS["quick"])
    warmup = WARMUP if warmup is None else warmup
    rows = []
    for size in SIZES:
        path = os.path.join(work, f"percall-{size}")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        with open(path, "rb") as src:
            for scenario, nodelay in (("file-tcp", 0), ("file-tcp-nodelay", 1)):
                sock = socket.create_connection(bench.sink.addresses["tcp"])
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, nodelay)
                try:
                    label = f"{TITLES[scenario]}, {size // KIB} KiB"
                    print(f"… per call, {label}", file=sys.stderr)
                    calls = _file_to_tcp(src, sock, size)
                    found = _interleaved(calls, rounds, warmup)
                    rows.append({"scenario": scenario, "size": size, "us": found})
                finally:
                    sock.close()
            out = path + ".out"
            with open(out, "wb") as dst:
                print(f"… per call, file → file, {size // KIB} KiB", file=sys.stderr)
                found = _interleaved(_file_to_file(src, dst, size), rounds, warmup)
                rows.append({"scenario": "file-file", "size": size, "us": found})
            os.unlink(out)
        os.unlink(path)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "#### Per call (median µs of interleaved rounds)",
        "",
        f"| scenario | size | contender | µs per call | {X} bytepump |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        ours = row["us"]["bytepump"]
        title = TITLES[row["scenario"]]
        for name, us in row["us"].items():
            lines.append(
                f"| {title} | {row['size'] // KIB} KiB | {name} | {us:.1f} "
                f"| {us / ours:.2f}{X} |"
            )
    return "\n".join(lines)


def _no_slower(text: str, us: dict[str, float], other: str) -> Target:
    return Target(f"{text}: no slower than {other}").check(
        us[other] / us["bytepump"],
        lambda r: r >= 1.0,
        "{:.2f}" + X + f" {other}'s speed",
    )


def targets(rows: list[dict[str, Any]]) -> list[Target]:
    """Issue #12's per-call targets."""
    found = []
    for row in rows:
        us = row["us"]
        text = f"{row['size'] // KIB} KiB {TITLES[row['scenario']]} per call"
        if row["scenario"] != "file-file":
            found.append(_no_slower(text, us, "socket.sendfile"))
            if IMPL == "cpython":
                found.append(
                    Target(f"{text}: ≤ 2{X} a bare os.sendfile").check(
                        us["bytepump"] / us["os.sendfile"],
                        lambda r: r <= 2.0,
                        "{:.2f}" + X + " its time",
                    )
                )
        elif row["size"] == 64 * KIB:
            found.append(_no_slower(text, us, "copyfileobj"))
    return found
