"""Opening a file strictly beneath a directory, in one race-free step.

``bytepump serve`` must never reach a file outside its root, not even when
a directory on the path is swapped for a symbolic link while the request is
served. Checking a resolved path and then opening it walks the path twice,
and a swap in between wins (DESIGN.md §5). So the path is resolved and
opened relative to a descriptor of the root, by the kernel, in one call:
``openat2(RESOLVE_BENEATH)``, which follows a relative link that stays
inside and refuses an absolute one or one leading out (``EXDEV``). Where
the kernel has no openat2 (before 5.6: ``ENOSYS``), each component is
opened relative to the descriptor of the one before with ``O_NOFOLLOW``,
which refuses every link: stricter than openat2, never looser.
"""

from __future__ import annotations

import errno
import os

from . import _libc

_O_PATH = getattr(os, "O_PATH", 0o10000000)  # PyPy 3.9's os has no O_PATH
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
"""O_NONBLOCK: opening a FIFO someone put in the directory must not hang
(it is then refused as not a regular file)."""
_DIR_FLAGS = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RESOLVE = _libc.RESOLVE_BENEATH | _libc.RESOLVE_NO_MAGICLINKS

_have_openat2 = True
"""Cleared at the first ENOSYS: the kernel will not grow openat2 later."""


def open_root(path: str) -> int:
    """A descriptor of the directory ``path`` to open files beneath."""
    return os.open(path, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_beneath(root_fd: int, parts: list[str]) -> int:
    """Open the file named by ``parts`` (names without ``/``, ``.`` or
    ``..``, as :func:`bytepump._ranges.path_parts` gives them) beneath the
    directory ``root_fd`` for reading; returns the new descriptor.

    ``OSError`` for anything that is missing, unreadable or would be
    reached only by leaving the root (``EXDEV``, ``ELOOP``, ``ENOTDIR``).
    The descriptor may be a directory or a device: the caller checks.
    """
    global _have_openat2
    if _have_openat2:
        path = os.fsencode("/".join(parts)) if parts else b"."
        try:
            return _libc.openat2(root_fd, path, _FILE_FLAGS, _RESOLVE)
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _have_openat2 = False
    return open_walking(root_fd, parts)


def open_walking(root_fd: int, parts: list[str]) -> int:
    """:func:`open_beneath` without openat2: one ``openat(O_NOFOLLOW)`` per
    component, each relative to the last one opened, so no link is followed
    and no name is looked up twice."""
    *dirs, last = parts or ["."]
    fd = root_fd
    try:
        for name in dirs:
            parent, fd = fd, os.open(name, _DIR_FLAGS, dir_fd=fd)
            if parent != root_fd:
                os.close(parent)
        return os.open(last, _FILE_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)
