"""The kept-alive origin connections of one job (bytepump._origins): an
idle connection is handed out again only while nothing waits in it."""

from __future__ import annotations

import socket
import struct

import pytest
from conftest import open_fds, tcp_pair

from bytepump._http1 import parse_url
from bytepump._origins import Origins

ORIGIN = parse_url("http://127.0.0.1:8080/a")
OTHER = parse_url("http://127.0.0.1:8081/a")


def idle_pair() -> tuple[socket.socket, socket.socket]:
    """(the kept connection, the origin's end), as after a response."""
    ours, theirs = tcp_pair()
    ours.setblocking(False)
    return ours, theirs


def test_a_quiet_connection_comes_back_for_its_origin_only():
    pool = Origins()
    ours, theirs = idle_pair()
    with theirs:
        pool.give(ORIGIN, ours)
        assert pool.take(OTHER) is None
        assert pool.take(ORIGIN) is ours
        assert pool.take(ORIGIN) is None  # taken: the caller owns it
        ours.close()


@pytest.mark.parametrize("then", ["closed", "stray bytes", "reset"])
def test_a_connection_with_something_waiting_is_closed(then):
    pool = Origins()
    ours, theirs = idle_pair()
    pool.give(ORIGIN, ours)
    if then == "stray bytes":
        theirs.sendall(b"HTTP/1.1 200 OK\r\n")
    elif then == "reset":
        linger = struct.pack("ii", 1, 0)  # close() sends RST, not FIN
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    theirs.close()  # on loopback, delivered before close() returns
    assert pool.take(ORIGIN) is None
    assert ours.fileno() == -1  # closed, not left for the garbage collector


def test_close_closes_every_idle_connection():
    before = open_fds()
    pool = Origins()
    pairs = [idle_pair() for _ in range(3)]
    for i, (ours, _) in enumerate(pairs):
        pool.give(ORIGIN if i else OTHER, ours)
    pool.close()
    assert all(ours.fileno() == -1 for ours, _ in pairs)
    assert pool.take(ORIGIN) is None
    for _, theirs in pairs:
        theirs.close()
    assert open_fds() == before
