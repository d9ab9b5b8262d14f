"""The HTTP scenario: wrk against ``bytepump serve``, nginx and ``python -m
http.server``, each started here on a loopback port and serving the same
files.

Cases: a 4 KiB file over 32 kept-alive connections (requests/s, p99) and
over one (latency), a 100 MiB file over one connection (GB/s), and a 1 MiB
file over 500 connections (errors and timeouts). Each round runs every
server once per case, interleaved; the medians of the rounds are reported.
wrk's Lua ``done`` hook prints its summary as JSON, so nothing is scraped
from its text output.

    python3 benchmarks/run.py --http-only   # this scenario alone
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from _report import Target

WRK = shutil.which("wrk") or "/usr/bin/wrk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
KIB, MIB = 1 << 10, 1 << 20
FILES = {"4k.bin": 4 * KIB, "1m.bin": MIB, "100m.bin": 100 * MIB}

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50),
    latency:percentile(99)))
end
"""

_NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{temp_paths}
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""


_TEMP_PATHS = "\n".join(
    f"    {kind}_temp_path {{dir}}/{kind};"
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
)
"""nginx's temporary directories, all inside the work directory."""


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    path: str
    connections: int
    seconds: float


def cases(seconds: float) -> list[Case]:
    return [
        Case("4k-32", "4 KiB, 32 connections", "/4k.bin", 32, seconds),
        Case("4k-1", "4 KiB, 1 connection", "/4k.bin", 1, seconds),
        Case("100m-1", "100 MiB, 1 connection", "/100m.bin", 1, seconds),
        Case("1m-500", "1 MiB, 500 connections", "/1m.bin", 500, seconds + 1),
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), 1),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


def spawn(
    command: list[str], port: int, cwd: str, env: Any = None
) -> subprocess.Popen[bytes]:
    """Start a server (its output discarded: one log line per request is
    not measured) and wait until it listens on ``port``."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
    )
    try:
        _wait_listening(port, process)
    except BaseException:
        stop_all([process])
        raise
    return process


def nginx_command(
    work: str, name: str, template: str, **values: Any
) -> tuple[list[str], int]:
    """The command line of an nginx whose configuration ``work/NAME.conf``
    is ``template`` filled with ``values``, the work directory, nginx's
    temporary paths inside it and a free port; and that port."""
    port = _free_port()
    conf = os.path.join(work, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(
            template.format(
                dir=work, port=port, temp_paths=_TEMP_PATHS.format(dir=work), **values
            )
        )
    return [NGINX, "-p", work, "-c", conf], port


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the servers a scenario started (all at once), killing any
    that lingers."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Servers:
    """The three servers, started over the same directory of files."""

    def __init__(self, work: str) -> None:
        self.work = os.path.join(work, "http")
        self.www = os.path.join(self.work, "www")
        os.makedirs(self.www)
        for name, size in FILES.items():
            with open(os.path.join(self.www, name), "wb") as f:
                for _ in range(0, size, MIB):
                    f.write(os.urandom(min(MIB, size)))
        self.ports: dict[str, int] = {}
        self._processes: list[subprocess.Popen] = []

    def start(self) -> list[str]:
        """Start what is installed; returns notes on what is not."""
        notes = []
        self._spawn(
            "bytepump",
            [sys.executable, "-m", "bytepump", "serve", self.www, "--port", "{port}"],
        )
        stdlib = [sys.executable, "-m", "http.server", "-b", "127.0.0.1"]
        self._spawn("http.server", [*stdlib, "-d", self.www, "{port}"])
        if os.path.exists(NGINX):
            command, port = nginx_command(self.work, "nginx", _NGINX_CONF, www=self.www)
            self._spawn("nginx", command, port)
        else:
            notes.append("nginx not installed: its column is empty")
        return notes

    def _spawn(self, key: str, command: list[str], port: int | None = None) -> None:
        port = port or _free_port()
        command = [part.replace("{port}", str(port)) for part in command]
        self._processes.append(spawn(command, port, self.work))
        self.ports[key] = port

    def close(self) -> None:
        stop_all(self._processes)


def wrk(port: int, case: Case, work: str) -> dict[str, Any]:
    """One wrk run; its summary (latencies in µs)."""
    script = os.path.join(work, "done.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(_DONE)
    threads = min(2, case.connections)
    command = [WRK, f"-t{threads}", f"-c{case.connections}"]
    command += [
        f"-d{case.seconds:g}s",
        "-s",
        script,
        f"http://127.0.0.1:{port}{case.path}",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=case.seconds + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRK "):
            summary = json.loads(line[4:])
            seconds = summary["duration_us"] / 1e6
            summary["rps"] = summary["requests"] / seconds
            summary["gbps"] = summary["bytes"] / seconds / 1e9
            summary["errors"] = sum(
                summary[k] for k in ("connect", "read", "write", "status", "timeout")
            )
            return summary
    raise RuntimeError(f"wrk printed no summary: {done.stdout} {done.stderr}")


def run(work: str, rounds: int, seconds: float) -> dict[str, Any]:
    """Every case, ``rounds`` times, the servers interleaved within a round."""
    if not os.path.exists(WRK):
        return {"notes": ["wrk not installed: HTTP scenario skipped"], "runs": {}}
    servers = Servers(work)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        notes = servers.start()
        for _ in range(rounds):
            for case in cases(seconds):
                print(f"… HTTP {case.title}", file=sys.stderr, flush=True)
                for key, port in servers.ports.items():
                    runs.setdefault(case.key, {}).setdefault(key, [])
                    runs[case.key][key].append(wrk(port, case, servers.work))
    finally:
        servers.close()
    return {"notes": notes, "runs": runs, "rounds": rounds, "seconds": seconds}


def _median(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.median(run[field] for run in runs)


def _value(result: dict[str, Any], case: str, key: str, field: str) -> float | None:
    runs = result["runs"].get(case, {}).get(key)
    return _median(runs, field) if runs else None


def table(result: dict[str, Any]) -> str:
    lines = [
        "| case | server | requests/s | GB/s | p50 ms | p99 ms | errors (timeouts) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    titles = {case.key: case.title for case in cases(0)}
    for case, by_server in result["runs"].items():
        for key, runs in by_server.items():
            errors = max(run["errors"] for run in runs)
            timeouts = max(run["timeout"] for run in runs)
            lines.append(
                f"| {titles[case]} | {key} | {_median(runs, 'rps'):,.0f} "
                f"| {_median(runs, 'gbps'):.2f} | {_median(runs, 'p50_us') / 1e3:.2f} "
                f"| {_median(runs, 'p99_us') / 1e3:.2f} | {errors} ({timeouts}) |"
            )
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 12's serve targets, as met/missed."""

    def get(case: str, key: str, field: str) -> float | None:
        return _value(result, case, key, field)

    found = []
    p50, p99 = get("4k-1", "bytepump", "p50_us"), get("4k-1", "bytepump", "p99_us")
    both = None if p50 is None or p99 is None else max(p50, p99) / 1e3
    found.append(
        Target(
            "serve, 4 KiB on one kept-alive connection: median and p99 < 2 ms"
        ).check(both, lambda v: v < 2, "worst of median/p99 {:.2f} ms")
    )
    ours, theirs = get("4k-32", "bytepump", "rps"), get("4k-32", "http.server", "rps")
    ratio = None if ours is None or not theirs else ours / theirs
    found.append(
        Target("serve, 4 KiB, 32 connections: ≥ 3x http.server's requests/s").check(
            ratio, lambda v: v >= 3, "{:.1f}x"
        )
    )
    ours, theirs = get("100m-1", "bytepump", "gbps"), get("100m-1", "nginx", "gbps")
    ratio = None if ours is None or not theirs else ours / theirs
    found.append(
        Target("serve, 100 MiB: ≥ 0.8x nginx's GB/s").check(
            ratio, lambda v: v >= 0.8, "{:.2f}x"
        )
    )
    runs = result["runs"].get("1m-500", {}).get("bytepump")
    errors = None if not runs else max(run["errors"] for run in runs)
    found.append(
        Target("serve, 1 MiB, 500 connections: no errors or timeouts").check(
            errors, lambda v: v == 0, "{:.0f} errors at worst"
        )
    )
    return found
