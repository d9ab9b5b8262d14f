"""Turning measured cells into the markdown tables, the targets, JSON and a chart.

A cell is a plain dict (as stored in the JSON): ``scenario``, ``title``,
``size``, ``contender``, ``name``, ``seconds`` and ``cpu`` (one per run),
``gbps`` and ``cpu_per_gib`` (medians), ``heap`` (the separate heap pass, or
``None``) and ``error``.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Callable

from _ends import SCENARIOS

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
BASELINE = "copyfileobj"
X = "\N{MULTIPLICATION SIGN}"
RATIO = "{:.2f}" + X
TARGET_SIZE = 256 * MIB
SMALL_SIZE = 64 * KIB
Cell = dict[str, Any]


def size_label(size: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def duration_label(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def heap_label(heap: dict[str, Any] | None) -> str:
    if not heap:
        return ""
    if "peak" in heap:
        return f"peak {heap['peak'] / KIB:.1f} KiB, {heap['gc']} gc"
    major = f", {heap['major']} major" if heap["major"] else ""
    return f"{heap['minor']} minor gc{major}"


class Results:
    """The cells of one run, looked up by scenario, size and contender."""

    def __init__(self, cells: list[Cell]) -> None:
        self.cells = cells
        self._index = {(c["scenario"], c["size"], c["contender"]): c for c in cells}

    def get(self, scenario: str, size: int, contender: str) -> Cell | None:
        cell = self._index.get((scenario, size, contender))
        return cell if cell and cell["gbps"] else None

    def sizes(self) -> list[int]:
        return sorted({c["size"] for c in self.cells})

    def ratios(self, cell: Cell) -> tuple[float | None, float | None]:
        """Throughput and CPU per GiB of ``cell`` over copyfileobj's."""
        base = self.get(cell["scenario"], cell["size"], BASELINE)
        if base is None or not cell["gbps"]:
            return None, None
        cpu = cell["cpu_per_gib"] / base["cpu_per_gib"] if base["cpu_per_gib"] else None
        return cell["gbps"] / base["gbps"], cpu


def _spread(cell: Cell) -> str:
    spread = cell.get("spread")
    return "" if spread is None else f" ±{spread:.0%}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}{X}"


def table(results: Results, runs: dict[int, int]) -> str:
    lines = []
    for size in results.sizes():
        lines += [
            f"### {size_label(size)} (median of {runs[size]} runs, ± half the IQR)",
            "",
            f"| scenario | contender | time | GB/s | {X} {BASELINE} "
            f"| CPU s/GiB | {X} {BASELINE} | Python heap |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for cell in (c for c in results.cells if c["size"] == size):
            lines.append(_row(results, cell))
        lines.append("")
    return "\n".join(lines)


def _row(results: Results, cell: Cell) -> str:
    head = f"| {cell['title']} | {cell['name']} |"
    if cell["error"] or not cell["gbps"]:
        return f"{head} error: {cell['error']} | | | | | |"
    speed, cpu = results.ratios(cell)
    return (
        f"{head} {duration_label(cell['median_seconds'])}{_spread(cell)} "
        f"| {cell['gbps']:.2f} "
        f"| {_ratio(speed)} | {cell['cpu_per_gib']:.3f} | {_ratio(cpu)} "
        f"| {heap_label(cell['heap'])} |"
    )


# --- targets ---------------------------------------------------------------


class Target:
    """One line of the issue's targets: met, missed, or n/a with the reason."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.status = "n/a"
        self.detail = ""

    def check(self, value: float | None, ok: Callable[[float], bool], fmt: str):
        if value is None:
            self.detail = "not measured in this run"
        else:
            self.status = "met" if ok(value) else "missed"
            self.detail = fmt.format(value)
        return self

    def as_dict(self) -> dict[str, str]:
        return {"target": self.text, "status": self.status, "detail": self.detail}


def _speed_over(results: Results, scenario: str, size: int, other: str):
    mine = results.get(scenario, size, "bytepump")
    theirs = results.get(scenario, size, other)
    return mine["gbps"] / theirs["gbps"] if mine and theirs else None


def _cpu_over(results: Results, scenario: str, size: int, other: str):
    mine = results.get(scenario, size, "bytepump")
    theirs = results.get(scenario, size, other)
    if not (mine and theirs and theirs["cpu_per_gib"]):
        return None
    return mine["cpu_per_gib"] / theirs["cpu_per_gib"]


def _title(key: str) -> str:
    return next(s.title for s in SCENARIOS if s.key == key)


def targets(results: Results, impl: str, other: Results | None) -> list[Target]:
    speed = 1.3 if impl == "cpython" else 3.0
    big = f"{size_label(TARGET_SIZE)}"
    found = []
    for key in ("file-tcp", "tcp-tcp"):
        name = f"{_title(key)} {big}"
        found += [
            Target(f"{name}: ≥ {speed}{X} copyfileobj's throughput").check(
                _speed_over(results, key, TARGET_SIZE, BASELINE),
                lambda r, speed=speed: r >= speed,
                RATIO,
            ),
            Target(f"{name}: CPU per GiB ≤ 0.5{X} copyfileobj's").check(
                _cpu_over(results, key, TARGET_SIZE, BASELINE),
                lambda r: r <= 0.5,
                RATIO,
            ),
        ]
    found.append(
        Target(f"{_title('file-tcp')} {big}: ≥ 0.95{X} sendfile's throughput").check(
            _speed_over(results, "file-tcp", TARGET_SIZE, "sendfile"),
            lambda r: r >= 0.95,
            RATIO,
        )
    )
    for scenario in SCENARIOS:
        found.append(
            Target(f"{scenario.title} {big}: ≥ 0.9{X} the C loop's throughput").check(
                _speed_over(results, scenario.key, TARGET_SIZE, "c-loop"),
                lambda r: r >= 0.9,
                RATIO,
            )
        )
    small = f"{_title('file-tcp')} {size_label(SMALL_SIZE)}"
    found.append(
        Target(f"{small}: no slower than sendfile").check(
            _speed_over(results, "file-tcp", SMALL_SIZE, "sendfile"),
            lambda r: r >= 1.0,
            RATIO + " sendfile's throughput",
        )
    )
    found.append(_pypy_small(results, impl, other, small))
    found.append(_heap_target(results, impl))
    return found


def _pypy_small(
    results: Results, impl: str, other: Results | None, label: str
) -> Target:
    target = Target(f"{label}: bytepump on PyPy no slower than on CPython")
    if other is None:
        target.detail = "needs a run on the other interpreter, same mode, in results/"
        return target
    pypy, cpython = (results, other) if impl == "pypy" else (other, results)
    mine = pypy.get("file-tcp", SMALL_SIZE, "bytepump")
    theirs = cpython.get("file-tcp", SMALL_SIZE, "bytepump")
    ratio = mine["gbps"] / theirs["gbps"] if mine and theirs else None
    return target.check(ratio, lambda r: r >= 1.0, "PyPy at " + RATIO + " CPython")


def _heap_target(results: Results, impl: str) -> Target:
    size = max(results.sizes())
    label = f"Python heap during a {size_label(size)} transfer"
    if size < GIB:
        label += " (1 GiB in the full run)"
    pairs = []
    for scenario in SCENARIOS:
        mine = results.get(scenario.key, size, "bytepump")
        base = results.get(scenario.key, size, BASELINE)
        if mine and mine["heap"]:
            pairs.append((scenario.title, mine["heap"], base and base["heap"]))
    if impl == "cpython":
        target = Target(f"{label}: tracemalloc peak ≤ 64 KiB, no gc")
        worst = max((h["peak"] for _, h, _ in pairs), default=None)
        target.check(worst, lambda p: p <= 64 * KIB, "worst peak {:.0f} B")
        if worst is not None and any(h["gc"] for _, h, _ in pairs):
            target.status = "missed"
            target.detail += ", with garbage collections"
        return target
    target = Target(f"{label}: minor collections, a handful vs copyfileobj's")
    worst = max((h["minor"] for _, h, _ in pairs), default=None)
    target.check(worst, lambda n: n <= 10, "worst {:.0f}")
    counts = "; ".join(
        f"{t}: {h['minor']} vs {b['minor'] if b else '?'}" for t, h, b in pairs
    )
    target.detail += f" ({counts})" if counts else ""
    return target


def targets_text(found: list[Target]) -> str:
    lines = ["### Targets", ""]
    lines += [f"- **{t.status}** {t.text}: {t.detail}" for t in found]
    return "\n".join(lines)


# --- files -----------------------------------------------------------------


def latest(results_dir: str, impl: str, mode: str) -> Results | None:
    """The newest stored run of ``impl`` in ``mode`` in ``results_dir``."""
    paths = sorted(glob.glob(os.path.join(results_dir, f"{impl}-{mode}-*.json")))
    paths.sort(key=os.path.getmtime)
    for path in reversed(paths):
        try:
            with open(path) as f:
                return Results(json.load(f)["cells"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def chart(results: Results, title: str, path: str) -> str | None:
    """A PNG of throughput per scenario, size and contender, if matplotlib
    is installed; returns why not otherwise."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return "no chart: matplotlib is not installed (pip install .[bench])"
    sizes = results.sizes()
    names = list(dict.fromkeys(c["name"] for c in results.cells))
    figure, axes = pyplot.subplots(2, 3, figsize=(15, 8), sharey=True)
    width = 0.8 / len(names)
    for axis, scenario in zip(axes.flat, SCENARIOS):
        for i, name in enumerate(names):
            heights = [_gbps_of(results, scenario.key, size, name) for size in sizes]
            xs = [x + i * width for x in range(len(sizes))]
            axis.bar(xs, heights, width, label=name)
        axis.set_title(scenario.title)
        axis.set_xticks([x + 0.4 - width / 2 for x in range(len(sizes))])
        axis.set_xticklabels([size_label(s) for s in sizes])
        axis.set_yscale("log")
    axes.flat[0].set_ylabel("GB/s (median)")
    axes.flat[3].set_ylabel("GB/s (median)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(names))
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return None


def _gbps_of(results: Results, scenario: str, size: int, name: str) -> float:
    for cell in results.cells:
        if (cell["scenario"], cell["size"], cell["name"]) == (scenario, size, name):
            return cell["gbps"] or 0.0
    return 0.0
