"""The contenders: one small function each, given the two ends of a scenario.

Each moves everything from ``src`` to ``dst`` the way a caller would write
it with that tool; the scenario's ``finish`` then checks what arrived.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable

from _cref import CLoop
from _ends import FILE, PIPE, End

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
MIB = 1 << 20


@dataclass(frozen=True)
class Contender:
    key: str
    name: str
    run: Callable[[End, End], Any]
    file_source_only: bool = False

    def applies(self, src_kind: str, dst_kind: str) -> bool:
        return src_kind == FILE or not self.file_source_only


class SharedPipe:
    """The intermediate pipe of the bare loops, made once and kept (as
    bytepump keeps its pool): ``(read_fd, write_fd, capacity)``."""

    def __init__(self) -> None:
        self._pipe: tuple[int, int, int] | None = None

    def get(self) -> tuple[int, int, int]:
        if self._pipe is None:
            r, w = os.pipe()
            try:
                capacity = fcntl.fcntl(w, F_SETPIPE_SZ, MIB)
            except OSError:
                capacity = 65536
            self._pipe = (r, w, capacity)
        return self._pipe

    def discard(self) -> None:
        """After a failed transfer: the pipe may hold stale bytes."""
        if self._pipe is not None:
            os.close(self._pipe[0])
            os.close(self._pipe[1])
            self._pipe = None


shared_pipe = SharedPipe()


def _direct(src: End, dst: End) -> bool:
    return PIPE in (src.kind, dst.kind)


def run_bytepump(src: End, dst: End) -> None:
    import bytepump

    bytepump.splice_to(src.obj, dst.obj)


def _reader(end: End) -> Any:
    return end.obj.makefile("rb") if end.is_socket else contextlib.nullcontext(end.obj)


def _writer(end: End) -> Any:
    return end.obj.makefile("wb") if end.is_socket else contextlib.nullcontext(end.obj)


def copyfileobj_with(length: int) -> Callable[[End, End], None]:
    def run_copyfileobj(src: End, dst: End) -> None:
        with _reader(src) as reader, _writer(dst) as writer:
            shutil.copyfileobj(reader, writer, length)

    return run_copyfileobj


def run_sendfile(src: End, dst: End) -> None:
    if dst.is_socket:
        dst.obj.sendfile(src.obj)
        return
    out_fd, in_fd, offset = dst.fileno(), src.fileno(), 0
    while True:
        n = os.sendfile(out_fd, in_fd, offset, 1 << 30)
        if not n:
            return
        offset += n


def run_os_splice(src: End, dst: End) -> None:
    s, d = src.fileno(), dst.fileno()
    if _direct(src, dst):
        while os.splice(s, d, MIB):
            pass
        return
    r, w, capacity = shared_pipe.get()
    while True:
        n = os.splice(s, w, capacity)
        if not n:
            return
        while n:
            n -= os.splice(r, d, n)


def c_loop_runner(loop: CLoop) -> Callable[[End, End], None]:
    def run_c_loop(src: End, dst: End) -> None:
        pipe = None if _direct(src, dst) else shared_pipe.get()
        loop.copy(src.fileno(), dst.fileno(), pipe)

    return run_c_loop


BYTEPUMP = Contender("bytepump", "bytepump", run_bytepump)
COPYFILEOBJ = Contender(
    "copyfileobj", "copyfileobj", copyfileobj_with(shutil.COPY_BUFSIZE)
)
COPYFILEOBJ_1M = Contender("copyfileobj-1m", "copyfileobj 1 MiB", copyfileobj_with(MIB))
SENDFILE = Contender("sendfile", "sendfile", run_sendfile, file_source_only=True)
OS_SPLICE = Contender("os-splice", "os.splice loop", run_os_splice)
C_LOOP_KEY = "c-loop"


def available(c_loop: CLoop | None) -> tuple[list[Contender], list[str]]:
    """The contenders this interpreter can run, and a note for each missing."""
    contenders, notes = [COPYFILEOBJ, COPYFILEOBJ_1M, SENDFILE], []
    try:
        import bytepump  # noqa: F401
    except ImportError as exc:
        notes.append(f"bytepump skipped: cannot import it ({exc})")
    else:
        contenders.insert(0, BYTEPUMP)
    if hasattr(os, "splice"):
        contenders.append(OS_SPLICE)
    else:
        notes.append("os.splice loop skipped: no os.splice here (CPython 3.10+ only)")
    if c_loop is not None:
        run = c_loop_runner(c_loop)
        contenders.append(Contender(C_LOOP_KEY, "C splice loop", run))
    return contenders, notes
