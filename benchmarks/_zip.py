"""The zip scenario (issue 10): a zip of many 256 KiB objects from an nginx
origin into a client socket (a connection to the sink peer, which drains
it), built two ways:

- ``bytepump.ZipArchive.splice_to``: URL entries with their size and
  CRC-32 given, the records written from Python, each object's bytes
  spliced from the origin into the socket;
- zipstream-ng (``zipstream.ZipStream``, stored, sized) fed with urllib3
  streaming each object (``preload_content=False``, iterating
  ``stream()``), every chunk written with ``sendall``: what a Python user
  reaches for. Its ``PoolManager`` is made per archive, so both keep
  origin connections for one archive and no longer.

Each run builds the archive (its plan from names, sizes and CRC-32s) and
writes it whole into a fresh connection; timed from the start of building
until the sink has counted the last byte. CPU is the sending process's
user + system time over the same span (``time.process_time()``, all its
threads), its system share shown apart (``resource.getrusage``; both
with sub-millisecond resolution, unlike ``os.times()``' clock ticks);
nginx and the sink are other processes. Contenders interleaved run
after run; medians. 1,000 objects in full mode; quick mode uses fewer (the
output says how many) to stay within a few seconds.

    python3 benchmarks/run.py --zip-only            # this scenario alone
    python3 benchmarks/run.py --zip-only --quick
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import resource
import statistics
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable

from _ends import TCP, Bench
from _http import _NGINX_CONF, NGINX, nginx_command, spawn, stop_all
from _report import Target, X

KIB, GIB = 1 << 10, 1 << 30
OBJECT_SIZE = 256 * KIB
OBJECTS = {"quick": 100, "full": 1000}
RUNS = {"quick": 5, "full": 9}
IMPL = sys.implementation.name
WARMUP = 3 if IMPL == "pypy" else 1
"""Untimed archives per contender first (PyPy's JIT warms up on them)."""
WHEN = datetime.datetime(2026, 1, 1, 12, 0, 0)
CONTENDERS = {
    "bytepump": "ZipArchive.splice_to",
    "zipstream-ng": "zipstream-ng + urllib3",
}


@dataclass(frozen=True)
class Entry:
    name: str
    url: str
    size: int
    crc32: int


Contender = Callable[[list[Entry], Any], int]
"""Writes the whole archive of the entries into the socket; returns its size."""


class Origin:
    """nginx serving ``count`` random objects of OBJECT_SIZE bytes."""

    def __init__(self, work: str, count: int) -> None:
        self.work = os.path.join(work, "zip")
        www = os.path.join(self.work, "www")
        os.makedirs(www)
        block = os.urandom(OBJECT_SIZE)
        self.crcs = []
        for i in range(count):
            # Every object different (its first bytes), none costly to make.
            data = i.to_bytes(8, "big") + block[8:]
            with open(os.path.join(www, f"{i:04d}.bin"), "wb") as f:
                f.write(data)
            self.crcs.append(zlib.crc32(data))
        self.www = www
        self.process: Any = None
        self.port = 0

    def start(self) -> list[Entry]:
        command, self.port = nginx_command(
            self.work, "origin", _NGINX_CONF, www=self.www
        )
        self.process = spawn(command, self.port, self.work)
        base = f"http://127.0.0.1:{self.port}"
        return [
            Entry(f"objects/{i:04d}.bin", f"{base}/{i:04d}.bin", OBJECT_SIZE, crc)
            for i, crc in enumerate(self.crcs)
        ]

    def close(self) -> None:
        if self.process is not None:
            stop_all([self.process])


def run_bytepump(entries: list[Entry], sock: Any) -> int:
    import bytepump

    archive = bytepump.ZipArchive(
        [bytepump.ZipEntry(e.name, e.url, size=e.size, crc32=e.crc32) for e in entries],
        modified=WHEN,
    )
    return archive.splice_to(sock)


def run_zipstream(entries: list[Entry], sock: Any) -> int:
    import urllib3
    import zipstream

    pool = urllib3.PoolManager()

    def streamed(url: str) -> Any:
        response = pool.request("GET", url, preload_content=False)
        try:
            yield from response.stream()
        finally:
            response.release_conn()

    archive = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED, sized=True)
    for e in entries:
        archive.add(streamed(e.url), e.name, size=e.size)
    written = 0
    try:
        for chunk in archive:
            sock.sendall(chunk)
            written += len(chunk)
    finally:
        pool.clear()  # its kept-alive connections, as ZipArchive closes its own
    return written


RUNNERS: dict[str, Contender] = {
    "bytepump": run_bytepump,
    "zipstream-ng": run_zipstream,
}


def missing() -> list[str]:
    """Notes on what cannot run here."""
    notes = []
    if not os.path.exists(NGINX):
        notes.append("zip scenario skipped: nginx not installed")
    for module in ("zipstream", "urllib3"):
        if importlib.util.find_spec(module) is None:
            notes.append(
                f"zip scenario: zipstream-ng skipped, {module} not installed"
                " (pip install bytepump[bench])"
            )
            break
    return notes


def _once(
    bench: Bench, run: Contender, entries: list[Entry]
) -> tuple[float, float, float, int]:
    """One archive into a fresh sink connection: (wall s, user + system
    CPU s, system CPU s, bytes)."""
    dst = bench.destination_end(TCP)
    try:
        system = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        wall, cpu = time.perf_counter(), time.process_time()
        written = run(entries, dst.obj)
        arrived = dst.finish()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - system
    finally:
        dst.close()
    if arrived != written:
        raise RuntimeError(f"{arrived} bytes arrived, {written} were written")
    return wall, cpu, system, written


def measure(
    bench: Bench,
    work: str,
    mode: str,
    runs: int | None,
    warmup: int | None,
    objects: int | None = None,
) -> dict[str, Any]:
    """Every available contender's runs, interleaved; the scenario's result
    (``rows`` empty, with the reason in ``notes``, when it cannot run)."""
    notes = missing()
    count = objects or OBJECTS.get(mode, OBJECTS["quick"])
    result: dict[str, Any] = {"notes": notes, "objects": count, "rows": []}
    if not os.path.exists(NGINX):
        return result
    keys = ["bytepump"] if notes else list(RUNNERS)
    runs = runs or RUNS.get(mode, RUNS["quick"])
    warmup = WARMUP if warmup is None else warmup
    origin = Origin(work, count)
    rows = {
        key: {
            "contender": key,
            "name": CONTENDERS[key],
            "seconds": [],
            "cpu": [],
            "system": [],
        }
        for key in keys
    }
    try:
        entries = origin.start()
        print(f"… zip of {count} {X} 256 KiB from nginx", file=sys.stderr, flush=True)
        for key in keys:
            for _ in range(warmup):
                _once(bench, RUNNERS[key], entries)
        for _ in range(runs):
            for key in keys:
                wall, cpu, system, size = _once(bench, RUNNERS[key], entries)
                rows[key]["seconds"].append(wall)
                rows[key]["cpu"].append(cpu)
                rows[key]["system"].append(system)
                rows[key]["size"] = size
    finally:
        origin.close()
    for row in rows.values():
        seconds, cpu = statistics.median(row["seconds"]), statistics.median(row["cpu"])
        gib = row["size"] / GIB
        row["gbps"] = row["size"] / seconds / 1e9
        row["cpu_per_gib"] = cpu / gib
        row["system_per_gib"] = statistics.median(row["system"]) / gib
    result["rows"] = list(rows.values())
    result["runs"] = runs
    return result


def _title(result: dict[str, Any]) -> str:
    return f"zip of {result['objects']:,} {X} 256 KiB from nginx into a TCP socket"


def table(result: dict[str, Any]) -> str:
    lines = [
        f"#### {_title(result)} (median of {result.get('runs', 0)} runs;"
        " CPU: the sender's user + system time)",
        "",
        "| contender | archive | GB/s | CPU s/GiB | of which system |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['name']} | {row['size'] / (1 << 20):.1f} MiB "
            f"| {row['gbps']:.2f} | {row['cpu_per_gib']:.3f} "
            f"| {row['system_per_gib']:.3f} |"
        )
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 10's targets: ≥ 2x zipstream-ng's throughput at ≤ 0.5x its CPU
    per GiB."""
    by = {row["contender"]: row for row in result.get("rows", [])}
    ours, theirs = by.get("bytepump"), by.get("zipstream-ng")
    speed = cpu = None
    if ours and theirs:
        speed = ours["gbps"] / theirs["gbps"]
        cpu = ours["cpu_per_gib"] / theirs["cpu_per_gib"]
    title = _title(result)
    return [
        Target(f"{title}: ≥ 2{X} zipstream-ng's throughput").check(
            speed, lambda v: v >= 2, "{:.2f}" + X
        ),
        Target(f"{title}: CPU per GiB ≤ 0.5{X} zipstream-ng's").check(
            cpu, lambda v: v <= 0.5, "{:.2f}" + X
        ),
    ]
