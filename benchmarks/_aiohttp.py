"""The asyncio edge-include scenario (issue 8): wrk against an aiohttp
server proxying the nginx origin's objects three ways:
``bytepump.aiohttp.respond_from`` (spliced into the borrowed transport),
aiohttp alone (``ClientSession.get``, then ``StreamResponse.write`` of each
chunk: what an aiohttp user writes today), and nginx ``proxy_pass``. The
origins, cases, measuring and table are the WSGI scenario's
(:mod:`_wsgi`); only the proxy process differs.

    python3 benchmarks/run.py --aiohttp-only   # this scenario alone
"""

from __future__ import annotations

import sys
from typing import Any

import _wsgi
from _report import Target

CONTENDERS = ("bytepump", "aiohttp", "nginx")


class Proxies(_wsgi.Proxies):
    contenders = CONTENDERS
    directory = "aiohttp"

    def app_command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "_aiohttp_app", str(port)]


def run(work: str, rounds: int, seconds: float) -> dict[str, Any]:
    return _wsgi.run(
        work, rounds, seconds, Proxies, lambda: _wsgi.missing(("aiohttp",))
    )


table = _wsgi.table


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 8's targets: ≥ 2x aiohttp alone at ≤ 0.5x its CPU per GiB, and
    ≥ 0.8x nginx's throughput."""
    return _wsgi.targets(result, "aiohttp", "aiohttp", 0.8)
