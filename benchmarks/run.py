#!/usr/bin/env python3
"""Benchmark ``bytepump.splice_to`` against ``shutil.copyfileobj`` and the
zero-copy peers (``socket.sendfile``/``os.sendfile``, a bare ``os.splice``
loop, the same splice calls in a C loop).

    python3 benchmarks/run.py --quick     # 64 KiB, 4 MiB, 256 MiB: under a minute
    python3 benchmarks/run.py             # --full: 1 GiB and the HTTP scenario
    python3 benchmarks/run.py --http-only # wrk against serve, nginx, http.server
    python3 benchmarks/run.py --wsgi-only # wrk: edge include under gunicorn
    python3 benchmarks/run.py --aiohttp-only  # wrk: edge include under aiohttp
    python3 benchmarks/run.py --zip-only  # a zip of nginx objects into a socket
    pypy3 benchmarks/run.py --quick

Scenarios: file → TCP, TCP → TCP, TCP → file, pipe → file, file → file and
file → Unix socket, over loopback with the far ends in peer processes. For
each cell: the median throughput of the runs (contenders alternated within
each run), the measuring process's CPU seconds per GiB (both timed from the
first request to the last byte's arrival), and in a separate, untimed pass
the Python heap used by bytepump and copyfileobj (CPython: tracemalloc peak
and gc runs; PyPy: minor collections from ``gc.hooks``).

Prints markdown tables and the issue's targets (met/missed) on stdout,
progress on stderr, and stores everything as JSON (and a PNG chart when
matplotlib is installed) in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.dirname(HERE))  # this checkout's bytepump first

import _aiohttp  # noqa: E402
import _contenders  # noqa: E402
import _cref  # noqa: E402
import _http  # noqa: E402
import _percall  # noqa: E402
import _report  # noqa: E402
import _wsgi  # noqa: E402
import _zip  # noqa: E402
from _ends import SCENARIOS, Bench, Scenario  # noqa: E402

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
IMPL = sys.implementation.name
RUNS = {
    "quick": {64 * KIB: 41, 4 * MIB: 15, 256 * MIB: 7},
    "full": {64 * KIB: 101, 4 * MIB: 31, 256 * MIB: 11, GIB: 7},
}
WARMUP = {64 * KIB: 20, 4 * MIB: 3}
"""Transfers per contender before the timed runs of a cell (1 if unlisted)."""
JIT_WARMUP = 2000 if IMPL == "pypy" else 0
"""Warm-up transfers per contender in the first cell, on PyPy: its JIT
compiles a function after ~1,600 calls; so PyPy is measured warm, as a
long-running server runs."""
QUICK_BIG_CONTENDERS = {"bytepump", "copyfileobj", "sendfile", "c-loop"}
"""At 256 MiB the quick mode runs only what the targets compare."""
HEAP_CONTENDERS = ("bytepump", "copyfileobj")


class HeapProbe:
    """Around one transfer. CPython: the tracemalloc peak and the garbage
    collections; PyPy (no tracemalloc): minor and major collections."""

    def __init__(self) -> None:
        self.result: dict[str, int] = {}

    def __enter__(self) -> HeapProbe:
        gc.collect()
        if IMPL == "cpython":
            import tracemalloc

            self.result = {"peak": 0, "gc": 0}
            gc.callbacks.append(self._on_gc)
            tracemalloc.start()
        else:
            self.result = {"minor": 0, "major": 0}
            gc.hooks.on_gc_minor = self._on_minor  # type: ignore[attr-defined]
            gc.hooks.on_gc_collect = self._on_major  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if IMPL == "cpython":
            import tracemalloc

            self.result["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            gc.callbacks.remove(self._on_gc)
        else:
            gc.hooks.on_gc_minor = None  # type: ignore[attr-defined]
            gc.hooks.on_gc_collect = None  # type: ignore[attr-defined]

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        self.result["gc"] += phase == "start"

    def _on_minor(self, stats: Any) -> None:
        self.result["minor"] += stats.count

    def _on_major(self, stats: Any) -> None:
        self.result["major"] += stats.count


def transfer(
    bench: Bench,
    scenario: Scenario,
    size: int,
    contender: _contenders.Contender,
    probe: HeapProbe | None = None,
) -> tuple[float, float]:
    """One transfer of ``size`` bytes: (wall seconds, CPU seconds)."""
    with contextlib.ExitStack() as ends:
        src = bench.source_end(scenario.src, size)
        ends.callback(src.close)
        dst = bench.destination_end(scenario.dst)
        ends.callback(dst.close)
        wall, cpu = time.perf_counter(), time.process_time()
        src.start()
        with probe or contextlib.nullcontext():
            contender.run(src, dst)
        arrived = dst.finish()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if arrived != size:
        raise RuntimeError(f"{arrived} bytes arrived instead of {size}")
    return wall, cpu


class Cell:
    """One contender in one scenario at one size: its runs and heap pass."""

    def __init__(self, scenario: Scenario, size: int, contender: Any) -> None:
        self.scenario, self.size, self.contender = scenario, size, contender
        self.seconds: list[float] = []
        self.cpu: list[float] = []
        self.heap: dict[str, int] | None = None
        self.error: str | None = None

    def attempt(
        self, bench: Bench, probe: HeapProbe | None = None
    ) -> tuple[float, float] | None:
        """One transfer; on failure, note the error: the cell is out."""
        if self.error:
            return None
        try:
            return transfer(bench, self.scenario, self.size, self.contender, probe)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            _contenders.shared_pipe.discard()
            return None

    def timed(self, bench: Bench) -> None:
        sample = self.attempt(bench)
        if sample:
            self.seconds.append(sample[0])
            self.cpu.append(sample[1])

    def heap_pass(self, bench: Bench) -> None:
        probe = HeapProbe()
        if self.attempt(bench, probe):
            self.heap = probe.result

    def as_dict(self) -> dict[str, Any]:
        ok = self.seconds and not self.error
        median = statistics.median(self.seconds) if ok else None
        cpu = statistics.median(self.cpu) if ok else None
        spread = None
        if ok and len(self.seconds) > 1:
            quartiles = statistics.quantiles(self.seconds, n=4, method="inclusive")
            spread = (quartiles[2] - quartiles[0]) / 2 / median
        return {
            "scenario": self.scenario.key,
            "title": self.scenario.title,
            "size": self.size,
            "contender": self.contender.key,
            "name": self.contender.name,
            "seconds": self.seconds,
            "cpu": self.cpu,
            "median_seconds": median,
            "spread": spread,
            "gbps": self.size / median / 1e9 if median else None,
            "cpu_per_gib": cpu / (self.size / GIB) if cpu is not None else None,
            "heap": self.heap,
            "error": self.error,
        }


def run_cells(bench: Bench, cells: list[Cell], runs: int, warmup: int) -> None:
    """Warm up, then ``runs`` rounds alternating the contenders (A/B/A/B),
    then the untimed heap pass."""
    gc.collect()
    for cell in cells:
        for _ in range(warmup):
            cell.attempt(bench)
    for _ in range(runs):
        for cell in cells:
            cell.timed(bench)
    for cell in cells:
        if cell.contender.key in HEAP_CONTENDERS:
            cell.heap_pass(bench)


def _proc_field(path: str, field: str) -> str | None:
    """The value of the first ``field: value`` line of ``path``."""
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            if line.startswith(field):
                return line.partition(":")[2].strip()
    return None


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": IMPL,
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": _proc_field("/proc/cpuinfo", "model name"),
        "memory": _proc_field("/proc/meminfo", "MemTotal"),
    }
    with contextlib.suppress(OSError), open("/proc/sys/fs/pipe-max-size") as f:
        info["pipe_max_size"] = f.read().strip()
    with contextlib.suppress(ImportError):
        import bytepump

        info["bytepump"] = bytepump.__version__
    return info


def peer_python(chosen: str | None) -> str:
    """The peers' interpreter: the one asked for, else a CPython (this one,
    or ``python3`` on PATH), so runs on CPython and PyPy face the same peers."""
    if chosen:
        return chosen
    python3 = shutil.which("python3")
    if IMPL == "cpython" or not python3:
        return sys.executable
    check = "import sys; print(sys.implementation.name, sys.executable)"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            [python3, "-c", check], capture_output=True, text=True, timeout=30
        )
        name, _, executable = found.stdout.strip().partition(" ")
        if name == "cpython" and executable:
            return executable
    return sys.executable


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="no 1 GiB; < 60 s")
    mode.add_argument("--full", action="store_true", help="all sizes (default)")
    parser.add_argument("--sizes", type=int, nargs="+", help="bytes, instead")
    parser.add_argument("--runs", type=int, help="timed runs per cell, instead")
    parser.add_argument(
        "--warmup", type=int, help="untimed runs per cell (and JIT warm-up calls)"
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=[s.key for s in SCENARIOS], help="subset"
    )
    parser.add_argument("--contenders", nargs="+", help="subset, by key")
    parser.add_argument(
        "--results-dir", default=os.path.join(HERE, "results"), help="JSON, PNG"
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument("--peer-python", help="interpreter of the peer processes")
    parser.add_argument(
        "--no-pin", action="store_true", help="leave processes unpinned to CPUs"
    )
    for name, (_, what) in WRK_SCENARIOS.items():
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--{name}", action="store_true", help=f"{what}, any mode")
        group.add_argument(f"--no-{name}", action="store_true", help=f"no {what}")
        group.add_argument(f"--{name}-only", action="store_true", help=f"{what} alone")
    parser.add_argument("--http-rounds", type=int, default=3, help="wrk rounds")
    parser.add_argument("--http-seconds", type=float, default=4, help="per wrk run")
    parser.add_argument(
        "--no-per-call", action="store_true", help="skip the per-call scenario"
    )
    zip_group = parser.add_mutually_exclusive_group()
    zip_group.add_argument("--no-zip", action="store_true", help="no zip scenario")
    zip_group.add_argument(
        "--zip-only", action="store_true", help="the zip scenario alone, any mode"
    )
    parser.add_argument(
        "--zip-objects", type=int, help="objects in the zip scenario's archive"
    )
    return parser.parse_args(argv)


WRK_SCENARIOS: dict[str, tuple[Any, str]] = {
    "http": (_http, "the HTTP scenario (serve, nginx, http.server)"),
    "wsgi": (_wsgi, "the WSGI edge-include scenario"),
    "aiohttp": (_aiohttp, "the asyncio edge-include scenario (aiohttp)"),
}
"""Scenarios measured with wrk against servers: name → (module, what).
Each module has ``run(work, rounds, seconds)``, ``table`` and ``targets``;
``--NAME`` runs it in any mode, ``--NAME-only`` alone, full mode runs all."""


def _only(args: argparse.Namespace) -> str | None:
    return next((n for n in WRK_SCENARIOS if getattr(args, f"{n}_only")), None)


def _wrk_wanted(args: argparse.Namespace, plan: Plan, name: str) -> bool:
    if args.zip_only:
        return False
    only = _only(args)
    if only is not None:
        return only == name
    full = plan.mode == "full" and not getattr(args, f"no_{name}")
    return bool(getattr(args, name)) or full


class Plan:
    """What to run: the mode, runs and warm-up per size, the scenarios and
    which contenders in each cell."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.mode = "quick" if args.quick else "full"
        self.runs = dict(RUNS[self.mode])
        if args.sizes:
            self.mode = "custom"
            self.runs = {size: self.runs.get(size, 5) for size in args.sizes}
        if args.runs:
            self.runs = dict.fromkeys(self.runs, args.runs)
        self.warmup = {
            size: WARMUP.get(size, 1) if args.warmup is None else args.warmup
            for size in self.runs
        }
        self.scenarios = [
            s for s in SCENARIOS if not args.scenarios or s.key in args.scenarios
        ]
        self.only = args.contenders

    def first_warmup(self, size: int) -> int:
        """The first cell's warm-up, which is also the JIT's."""
        return max(self.warmup[size], JIT_WARMUP if self.warmup[size] else 0)

    def contenders(self, all_: list, scenario: Scenario, size: int) -> list:
        keep = [c for c in all_ if c.applies(scenario.src, scenario.dst)]
        if self.only:
            keep = [c for c in keep if c.key in self.only]
        if self.mode == "quick" and size >= 256 * MIB:
            keep = [c for c in keep if c.key in QUICK_BIG_CONTENDERS]
        return keep


def measure(
    args: argparse.Namespace,
    plan: Plan,
    work: str,
    notes: list[str],
    per_call: list[dict[str, Any]],
    zipped: dict[str, Any],
):
    """Every cell of the plan, in order of size (small ones warm the JIT),
    then the per-call scenario into ``per_call`` and the zip scenario into
    ``zipped`` (only that with ``--zip-only``)."""
    c_loop, why = _cref.build(work)
    contenders, missing = _contenders.available(c_loop)
    notes += missing
    if c_loop is None:
        notes.append(f"C splice loop skipped: {why}")
    python = peer_python(args.peer_python)
    bench = Bench(work, python, pin=not args.no_pin)
    notes.append(f"peers run on {python}; CPUs (measured, sink, source): {bench.cpus}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    cells: list[Cell] = []
    try:
        for size, runs in {} if args.zip_only else plan.runs.items():
            bench.write_data(size)
            for scenario in plan.scenarios:
                label = f"{scenario.title}, {_report.size_label(size)}"
                print(f"… {label}", file=sys.stderr, flush=True)
                chosen = plan.contenders(contenders, scenario, size)
                here = [Cell(scenario, size, c) for c in chosen]
                warmup = plan.warmup[size] if cells else plan.first_warmup(size)
                run_cells(bench, here, runs, warmup)
                cells += here
        if not (args.no_per_call or args.zip_only):
            per_call[:] = _percall.measure(
                bench, work, plan.mode, args.runs, args.warmup
            )
        if not args.no_zip:
            zipped.update(
                _zip.measure(
                    bench, work, plan.mode, args.runs, args.warmup, args.zip_objects
                )
            )
            notes += zipped["notes"]
    finally:
        bench.close()
    return cells


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = sum(fields[3:5])  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(args)
    started, busy, ours = time.perf_counter(), busy_cpu_seconds(), os.times()
    work = tempfile.mkdtemp(prefix="bytepump-bench-")
    notes: list[str] = []
    served: dict[str, dict[str, Any]] = {}
    per_call: list[dict[str, Any]] = []
    zipped: dict[str, Any] = {}
    try:
        cells = (
            [] if _only(args) else measure(args, plan, work, notes, per_call, zipped)
        )
        for name, (module, _) in WRK_SCENARIOS.items():
            if _wrk_wanted(args, plan, name):
                served[name] = module.run(work, args.http_rounds, args.http_seconds)
                notes += served[name]["notes"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    # What other processes took meanwhile: a busy machine skews the figures.
    used = [b - a for a, b in zip(ours, os.times())]
    others = busy_cpu_seconds() - busy - sum(used[:4])
    share = others / wall / (os.cpu_count() or 1)
    notes.append(f"other processes used {others:.1f} CPU s ({share:.0%} of the CPUs)")
    if share > 0.05:
        notes.append("WARNING: the machine was not quiet; figures may be skewed")
    cells_out = [c.as_dict() for c in cells]
    return report(args, plan, cells_out, notes, wall, per_call, served, zipped)


def report(
    args: argparse.Namespace,
    plan: Plan,
    cells: list[dict[str, Any]],
    notes: list[str],
    wall: float,
    per_call: list[dict[str, Any]],
    served: dict[str, dict[str, Any]] | None = None,
    zipped: dict[str, Any] | None = None,
) -> int:
    served = served or {}
    zipped = zipped or {}
    results = _report.Results(cells)
    other_impl = "pypy" if IMPL == "cpython" else "cpython"
    other = _report.latest(args.results_dir, other_impl, plan.mode)
    skip_cells = _only(args) or args.zip_only
    found = [] if skip_cells else _report.targets(results, IMPL, other)
    found += _percall.targets(per_call)
    if zipped.get("rows"):
        found += _zip.targets(zipped)
    for name, result in served.items():
        found += WRK_SCENARIOS[name][0].targets(result)
    info = machine()
    title = f"{IMPL} {info['python']}, {plan.mode} mode"
    print(f"## bytepump benchmarks: {title}\n")
    print(f"{info.get('cpu', '?')}, {info['cpus']} CPUs, {info['platform']}\n")
    for note in notes:
        print(f"- {note}")
    if cells:
        print(f"\n{_report.table(results, plan.runs)}")
    if per_call:
        print(f"\n{_percall.table(per_call)}")
    if zipped.get("rows"):
        print(f"\n{_zip.table(zipped)}")
    for name, result in served.items():
        if result["runs"]:
            module, what = WRK_SCENARIOS[name]
            print(f"\n### wrk: {what}\n\n{module.table(result)}")
    print(f"\n{_report.targets_text(found)}\n")
    os.makedirs(args.results_dir, exist_ok=True)
    base = os.path.join(
        args.results_dir, f"{IMPL}-{plan.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if cells and not args.no_chart:
        why_not = _report.chart(results, f"bytepump: {title}", base + ".png")
        print(why_not or f"chart: {base}.png")
    document = {
        "meta": {**info, "mode": plan.mode, "runs": plan.runs, "wall_seconds": wall},
        "notes": notes,
        "cells": cells,
        "per_call": per_call,
        "zip": zipped,
        "targets": [t.as_dict() for t in found],
        **served,
    }
    with open(base + ".json", "w") as f:
        json.dump(document, f, indent=1)
    print(f"results: {base}.json; wall time {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
