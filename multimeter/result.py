"""Results of a measurement: points of values over time, marks, tags and meta data.

Values are kept column by column in compact arrays (one per measure, 8 bytes
per value) and timestamps as integer microseconds since the Unix epoch;
:class:`Point` and :class:`Mark` objects are made on demand. All datetimes are
timezone-aware UTC with microsecond resolution.

Code that makes results from values it has already checked (the sampler, call
records, aggregate mode, storages that read files) does so through
:class:`ResultBuilder`, in microseconds and rows; code that writes results out
reads them through :meth:`Result.data`. Only this module touches a result's
private attributes (``tests/test_layout.py`` checks it).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from multimeter._tags import normalize_tags
from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.subject import Subject

if TYPE_CHECKING:
    from multimeter.probe import Probe

__all__ = ["Mark", "Point", "Result", "ResultBuilder", "ResultData", "Schema"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_TYPECODES = {float: "d", int: "q"}


#: Where a measurement's own peak memory is read from (see Result.summary()).
_PEAK_KEYS = ("process.peak_rss", "proc.rss")


def datetime_to_us(timestamp: datetime) -> int:
    """Microseconds since the Unix epoch of a timezone-aware datetime."""
    if not isinstance(timestamp, datetime) or timestamp.utcoffset() is None:
        raise ValueError(f"timestamp must be a timezone-aware datetime, got {timestamp!r}")
    return (timestamp - _EPOCH) // _ONE_US


def us_to_datetime(us: int) -> datetime:
    """The UTC datetime for microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class Point:
    """The values sampled at one time; a measure missing at that time has no key."""

    datetime: datetime
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Mark:
    """A labelled moment of a measurement, e.g. ``"load:enter"``."""

    datetime: datetime
    label: str


@dataclass(frozen=True)
class Schema:
    """The metrics, subjects and measures whose values a result holds."""

    metrics: tuple[Metric, ...] = ()
    subjects: tuple[Subject, ...] = ()
    measures: tuple[Measure, ...] = ()

    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def _hash(self) -> int:
        """The hash, computed once (schemas key caches, e.g. their JSON text)."""
        return hash((self.metrics, self.subjects, self.measures))

    @cached_property
    def _layout(self) -> tuple[tuple[str, str | None], ...]:
        """(key, array typecode or None for a list) of each measure, computed once."""
        return tuple((m.key, _TYPECODES.get(m.metric.value_type)) for m in self.measures)

    @cached_property
    def _row_getter(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]] | None:
        """Picks a row of values in column order, in C; None for fewer than two measures."""
        keys = [key for key, _ in self._layout]
        return itemgetter(*keys) if len(keys) > 1 else None

    @classmethod
    def from_probes(cls, probes: Iterable[Probe]) -> Schema:
        """The schema of everything the given probes measure."""
        measures = tuple(dict.fromkeys(m for p in probes for m in p.measures))
        return cls(
            metrics=tuple(dict.fromkeys(m.metric for m in measures)),
            subjects=tuple(dict.fromkeys(m.subject for m in measures)),
            measures=measures,
        )


def _new_column(value_type: type) -> Any:
    """An empty column: an ``array`` for floats and ints, else a list."""
    typecode = _TYPECODES.get(value_type)
    return array(typecode) if typecode else []


_MISSING = object()
_ARRAY_APPEND = array.append


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


class ResultData(NamedTuple):
    """A result's data as it is kept, for code that writes results out (storages,
    file formats): no :class:`Point` or :class:`Mark` objects are made.

    The sequences are the result's own: read them, do not change them.
    """

    #: The time of each point, in microseconds since the Unix epoch, oldest first.
    times_us: Sequence[int]
    #: ``(key, values, rows where missing)`` for each measure with a column: one
    #: value per point (a placeholder ``0`` in the rows where the value is missing).
    columns: list[tuple[str, Sequence[Any], Container[int]]]
    #: ``(time in microseconds, label)`` of each mark, in the order they were added.
    marks_us: Sequence[tuple[int, str]]


class Result:
    """The result of one measurement.

    Args:
        *probes: The probes whose measures make up the schema (ignored when
            ``schema`` is given).
        identifier: Identifies the measurement, e.g. in file names.
        tags: User-defined tags; values are stored as strings (see README).
        meta_data: Facts about the run (host, pid, ...); values are stored as strings.
        schema: The schema, when it is not derived from probes (e.g. when loading).

    >>> from datetime import datetime, timezone
    >>> result = Result(identifier="demo")
    >>> result.append(datetime(2026, 1, 1, tzinfo=timezone.utc), {"x.y": 1.5})
    >>> list(result.values("x.y"))
    [1.5]
    """

    def __init__(
        self,
        *probes: Probe,
        identifier: str,
        tags: Mapping[str, Any] | None = None,
        meta_data: Mapping[str, Any] | None = None,
        schema: Schema | None = None,
    ) -> None:
        if not isinstance(identifier, str) or not identifier:
            raise ValueError(f"identifier must be a non-empty str, got {identifier!r}")
        self.identifier = identifier
        self.tags = normalize_tags(tags)
        self.meta_data: dict[str, str] = {}
        if meta_data:
            self.add_meta_data(**meta_data)
        self.schema = schema if schema is not None else Schema.from_probes(probes)
        self._times = array("q")
        # One column per measure, made on the first append: array('d') for floats,
        # array('q') for ints, a list for anything else. Missing values are 0 in the
        # column and their row numbers are listed in _missing.
        self._columns: dict[str, Any] = {}
        self._missing: dict[str, set[int]] = {}
        # The values of a first point added by _append_row, kept as the row until the
        # columns are needed: a one-point result (a short call) then costs one list.
        self._first_row: Sequence[Any] | None = None
        self._marks: list[tuple[int, str]] = []
        # Set by the sampler while points may still be queued for this result.
        self._sync_hook: Callable[[], None] | None = None

    @classmethod
    def _prepared(
        cls,
        identifier: str,
        schema: Schema,
        tags: dict[str, str],
        meta_data: dict[str, str],
    ) -> Result:
        """A result from values that are already checked (the per-call path)."""
        result = cls.__new__(cls)
        result.identifier = identifier
        result.tags = tags
        result.meta_data = meta_data
        result.schema = schema
        result._times = array("q")
        result._columns = {}
        result._missing = {}
        result._first_row = None
        result._marks = []
        result._sync_hook = None
        return result

    def _sync(self) -> None:
        """Bring in points the sampler has queued, and make the columns."""
        hook = self._sync_hook
        if hook is not None:
            hook()
        if self._first_row is not None:
            self._make_columns()

    def _make_columns(self) -> None:
        """Turn the pending first row into one-value columns."""
        row, self._first_row = self._first_row, None
        columns = {}
        for (key, code), value in zip(self.schema._layout, row or (), strict=True):
            try:
                columns[key] = array(code, (value,)) if code else [value]
            except (TypeError, OverflowError):
                columns[key] = [value]
        self._columns = columns

    # -- adding -----------------------------------------------------------

    def append(self, timestamp: datetime, values: Mapping[str, Any]) -> None:
        """Add a point of ``values`` sampled at ``timestamp`` (timezone-aware)."""
        self._append_us(datetime_to_us(timestamp), values)

    def _append_us(self, timestamp_us: int, values: Mapping[str, Any]) -> None:
        if self._first_row is not None:
            self._make_columns()
        columns = self._ensure_columns()
        index = len(self._times)
        getter = self.schema._row_getter
        if getter is not None and len(values) == len(columns):
            try:
                row = getter(values)
            except KeyError:
                pass
            else:
                if self._append_row(timestamp_us, row):
                    return
        found = 0
        for key, column in columns.items():
            value = values.get(key, _MISSING)
            if value is _MISSING:
                self._set_missing(key, index)
            else:
                found += 1
                try:
                    column.append(value)
                except (TypeError, OverflowError):  # does not fit the array: use a list
                    columns[key] = [*column, value]
        if found < len(values):
            for key, value in values.items():
                if key not in columns:
                    columns[key] = _new_column(type(value))
                    for row_index in range(index):
                        self._set_missing(key, row_index)
                    columns[key].append(value)
        self._times.append(timestamp_us)

    def _ensure_columns(self) -> dict[str, Any]:
        columns = self._columns
        if not columns and not self._times:
            self._columns = columns = {
                key: array(code) if code else [] for key, code in self.schema._layout
            }
        return columns

    def _append_row(self, timestamp_us: int, row: Sequence[Any]) -> bool:
        """The fast path: one value for every measure of the schema, in schema order.

        Applies only while the columns are exactly the schema's and every value
        fits its array; returns whether it applied (else nothing was changed).
        """
        if not self._times and not self._columns and len(row) == len(self.schema._layout):
            self._first_row = row
            self._times.append(timestamp_us)
            return True
        if self._first_row is not None:
            self._make_columns()
        columns = self._ensure_columns()
        if len(columns) != len(self.schema._layout) or len(row) != len(columns):
            return False
        index = len(self._times)
        try:
            deque(map(_ARRAY_APPEND, columns.values(), row), maxlen=0)
        except (TypeError, OverflowError):  # a list column or a value that does not fit
            for column in columns.values():
                if len(column) > index:
                    column.pop()
            return False
        self._times.append(timestamp_us)
        return True

    def _set_missing(self, key: str, row: int) -> None:
        self._columns[key].append(0)
        missing = self._missing.get(key)
        if missing is None:
            missing = self._missing[key] = set()
        missing.add(row)

    def _column_items(self) -> list[tuple[str, Any, Container[int]]]:
        """(key, values, rows where missing) for each column."""
        self._sync()
        missing = self._missing
        return [(key, data, missing.get(key, ())) for key, data in self._columns.items()]

    def add_mark(self, timestamp: datetime, label: str) -> None:
        """Add a mark labelled ``label`` at ``timestamp`` (timezone-aware)."""
        self._marks.append((datetime_to_us(timestamp), str(label)))

    def add_meta_data(self, **meta_data: Any) -> None:
        """Add meta data; a key set again is overwritten. Values are stored as ``str``."""
        self.meta_data.update(
            (k, v if isinstance(v, str) else str(v)) for k, v in meta_data.items()
        )

    # -- reading ------------------------------------------------------------

    def data(self) -> ResultData:
        """The points and marks as they are kept (see :class:`ResultData`): what a
        storage or file format reads to write the result out, in microseconds and
        columns."""
        columns = self._column_items()  # first: brings in points still queued
        return ResultData(self._times, columns, self._marks)

    @property
    def points(self) -> tuple[Point, ...]:
        """The points, oldest first."""
        return tuple(self._iter_points())

    def _iter_points(self) -> Iterator[Point]:
        self._sync()
        columns = self._column_items()
        for index, timestamp_us in enumerate(self._times):
            values = {key: data[index] for key, data, missing in columns if index not in missing}
            yield Point(us_to_datetime(timestamp_us), values)

    @property
    def marks(self) -> tuple[Mark, ...]:
        """The marks, in the order they were added."""
        return tuple(Mark(us_to_datetime(t), label) for t, label in self._marks)

    def values(self, key: str) -> Iterator[Any]:
        """The values of measure ``key``, one per point, ``None`` where missing.

        Raises:
            KeyError: when the key is neither in the schema nor in any point.
        """
        self._sync()
        column = self._columns.get(key)
        if column is None:
            if key in (m.key for m in self.schema.measures):
                return iter(())
            raise KeyError(key)
        data, missing = column, self._missing.get(key, ())
        return (None if i in missing else data[i] for i in range(len(self._times)))

    def _started_us(self) -> int | None:
        """When the measurement started (meta data ``started``), else the first point."""
        started = self.meta_data.get("started")
        if started:
            try:
                return datetime_to_us(datetime.fromisoformat(started))
            except ValueError:
                pass
        return self._times[0] if self._times else None

    @property
    def start(self) -> datetime | None:
        """When the measurement started: its meta data ``started`` (set by
        ``Measurement.start()`` and by every ``@measured`` call), else the time of
        the first point; ``None`` without either."""
        self._sync()
        started = self._started_us()
        return us_to_datetime(started) if started is not None else None

    @property
    def end(self) -> datetime | None:
        """When the measurement ended: the time of the last point (a measurement
        gets a final point when it ends), or ``None`` without points."""
        self._sync()
        return us_to_datetime(self._times[-1]) if self._times else None

    @property
    def duration(self) -> timedelta | None:
        """From :attr:`start` to :attr:`end`, or ``None`` without points."""
        self._sync()
        started = self._started_us()
        if not self._times or started is None:
            return None
        return timedelta(microseconds=max(self._times[-1] - started, 0))

    def summary(self) -> dict[str, Any]:
        """The key figures of the measurement, e.g. for a log line.

        ``duration_s`` runs from :attr:`start` to :attr:`end`; ``cpu_user_s`` and
        ``cpu_system_s`` are the process's own CPU seconds in that time (each
        point's rate times its interval); ``children_cpu_user_s`` and
        ``children_cpu_system_s`` the CPU seconds of child processes that ended
        and were waited for in that time (as GNU ``time`` adds them);
        ``peak_memory_bytes`` is this measurement's own peak resident set size:
        the highest of ``process.peak_rss`` (``ResourceProbe``: exact where the
        measurement raised the process's high-water mark) and ``proc.rss``
        (``PsutilProbe``: the RSS sampled at its interval, so a spike shorter than
        that can be missed); ``None`` when neither tells (the process had been
        bigger before and no ``PsutilProbe`` was used). ``max_rss_bytes`` is the
        process's lifetime high-water mark at the end (``process.max_rss``), an
        upper bound. ``outcome``
        comes from the meta data (``None`` when absent). Figures that cannot be
        computed are ``None``.
        """
        self._sync()
        times = self._times
        origin = self._started_us()
        summary: dict[str, Any] = {
            "identifier": self.identifier,
            "tags": dict(self.tags),
            "duration_s": (times[-1] - origin) / 1e6 if times and origin is not None else None,
        }
        for key, name in (
            ("process.cpu_user", "cpu_user_s"),
            ("process.cpu_system", "cpu_system_s"),
            ("children.cpu_user", "children_cpu_user_s"),
            ("children.cpu_system", "children_cpu_system_s"),
        ):
            summary[name] = self._integral(key, origin)
        summary["peak_memory_bytes"] = self._highest(_PEAK_KEYS)
        summary["max_rss_bytes"] = self._highest(("process.max_rss",))
        summary["outcome"] = self.meta_data.get("outcome")
        summary["points"] = len(times)
        summary["marks"] = len(self._marks)
        return summary

    def _highest(self, keys: Iterable[str]) -> float | None:
        """The highest positive value of the columns ``keys`` (``None`` without one)."""
        best = None
        for key in keys:
            if key in self._columns:
                for value in self.values(key):
                    if value is not None and value > 0 and (best is None or value > best):
                        best = value
        return best

    def _integral(self, key: str, origin: int | None) -> float | None:
        """The sum of the rate ``key`` times each point's interval (from ``origin``)."""
        column = self._columns.get(key)
        if column is None or origin is None:
            return None
        missing = self._missing.get(key, ())
        total, previous = 0.0, origin
        for index, (moment, rate) in enumerate(zip(self._times, column, strict=True)):
            if index not in missing and rate == rate:
                total += rate * max(moment - previous, 0) / 1e6
            previous = moment
        return total

    def __len__(self) -> int:
        """The number of points."""
        self._sync()
        return len(self._times)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        self._sync()
        other._sync()
        if (
            self.identifier != other.identifier
            or self.tags != other.tags
            or self.meta_data != other.meta_data
            or self.schema != other.schema
            or self._times != other._times
            or self._marks != other._marks
        ):
            return False
        for mine, theirs in zip(self._iter_points(), other._iter_points(), strict=True):
            if mine.values.keys() != theirs.values.keys():
                return False
            if not all(_same(v, theirs.values[k]) for k, v in mine.values.items()):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Result(identifier={self.identifier!r}, tags={self.tags!r},"
            f" points={len(self._times)}, marks={len(self._marks)})"
        )


class ResultBuilder:
    """Makes a :class:`Result` and adds its points, marks and meta data, from values
    that are already checked: the one way multimeter's own code builds results
    (the sampler's sessions, call records, aggregate mode, storages that read
    files). Times are microseconds since the Unix epoch; a point is either a
    *row* (one value per measure of the schema, in schema order) or a mapping of
    measure keys to values.

    Nothing here checks its arguments: use :class:`Result`'s own constructor and
    methods for values that come from users.

    >>> from multimeter.probe import ResourceProbe
    >>> builder = ResultBuilder("demo-1", Schema.from_probes([ResourceProbe()]), {}, {})
    >>> builder.add_values(1_767_225_600_000_000, {"process.cpu_user": 0.5})
    >>> builder.add_mark(1_767_225_600_000_000, "demo:exit")
    >>> result = builder.result
    >>> list(result.values("process.cpu_user")), [m.label for m in result.marks]
    ([0.5], ['demo:exit'])

    Args:
        identifier: The result's identifier (a non-empty ``str``).
        schema: The result's schema.
        tags: The tags, values already ``str`` (the result keeps this dict).
        meta_data: The meta data, values already ``str`` (the result keeps this dict).
    """

    __slots__ = ("result",)

    def __init__(
        self,
        identifier: str,
        schema: Schema,
        tags: dict[str, str],
        meta_data: dict[str, str],
    ) -> None:
        #: The result being built (it may be read at any time).
        self.result: Result = Result._prepared(identifier, schema, tags, meta_data)

    @staticmethod
    def from_rows(
        identifier: str,
        schema: Schema,
        tags: dict[str, str],
        meta_data: dict[str, str],
        points: Iterable[tuple[int, Sequence[Any]]],
        marks: list[tuple[int, str]],
    ) -> Result:
        """A whole result at once (what a finished call turns into): ``points`` are
        (time in microseconds, row in schema order with ``None`` where a value is
        missing), ``marks`` (time in microseconds, label) in time order; the result
        keeps the ``tags``, ``meta_data`` and ``marks`` given."""
        result = Result._prepared(identifier, schema, tags, meta_data)
        for timestamp_us, row in points:
            if None in row or not result._append_row(timestamp_us, row):
                keys = [key for key, _ in schema._layout]
                result._append_us(
                    timestamp_us, {k: v for k, v in zip(keys, row, strict=True) if v is not None}
                )
        result._marks = marks
        return result

    @classmethod
    def of(cls, result: Result) -> ResultBuilder:
        """A builder that adds to ``result`` (made by :class:`Result`'s constructor)."""
        builder = cls.__new__(cls)
        builder.result = result
        return builder

    def add_row(self, timestamp_us: int, row: Sequence[Any]) -> bool:
        """Add a point whose values are ``row``, one per measure in schema order,
        none missing: the fast path (a one-point result keeps the row as it is).

        Returns ``False``, having changed nothing, where the fast path does not
        apply (the result has columns beyond the schema's, or a value does not
        fit its column): add the point with :meth:`add_values` then.
        """
        return self.result._append_row(timestamp_us, row)

    def add_values(self, timestamp_us: int, values: Mapping[str, Any]) -> None:
        """Add a point of ``values`` by measure key; a measure left out is missing."""
        self.result._append_us(timestamp_us, values)

    def add_mark(self, timestamp_us: int, label: str) -> None:
        """Add a mark labelled ``label`` (a ``str``) after those added before."""
        self.result._marks.append((timestamp_us, label))

    def set_marks(self, marks: list[tuple[int, str]]) -> None:
        """Make ``marks`` ``(time in microseconds, label)`` the result's marks; the
        result keeps the list."""
        self.result._marks = marks

    def set_sync(self, sync: Callable[[], None] | None) -> None:
        """Have whoever reads the result call ``sync`` first (it adds the points
        still queued for the result, e.g. by the sampler); ``None`` once none are."""
        self.result._sync_hook = sync
