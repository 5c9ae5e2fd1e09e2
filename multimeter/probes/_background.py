"""Probes whose figures are collected by the background reader (see ``multimeter._reader``).

A :class:`BackgroundProbe` is cheap to read (a look at shared memory); its
figures are as fresh as its collector's interval. Its readings are ``(time,
values, previous)``: the reader's ``time.monotonic()`` when it collected them,
the values, and the collector's collection before that one as ``(time,
values)``. Rates are computed over the collections' own times: between the two
readings where the later one is a newer collection, otherwise (two readings of
one collection: a short call, a point right after a tick) over the collector's
own latest interval, from ``previous`` to the reading.

The per-call path of ``@measured`` reads all the background probes of its plan
at once through a :class:`BackgroundGroup`: one look at the reader's counter of
slot writes, and the readings of the previous look when it has not changed, so
a call costs the same however many background probes there are.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from multimeter import _process, _reader
from multimeter._log import warn_once
from multimeter._session import FAILED, probe_failed
from multimeter.measure import Measure
from multimeter.probe import CumulativeProbe

Reading = _reader.Reading
#: A collection: (time, values).
Collection = tuple[float, tuple[float, ...]]

#: Reads between two checks that the reader still runs (a mask: every 1,024).
_HEALTH_EVERY = 1023


class _Connecting:
    """Held while a probe of this process connects to the reader (a part of the
    process's state: a forked child has its own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


@dataclass(frozen=True)
class Figure:
    """How one measure is computed from a collector's fields.

    ``kind`` is ``gauge`` (the latest value of ``fields[0]``), ``rate`` (the
    increase per second of the sum of ``fields``) or ``ratio`` (the increase of
    ``fields[0]`` over the increase of ``fields[1]``); the result is multiplied
    by ``scale``.
    """

    measure: Measure
    kind: str
    fields: tuple[int, ...]
    scale: float = 1.0


class BackgroundProbe(CumulativeProbe):
    """A probe read from the latest reading of its collector (see the module)."""

    def __init__(self, collector: _reader.Collector, figures: Sequence[Figure], label: str) -> None:
        self._collector = collector
        self._measures = tuple(f.measure for f in figures)
        self._label = label
        self._slot: _reader.Slot | None = None
        self._reader: object = None
        self._first: Reading | None = None
        self._reads = 0
        self._gauges = tuple(
            (i, f.fields[0], f.scale) for i, f in enumerate(figures) if f.kind == "gauge"
        )
        self._changes = tuple(
            (i, f.kind, f.fields, f.scale) for i, f in enumerate(figures) if f.kind != "gauge"
        )

    @property
    def measures(self) -> tuple[Measure, ...]:
        """The measures this probe gives (only those the platform has)."""
        return self._measures

    @property
    def collector(self) -> _reader.Collector:
        """What the reader runs for this probe."""
        return self._collector

    def read(self) -> Reading | None:
        """The collector's latest reading, or ``None`` before the first one."""
        slot = self._slot
        # The module's global, not current(): this is the per-call path.
        if slot is None or self._reader is not _reader.current():
            slot = self._connect()
        self._reads += 1
        if not self._reads & _HEALTH_EVERY:
            slot = self._check_health(slot)
        latest = slot.latest()
        if latest is None:  # a helper that cannot start dies at once: check at each read
            slot = self._check_health(slot)
            latest = slot.latest()
        return latest if latest is not None else self._first

    @property
    def collected(self) -> bool:
        """Whether the reader serving this process has a reading of this probe's
        (before its first one, :meth:`read` returns one taken in the program)."""
        slot = self._slot
        return slot is not None and self._reader is _reader.current() and slot.has_reading

    def check_health(self) -> None:
        """Replace a reader that died (see :meth:`_check_health`), if connected."""
        slot = self._slot
        if slot is not None:
            self._check_health(slot)

    def _check_health(self, slot: _reader.Slot) -> _reader.Slot:
        """Every so many reads: a reader that died is replaced (its slots would
        show its last collection forever)."""
        current = self._reader
        if isinstance(current, _reader.Reader) and not current.alive:
            _reader.replace(current)
            return self._connect()
        return slot

    def _connect(self) -> _reader.Slot:
        with _process.current().part(_Connecting).lock:
            current = _reader.reader()
            if self._slot is None or self._reader is not current:
                local = pickle.loads(pickle.dumps(self._collector))
                try:
                    self._slot = current.register(self._collector, self._label)
                except OSError:  # its helper has ended already, or its pipe is gone
                    _reader.replace(current)
                    current = _reader.reader()
                    self._slot = current.register(self._collector, self._label)
                self._reader = current
                # One reading here and now: the reader's first comes a little later.
                process = getattr(current, "process", None)
                if process is not None:  # the reader process is no child to measure
                    local.exclude = frozenset({process.pid})
                try:
                    local.open()
                    self._first = (time.monotonic(), tuple(local.collect()), None)
                except Exception as error:  # noqa: BLE001 - the reader reports it too
                    warn_once(
                        ("first reading", self._label),
                        "probe reading failed",
                        probe=self._label,
                        error=repr(error),
                    )
                    self._first = None
                finally:
                    close = getattr(local, "close", None)
                    if close is not None:
                        close()
            return self._slot

    def derive(
        self,
        values: MutableMapping[str, Any],
        current: Any,
        previous: Any,
        time_elapsed: float,
    ) -> None:
        """Store the gauges of ``current`` and the rates since the reading they are
        taken against (see :func:`_base`); values not available are left out."""
        if current is None:
            return
        measures = self._measures
        now = current[1]
        for index, field, scale in self._gauges:
            value = now[field]
            if value == value:  # not NaN
                values[measures[index].key] = value * scale
        base = _base(current, previous)
        if base is None:
            return
        for index, value in self._changed(now, base[1], current[0] - base[0]):
            if value == value:
                values[measures[index].key] = value

    def derive_row(self, current: Any, previous: Any, time_elapsed: float) -> Any:
        """The values of :meth:`derive` in :attr:`measures` order, or ``None`` where
        a value is missing (no earlier collection, a figure not available)."""
        if current is None:
            return None
        base = _base(current, previous)
        if base is None:
            return None
        now = current[1]
        row = [0.0] * len(self._measures)
        for index, field, scale in self._gauges:
            row[index] = now[field] * scale
        for index, value in self._changed(now, base[1], current[0] - base[0]):
            row[index] = value
        for value in row:
            if value != value or value < 0:
                return None
        return row

    def _changed(
        self, now: tuple[float, ...], before: tuple[float, ...], elapsed: float
    ) -> list[tuple[int, float]]:
        out = []
        for index, kind, fields, scale in self._changes:
            if kind == "rate":
                change = sum(now[f] for f in fields) - sum(before[f] for f in fields)
                value = max(change, 0.0) / elapsed * scale
            else:  # ratio
                whole = now[fields[1]] - before[fields[1]]
                part = now[fields[0]] - before[fields[0]]
                # a share never below 0 (float sums of counters can give -1e-9)
                value = max(part / whole, 0.0) * scale if whole > 0 else math.nan
            out.append((index, value))
        return out


def _base(current: Reading, previous: Reading | None) -> Collection | None:
    """What the rates of ``current`` are taken against: ``previous`` where ``current``
    is a later collection, otherwise the collection before ``current``'s own (the
    rates of the collector's latest interval); ``None`` where there is none."""
    if previous is not None and current[0] > previous[0]:
        return previous[0], previous[1]
    return current[2]


#: A group's state before its first look at the reader.
_UNSET = object()


class BackgroundGroup:
    """The background probes of one probe plan, read together on the per-call path.

    :meth:`read` returns the tuple of the probes' readings. It looks at the
    reader's counter of slot writes, one number in shared memory: while that has
    not changed since the previous look, no slot has, and the previous tuple is
    returned as it is. So a measured call pays for one look however many
    background probes there are. The probes themselves are read (their slots, a
    reader that died replaced, a new one after a fork) when the counter moved,
    when the reader changed, every 1,024 reads, and at each read until every
    probe has a collection of the reader's.
    """

    __slots__ = ("_reads", "_state", "measures", "probes")

    def __init__(self, probes: Sequence[BackgroundProbe]) -> None:
        self.probes = tuple(probes)
        self.measures = tuple(m for p in self.probes for m in p.measures)
        self._reads = 0
        # (reader, its counter, the counter's value, the readings taken after it).
        self._state: tuple[Any, Any, int, tuple[Reading | None, ...]] = (_UNSET, None, 0, ())

    def read(self) -> tuple[Reading | None, ...]:
        """Each probe's reading, in :attr:`probes` order."""
        reader, changes, seen, readings = self._state
        if reader is _reader.current():
            reads = self._reads = self._reads + 1
            if reads & _HEALTH_EVERY:
                if changes[0] == seen:
                    return readings
            else:  # every so many reads: a reader that died shows no changes, ever
                for probe in self.probes:
                    probe.check_health()
        return self._refresh()

    def _refresh(self) -> tuple[Reading | None, ...]:
        reader = _reader.current()
        changes = reader.changes if reader is not None else None
        seen = changes[0] if changes is not None else 0  # first: the readings are no older
        readings = tuple([_read(probe) for probe in self.probes])
        if (
            changes is not None
            and reader is _reader.current()
            and all(probe.collected for probe in self.probes)
        ):
            self._state = (reader, changes, seen, readings)
        else:  # connecting, or a collection not in yet: read them all again next time
            self._state = (_UNSET, None, 0, ())
        return readings

    def derive_row(self, current: Any, previous: Any, time_elapsed: float) -> Any:
        """The probes' rows one after the other, or ``None`` where one has none."""
        row: list[Any] = []
        for probe, now, before in zip(self.probes, current, previous, strict=True):
            if now is FAILED or before is FAILED:
                return None  # the general path leaves that probe's values out
            part = probe.derive_row(now, before, time_elapsed)
            if part is None:
                return None
            row += part
        return row


def _read(probe: BackgroundProbe) -> Any:
    """The probe's reading, or ``FAILED`` (logged once): the group's other probes go on."""
    try:
        return probe.read()
    except Exception as error:  # noqa: BLE001 - a probe must not break anything
        probe_failed(probe, error)
        return FAILED


def group(probes: Sequence[Any]) -> BackgroundGroup | None:
    """The probes of ``probes`` that read the background reader as one group (those
    whose class keeps :meth:`BackgroundProbe.read`), or ``None`` when there are none."""
    members = [
        p for p in probes if isinstance(p, BackgroundProbe) and type(p).read is BackgroundProbe.read
    ]
    return BackgroundGroup(members) if members else None
