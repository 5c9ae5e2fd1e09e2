"""From result paths to a written report: which results get charts, which a summary.

Up to :data:`MAX_CHARTED` results: a chart per metric with every result
overlaid, aligned on its start. More results: the ``@measured`` calls among them
as the per-function summary of ``multimeter show`` and one chart of call
durations over time; the other results (a ``multimeter run`` measurement, say)
keep their charts, the :data:`MAX_CHARTED` latest of them. The rows come from
``multimeter._cli._summary.scan`` (which reads only what a row needs); only the
results that are charted are read whole.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from multimeter._cli._summary import FunctionRow, ResultRow, function_rows, scan
from multimeter._loading import load_results
from multimeter._report._data import (
    BUCKETS,
    MIN_BUCKETS,
    chart_data,
    compact,
    downsample,
    offset,
)
from multimeter._report._page import render, write_page
from multimeter.result import Result

#: Results charted one by one (overlaid); more than this and the ``@measured``
#: calls among them are summed up per function instead.
MAX_CHARTED = 10

#: Functions drawn in the call-duration chart (those with the most time in calls).
MAX_FUNCTIONS = 10

_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


def choose(rows: Sequence[ResultRow]) -> tuple[list[ResultRow], int]:
    """The rows of the results to chart, and how many others are not charted (besides
    the ``@measured`` calls, which the summary covers when there are many results)."""
    if len(rows) <= MAX_CHARTED:
        return list(rows), 0
    others = [row for row in rows if row.function is None]
    latest = sorted(others, key=lambda row: row.start or _EARLIEST)[-MAX_CHARTED:]
    chosen = {id(row) for row in latest}
    return [row for row in others if id(row) in chosen], len(others) - len(latest)


def load(rows: Sequence[ResultRow]) -> list[Result]:
    """The results of ``rows``, in their order, read whole from their files."""
    wanted: dict[pathlib.Path, set[str]] = {}
    for row in rows:
        wanted.setdefault(row.path, set()).add(row.identifier)
    found: dict[tuple[pathlib.Path, str], Result] = {}
    for path, identifiers in wanted.items():
        for result in load_results(path):
            if result.identifier in identifiers:
                found.setdefault((path, result.identifier), result)
    return [found[(row.path, row.identifier)] for row in rows]


def _function(row: FunctionRow) -> dict[str, Any]:
    return {
        "function": row.function,
        "calls": row.calls,
        "errors": row.errors,
        "duration_p50_s": compact(row.duration_p50_s),
        "duration_p95_s": compact(row.duration_p95_s),
        "duration_max_s": compact(row.duration_max_s),
        "cpu_total_s": compact(row.cpu_total_s),
        "cpu_mean_s": compact(row.cpu_mean_s),
        "peak_memory_max_bytes": compact(row.peak_memory_max_bytes),
        "approximate": row.approximate,
    }


def _call_duration(row: ResultRow) -> float | None:
    """A call's duration; for an aggregate-mode result, its calls' mean duration."""
    if row.aggregate is not None:
        sums = row.aggregate
        return sums.duration_total_s / sums.calls if sums.calls else None
    return row.duration_s


def calls_data(rows: Sequence[ResultRow], *, buckets: int = BUCKETS) -> dict[str, Any]:
    """The per-function summary (as ``multimeter show`` computes it) and the call
    durations over time (each call at its start, in seconds from the first one;
    an aggregate-mode result gives its calls' mean duration at its start), one
    series per function."""
    calls = [row for row in rows if row.function]
    functions = function_rows(calls)
    starts = [row.start for row in calls if row.start is not None]
    origin = min(starts) if starts else None
    by_function: dict[str, list[tuple[float, float]]] = {}
    for row in calls:
        duration = _call_duration(row)
        if row.start is not None and duration is not None and origin is not None:
            by_function.setdefault(row.function or "", []).append(
                ((row.start - origin).total_seconds(), duration)
            )
    ranked = sorted(by_function, key=lambda f: -sum(d for _, d in by_function[f]))
    shown = ranked[:MAX_FUNCTIONS]
    per_function = max(MIN_BUCKETS, buckets // max(len(shown), 1))
    series = []
    downsampled = False
    for function in sorted(shown):
        points = sorted(by_function[function])
        times, (durations,) = downsample(
            [t for t, _ in points], [[d for _, d in points]], per_function
        )
        downsampled = downsampled or len(times) < len(points)
        series.append(
            {
                "function": function,
                "t": [offset(t) for t in times],
                "v": [compact(d) for d in durations],
            }
        )
    return {
        "calls": sum(row.aggregate.calls if row.aggregate else 1 for row in calls),
        "errors": sum(function.errors for function in functions),
        "functions": [_function(function) for function in functions],
        "series": series,
        "left_out": len(ranked) - len(shown),
        "downsampled": downsampled,
        "aggregate": any(row.aggregate is not None for row in calls),
    }


def build(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """The page data for the results under ``paths``.

    Raises:
        CommandError: for a missing path, a file that is not a result, a
            directory without results (from ``scan``).
    """
    rows = list(scan(paths))
    charted, not_charted = choose(rows)
    data = chart_data(load(charted))
    data["generated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if len(rows) > MAX_CHARTED and any(row.function for row in rows):
        data["calls"] = calls_data(rows)
    if not_charted:
        data["more"] = (
            f"{len(rows)} results: the {len(charted)} latest that are not @measured calls"
            f" are charted, {not_charted} older ones are not."
        )
    return data


def title_for(paths: Sequence[str | os.PathLike[str]]) -> str:
    """The page title: the paths' names."""
    names = [pathlib.Path(path).name or str(path) for path in paths]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"multimeter report: {shown}"


def write_report(paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]) -> None:
    """Write the report of the results under ``paths`` to ``output`` (``-``: stdout;
    a file is replaced atomically, a FIFO or device written into)."""
    write_page(output, render(build(paths), title_for(paths)))
