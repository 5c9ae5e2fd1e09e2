"""``multimeter show``: tables of stored results, grouped by run.

For each run (the ``run`` meta datum), a table of the results of measurements
(one row each) and a table of the ``@measured`` functions (one row per function:
calls, errors, durations, CPU seconds, peak memory). Damaged files are passed
over with a warning on stderr naming each, and the exit status is then 1: the
table of the good results is still printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from multimeter._cli._common import (
    CommandError,
    add_debug,
    fail,
    format_bytes,
    printable,
    result_paths,
)
from multimeter._cli._summary import FunctionRow, FunctionTable, ResultRow, scan

#: --sort keys; numbers sort largest first, names and times in their order.
SORT_KEYS = ("start", "name", "duration", "cpu", "memory", "points", "marks", "calls", "errors")
_DESCENDING = {"duration", "cpu", "memory", "points", "marks", "calls", "errors"}
_RESULT_KEYS: dict[str, Callable[[ResultRow], Any]] = {
    "start": lambda row: row.start,
    "name": lambda row: row.identifier,
    "duration": lambda row: row.duration_s,
    "cpu": lambda row: row.cpu_s,
    "memory": lambda row: row.peak_memory_bytes,
    "points": lambda row: row.points,
    "marks": lambda row: row.marks,
}
_FUNCTION_KEYS: dict[str, Callable[[FunctionRow], Any]] = {
    "start": lambda row: row.first_start,
    "name": lambda row: row.function,
    "duration": lambda row: row.duration_total_s,
    "cpu": lambda row: row.cpu_total_s,
    "memory": lambda row: row.peak_memory_max_bytes,
    "calls": lambda row: row.calls,
    "errors": lambda row: row.errors,
}


def add_parser(commands: Any, name: str) -> None:
    """Declare ``show``."""
    parser = commands.add_parser(
        name,
        help="tables of stored results, grouped by run",
        description=(
            "Summarises result files and directories of them (recursively; .json, .line"
            " and .jsonl batch files): per run, one row per measurement (identifier, tags,"
            " start, duration, points, peak memory, CPU user and system seconds, marks) and"
            " one row per @measured function (calls, errors, total duration, p50/p95/max,"
            " CPU seconds total and per call, peak memory). Damaged files are passed over"
            " with a warning naming each, and the exit status is then 1."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="result files or directories (default: MULTIMETER_DIR, or ./multimeter-results)",
    )
    parser.add_argument(
        "--sort",
        default="start",
        metavar="KEY",
        help=f"order the rows by one of {', '.join(SORT_KEYS)} (default: start; numbers"
        " largest first; a key a table has not keeps that table by start)",
    )
    parser.add_argument("--reverse", action="store_true", help="reverse the order")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only results with this tag (repeatable: all must match)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts (shape: see the README)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="at most N rows per table"
    )
    add_debug(parser)
    parser.set_defaults(handler=main)


def parse_tags(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; :class:`CommandError` for an item without ``=``."""
    tags = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise CommandError(f"--tag {item!r}: write it as KEY=VALUE")
        tags[key] = value
    return tags


@dataclass
class _Run:
    """The rows of one run."""

    run: str | None
    results: list[ResultRow] = field(default_factory=list)
    functions: FunctionTable = field(default_factory=FunctionTable)
    calls: int = 0
    first: datetime | None = None


def main(arguments: argparse.Namespace) -> int:
    """Print the tables; 0, or 1 when a file was passed over as damaged."""
    if arguments.sort not in SORT_KEYS:
        raise CommandError(
            f"unknown sort key {arguments.sort!r}: choose one of {', '.join(SORT_KEYS)}"
        )
    if arguments.limit is not None and arguments.limit < 0:
        raise CommandError(f"--limit must be 0 or more, got {arguments.limit}")
    tags = parse_tags(arguments.tag)
    arguments.paths = result_paths(arguments.paths)
    skipped: list[tuple[str, str]] = []

    def damaged(path: os.PathLike[str], reason: str) -> None:
        skipped.append((str(path), reason))
        fail("show", f"skipped {path}: {reason}", 1)

    runs: dict[str | None, _Run] = {}
    for row in scan(arguments.paths, tags=tags, on_damaged=damaged):
        run = runs.get(row.run)
        if run is None:
            run = runs[row.run] = _Run(row.run)
        if row.start is not None and (run.first is None or row.start < run.first):
            run.first = row.start
        if row.function is None:
            run.results.append(row)
        else:
            run.calls += row.aggregate.calls if row.aggregate is not None else 1
            run.functions.add(row)
    ordered = sorted(
        runs.values(), key=lambda r: (r.first is None, r.first or datetime.min, r.run or "")
    )
    if not ordered and not skipped:
        if tags:
            wanted = " ".join(f"{k}={v}" for k, v in tags.items())
            raise CommandError(f"no results with the tag(s) {wanted}", 1)
        raise CommandError(f"no results in {', '.join(map(str, arguments.paths))}")
    tables = [
        (
            run,
            _sorted(run.results, _RESULT_KEYS, arguments.sort, arguments.reverse),
            _sorted(run.functions.rows(), _FUNCTION_KEYS, arguments.sort, arguments.reverse),
        )
        for run in ordered
    ]
    out = sys.stdout
    if arguments.json:
        text = json.dumps(_json_document(tables, skipped, arguments.limit), indent=1) + "\n"
    else:
        bold = out.isatty() and "NO_COLOR" not in os.environ
        text = _text(tables, arguments.limit, _width(out), bold)
    if not write_out(text):
        return 1
    return 1 if skipped else 0


def write_out(text: str) -> bool:
    """Write ``text`` to stdout; ``False`` when the reader went away (``| head``)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()
        return False
    return True


def stdout_gone() -> None:
    """After a ``BrokenPipeError``: point stdout at ``/dev/null``, so that the flush at
    exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _sorted(
    rows: list[Any], keys: dict[str, Callable[[Any], Any]], key: str, reverse: bool
) -> list[Any]:
    """``rows`` ordered by ``key`` (start where the table has not that key); missing
    figures last."""
    if key not in keys:
        key = "start"
    get = keys[key]
    present = [row for row in rows if get(row) is not None]
    missing = [row for row in rows if get(row) is None]
    present.sort(key=get, reverse=(key in _DESCENDING) != reverse)
    return present + missing


# -- JSON ----------------------------------------------------------------------------


def _json_document(
    tables: list[tuple[_Run, list[ResultRow], list[FunctionRow]]],
    skipped: list[tuple[str, str]],
    limit: int | None,
) -> dict[str, Any]:
    return {
        "runs": [
            {
                "run": run.run,
                "result_count": len(results),
                "results": [_result_json(row) for row in results[:limit]],
                "function_count": len(functions),
                "call_count": run.calls,
                "functions": [_function_json(row) for row in functions[:limit]],
            }
            for run, results, functions in tables
        ],
        "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _result_json(row: ResultRow) -> dict[str, Any]:
    return {
        "identifier": row.identifier,
        "path": str(row.path),
        "run": row.run,
        "tags": dict(row.tags),
        "start": _iso(row.start),
        "duration_s": row.duration_s,
        "points": row.points,
        "marks": row.marks,
        "peak_memory_bytes": row.peak_memory_bytes,
        "cpu_user_s": row.cpu_user_s,
        "cpu_system_s": row.cpu_system_s,
        "outcome": row.outcome,
    }


def _function_json(row: FunctionRow) -> dict[str, Any]:
    return {
        "function": row.function,
        "calls": row.calls,
        "errors": row.errors,
        "duration_total_s": row.duration_total_s,
        "duration_p50_s": row.duration_p50_s,
        "duration_p95_s": row.duration_p95_s,
        "duration_max_s": row.duration_max_s,
        "cpu_total_s": row.cpu_total_s,
        "cpu_mean_s": row.cpu_mean_s,
        "peak_memory_max_bytes": row.peak_memory_max_bytes,
        "approximate": row.approximate,
        "first_start": _iso(row.first_start),
    }


# -- text ------------------------------------------------------------------------------


def _width(stream: Any) -> int | None:
    """The columns to fit: the terminal's, or ``COLUMNS``; ``None`` (no limit) for a
    file or pipe without ``COLUMNS``."""
    if stream.isatty():
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def seconds(value: float | None) -> str:
    """A duration in human units: ``850 us``, ``12.3 ms``, ``4.56 s``, ``3m07s``, ``2h05m``."""
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f} us"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    if value < 60:
        return f"{value:.2f} s"
    minutes = int(value // 60)
    if minutes < 60:
        return f"{minutes}m{int(value % 60):02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def memory(value: float | None) -> str:
    """Bytes in IEC units (:func:`~multimeter._cli._common.format_bytes`), ``-`` for none."""
    return "-" if value is None else format_bytes(value)


def _start(value: datetime | None, form: str) -> str:
    return value.strftime(form) if value is not None else "-"


def _text(
    tables: list[tuple[_Run, list[ResultRow], list[FunctionRow]]],
    limit: int | None,
    width: int | None,
    bold: bool,
) -> str:
    lines: list[str] = []
    for run, results, functions in tables:
        if lines:
            lines.append("")
        counts = []
        if results:
            counts.append(f"{len(results):,} result{'s' * (len(results) != 1)}")
        if functions:
            counts.append(
                f"{run.calls:,} call{'s' * (run.calls != 1)} of {len(functions):,}"
                f" function{'s' * (len(functions) != 1)}"
            )
        days = sorted({row.start.date() for row in results if row.start is not None})
        if len(days) == 1:
            counts.append(f"on {days[0].isoformat()} (UTC)")
        name = printable(run.run) if run.run is not None else "(none)"
        heading = f"run {name}: {', '.join(counts)}"
        lines.append(_bold(heading, bold))
        if results:
            lines.append("")
            shown = results[:limit]
            start_format = "%H:%M:%S" if len(days) == 1 else "%Y-%m-%d %H:%M:%S"
            lines += _table(
                [
                    ("identifier", "l", [row.identifier for row in shown]),
                    ("tags", "l", [_tags(row.tags) for row in shown]),
                    ("start", "l", [_start(row.start, start_format) for row in shown]),
                    ("duration", "r", [seconds(row.duration_s) for row in shown]),
                    ("points", "r", [f"{row.points:,}" for row in shown]),
                    ("peak mem", "r", [memory(row.peak_memory_bytes) for row in shown]),
                    ("CPU user", "r", [seconds(row.cpu_user_s) for row in shown]),
                    ("CPU sys", "r", [seconds(row.cpu_system_s) for row in shown]),
                    ("marks", "r", [f"{row.marks:,}" for row in shown]),
                ],
                shrink=("identifier", "tags"),
                drop=("points", "marks", "start"),
                width=width,
                bold=bold,
            )
            if len(shown) < len(results):
                lines.append(f"... {len(results) - len(shown):,} more results (see --limit)")
        if functions:
            lines.append("")
            some = functions[:limit]
            lines += _table(
                [
                    ("function", "l", [row.function for row in some]),
                    ("calls", "r", [f"{row.calls:,}" for row in some]),
                    ("errors", "r", [f"{row.errors:,}" for row in some]),
                    ("total", "r", [seconds(row.duration_total_s) for row in some]),
                    ("p50", "r", [_approximate(row, row.duration_p50_s) for row in some]),
                    ("p95", "r", [_approximate(row, row.duration_p95_s) for row in some]),
                    ("max", "r", [seconds(row.duration_max_s) for row in some]),
                    ("CPU", "r", [seconds(row.cpu_total_s) for row in some]),
                    ("CPU/call", "r", [seconds(row.cpu_mean_s) for row in some]),
                    ("peak mem", "r", [memory(row.peak_memory_max_bytes) for row in some]),
                ],
                shrink=("function",),
                drop=("CPU/call", "total", "p50"),
                width=width,
                bold=bold,
            )
            if len(some) < len(functions):
                lines.append(f"... {len(functions) - len(some):,} more functions (see --limit)")
            if any(row.approximate for row in some):
                lines.append("~ estimated from the duration histograms of aggregate-mode results")
    return "\n".join(lines) + "\n" if lines else ""


def _tags(tags: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in tags.items()) or "-"


def _shrink(widths: dict[str, int], names: tuple[str, ...], excess: int, least: int) -> int:
    """Narrow the columns ``names`` (the widest first) by up to ``excess``, none below
    ``least`` or its header; returns the excess left."""
    while excess > 0:
        name = max(names, key=widths.__getitem__)
        floor = max(len(name), least)
        if widths[name] <= floor:
            break
        cut = min(excess, widths[name] - floor)
        widths[name] -= cut
        excess -= cut
    return excess


def _approximate(row: FunctionRow, value: float | None) -> str:
    text = seconds(value)
    return f"~{text}" if row.approximate and value is not None else text


def _bold(text: str, bold: bool) -> str:
    return f"\x1b[1m{text}\x1b[0m" if bold else text


def _table(
    columns: list[tuple[str, str, list[str]]],
    *,
    shrink: tuple[str, ...],
    drop: tuple[str, ...],
    width: int | None,
    bold: bool,
) -> list[str]:
    """Aligned columns (header, ``l`` or ``r``, cells), two spaces apart, control
    characters of the cells escaped. Lines wider than ``width`` first cut the
    ``shrink`` columns (``…``) down to 24 characters, then leave out the ``drop``
    columns in that order (and say so), then cut the ``shrink`` columns down to 8
    characters (or their header)."""
    columns = [(name, align, [printable(cell) for cell in cells]) for name, align, cells in columns]
    widths = {name: max([len(name), *map(len, cells)]) for name, _, cells in columns}
    left_out: list[str] = []
    if width is not None:
        excess = sum(widths.values()) + 2 * (len(widths) - 1) - width
        excess = _shrink(widths, shrink, excess, 24)
        for name in drop:
            if excess <= 0:
                break
            excess -= widths.pop(name) + 2
            left_out.append(name)
        _shrink(widths, shrink, excess, 8)
    kept = [(name, align, cells) for name, align, cells in columns if name in widths]

    def line(cells: Iterable[str]) -> str:
        parts = []
        for cell, (name, align, _) in zip(cells, kept, strict=True):
            size = widths[name]
            if len(cell) > size:
                cell = cell[: size - 1] + "…"
            parts.append(cell.ljust(size) if align == "l" else cell.rjust(size))
        return "  ".join(parts).rstrip()

    lines = [_bold(line(name for name, _, _ in kept), bold)]
    lines += (line(row) for row in zip(*(cells for _, _, cells in kept), strict=True))
    if left_out:
        lines.append(f"({', '.join(left_out)} left out to fit {width} columns; --json has all)")
    return lines
