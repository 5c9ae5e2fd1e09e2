"""What a report shows, as plain JSON-able data: charts of results, tables, calls.

Display data only: series are downsampled (the lowest and the highest value of
each time bucket, in the order they came, so spikes stay visible) and numbers
are rounded to what a chart can show (4 significant digits; times to the
millisecond); the stored results are never changed. Times are seconds from each
result's start, so several results overlay aligned on their starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

from multimeter.result import Result

#: Time buckets per series of one result: a chart holds at most twice as many
#: points per series (a bucket's lowest and highest value). Several results
#: overlaid share this budget (at least MIN_BUCKETS each), so the file stays small.
BUCKETS = 2000
MIN_BUCKETS = 250

#: Marks listed and drawn per result; a result with more says how many were left out.
MAX_MARKS = 5000

#: Significant digits of the values in the page (a chart is a few hundred pixels high).
DIGITS = 4

_CALL_MARK = re.compile(r"(?P<name>.+):(?P<kind>enter|exit|raise(?: .*)?)")


def compact(value: Any, digits: int = DIGITS) -> float | int | None:
    """``value`` rounded to ``digits`` significant digits, an int where it is whole;
    ``None`` for a missing value, NaN or an infinity (JSON has none of them).

    >>> compact(123456789.0), compact(0.000123456), compact(2.0), compact(float("nan"))
    (123500000, 0.0001235, 2, None)
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    rounded = float(f"{value:.{digits}g}")
    if rounded.is_integer() and abs(rounded) < 2**53:
        return int(rounded)
    return rounded


def downsample(
    times: Sequence[float], columns: Sequence[Sequence[Any]], buckets: int
) -> tuple[list[float], list[list[Any]]]:
    """At most ``2 * buckets`` rows of ``times`` and ``columns`` for display.

    Rows are cut into ``buckets`` runs of consecutive rows; each gives two rows:
    at the times of its first and last row, each column's lowest and highest
    value, in the order they occurred (so a spike stays a spike). Missing values
    (``None``) are passed over; a bucket without a value gives ``None``.

    >>> downsample([0, 1, 2, 3], [[5, 9, 1, 2]], buckets=1)
    ([0, 3], [[9, 1]])
    """
    count = len(times)
    if count <= 2 * buckets:
        return list(times), [list(column) for column in columns]
    bounds = list(pairwise(count * k // buckets for k in range(buckets + 1)))
    new_times: list[float] = []
    for low, high in bounds:
        new_times += (times[low], times[high - 1])
    new_columns = []
    for column in columns:
        has_gaps = None in column
        out: list[Any] = []
        for low, high in bounds:
            part = column[low:high]
            if has_gaps:
                part = [value for value in part if value is not None]
                if not part:
                    out += (None, None)
                    continue
            smallest, biggest = min(part), max(part)
            if part.index(smallest) <= part.index(biggest):
                out += (smallest, biggest)
            else:
                out += (biggest, smallest)
        new_columns.append(out)
    return new_times, new_columns


def _seconds(moment: datetime, origin: datetime) -> float:
    return (moment - origin).total_seconds()


def offset(seconds: float) -> float | int:
    """A time from the start for the page: seconds to the millisecond.

    >>> offset(12.3456), offset(2.0)
    (12.346, 2)
    """
    rounded = round(seconds, 3)
    return int(rounded) if rounded.is_integer() else rounded


def run_labels(results: Sequence[Result]) -> list[str]:
    """A label per result: the ``run`` meta datum where every result has its own,
    else the identifier (the page numbers them ``#1``, ``#2``... besides)."""
    runs = [result.meta_data.get("run", "") for result in results]
    if all(runs) and len(set(runs)) == len(runs):
        return runs
    return [result.identifier for result in results]


def intervals(marks: Iterable[tuple[float, str]], end: float) -> list[list[Any]]:
    """The measured calls among ``marks`` (``name:enter`` up to ``name:exit`` or
    ``name:raise ...``) as ``[start, end, name, depth, ok]``; depth 0 is the
    outermost. A call without its closing mark lasts until ``end``.

    >>> intervals([(0, "a:enter"), (1, "b:enter"), (2, "b:exit"), (3, "a:raise E")], 4)
    [[0, 3, 'a', 0, False], [1, 2, 'b', 1, True]]
    """
    found: list[list[Any]] = []
    open_calls: list[list[Any]] = []
    for moment, label in marks:
        match = _CALL_MARK.fullmatch(label)
        if match is None:
            continue
        name, kind = match["name"], match["kind"]
        if kind == "enter":
            interval = [moment, None, name, len(open_calls), True]
            found.append(interval)
            open_calls.append(interval)
            continue
        for index in range(len(open_calls) - 1, -1, -1):
            if open_calls[index][2] == name:
                interval = open_calls.pop(index)
                interval[1], interval[4] = moment, kind == "exit"
                break
    for interval in open_calls:
        interval[1] = end
    return found


def _measure_order(results: Sequence[Result]) -> list[tuple[str, str, str, str]]:
    """(metric key, subject key, unit, metric description) in schema order, once each."""
    seen: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    for result in results:
        for measure in result.schema.measures:
            key = (measure.metric.key, measure.subject.key)
            seen.setdefault(key, (*key, measure.metric.unit, measure.metric.description))
    return list(seen.values())


def chart_data(results: Sequence[Result], *, buckets: int = BUCKETS) -> dict[str, Any]:
    """The page data for charting ``results`` overlaid: runs, charts, marks, tables.

    ``runs`` holds, per result, its label, identifier, start, duration, tags, meta
    data, marks ``[seconds, label]``, measured-call intervals and the shared
    times ``t`` of its downsampled series. ``charts`` holds one chart per metric
    that has a non-zero value somewhere: its key, unit, description and series
    ``{"run": index, "subject": key, "v": values}``; ``flat`` lists the metrics
    left out because every value is zero or missing.
    """
    per_run = max(MIN_BUCKETS, buckets // max(len(results), 1))
    labels = run_labels(results)
    order = _measure_order(results)
    runs: list[dict[str, Any]] = []
    series: dict[str, list[dict[str, Any]]] = {metric: [] for metric, *_ in order}
    for index, result in enumerate(results):
        points = result.points
        origin = result.start or (points[0].datetime if points else None)
        times = [_seconds(point.datetime, origin) for point in points] if origin else []
        keys = {measure.key for measure in result.schema.measures}
        present = [
            (metric, subject) for metric, subject, *_ in order if f"{subject}.{metric}" in keys
        ]
        columns = [list(result.values(f"{subject}.{metric}")) for metric, subject in present]
        shown_times, shown = downsample(times, columns, per_run)
        for (metric, subject), values in zip(present, shown, strict=True):
            encoded = [compact(value) for value in values]
            if any(encoded):
                series[metric].append({"run": index, "subject": subject, "v": encoded})
        marks = (
            [(_seconds(mark.datetime, origin), mark.label) for mark in result.marks]
            if origin
            else []
        )
        duration = times[-1] if times else 0.0
        runs.append(
            {
                "label": labels[index],
                "identifier": result.identifier,
                "start": origin.isoformat() if origin else None,
                "duration": offset(duration),
                "points": len(points),
                "tags": dict(result.tags),
                "meta": dict(result.meta_data),
                "marks": [[offset(t), label] for t, label in marks[:MAX_MARKS]],
                "marks_total": len(marks),
                "intervals": [
                    [offset(start), offset(end), name, depth, ok]
                    for start, end, name, depth, ok in intervals(marks[:MAX_MARKS], duration)
                ],
                "t": [offset(t) for t in shown_times],
            }
        )
    charts: list[dict[str, Any]] = []
    flat: list[str] = []
    for metric, _subject, unit, description in order:
        if metric in (chart["metric"] for chart in charts) or metric in flat:
            continue
        if series[metric]:
            charts.append(
                {
                    "metric": metric,
                    "unit": unit,
                    "description": description,
                    "series": series[metric],
                }
            )
        else:
            flat.append(metric)
    return {"runs": runs, "charts": charts, "flat": flat}
