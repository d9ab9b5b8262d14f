"""Edge include: serve an object from an origin, spliced into each client.

The seed's "picture from an origin" example as a tiny server: for every
client it sends its own response head, then has ``bytepump.splice_from``
fetch the object and splice the body straight into the client's socket.
The bytes never enter Python (for an ``http://`` origin).

Try it against the nginx of the test suite, or any origin::

    python3 examples/edge_include.py http://127.0.0.1:8080/picture.jpg --port 8000
    curl -o picture.jpg http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import mimetypes
import socket
import struct
import sys
import threading
import urllib.parse

import bytepump
from bytepump.edge import splice_from

LINGER_0 = struct.pack("ii", 1, 0)


def response_head(origin_url: str) -> bytes:
    """Our own head: the object's type guessed from its name, and no length,
    so the body ends when the connection does."""
    path = urllib.parse.urlsplit(origin_url).path
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def handle_client(client: socket.socket, origin_url: str, timeout: float) -> int:
    """Answer one client with the origin's object; returns the bytes spliced."""
    with client:
        # The client's request is read and ignored: every client gets the
        # same object. Buffered reading is fine here, nothing is spliced
        # *from* the client.
        with client.makefile("rb") as rfile:
            rfile.readline(65537)
            http.client.parse_headers(rfile)
        client.sendall(response_head(origin_url))
        try:
            return splice_from(client, origin_url, timeout)
        except (bytepump.ProtocolError, OSError) as exc:
            print(f"{origin_url}: {exc}", file=sys.stderr)
            # The body is delimited by the end of the connection, so a
            # clean close would pass a truncated object off as complete.
            # A reset tells the client it is not.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            return getattr(exc, "transferred", 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the origin object, http:// or https://")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    with socket.create_server((args.bind, args.port)) as listener:
        print(f"serving {args.url} on http://{args.bind}:{args.port}/", flush=True)
        while True:
            client, _ = listener.accept()
            threading.Thread(
                target=handle_client,
                args=(client, args.url, args.timeout),
                daemon=True,
            ).start()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
