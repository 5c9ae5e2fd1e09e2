"""Results as CSV, for spreadsheets and data frames (``multimeter export --format csv``).

The points file has a header row, then one row per point: ``datetime`` (ISO
8601, UTC, microseconds) and one column per measure (its key, e.g.
``process.cpu_user``), empty where the point has no value. The marks file has
``datetime`` and ``label``, one row per mark. Several results share one file,
with an ``identifier`` column first and the measures of all of them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

from multimeter.result import Result


def measure_keys(results: Iterable[Result]) -> list[str]:
    """The measure keys of ``results``, in their order of first appearance (the
    schema's first, then any other key a point holds)."""
    keys: dict[str, None] = {}
    for result in results:
        keys.update((measure.key, None) for measure in result.schema.measures)
        for point in result.points:
            keys.update(dict.fromkeys(point.values))
    return list(keys)


class CsvWriter:
    """Writes results as CSV: the points to one stream, the marks to another (or
    counts them in ``marks_left_out`` where there is none)."""

    def __init__(
        self,
        points: SupportsWrite[str],
        marks: SupportsWrite[str] | None,
        columns: list[str],
        *,
        identifier: bool,
    ) -> None:
        self._columns = columns
        self._identifier = identifier
        self._points = csv.writer(points, lineterminator="\n")
        self._marks = csv.writer(marks, lineterminator="\n") if marks is not None else None
        #: Marks not written, for want of a stream.
        self.marks_left_out = 0
        first = ["identifier"] if identifier else []
        self._points.writerow([*first, "datetime", *columns])
        if self._marks is not None:
            self._marks.writerow([*first, "datetime", "label"])

    def add(self, result: Result) -> None:
        """Write the points and marks of ``result``."""
        first = [result.identifier] if self._identifier else []
        columns = self._columns
        for point in result.points:
            values = point.values
            self._points.writerow(
                [
                    *first,
                    point.datetime.isoformat(timespec="microseconds"),
                    *(_cell(values.get(key)) for key in columns),
                ]
            )
        if self._marks is None:
            self.marks_left_out += len(result.marks)
            return
        for mark in result.marks:
            self._marks.writerow(
                [*first, mark.datetime.isoformat(timespec="microseconds"), mark.label]
            )


def _cell(value: object) -> object:
    """A value as the csv module writes it; ``None`` (missing) as an empty cell,
    booleans as ``true``/``false`` (as in the line format)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
