"""Test doubles for code that uses multimeter (and for multimeter's own tests).

>>> clock = FakeClock()
>>> clock.advance(1.5)
>>> clock.monotonic()
1001.5
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any

from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.probe import CumulativeProbe
from multimeter.result import Result
from multimeter.storages.base import Storage
from multimeter.subject import Subject

__all__ = ["CounterProbe", "FakeClock", "InMemoryStorage"]


class FakeClock:
    """A clock that only moves when told to; pass it to a sampler in tests."""

    def __init__(self, start: float = 1000.0, wall_us: int = 1_767_225_600_000_000) -> None:
        self._now = start
        self._start = start
        self._wall_us = wall_us  # 2026-01-01T00:00:00Z at ``start``

    def monotonic(self) -> float:
        """The fake monotonic time in seconds."""
        return self._now

    def time_us(self) -> int:
        """The fake wall time, moving in step with :meth:`monotonic`."""
        return self._wall_us + round((self._now - self._start) * 1_000_000)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += seconds


class InMemoryStorage(Storage):
    """Keeps stored results in :attr:`results`, in order; thread-safe."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self._lock = threading.Lock()

    def store(self, result: Result) -> None:
        """Append ``result`` to :attr:`results`."""
        with self._lock:
            self.results.append(result)


COUNTER = Subject("counter", "A counter set by the test")
TOTAL = Metric("total", "The counter's value", value_type=float)
RATE = Metric("rate", "How fast the counter grew, per second", unit="1/s")


class CounterProbe(CumulativeProbe):
    """A probe over :attr:`value`, a counter the test sets.

    Measures ``counter.total`` (the value) and ``counter.rate`` (its growth per
    second). :attr:`reads` counts the readings taken.
    """

    def __init__(self) -> None:
        self.value = 0.0
        self.reads = 0

    @property
    def measures(self) -> tuple[Measure, ...]:
        """``counter.total`` and ``counter.rate``."""
        return (Measure(COUNTER, TOTAL), Measure(COUNTER, RATE))

    def read(self) -> float:
        """The counter's value now."""
        self.reads += 1
        return self.value

    def derive(
        self, values: MutableMapping[str, Any], current: Any, previous: Any, time_elapsed: float
    ) -> None:
        """``counter.total`` as read, ``counter.rate`` over the interval."""
        values["counter.total"] = float(current)
        if time_elapsed > 0:
            values["counter.rate"] = (current - previous) / time_elapsed
