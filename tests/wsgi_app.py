"""The WSGI application the web-server tests run under real servers.

Started by tests/test_wsgi.py in a subprocess (gunicorn, waitress or
wsgiref, see ``main``); ``BP_DATA`` names the directory of files it serves,
``BP_ORIGIN`` the origin an edge include fetches from. Routes:

- ``/file/NAME``: ``respond_with`` an open file
- ``/window/NAME?offset=N&count=M``: the same with ``offset`` and ``count``
- ``/pipe/NAME``: ``respond_with`` the stdout of ``cat NAME`` (no length)
- ``/edge/NAME``: ``respond_from`` the origin's ``/NAME``
- ``/fetch?url=URL``: the same from any origin (the suite's, on loopback)
- ``/status/CODE/NAME``: ``respond_with`` a file with the status ``CODE Mine``
- ``/zip``: ``respond_zip`` of every file in ``BP_DATA`` (as ``données.zip``)
- ``/flask/edge/NAME``: the same from a Flask view
- ``/pid``: the worker's process id (to watch it)
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bytepump
import bytepump.wsgi

DATA = Path(os.environ.get("BP_DATA", "."))
ORIGIN = os.environ.get("BP_ORIGIN", "http://127.0.0.1:9")


class _Closing:
    """An application's iterable that also closes ``resources`` after it."""

    def __init__(self, inner: Iterable[bytes], *resources: Any) -> None:
        self._inner = inner
        self._iter = iter(inner)
        self._resources = resources

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return next(self._iter)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            for resource in self._resources:
                resource.close()


def _pipe(name: str):
    proc = subprocess.Popen(["cat", str(DATA / name)], stdout=subprocess.PIPE)

    class _Reaped:
        def close(self) -> None:
            proc.stdout.close()
            proc.wait()

    return proc.stdout, _Reaped()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    kind, _, name = path.lstrip("/").partition("/")
    if kind == "pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if kind in ("file", "window"):
        f = open(DATA / name, "rb")  # noqa: SIM115 (closed with the response)
        counts = {k: int(v) for k, v in query.items() if k in ("offset", "count")}
        answer = bytepump.wsgi.respond_with(f, **counts)
        return _Closing(answer(environ, start_response), f)
    if kind == "status":
        code, _, name = name.partition("/")
        f = open(DATA / name, "rb")  # noqa: SIM115 (closed with the response)
        answer = bytepump.wsgi.respond_with(f, status=f"{code} Mine")
        return _Closing(answer(environ, start_response), f)
    if kind == "zip":
        answer = bytepump.wsgi.respond_zip(_archive(), filename="données.zip")
        return answer(environ, start_response)
    if kind == "pipe":
        out, reaped = _pipe(name)
        answer = bytepump.wsgi.respond_with(out)
        return _Closing(answer(environ, start_response), reaped)
    if kind in ("edge", "fetch"):
        url = query["url"] if kind == "fetch" else f"{ORIGIN}/{name}"
        try:
            answer = bytepump.wsgi.respond_from(url, timeout=5, retries=2)
            return answer(environ, start_response)
        except bytepump.HTTPStatusError as exc:
            start_response(f"{exc.status} From Origin", [("Content-Length", "0")])
            return []
    if kind == "flask":
        return _flask()(environ, start_response)
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


def _archive() -> bytepump.ZipArchive:
    """The files of ``BP_DATA`` as a planned zip (the same for every call:
    a download resumed against it gets the bytes it lacked)."""
    names = sorted(p.name for p in DATA.iterdir() if p.suffix == ".bin")
    entries = [bytepump.ZipEntry(f"files/{n}", str(DATA / n)) for n in names]
    return bytepump.ZipArchive(entries)


def _flask():
    global _FLASK
    if _FLASK is None:
        import flask

        _FLASK = flask.Flask(__name__)

        @_FLASK.route("/flask/edge/<path:name>")
        def edge(name: str):
            return bytepump.wsgi.respond_from(f"{ORIGIN}/{name}", timeout=10)

    return _FLASK


_FLASK = None


def main() -> None:
    """``python wsgi_app.py PORT``: serve with wsgiref (single-threaded)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
