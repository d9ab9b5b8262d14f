"""The kernel's shortest path for each pair of descriptors (DESIGN.md §1).

The one table of which pumps may carry a pair, in the order they are tried
(as Rust std's ``kernel_copy.rs`` keeps one). Each falls back to the next
only while nothing has been written (the pump raises ``SpliceUnsupported``
then); after the last, the user-space copy (:class:`~bytepump._pump.CopyPump`)
carries the pair unless the caller said ``fallback=False``.

| src → dst | tried in order |
| --- | --- |
| TLS socket on either side | user-space copy only (the fd carries ciphertext) |
| any → an ``O_APPEND`` file | user-space copy only (the kernel refuses all three) |
| a pipe on either side | one direct splice |
| regular file → socket | sendfile, the pooled pipe |
| regular file → regular file | copy_file_range, the pooled pipe |
| the rest (socket → socket/file, file → device, …) | the pooled pipe |

A regular file whose ``st_size`` is 0 (an empty file, or one of the
``/proc`` and sysfs files that say 0 whatever they hold) skips sendfile and
copy_file_range: its size is not known, and what is left cannot be asked
for; splice reads it to its end.
"""

from __future__ import annotations

import os

from ._endpoint import FILE, PIPE, SOCKET, Endpoint
from ._pump import CopyRangePump, DirectPump, PipePump, SendfilePump, _Pump

Path = tuple[type[_Pump], ...]

_DIRECT: Path = (DirectPump,)
_SENDFILE: Path = (SendfilePump, PipePump)
_COPY_RANGE: Path = (CopyRangePump, PipePump)
_POOLED: Path = (PipePump,)


def kernel_path(src: Endpoint, dst: Endpoint) -> tuple[Path, str]:
    """The in-kernel pumps for ``src`` → ``dst`` in the order to try them,
    and, when there are none, why."""
    if src.ssl or dst.ssl:
        return (), "a TLS socket's descriptor carries ciphertext"
    if dst.flags & os.O_APPEND:
        return (), "the kernel refuses an O_APPEND destination"
    if src.kind == PIPE or dst.kind == PIPE:
        return _DIRECT, ""
    if src.kind == FILE and src.size:
        if dst.kind == SOCKET:
            return _SENDFILE, ""
        if dst.kind == FILE:
            return _COPY_RANGE, ""
    return _POOLED, ""
