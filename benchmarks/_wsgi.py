"""The edge-include scenario: wrk against an application under gunicorn
(gthread, 4 threads) that proxies an nginx origin's objects, three ways:
``bytepump.wsgi.respond_from`` (spliced), the same application streaming
through Python with urllib3 (what ``requests`` does underneath), and an
nginx ``proxy_pass``. 1 MiB and 64 MiB objects; GB/s, and the proxy's CPU
seconds per GiB (the gunicorn processes' or the proxying nginx's, read
from ``/proc`` around each run). Contenders interleaved within a round;
medians of the rounds.

    python3 benchmarks/run.py --wsgi-only   # this scenario alone
"""

from __future__ import annotations

import functools
import importlib.util
import os
import statistics
import subprocess
import sys
from typing import Any, Callable

from _http import (
    _NGINX_CONF,
    NGINX,
    WRK,
    Case,
    _free_port,
    nginx_command,
    spawn,
    stop_all,
    wrk,
)
from _report import Target

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20
OBJECTS = {"1m.bin": MIB, "64m.bin": 64 * MIB}
CONTENDERS = ("bytepump", "urllib3", "nginx")
_TICK = os.sysconf("SC_CLK_TCK")

_PROXY_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/proxy.pid;
error_log {dir}/proxy-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{temp_paths}
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /nginx/ {{
            proxy_pass http://origin/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def cases(seconds: float) -> list[Case]:
    return [
        Case("1m", "1 MiB, 8 connections", "/1m.bin", 8, seconds),
        Case("64m", "64 MiB, 2 connections", "/64m.bin", 2, seconds),
    ]


def missing(modules: tuple[str, ...] = ("gunicorn", "urllib3")) -> str | None:
    """Why this scenario cannot run here, or ``None``."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed (pip install bytepump[bench])"
    if not os.path.exists(WRK):
        return "wrk not installed"
    if not os.path.exists(NGINX):
        return "nginx not installed"
    return None


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children."""
    total = 0.0
    pids = [pid]
    children = f"/proc/{pid}/task/{pid}/children"
    if os.path.exists(children):
        with open(children) as f:
            pids += [int(child) for child in f.read().split()]
    for each in pids:
        try:
            with open(f"/proc/{each}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


class Proxies:
    """The origin nginx, the proxying nginx and gunicorn, started over one
    directory of random objects."""

    directory = "wsgi"
    """Inside the benchmark's work directory: one per scenario."""

    def __init__(self, work: str) -> None:
        self.work = os.path.join(work, self.directory)
        www = os.path.join(self.work, "www")
        os.makedirs(www)
        for name, size in OBJECTS.items():
            with open(os.path.join(www, name), "wb") as f:
                for _ in range(0, size, MIB):
                    f.write(os.urandom(min(MIB, size)))
        self.www = www
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.prefix = {key: f"/{key}" for key in self.contenders}
        self._processes: list[subprocess.Popen[bytes]] = []

    def _nginx(self, name: str, template: str, **values: Any) -> int:
        command, port = nginx_command(self.work, name, template, **values)
        self._spawn(command, port)
        return port

    def _spawn(self, command: list[str], port: int, env: Any = None) -> int:
        process = spawn(command, port, self.work, env)
        self._processes.append(process)
        return process.pid

    contenders = CONTENDERS

    def start(self) -> None:
        origin = self._nginx("origin", _NGINX_CONF, www=self.www)
        proxy = self._nginx("proxy", _PROXY_CONF, origin=origin)
        self.ports["nginx"] = proxy
        self.pids["nginx"] = self._processes[-1].pid
        port = _free_port()
        env = {**os.environ, "BP_ORIGIN": f"http://127.0.0.1:{origin}"}
        env["PYTHONPATH"] = os.pathsep.join([HERE, os.path.dirname(HERE)])
        pid = self._spawn(self.app_command(port), port, env)
        for key in self.contenders[:2]:  # the two Python proxies, one process
            self.ports[key], self.pids[key] = port, pid

    def app_command(self, port: int) -> list[str]:
        """The proxy application's process, listening on ``port``."""
        command = [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread"]
        command += ["--threads", "4", "-b", f"127.0.0.1:{port}", "--log-level"]
        return [*command, "error", "_wsgi_app:app"]

    def close(self) -> None:
        stop_all(self._processes)


def run(
    work: str,
    rounds: int,
    seconds: float,
    proxies_class: type[Proxies] = Proxies,
    unmet: Callable[[], str | None] = missing,
) -> dict[str, Any]:
    """Every case ``rounds`` times, the three contenders interleaved;
    ``unmet()`` says why the scenario cannot run here, if it cannot."""
    why = unmet()
    if why is not None:
        return {"notes": [f"edge-include scenario skipped: {why}"], "runs": {}}
    proxies = proxies_class(work)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        proxies.start()
        for _ in range(rounds):
            for case in cases(seconds):
                print(f"… edge include {case.title}", file=sys.stderr, flush=True)
                for key in proxies.contenders:
                    prefixed = Case(
                        case.key,
                        case.title,
                        proxies.prefix[key] + case.path,
                        case.connections,
                        case.seconds,
                    )
                    before = _cpu_seconds(proxies.pids[key])
                    summary = wrk(proxies.ports[key], prefixed, proxies.work)
                    cpu = _cpu_seconds(proxies.pids[key]) - before
                    gib = summary["bytes"] / (1 << 30)
                    summary["cpu_per_gib"] = cpu / gib if gib else float("inf")
                    runs.setdefault(case.key, {}).setdefault(key, []).append(summary)
    finally:
        proxies.close()
    return {"notes": [], "runs": runs, "rounds": rounds, "seconds": seconds}


def _median(result: dict[str, Any], case: str, key: str, field: str) -> float | None:
    runs = result["runs"].get(case, {}).get(key)
    return statistics.median(run[field] for run in runs) if runs else None


def table(result: dict[str, Any]) -> str:
    lines = [
        "| object | proxy | GB/s | CPU s/GiB | errors |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    titles = {case.key: case.title for case in cases(0)}
    for case, by_key in result["runs"].items():
        for key, runs in by_key.items():
            gbps = _median(result, case, key, "gbps") or 0.0
            cpu = _median(result, case, key, "cpu_per_gib") or 0.0
            errors = max(run["errors"] for run in runs)
            lines.append(
                f"| {titles[case]} | {key} | {gbps:.2f} | {cpu:.2f} | {errors} |"
            )
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def targets(
    result: dict[str, Any],
    name: str = "wsgi",
    python: str = "urllib3",
    of_nginx: float = 0.7,
) -> list[Target]:
    """An edge-include scenario's targets (issue 9's for WSGI by default),
    per object size, as met/missed: bytepump against the ``python``-only
    proxy and against nginx."""
    found = []
    for case in cases(0):
        at = functools.partial(_median, result, case.key)
        speed = _ratio(at("bytepump", "gbps"), at(python, "gbps"))
        found.append(
            Target(f"{name} edge include, {case.title}: ≥ 2x {python}'s GB/s").check(
                speed, lambda v: v >= 2, "{:.2f}x"
            )
        )
        cpu = _ratio(at("bytepump", "cpu_per_gib"), at(python, "cpu_per_gib"))
        found.append(
            Target(
                f"{name} edge include, {case.title}: ≤ 0.5x {python}'s CPU per GiB"
            ).check(cpu, lambda v: v <= 0.5, "{:.2f}x")
        )
        nginx = _ratio(at("bytepump", "gbps"), at("nginx", "gbps"))
        found.append(
            Target(
                f"{name} edge include, {case.title}: ≥ {of_nginx}x nginx's GB/s"
            ).check(nginx, lambda v: v >= of_nginx, "{:.2f}x")
        )
    return found
