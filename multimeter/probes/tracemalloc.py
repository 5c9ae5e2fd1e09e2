"""TracemallocProbe: the Python heap as traced by :mod:`tracemalloc`.

How the peak of every interval stays correct although measurements overlap and
``tracemalloc.reset_peak()`` is process-wide: every read (by any probe object,
on any thread) takes the traced size and the peak *since the previous read*,
then resets the peak, under one lock. So the reads of the whole process cut
time into slices, each with its own peak, numbered by a read sequence number.
The peak of an interval between two readings is the highest peak of the slices
between them.

To answer that without keeping every slice, the reads keep the *suffix maxima*
of the slice peaks: a stack, newest on top, of the slices whose peak is higher
than the peak of every later slice (so the peaks grow towards the bottom). A
slice pops the entries at or below its own peak and goes on top. The highest
peak after read ``p`` is that of the deepest entry with a sequence number above
``p``. The stack is a persistent linked list of immutable tuples: a reading
keeps its top node, which makes it an immutable snapshot that stays correct
however late it is derived, and pushing costs O(1) amortized.

Its depth is bounded: past :data:`MAX_DEPTH` entries the oldest (highest) ones
are dropped, keeping the newest :data:`KEPT_DEPTH`. A derived peak is exact
while its interval's highest slice is among the entries kept.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any

from multimeter import _process
from multimeter import metric as _metric
from multimeter.measure import Measure
from multimeter.probe import CumulativeProbe
from multimeter.subject import PYTHON

__all__ = ["TracemallocProbe"]

#: The stack of slice peaks is cut back to :data:`KEPT_DEPTH` entries when it
#: grows past this depth (only a heap that keeps shrinking, read at each step,
#: makes it grow: a slice above the one below it replaces it).
MAX_DEPTH = 512
KEPT_DEPTH = 256

# A node of the stack, and a reading: (read sequence number, peak of that read's
# slice in bytes, the node below or None, depth counting this node, traced bytes
# at that read).
_Node = tuple[int, int, Any, int, int]


class _HeapTracker:
    """The reads of the whole process: one sequence, one stack of slice peaks.

    Shared by every :class:`TracemallocProbe`, since they all reset the one
    process-wide peak.
    """

    def __init__(self) -> None:
        self.top: _Node | None = None
        self.sequence = 0
        self.traced: Any = None  # tracemalloc.get_traced_memory, once tracing is on
        self.reset_peak: Any = None
        self._new_lock()

    def _new_lock(self) -> None:
        # Bound once: under tracing, every allocation (a bound method in a ``with``
        # statement too) costs about 0.3 us.
        lock = threading.Lock()
        self.acquire, self.release = lock.acquire, lock.release

    def read(self) -> _Node:
        """The top node after this read's slice (it holds the traced bytes now)."""
        self.acquire()
        try:
            traced = self.traced
            if traced is None:
                traced = self._begin()
            current, peak = traced()
            if not peak:  # (0, 0): not tracing (stopped by other code): start again
                self._begin()
                current, peak = traced()
            self.reset_peak()
            top = self.top
            while top is not None and top[1] <= peak:
                top = top[2]
            sequence = self.sequence = self.sequence + 1
            depth = 1 if top is None else top[3] + 1
            top = (sequence, peak, top, depth, current)
            if depth > MAX_DEPTH:
                top = _newest(top, KEPT_DEPTH)
            self.top = top
        finally:
            self.release()
        return top

    def _begin(self) -> Any:
        """Start tracing unless it is on already; bind the functions read each time."""
        import tracemalloc  # here: only a probe in use needs it

        if not tracemalloc.is_tracing():
            tracemalloc.start()
        self.reset_peak = tracemalloc.reset_peak
        self.traced = tracemalloc.get_traced_memory
        return self.traced

    def after_fork_in_child(self) -> _HeapTracker:
        """The child's tracker: this one, carried on (tracing goes on in the child),
        with its lock renewed (one held by another thread at the fork stays held)."""
        self._new_lock()
        return self


def _newest(top: _Node, count: int) -> _Node:
    """A copy of the newest ``count`` nodes of the stack under ``top``, the rest cut off."""
    nodes: list[_Node] = []
    node: _Node | None = top
    while node is not None and len(nodes) < count:
        nodes.append(node)
        node = node[2]
    below: Any = None
    for depth, (sequence, peak, _, _, current) in enumerate(reversed(nodes), 1):
        below = (sequence, peak, below, depth, current)
    return below  # count >= 1: a node


def _tracker() -> _HeapTracker:
    """This process's tracker (a part of its ``multimeter._process`` state)."""
    return _process.current().part(_HeapTracker)


def _peak_since(current: _Node, previous: _Node) -> int:
    """The highest traced size in the slices after ``previous`` up to ``current``."""
    after = previous[0]
    peak = current[4]
    node: _Node | None = current
    while node is not None and node[0] > after:
        peak = node[1]
        node = node[2]
    return peak


class TracemallocProbe(CumulativeProbe):
    """The Python heap as traced by :mod:`tracemalloc`, subject ``python``.

    Values:

    - ``heap_current``: bytes traced now, i.e. Python allocations made since
      tracing started and not freed yet (memory allocated before then is not
      counted, neither are allocations outside Python's allocators).
    - ``heap_peak``: the highest traced size since the measurement's previous
      point (for the first point: since the measurement started), in bytes.

    Tracing starts at the probe's first reading, never at import or
    construction (and again at a reading that finds it stopped by other code);
    if it is on already it is left as it is (its frame depth too). The probe
    never stops it (that would drop the traces of whoever else uses it).
    Tracing slows down every allocation of the process: see
    ``bench/tracemalloc_overhead.py`` and ``bench/README.md``.

    Precision of ``heap_peak``: it is the peak between two reads of the probe,
    exact (to the byte) while all of these hold; otherwise it is a lower bound:

    - no other code calls ``tracemalloc.reset_peak()`` or ``clear_traces()``
      (every :class:`TracemallocProbe` shares one set of reads, so several
      probe objects are fine);
    - the interval's highest slice between reads of the process is among the
      newest 256 entries of the probe's bounded stack (the oldest go only when
      the heap, read at each step, shrank to a new low more than 256 times
      after it);
    - a short-lived allocation made by another thread between the two calls
      of a read (reading the peak, resetting it) is missed; that window is a
      few hundred nanoseconds.

    A reading is an immutable tuple (the top of the stack, holding the traced
    size); ``read()`` takes a few microseconds (under tracing every allocation
    is slower, the reading's own too).
    """

    def __init__(self) -> None:
        self._measures = (
            Measure(PYTHON, _metric.HEAP_CURRENT),
            Measure(PYTHON, _metric.HEAP_PEAK),
        )
        self._current_key, self._peak_key = (m.key for m in self._measures)

    @property
    def measures(self) -> tuple[Measure, ...]:
        """``python.heap_current`` and ``python.heap_peak``."""
        return self._measures

    def read(self) -> Any:
        """Return a reading (see the class); starts tracing on the first call."""
        return _tracker().read()

    def derive(
        self,
        values: MutableMapping[str, Any],
        current: Any,
        previous: Any,
        time_elapsed: float,
    ) -> None:
        """Store the traced size at ``current`` and the peak since ``previous``."""
        values[self._current_key] = current[4]
        values[self._peak_key] = _peak_since(current, previous)

    def derive_row(self, current: Any, previous: Any, time_elapsed: float) -> Any:
        """``(heap_current, heap_peak)``; both are gauges, so any interval will do."""
        return current[4], _peak_since(current, previous)
