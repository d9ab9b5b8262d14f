"""An aiohttp application whose response bodies are spliced (bytepump.aiohttp).

Three handlers: an edge include from an origin, a file with Range and
conditional requests, and a subprocess's output (chunked). Try it::

    python3 examples/aiohttp_app.py http://127.0.0.1:8080 /srv/files --port 8000
    curl -o obj http://127.0.0.1:8000/edge/picture.jpg
    curl -r 0-99 http://127.0.0.1:8000/files/report.pdf
    curl http://127.0.0.1:8000/ls
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess

from aiohttp import web

import bytepump
import bytepump.aiohttp


def make_app(origin: str, root: pathlib.Path) -> web.Application:
    async def edge(request: web.Request) -> web.StreamResponse:
        # The client's Range goes to the origin; the origin's head comes
        # back; the body is spliced from the origin into the client.
        url = f"{origin}/{request.match_info['path']}"
        try:
            return await bytepump.aiohttp.respond_from(request, url)
        except bytepump.HTTPStatusError as exc:  # before the response started
            return web.Response(status=502, text=f"origin answered {exc.status}\n")

    async def files(request: web.Request) -> web.StreamResponse:
        path = (root / request.match_info["name"]).resolve()
        if root not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        with open(path, "rb") as src:  # Range, If-None-Match... answered
            return await bytepump.aiohttp.respond_with(request, src)

    async def listing(request: web.Request) -> web.StreamResponse:
        # A subprocess's output: no length known, so chunked to HTTP/1.1
        # clients, delimited by closing to HTTP/1.0 ones.
        with subprocess.Popen(["ls", "-l", str(root)], stdout=subprocess.PIPE) as proc:
            return await bytepump.aiohttp.respond_with(
                request, proc.stdout, headers={"Content-Type": "text/plain"}
            )

    app = web.Application()
    app.router.add_get("/edge/{path:.*}", edge)
    app.router.add_get("/files/{name}", files)
    app.router.add_get("/ls", listing)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("origin", help="origin base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("root", type=pathlib.Path, help="directory of files to serve")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = make_app(args.origin.rstrip("/"), args.root.resolve())
    web.run_app(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
