"""The WSGI application of the edge-include benchmark (benchmarks/_wsgi.py),
run by gunicorn: ``/bytepump/NAME`` answers with ``bytepump.wsgi``,
``/urllib3/NAME`` streams the same origin object through Python with
urllib3 (``preload_content=False``, 64 KiB reads: what ``requests`` does
underneath). ``BP_ORIGIN`` is the origin's base URL."""

from __future__ import annotations

import os

import urllib3

import bytepump.wsgi

ORIGIN = os.environ["BP_ORIGIN"]
_POOL = urllib3.PoolManager(maxsize=16)


def _streamed(environ, start_response):
    response = _POOL.request(
        "GET", ORIGIN + environ["PATH_INFO"][len("/urllib3") :], preload_content=False
    )
    fields = [("Content-Length", response.headers["Content-Length"])]
    start_response(f"{response.status} OK", fields)

    def body():
        try:
            yield from response.stream(65536)
        finally:
            response.release_conn()

    return body()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/urllib3/"):
        return _streamed(environ, start_response)
    url = ORIGIN + path[len("/bytepump") :]
    return bytepump.wsgi.respond_from(url)(environ, start_response)
