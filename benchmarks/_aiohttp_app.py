"""The aiohttp server of the asyncio edge-include benchmark
(benchmarks/_aiohttp.py): ``/bytepump/NAME`` answers with
``bytepump.aiohttp.respond_from``, ``/aiohttp/NAME`` streams the same
origin object through Python with aiohttp's client (64 KiB chunks).
``BP_ORIGIN`` is the origin's base URL; the port is the first argument."""

from __future__ import annotations

import os
import sys

import aiohttp
from aiohttp import web

import bytepump.aiohttp

ORIGIN = os.environ["BP_ORIGIN"]


async def spliced(request: web.Request) -> web.StreamResponse:
    return await bytepump.aiohttp.respond_from(
        request, f"{ORIGIN}/{request.match_info['name']}"
    )


async def streamed(request: web.Request) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    async with session.get(f"{ORIGIN}/{request.match_info['name']}") as origin:
        response = web.StreamResponse(status=origin.status)
        response.content_length = origin.content_length
        await response.prepare(request)
        async for chunk in origin.content.iter_chunked(65536):
            await response.write(chunk)
        await response.write_eof()
        return response


async def session(app: web.Application):
    app["session"] = aiohttp.ClientSession()
    yield
    await app["session"].close()


def main() -> None:
    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_get("/bytepump/{name}", spliced)
    app.router.add_get("/aiohttp/{name}", streamed)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
