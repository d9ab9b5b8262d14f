"""The reference contender: the same splice calls in a C loop, no Python between.

It is built when the benchmark starts, with the system C compiler, into a
shared library loaded with ``ctypes`` (one foreign call per transfer), so it
runs in the measured process and its CPU time is counted there. It is the
physical limit of splice on this machine: what bytepump can approach but not
beat.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/types.h>

/* Move from src to dst until end of file, with blocking descriptors.
   Neither side a pipe: through the intermediate pipe (pipe_r, pipe_w),
   `chunk` bytes (its capacity) at most per splice. One side a pipe:
   pipe_r < 0, straight from src to dst. Returns the bytes moved, or -errno. */
long long cref_copy(int src, int dst, int pipe_r, int pipe_w, long long chunk)
{
    long long total = 0;
    for (;;) {
        ssize_t n = splice(src, NULL, pipe_r < 0 ? dst : pipe_w, NULL, chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return total;
        if (pipe_r < 0) {
            total += n;
            continue;
        }
        while (n > 0) {
            ssize_t m = splice(pipe_r, NULL, dst, NULL, n, 0);
            if (m < 0 && errno == EINTR)
                continue;
            if (m <= 0)
                return m < 0 ? -errno : -EIO;
            n -= m;
            total += m;
        }
    }
}
"""


class CLoop:
    """``copy(src_fd, dst_fd, pipe)``: the C loop, from a built library."""

    def __init__(self, library: str) -> None:
        self._copy = ctypes.CDLL(library).cref_copy
        self._copy.argtypes = [ctypes.c_int] * 4 + [ctypes.c_longlong]
        self._copy.restype = ctypes.c_longlong

    def copy(self, src: int, dst: int, pipe: tuple[int, int, int] | None) -> int:
        """``pipe`` is ``(read_fd, write_fd, capacity)``, or ``None`` when
        one side is a pipe already."""
        r, w, chunk = pipe if pipe is not None else (-1, -1, 1 << 20)
        n = self._copy(src, dst, r, w, chunk)
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        return n


def build(workdir: str) -> tuple[CLoop | None, str]:
    """Compile the loop in ``workdir``: ``(CLoop, "")`` or ``(None, why not)``."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        return None, "no C compiler (gcc or cc) found"
    source = os.path.join(workdir, "cref.c")
    library = os.path.join(workdir, "libcref.so")
    with open(source, "w") as f:
        f.write(SOURCE)
    command = [compiler, "-O2", "-shared", "-fPIC", "-o", library, source]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = (getattr(exc, "stderr", None) or str(exc)).strip().splitlines()
        return None, f"{compiler} could not build it: {detail[0] if detail else exc}"
    return CLoop(library), ""
