"""GCProbe: the garbage collector's collections and the time they take.

Each probe object counts through a callback in :data:`gc.callbacks`, installed
at its first reading. The callback belongs to a small counter object, not to the
probe, so that the probe can be garbage-collected; a finalizer then removes the
callback.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import weakref
from collections.abc import MutableMapping
from itertools import repeat
from operator import mul, sub
from time import perf_counter
from typing import Any

from multimeter import metric as _metric
from multimeter.measure import Measure
from multimeter.probe import CumulativeProbe
from multimeter.subject import PYTHON

__all__ = ["GCProbe"]

# The counters, in the order of GCProbe.measures: collections of generations 0, 1
# and 2, objects collected, objects uncollectable, seconds spent collecting.
_METRICS = (
    _metric.GC_GEN0_RATE,
    _metric.GC_GEN1_RATE,
    _metric.GC_GEN2_RATE,
    _metric.GC_COLLECTED_RATE,
    _metric.GC_UNCOLLECTABLE_RATE,
    _metric.GC_TIME_RATE,
)


class _Counters:
    """The callback: counts every collection of the process, on whichever thread.

    Collections do not overlap (the collector runs one at a time, under the
    GIL), so one start time will do. ``reading`` is a tuple of the counts, made
    anew at the end of each collection: reading the probe (on every measured
    call) copies nothing.
    """

    __slots__ = ("__weakref__", "counts", "reading", "started")

    def __init__(self) -> None:
        self.counts = [0, 0, 0, 0, 0, 0.0]
        self.reading: tuple[float, ...] = tuple(self.counts)
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = perf_counter()
            return
        counts = self.counts
        counts[5] += perf_counter() - self.started
        counts[min(info.get("generation", 2), 2)] += 1
        counts[3] += info.get("collected", 0)
        counts[4] += info.get("uncollectable", 0)
        self.reading = tuple(counts)


def _uninstall(counters: _Counters) -> None:
    """Remove the callback of a probe that is gone (if still there)."""
    with contextlib.suppress(ValueError):  # someone cleared gc.callbacks
        gc.callbacks.remove(counters)


class GCProbe(CumulativeProbe):
    """Garbage collections and the time spent in them, subject ``python``.

    Values, all per second of the interval:

    - ``gc_collections_gen0``, ``gc_collections_gen1``, ``gc_collections_gen2``:
      collections of each generation (a collection of generation 2, such as
      ``gc.collect()``, counts there only, not in the younger ones);
    - ``gc_collected``: objects the collector freed (unreachable cycles);
    - ``gc_uncollectable``: unreachable objects it could not free;
    - ``gc_time``: seconds spent collecting per second of wall time, from the
      collector's ``start`` callback to its ``stop`` callback (so it includes
      the callbacks registered after this probe's).

    The counting starts with the probe's first reading (its callback is added
    to :data:`gc.callbacks` then) and covers collections on every thread. A
    collection in progress while a reading is taken counts at its end. Rates
    over an interval of zero length are left out of that point. A reading is a
    tuple of the six counters.
    """

    def __init__(self) -> None:
        self._measures = tuple(Measure(PYTHON, metric) for metric in _METRICS)
        self._keys = tuple(m.key for m in self._measures)
        self._counters: _Counters | None = None
        self._installing = threading.Lock()

    @property
    def measures(self) -> tuple[Measure, ...]:
        """The six ``python.gc_*`` rates."""
        return self._measures

    def read(self) -> tuple[float, ...]:
        """Return the counters; installs the callback on the first call."""
        counters = self._counters
        if counters is None:
            counters = self._install()
        return counters.reading

    def _install(self) -> _Counters:
        with self._installing:  # two threads reading first at once install one callback
            counters = self._counters
            if counters is None:
                counters = _Counters()
                gc.callbacks.append(counters)
                weakref.finalize(self, _uninstall, counters)
                self._counters = counters
        return counters

    def derive(
        self,
        values: MutableMapping[str, Any],
        current: Any,
        previous: Any,
        time_elapsed: float,
    ) -> None:
        """Store the growth of each counter per second of ``time_elapsed``."""
        row = self.derive_row(current, previous, time_elapsed)
        if row is not None:
            values.update(zip(self._keys, row, strict=True))

    def derive_row(self, current: Any, previous: Any, time_elapsed: float) -> Any:
        """The six rates in :attr:`measures` order; ``None`` over an empty interval."""
        if time_elapsed <= 0:
            return None
        return list(map(mul, map(sub, current, previous), repeat(1.0 / time_elapsed, 6)))
