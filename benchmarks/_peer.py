"""The far ends of the benchmark's sockets and FIFOs, each in its own process.

They run apart from the measured process, so that process's CPU time is its
own, and they are plain Python (no C extension, no splice):

``python _peer.py sink DIR [CPU]``
    Listens on TCP loopback and on a Unix socket in DIR. Drains each
    connection with a ``recv_into`` loop and, once the client has shut down
    its side, answers the byte count (8 bytes, big-endian) and closes.

``python _peer.py source DIR [CPU]``
    Listens on TCP loopback. Each client sends one request line
    ``SIZE [FIFO]`` and gets the file ``DIR/data-SIZE`` through
    ``os.sendfile``: on the connection itself, or into the named FIFO.

Each prints its addresses as one JSON line, then serves until its standard
input is closed (so it never outlives the benchmark).

A peer runs on the given CPU, away from the measured process, and never
sleeps during a transfer: it polls (nonblocking, ``sched_yield`` on EAGAIN).
Measured on this project's 2-vCPU VMs, a peer that blocked made loopback
throughput bimodal (2 to 10 GB/s from one run to the next, the cost of
waking an idle vCPU); a polling one holds it within a few percent.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
from typing import Callable

DRAIN_BUFFER = 1 << 20
COUNT = struct.Struct("!Q")
"""The sink's answer: how many bytes it received."""


def data_path(data_dir: str, size: int) -> str:
    return os.path.join(data_dir, f"data-{size}")


def pin(cpu: int) -> None:
    """Run this process (its threads to come too) on ``cpu`` only."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
        return
    import ctypes  # PyPy 3.9 has no os.sched_setaffinity

    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_ulong(1 << cpu)
    if libc.sched_setaffinity(0, ctypes.sizeof(mask), ctypes.byref(mask)):
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def drain(conn: socket.socket, data_dir: str) -> None:
    view = memoryview(bytearray(DRAIN_BUFFER))
    total = 0
    conn.setblocking(False)
    while True:
        try:
            n = conn.recv_into(view)
        except BlockingIOError:
            os.sched_yield()
            continue
        if not n:
            break
        total += n
    conn.setblocking(True)
    conn.sendall(COUNT.pack(total))


def send_file(out_fd: int, in_fd: int, size: int) -> None:
    os.set_blocking(out_fd, False)
    offset = 0
    while offset < size:
        try:
            n = os.sendfile(out_fd, in_fd, offset, size - offset)
        except BlockingIOError:
            os.sched_yield()
            continue
        if not n:
            raise EOFError(f"data file shorter than {size} bytes")
        offset += n


def read_line(conn: socket.socket) -> str:
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(256)
        if not chunk:
            raise EOFError("request cut short")
        line += chunk
    return line.decode()


def feed(conn: socket.socket, data_dir: str) -> None:
    size_text, _, fifo = read_line(conn).strip().partition(" ")
    size = int(size_text)
    with open(data_path(data_dir, size), "rb") as data:
        if not fifo:
            send_file(conn.fileno(), data.fileno(), size)
            return
        fd = os.open(fifo, os.O_WRONLY)
        try:
            send_file(fd, data.fileno(), size)
        finally:
            os.close(fd)


Handler = Callable[[socket.socket, str], None]


def serve(listener: socket.socket, handle: Handler, data_dir: str) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                handle(conn, data_dir)
            except (OSError, EOFError) as exc:  # a client that gave up
                print(f"peer: {handle.__name__}: {exc}", file=sys.stderr)


def listen(family: int, address: object) -> socket.socket:
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    return listener


def main(role: str, data_dir: str, cpu: str = "") -> None:
    if cpu:
        pin(int(cpu))
    tcp = listen(socket.AF_INET, ("127.0.0.1", 0))
    listeners = {"tcp": (tcp, drain if role == "sink" else feed)}
    if role == "sink":
        unix_path = os.path.join(data_dir, "sink.sock")
        listeners["unix"] = (listen(socket.AF_UNIX, unix_path), drain)
    addresses = {}
    for name, (listener, handle) in listeners.items():
        addresses[name] = listener.getsockname()
        args = (listener, handle, data_dir)
        threading.Thread(target=serve, args=args, daemon=True).start()
    print(json.dumps(addresses), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin or exits


if __name__ == "__main__":
    main(*sys.argv[1:4])
