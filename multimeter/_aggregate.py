"""Aggregate mode: the calls of a function counted and summed per cycle.

With ``calls="aggregate"`` (``MULTIMETER_CALLS=aggregate``) ``configure()`` puts
an :class:`AggregatingStorage` around the configured storage. The background
writer hands it call records (it is a :class:`~multimeter.calls.CallStorage`);
it folds each record into the sums of its function, tag set and cycle, and
stores the sums as ordinary results in the storage it wraps, so that every
storage serves (files, InfluxDB, the log).

A call counts in the cycle it *ended* in (records reach the writer in that
order): cycle ``k`` holds the calls that ended in ``[k * cycle, (k + 1) * cycle)``
microseconds after the epoch, and its point is stamped at the cycle's end. A
cycle is stored once a call that ended :data:`GRACE` seconds after the cycle's
end is folded (calls from other threads that ended in the cycle have reached
the writer by then, even while the writer is behind), or, while the writer has
nothing else to do, once the cycle ended :data:`GRACE` seconds ago; and at
every ``flush()`` and at exit, ended or not. A call that reaches the writer
after its cycle was stored makes another point with the same timestamp, in
another result: readers sum the points of a timestamp.

Memory: one small accumulator per function, tag set and open cycle, however
many calls there are. The accumulators belong to the process
(``_process.current().aggregates``): a forked child starts with none.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from multimeter import _env, _process
from multimeter.calls import CallFunction, CallRecord, CallStorage
from multimeter.measure import Measure
from multimeter.metric import (
    CALL_COUNT,
    CPU_SYSTEM_TIME,
    CPU_USER_TIME,
    DURATION_BUCKETS,
    DURATION_MAX,
    DURATION_TOTAL,
    ERROR_COUNT,
)
from multimeter.multimeter import check_cycle_time
from multimeter.result import Result, ResultBuilder, Schema, us_to_datetime
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage
from multimeter.subject import CALLS

#: Seconds after a cycle's end before its sums are stored (while nothing flushes):
#: by the calls' own end times while calls come, by the clock while the writer idles.
GRACE = 0.25

_METRICS = (
    CALL_COUNT,
    ERROR_COUNT,
    DURATION_TOTAL,
    DURATION_MAX,
    CPU_USER_TIME,
    CPU_SYSTEM_TIME,
    *(metric for _, metric in DURATION_BUCKETS),
)
#: The schema of every aggregate result: ``calls.count``, ``calls.errors``,
#: ``calls.duration``, ``calls.duration_max``, ``calls.cpu_user_time``,
#: ``calls.cpu_system_time`` and the buckets ``calls.duration_le_1us`` ... ``_inf``.
SCHEMA = Schema(_METRICS, (CALLS,), tuple(Measure(CALLS, metric) for metric in _METRICS))

_COUNT, _ERRORS, _DURATION, _MAX, _CPU_USER, _CPU_SYSTEM = (m.key for m in SCHEMA.measures[:6])
_BUCKET_KEYS = tuple(m.key for m in SCHEMA.measures[6:])
#: The finite bucket bounds in microseconds (a call's duration is whole microseconds).
_BOUNDS_US = tuple(round(bound * 1e6) for bound, _ in DURATION_BUCKETS[:-1])
_NO_CYCLE = 2**63


def check_calls(value: Any, setting: str = "calls") -> str:
    """``value`` if it is ``"each"`` or ``"aggregate"``, else ``ValueError`` naming ``setting``."""
    if not isinstance(value, str) or value not in _env.CALLS_CHOICES:
        raise ValueError(f"{setting} must be one of {', '.join(_env.CALLS_CHOICES)}, got {value!r}")
    return value


def storage_for_calls(storage: Storage, calls: str | None, cycle_time: float) -> Storage:
    """Where calls go under the setting ``calls`` (``None``: as ``storage`` says).

    ``"aggregate"`` wraps ``storage`` in an :class:`AggregatingStorage` (never a
    :class:`DummyStorage`: nothing would be stored anyway); ``"each"`` unwraps it.
    """
    if calls is None:
        return storage
    inner = storage.inner if isinstance(storage, AggregatingStorage) else storage
    if calls == "each" or isinstance(inner, DummyStorage):
        return inner
    if isinstance(storage, AggregatingStorage):
        return storage
    return AggregatingStorage(inner, cycle_time)


def _now_us() -> int:
    return time.time_ns() // 1000


class _Cycle:
    """The sums of the calls of one function and tag set that ended in one cycle."""

    __slots__ = ("buckets", "count", "cpu_system", "cpu_user", "duration_us", "errors", "max_us")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.duration_us = 0
        self.max_us = 0
        self.cpu_user: float | None = None  # None: no call had the measure
        self.cpu_system: float | None = None
        self.buckets = [0] * len(_BUCKET_KEYS)  # per bucket, not yet cumulative

    def values(self) -> dict[str, Any]:
        """The point's values (measure key to value)."""
        values: dict[str, Any] = {
            _COUNT: self.count,
            _ERRORS: self.errors,
            _DURATION: self.duration_us / 1e6,
            _MAX: self.max_us / 1e6,
        }
        if self.cpu_user is not None:
            values[_CPU_USER] = self.cpu_user
        if self.cpu_system is not None:
            values[_CPU_SYSTEM] = self.cpu_system
        running = 0
        for key, count in zip(_BUCKET_KEYS, self.buckets, strict=True):
            running += count
            values[key] = running
        return values


class _Series:
    """The open cycles of one function and tag set, by cycle index."""

    __slots__ = ("cycles", "function", "meta", "tags", "token")

    def __init__(self, record: CallRecord) -> None:
        self.function: CallFunction = record.function
        self.tags = dict(record.tags)
        self.meta: Mapping[str, str] = record.meta
        self.token = record.token
        self.cycles: dict[int, _Cycle] = {}


class _OpenCycles:
    """What one aggregating storage has folded in this process and not stored yet."""

    __slots__ = ("lock", "newest", "oldest", "series")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the writer's thread, or close() from another
        self.series: dict[tuple[CallFunction, frozenset[tuple[str, str]]], _Series] = {}
        self.oldest = _NO_CYCLE  # the lowest open cycle index, or _NO_CYCLE
        self.newest = 0  # the latest end of a folded call (microseconds since the epoch)


def _cpu_seconds(record: CallRecord, column: int) -> float:
    """The rate in ``column`` times each point's interval, from the call's start on
    (as :meth:`Result.summary` computes ``cpu_user_s`` of the call's result)."""
    total, previous = 0.0, record.started_us
    for moment, row in record.points:
        rate = row[column]
        if rate is not None and rate == rate:
            total += rate * max(moment - previous, 0) / 1e6
        previous = moment
    return total


class AggregatingStorage(CallStorage):
    """Stores per cycle the count, errors, duration and CPU sums and a duration
    histogram of each function's calls, as results in ``inner``.

    Args:
        inner: The storage the sums go to, as ordinary results: one per function
            and tag set each time sums are stored, identified
            ``<name>-aggregate-<process token>-<n>``, with a point per cycle.
        cycle_time: The length of a cycle, in seconds.
        grace: Seconds after a cycle's end before its sums are stored unasked.
        clock: Microseconds since the epoch now (tests pass a fake).

    Results of other measurements (``store()``) go to ``inner`` unchanged.
    """

    def __init__(
        self,
        inner: Storage,
        cycle_time: float,
        *,
        grace: float = GRACE,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self.inner = inner
        self.cycle_time = check_cycle_time(cycle_time)
        self._cycle_us = max(round(self.cycle_time * 1e6), 1)
        self._grace_us = round(grace * 1e6)
        self._clock = clock
        # (schema, column of process.cpu_user, of process.cpu_system) of the last record.
        self._columns: tuple[Schema | None, int | None, int | None] = (None, None, None)

    def store_calls(self, records: Sequence[CallRecord]) -> None:
        """Fold ``records`` into their cycles' sums; store the sums of cycles that are due."""
        open_cycles = self._open_cycles()
        with open_cycles.lock:
            self._fold(open_cycles, records)
            # The writer may be behind the calls: they, not the clock, say what is due.
            self._store_due(open_cycles, open_cycles.newest)

    def flush_buffers(self, *, due_only: bool = False) -> None:
        """Store the sums of every cycle, or with ``due_only`` (the writer has stored
        everything handed over) of those that ended the grace time ago."""
        open_cycles = _process.current().aggregates.get(self)
        if open_cycles is None:
            return
        with open_cycles.lock:
            if due_only:
                self._store_due(open_cycles, self._clock())
            else:
                self._store_until(open_cycles, None)

    def store(self, result: Result) -> None:
        """Store ``result`` (of a measurement other than a ``@measured`` call) in ``inner``."""
        self.inner.store(result)

    def store_many(self, results: Sequence[Result]) -> None:
        """Store ``results`` in ``inner``."""
        self.inner.store_many(results)

    def close(self) -> None:
        """Store the sums of every cycle, then close ``inner``."""
        self.flush_buffers()
        self.inner.close()

    def __repr__(self) -> str:
        return f"AggregatingStorage({self.inner!r}, cycle_time={self.cycle_time})"

    # -- internals ------------------------------------------------------------------

    def _open_cycles(self) -> _OpenCycles:
        aggregates = _process.current().aggregates
        open_cycles = aggregates.get(self)
        if open_cycles is None:
            open_cycles = aggregates[self] = _OpenCycles()
        return open_cycles

    def _fold(self, open_cycles: _OpenCycles, records: Sequence[CallRecord]) -> None:
        series_of = open_cycles.series
        cycle_us = self._cycle_us
        bounds = _BOUNDS_US
        last_tags: Any = None
        tags_key: frozenset[tuple[str, str]] = frozenset()
        schema, user, system = self._columns
        newest = open_cycles.newest
        for record in records:
            tags = record.tags
            if tags is not last_tags:  # the calls of a function share one dict
                last_tags, tags_key = tags, frozenset(tags.items())
            key = (record.function, tags_key)
            series = series_of.get(key)
            if series is None:
                series = series_of[key] = _Series(record)
            ended_us = record.ended_us
            if ended_us > newest:
                newest = ended_us
            index = ended_us // cycle_us
            cycle = series.cycles.get(index)
            if cycle is None:
                cycle = series.cycles[index] = _Cycle()
                if index < open_cycles.oldest:
                    open_cycles.oldest = index
            duration = max(ended_us - record.started_us, 0)
            cycle.count += 1
            if record.exception is not None:
                cycle.errors += 1
            cycle.duration_us += duration
            if duration > cycle.max_us:
                cycle.max_us = duration
            cycle.buckets[bisect_left(bounds, duration)] += 1
            if record.schema is not schema:
                schema, user, system = self._columns = _cpu_columns(record.schema)
            if user is not None:
                cycle.cpu_user = (cycle.cpu_user or 0.0) + _cpu_seconds(record, user)
            if system is not None:
                cycle.cpu_system = (cycle.cpu_system or 0.0) + _cpu_seconds(record, system)
        open_cycles.newest = newest

    def _store_due(self, open_cycles: _OpenCycles, now_us: int) -> None:
        """Store the cycles that ended at least the grace time before ``now_us``."""
        last_due = (now_us - self._grace_us) // self._cycle_us - 1
        if open_cycles.oldest <= last_due:
            self._store_until(open_cycles, last_due)

    def _store_until(self, open_cycles: _OpenCycles, last: int | None) -> None:
        """Store the cycles up to index ``last`` (``None``: all), one result per series."""
        results = []
        oldest = _NO_CYCLE
        for key, series in list(open_cycles.series.items()):
            indices = sorted(i for i in series.cycles if last is None or i <= last)
            if indices:
                results.append(self._result(series, indices))
            if series.cycles:
                oldest = min(oldest, *series.cycles)
            else:
                del open_cycles.series[key]
        open_cycles.oldest = oldest
        if results:
            self.inner.store_many(results)

    def _result(self, series: _Series, indices: list[int]) -> Result:
        """The result of the cycles ``indices`` of ``series`` (taken out of it)."""
        cycle_us = self._cycle_us
        number = next(_process.current().calls)
        identifier = f"{series.function.prefix}aggregate-{series.token}-{number}"
        meta = dict(series.meta)
        meta["calls"] = "aggregate"
        meta["cycle_time"] = str(self.cycle_time)
        meta["started"] = us_to_datetime(indices[0] * cycle_us).isoformat()
        builder = ResultBuilder(identifier, SCHEMA, dict(series.tags), meta)
        for index in indices:
            builder.add_values((index + 1) * cycle_us, series.cycles.pop(index).values())
        return builder.result


def _cpu_columns(schema: Schema) -> tuple[Schema, int | None, int | None]:
    keys = [m.key for m in schema.measures]
    user = keys.index("process.cpu_user") if "process.cpu_user" in keys else None
    system = keys.index("process.cpu_system") if "process.cpu_system" in keys else None
    return schema, user, system
