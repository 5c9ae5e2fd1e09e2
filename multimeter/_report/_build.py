"""From result paths to a written report: which results get charts, which a summary.

Up to :data:`MAX_CHARTED` results: a chart per metric with every result
overlaid, aligned on its start. More results: the ``@measured`` calls among them
as the per-function summary and one chart of call durations over time; the
other results (a ``multimeter run`` measurement, say) keep their charts, the
:data:`MAX_CHARTED` latest of them.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from multimeter._loading import load_results
from multimeter._report._calls import ResultRow, as_dict, function_rows, row_of
from multimeter._report._data import BUCKETS, MIN_BUCKETS, chart_data, compact, downsample
from multimeter._report._page import render, write_atomically
from multimeter.result import Result

#: Results charted one by one (overlaid); more than this and the ``@measured``
#: calls among them are summed up per function instead.
MAX_CHARTED = 10

#: Functions drawn in the call-duration chart (those with the most time in calls).
MAX_FUNCTIONS = 10


class ReportInputError(ValueError):
    """A path the report cannot read results from; the message names it."""


def _started(result: Result) -> datetime:
    return result.start or datetime.min.replace(tzinfo=timezone.utc)


def collect(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Result], list[ResultRow], int]:
    """The results to chart, the rows of every result, and how many results were
    not charted (besides the calls that the summary covers).

    Raises:
        ReportInputError: for a missing path or one without results.
        ResultFileError: for a file that is not a result.
    """
    charted: list[Result] = []  # the results, while there are at most MAX_CHARTED
    others: list[Result] = []  # the latest results that are not calls
    rows: list[ResultRow] = []
    for path in paths:
        if not pathlib.Path(path).exists():
            raise ReportInputError(f"no such file or directory: {str(path)!r}")
        found = 0
        for result in load_results(path):
            found += 1
            row = row_of(result, str(path))
            rows.append(row)
            if len(rows) <= MAX_CHARTED:
                charted.append(result)
            elif charted:
                charted = []
            if row.function is None:
                others.append(result)
                if len(others) > MAX_CHARTED:
                    others.sort(key=_started)
                    del others[0]
        if not found:
            raise ReportInputError(f"no results in {str(path)!r}")
    if len(rows) <= MAX_CHARTED:
        return charted, rows, 0
    others.sort(key=_started)
    not_charted = sum(1 for row in rows if row.function is None) - len(others)
    return others, rows, not_charted


def calls_data(rows: Sequence[ResultRow], *, buckets: int = BUCKETS) -> dict[str, Any]:
    """The per-function summary and the call durations over time (the start of
    each call, in seconds from the first one), one series per function."""
    calls = [row for row in rows if row.function]
    table = [as_dict(row) for row in function_rows(calls)]
    starts = [row.start for row in calls if row.start is not None]
    origin = min(starts) if starts else None
    by_function: dict[str, list[tuple[float, float]]] = {}
    for row in calls:
        if row.start is not None and row.duration_s is not None and origin is not None:
            by_function.setdefault(row.function or "", []).append(
                ((row.start - origin).total_seconds(), row.duration_s)
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
                "t": [compact(t, 7) for t in times],
                "v": [compact(d) for d in durations],
            }
        )
    return {
        "calls": len(calls),
        "errors": sum(1 for row in calls if row.error),
        "functions": table,
        "series": series,
        "left_out": len(ranked) - len(shown),
        "downsampled": downsampled,
    }


def build(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """The page data for the results under ``paths``."""
    charted, rows, not_charted = collect(paths)
    data = chart_data(charted)
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


def write_report(
    paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> pathlib.Path:
    """Write the report of the results under ``paths`` to ``output``, atomically;
    returns the path written."""
    target = pathlib.Path(output)
    page = render(build(paths), title_for(paths))
    write_atomically(target, page)
    return target
