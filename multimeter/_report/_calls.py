"""The rows a report reads about many results, and the per-function summary.

The same rows and fields as ``multimeter show`` (``multimeter._cli._summary``:
``ResultRow``, ``function_rows(rows)``), made here from results the report has
loaded anyway (it charts some of them). The report needs only
these fields of a row: ``path``, ``identifier``, ``start``, ``duration_s``,
``function`` and ``error``; and of a function row: ``function``, ``calls``,
``errors``, the duration percentiles, the CPU seconds and the peak memory.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from multimeter.result import Result


@dataclass(frozen=True)
class ResultRow:
    """What a table says about one result (see ``multimeter show``)."""

    path: str
    identifier: str
    run: str | None
    tags: dict[str, str]
    start: datetime | None
    duration_s: float | None
    points: int
    marks: int
    peak_memory_bytes: float | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    function: str | None
    error: str | None


@dataclass(frozen=True)
class FunctionRow:
    """The calls of one ``@measured`` function, summed up."""

    function: str
    calls: int
    errors: int
    duration_p50_s: float | None
    duration_p95_s: float | None
    duration_max_s: float | None
    cpu_total_s: float | None
    cpu_mean_s: float | None
    peak_memory_max_bytes: float | None


def row_of(result: Result, path: str) -> ResultRow:
    """The row of one loaded result, read from ``path``."""
    summary = result.summary()
    meta = result.meta_data
    function = (
        f"{meta['module']}.{meta['qualname']}"
        if meta.get("function") and meta.get("module") and meta.get("qualname")
        else None
    )
    return ResultRow(
        path=path,
        identifier=result.identifier,
        run=meta.get("run"),
        tags=dict(result.tags),
        start=result.start,
        duration_s=summary["duration_s"],
        points=summary["points"],
        marks=summary["marks"],
        peak_memory_bytes=summary["peak_memory_bytes"],
        cpu_user_s=summary["cpu_user_s"],
        cpu_system_s=summary["cpu_system_s"],
        function=function,
        error=meta.get("exception_type") if meta.get("outcome") == "raise" else None,
    )


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def function_rows(rows: Iterable[ResultRow]) -> list[FunctionRow]:
    """One row per function of the ``@measured`` call rows, by function name."""
    groups: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.function:
            groups[row.function].append(row)
    table = []
    for function, calls in sorted(groups.items()):
        durations = sorted(r.duration_s for r in calls if r.duration_s is not None)
        cpus = [
            (r.cpu_user_s or 0.0) + (r.cpu_system_s or 0.0)
            for r in calls
            if r.cpu_user_s is not None or r.cpu_system_s is not None
        ]
        peaks = [r.peak_memory_bytes for r in calls if r.peak_memory_bytes is not None]
        table.append(
            FunctionRow(
                function=function,
                calls=len(calls),
                errors=sum(1 for r in calls if r.error),
                duration_p50_s=_percentile(durations, 0.5),
                duration_p95_s=_percentile(durations, 0.95),
                duration_max_s=durations[-1] if durations else None,
                cpu_total_s=sum(cpus) if cpus else None,
                cpu_mean_s=sum(cpus) / len(cpus) if cpus else None,
                peak_memory_max_bytes=max(peaks) if peaks else None,
            )
        )
    return table


def as_dict(row: Any) -> dict[str, Any]:
    """A function row's fields, for the page."""
    return {name: getattr(row, name, None) for name in FunctionRow.__dataclass_fields__}
