"""Probes whose figures are collected by the background reader (see ``multimeter._reader``).

A :class:`BackgroundProbe` is cheap to read (a look at shared memory), so the
per-call path of ``@measured`` may read it like ``ResourceProbe``; its figures
are as fresh as its collector's interval. Its readings are ``(time, values)``:
the reader's ``time.monotonic()`` when it collected them, and the values.
Rates are computed over the readings' own times, so two readings of one
collection give no rates (the point then holds the gauges only).
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from multimeter import _reader
from multimeter._log import warn_once
from multimeter.measure import Measure
from multimeter.probe import CumulativeProbe

Reading = tuple[float, tuple[float, ...]]

#: Reads between two checks that the reader still runs (a mask: every 1,024).
_HEALTH_EVERY = 1023

#: Connecting to a reader, for every probe. A lock held by another thread at a fork
#: stays held in the child: it is renewed there.
_connecting = threading.Lock()


def _after_fork_in_child() -> None:
    global _connecting
    _connecting = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
        if slot is None or self._reader is not _reader._current:
            slot = self._connect()
        self._reads += 1
        if not self._reads & _HEALTH_EVERY:
            slot = self._check_health(slot)
        latest = slot.latest()
        if latest is None:  # a helper that cannot start dies at once: check at each read
            slot = self._check_health(slot)
            latest = slot.latest()
        return latest if latest is not None else self._first

    def _check_health(self, slot: _reader.Slot) -> _reader.Slot:
        """Every so many reads: a reader that died is replaced (its slots would
        show its last collection forever)."""
        current = self._reader
        if isinstance(current, _reader.Reader) and not current.alive:
            _reader.replace(current)
            return self._connect()
        return slot

    def _connect(self) -> _reader.Slot:
        with _connecting:
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
                    self._first = (time.monotonic(), tuple(local.collect()))
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
        """Store the gauges of ``current`` and, where it is a later collection than
        ``previous``, the rates between the two; values not available are left out."""
        if current is None:
            return
        measures = self._measures
        now = current[1]
        for index, field, scale in self._gauges:
            value = now[field]
            if value == value:  # not NaN
                values[measures[index].key] = value * scale
        if previous is None or current[0] <= previous[0]:
            return
        for index, value in self._changed(now, previous[1], current[0] - previous[0]):
            if value == value:
                values[measures[index].key] = value

    def derive_row(self, current: Any, previous: Any, time_elapsed: float) -> Any:
        """The values of :meth:`derive` in :attr:`measures` order, or ``None`` where
        a value is missing (no later collection, a figure not available)."""
        if current is None or previous is None or current[0] <= previous[0]:
            return None
        now = current[1]
        row = [0.0] * len(self._measures)
        for index, field, scale in self._gauges:
            row[index] = now[field] * scale
        for index, value in self._changed(now, previous[1], current[0] - previous[0]):
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
                value = part / whole * scale if whole > 0 else math.nan
            out.append((index, value))
        return out
