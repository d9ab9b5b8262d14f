"""Kept-alive origin connections shared by the fetches of one job.

DESIGN §2 has :func:`bytepump.splice_from` and :func:`bytepump.fetch` send
``Connection: close``, and so they still do. A :class:`~bytepump.ZipArchive`
fetches its URL entries one after another, often hundreds from one origin,
within one ``splice_to``: there a new TCP connection per entry (connect,
accept, close, and the descriptors) is most of what one small entry costs.
So ``ZipArchive.splice_to`` gives its fetches an :class:`Origins`, which
holds the connections idle between them, by (scheme, host, port), and
closes them all when the call ends. A :class:`~bytepump.edge.Fetch` given
one sends no ``Connection: close``, takes an idle connection before making
a new one, and gives a connection back only once its response was read to
the exact end its framing states (Content-Length exhausted, or the chunked
body's last chunk and trailers read) and the origin did not say it would
close (an HTTP/1.1 response without ``Connection: close``). Cleartext HTTP
only: what waits in a TLS connection cannot be looked at with a peek.
"""

from __future__ import annotations

import socket

from ._http1 import Origin

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def _quiet(sock: socket.socket) -> bool:
    """Whether nothing waits in ``sock``: no byte, no end of stream, no
    error. An idle HTTP/1.1 connection that is not quiet is not reusable:
    stray bytes would be taken for the next response, and an end of stream
    means the origin closed it."""
    try:
        sock.recv(1, _PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


class Origins:
    """Idle kept-alive connections, by origin; not thread-safe (one job's
    fetches run one after another). :meth:`close` closes every one."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[socket.socket]] = {}

    def take(self, origin: Origin) -> socket.socket | None:
        """An idle connection to ``origin`` that is still quiet (the origin
        has not closed it meanwhile), or ``None``; the caller owns it."""
        idle = self._idle.get((origin.scheme, origin.host, origin.port))
        while idle:
            sock = idle.pop()
            if _quiet(sock):
                return sock
            sock.close()
        return None

    def give(self, origin: Origin, sock: socket.socket) -> None:
        """Keep ``sock``, a connection to ``origin`` whose last response was
        read to its exact end, for the next fetch (:meth:`take` looks at it
        again before handing it out)."""
        key = (origin.scheme, origin.host, origin.port)
        self._idle.setdefault(key, []).append(sock)

    def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for socks in idle.values():
            for sock in socks:
                sock.close()
