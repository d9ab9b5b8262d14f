"""The two ends of each scenario, and the peer processes behind the far ones.

An end is made (connected, opened) before the clock starts; ``start`` (the
request to a source peer) and ``finish`` (a flush, or the sink's count once
it has seen end of stream) are timed with the transfer, so every contender
pays the same and the figures mean delivered bytes. ``close`` is not timed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO

import _peer

FILE, TCP, UNIX, PIPE = "file", "TCP", "Unix socket", "pipe"
SOCKETS = (TCP, UNIX)
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_peer.py")
DATA_BLOCK = 8 << 20


@dataclass(frozen=True)
class Scenario:
    key: str
    src: str
    dst: str

    @property
    def title(self) -> str:
        return f"{self.src} → {self.dst}"


SCENARIOS = [
    Scenario("file-tcp", FILE, TCP),
    Scenario("tcp-tcp", TCP, TCP),
    Scenario("tcp-file", TCP, FILE),
    Scenario("pipe-file", PIPE, FILE),
    Scenario("file-file", FILE, FILE),
    Scenario("file-unix", FILE, UNIX),
]


def _open(path: str, mode: str) -> BinaryIO:
    """A file to be closed by :meth:`End.close`."""
    return open(path, mode)


class End:
    """One side of a transfer: ``obj`` is what a caller would hold (a file
    object or a socket), ``kind`` one of FILE, TCP, UNIX, PIPE."""

    def __init__(self, kind: str, obj: Any = None) -> None:
        self.kind = kind
        self.obj = obj
        self._closing: list[Any] = [] if obj is None else [obj]

    @property
    def is_socket(self) -> bool:
        return self.kind in SOCKETS

    def fileno(self) -> int:
        return self.obj.fileno()

    def hold(self, obj: Any) -> Any:
        """Close ``obj`` with this end."""
        self._closing.append(obj)
        return obj

    def start(self) -> None:
        """Timed: what must happen before the first byte can move."""

    def finish(self) -> int:
        """Timed, destinations only: bytes delivered, once all arrived."""
        raise NotImplementedError

    def close(self) -> None:
        for obj in reversed(self._closing):
            obj.close()


class FileSource(End):
    def __init__(self, path: str) -> None:
        super().__init__(FILE, _open(path, "rb"))


class SocketSource(End):
    """A connection to the source peer: it sends the data once asked."""

    def __init__(self, address: tuple[str, int], size: int, kind: str = TCP) -> None:
        super().__init__(kind, socket.create_connection(address))
        self.request = f"{size}\n"

    def start(self) -> None:
        self.obj.sendall(self.request.encode())


class FifoSource(SocketSource):
    """A FIFO the source peer writes into, asked over a TCP connection."""

    def __init__(self, address: tuple[str, int], size: int, fifo: str) -> None:
        super().__init__(address, size, PIPE)
        self.control, self.obj, self.fifo = self.obj, None, fifo
        self.request = f"{size} {fifo}\n"

    def start(self) -> None:
        self.control.sendall(self.request.encode())
        self.obj = self.hold(_open(self.fifo, "rb"))  # blocks until the peer opens


class FileDestination(End):
    def __init__(self, path: str) -> None:
        super().__init__(FILE, _open(path, "wb"))
        self.path = path

    def finish(self) -> int:
        file: BinaryIO = self.obj
        file.flush()
        return os.fstat(file.fileno()).st_size

    def close(self) -> None:
        super().close()
        os.unlink(self.path)


class SocketDestination(End):
    """A connection to the sink peer, which answers the count at the end."""

    def __init__(self, family: int, address: Any, kind: str) -> None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        super().__init__(kind, sock)
        sock.connect(address)

    def finish(self) -> int:
        self.obj.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < _peer.COUNT.size:
            chunk = self.obj.recv(_peer.COUNT.size - len(answer))
            if not chunk:
                raise EOFError("the sink closed without a count")
            answer += chunk
        return _peer.COUNT.unpack(answer)[0]


class Peer:
    """A peer process; its addresses come back on its first line."""

    def __init__(self, python: str, role: str, data_dir: str, cpu: int | None) -> None:
        self.process = subprocess.Popen(
            [python, PEER, role, data_dir, "" if cpu is None else str(cpu)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.close()
            raise RuntimeError(f"the {role} peer did not start")
        self.addresses = {k: _address(v) for k, v in json.loads(line).items()}

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def _address(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def placement(pin: bool) -> tuple[int | None, int | None, int | None]:
    """CPUs for the measured process, the sink and the source: each its own
    where there are enough, the peers sharing the second of two; no pinning
    on one CPU or when ``pin`` is false."""
    cpus = _peer.cpus()
    if not pin or len(cpus) < 2:
        return None, None, None
    return cpus[0], cpus[1], cpus[2] if len(cpus) > 2 else cpus[1]


class Bench:
    """The data files and the peers; makes the ends of each scenario."""

    def __init__(
        self, data_dir: str, peer_python: str | None = None, pin: bool = True
    ) -> None:
        self.data_dir = data_dir
        python = peer_python or sys.executable
        self.cpus = placement(pin)
        here, sink_cpu, source_cpu = self.cpus
        if here is not None:
            _peer.pin(here)
        self.sink = Peer(python, "sink", data_dir, sink_cpu)
        try:
            self.source = Peer(python, "source", data_dir, source_cpu)
        except BaseException:
            self.sink.close()
            raise
        self.fifo = os.path.join(data_dir, "source.fifo")
        os.mkfifo(self.fifo)
        self.out = os.path.join(data_dir, "out")

    def write_data(self, size: int) -> None:
        """Random bytes: blocks of urandom, repeated past DATA_BLOCK."""
        block = os.urandom(min(size, DATA_BLOCK))
        with open(_peer.data_path(self.data_dir, size), "wb") as f:
            for start in range(0, size, len(block)):
                f.write(block[: size - start])

    def source_end(self, kind: str, size: int) -> End:
        if kind == FILE:
            return FileSource(_peer.data_path(self.data_dir, size))
        if kind == PIPE:
            return FifoSource(self.source.addresses["tcp"], size, self.fifo)
        return SocketSource(self.source.addresses["tcp"], size)

    def destination_end(self, kind: str) -> End:
        if kind == FILE:
            return FileDestination(self.out)
        if kind == UNIX:
            return SocketDestination(socket.AF_UNIX, self.sink.addresses["unix"], UNIX)
        return SocketDestination(socket.AF_INET, self.sink.addresses["tcp"], TCP)

    def close(self) -> None:
        self.source.close()
        self.sink.close()
