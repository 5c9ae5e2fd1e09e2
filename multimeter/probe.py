"""Probes: the pluggable sources of measured values.

A probe names the measures it gathers and fills in their values when sampled.
:class:`Probe` is the documented protocol; :class:`CumulativeProbe` is an
optional refinement for probes whose readings are cumulative (CPU seconds,
fault counts, bytes). Such a reading can be taken once per sampler tick and
turned into rates for every active measurement over that measurement's own
interval, so overlapping measurements each get correct figures.
"""

from __future__ import annotations

import abc
import os
import resource
import sys
from collections.abc import Callable, MutableMapping, Sequence
from itertools import repeat
from operator import itemgetter, mul, sub
from typing import Any, ClassVar

from multimeter import metric as _metric
from multimeter._row import DerivedRow
from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.subject import CHILDREN, PROCESS, Subject

__all__ = ["CumulativeProbe", "Probe", "ResourceProbe"]


class Probe(abc.ABC):
    """Protocol for gathering run-time properties.

    Subclasses implement :meth:`sample` and usually :attr:`measures`;
    :meth:`start` and :meth:`end` are optional hooks. A probe shared by several
    measurements is started when the first of them starts and ended when the
    last of them ends.
    """

    @property
    def measures(self) -> tuple[Measure, ...]:
        """The measures gathered by this probe."""
        return ()

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The metrics gathered by this probe, each once, in order of first use."""
        return tuple(dict.fromkeys(m.metric for m in self.measures))

    @property
    def subjects(self) -> tuple[Subject, ...]:
        """The subjects measured by this probe, each once, in order of first use."""
        return tuple(dict.fromkeys(m.subject for m in self.measures))

    def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Signal that gathering starts."""

    @abc.abstractmethod
    def sample(self, values: MutableMapping[str, Any], time_elapsed: float) -> None:
        """Store the current value of every measure in ``values``, under its key.

        ``time_elapsed`` is the time in seconds since the previous sample.
        """

    def end(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Signal that gathering has ended."""


class CumulativeProbe(Probe):
    """A probe whose raw readings can serve many measurements at once.

    Implement :meth:`read` (cheap and thread-safe: it is called from the sampler
    thread and from the threads that start and end measurements) and
    :meth:`derive`, which turns two readings into values. :meth:`sample` is then
    provided, so the probe also works wherever the plain protocol is used.

    Two optional capabilities make the probe cheaper to use on short calls:

    - **Rows** (:meth:`derive_row`, checked with :meth:`has_row_path`): the
      values of an interval as one sequence in :attr:`measures` order, which a
      result keeps as it is, instead of a dict filled in by :meth:`derive`.
    - **CPU-time rows** (:attr:`cpu_time_rows`, :meth:`cpu_row`, checked with
      :meth:`has_cpu_time_rows`): a short call in which only the CPU times moved
      waits for the background writer as a few numbers instead of two readings.
    """

    #: The CPU-time rows capability, declared by a class that sets it to ``True``.
    #: It promises that :meth:`read` returns a pair ``(figures, other)`` in which
    #: ``figures[0]`` and ``figures[1]`` are the cumulative user and system CPU
    #: seconds, and that :meth:`cpu_row` gives the row :meth:`derive_row` would
    #: give over an interval in which nothing else moved (``figures[2:]`` and
    #: ``other`` equal at both ends). The per-call path of ``@measured`` then keeps
    #: a call as its two CPU-time differences and a reading shared with the calls
    #: around it.
    cpu_time_rows: ClassVar[bool] = False

    _last_reading: Any = None

    @abc.abstractmethod
    def read(self) -> Any:
        """Return a raw reading, for example a tuple of cumulative counters."""

    @abc.abstractmethod
    def derive(
        self,
        values: MutableMapping[str, Any],
        current: Any,
        previous: Any,
        time_elapsed: float,
    ) -> None:
        """Store the values for the interval from ``previous`` to ``current``."""

    def derive_row(self, current: Any, previous: Any, time_elapsed: float) -> Sequence[Any] | None:
        """Optional fast path: the values :meth:`derive` would store, as one sequence
        in :attr:`measures` order, or ``None`` where :meth:`derive` must decide.

        The sampler uses it only where it is defined by the class that defines
        :meth:`derive`, or by a subclass of that class: a subclass that overrides
        :meth:`derive` alone is always served through :meth:`derive`. The default
        returns ``None``.
        """
        return None

    def has_row_path(self) -> bool:
        """Whether :meth:`derive_row` may stand in for :meth:`derive` (see there)."""
        cls = type(self)
        row_owner = _defined_by(cls, "derive_row")
        return row_owner is not CumulativeProbe and issubclass(
            row_owner, _defined_by(cls, "derive")
        )

    def cpu_row(
        self, reading: Any, user: float, system: float, time_elapsed: float
    ) -> Sequence[Any] | None:
        """The CPU-time rows capability (see :attr:`cpu_time_rows`): the row of an
        interval of ``time_elapsed`` seconds (more than 0) that ended with
        ``reading``, in which only the CPU times moved, by ``user`` and ``system``
        seconds (neither below 0); ``None`` where :meth:`derive_row` must decide.
        The default returns ``None``."""
        return None

    def has_cpu_time_rows(self) -> bool:
        """Whether the probe has the CPU-time rows capability: its class declares
        :attr:`cpu_time_rows`, has the :meth:`has_row_path` capability, and
        :meth:`read`, :meth:`derive`, :meth:`derive_row` and :meth:`cpu_row` are
        defined by the class that declares it or by classes it derives from (a
        subclass that overrides one of them must declare it again)."""
        cls = type(self)
        if not self.cpu_time_rows or _defined_by(cls, "cpu_row") is CumulativeProbe:
            return False
        owner = _defined_by(cls, "cpu_time_rows")
        return self.has_row_path() and all(
            issubclass(owner, _defined_by(cls, name))
            for name in ("read", "derive", "derive_row", "cpu_row")
        )

    def start(self) -> None:
        """Take the reading that the first :meth:`sample` is compared with."""
        self._last_reading = self.read()

    def sample(self, values: MutableMapping[str, Any], time_elapsed: float) -> None:
        """Read now and store the values since the previous sample.

        Raises:
            RuntimeError: when called before :meth:`start`.
        """
        previous = self._last_reading
        if previous is None:
            raise RuntimeError(f"{type(self).__name__}: start() must come before sample()")
        current = self.read()
        self.derive(values, current, previous, time_elapsed)
        self._last_reading = current


def _defined_by(cls: type, name: str) -> type:
    """The class in ``cls``'s MRO whose body defines ``name``."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return object


# (struct_rusage field, metric, is a counter turned into a rate per second)
_RUSAGE_FIELDS: tuple[tuple[str, Metric, bool], ...] = (
    ("ru_utime", _metric.CPU_USER_RATE, True),
    ("ru_stime", _metric.CPU_SYSTEM_RATE, True),
    ("ru_maxrss", _metric.MAX_RSS, False),
    ("ru_ixrss", _metric.SHARED_MEMORY, False),
    ("ru_idrss", _metric.UNSHARED_DATA, False),
    ("ru_isrss", _metric.UNSHARED_STACK, False),
    ("ru_minflt", _metric.FAULT_MINOR_RATE, True),
    ("ru_majflt", _metric.FAULT_MAJOR_RATE, True),
    ("ru_nswap", _metric.SWAP_RATE, True),
    ("ru_inblock", _metric.INPUT_BLOCK_RATE, True),
    ("ru_oublock", _metric.OUTPUT_BLOCK_RATE, True),
    ("ru_nvcsw", _metric.CONTEXT_SWITCH_VOLUNTARY_RATE, True),
    ("ru_nivcsw", _metric.CONTEXT_SWITCH_INVOLUNTARY_RATE, True),
)

_PEAK_KEY = f"{PROCESS.key}.{_metric.PEAK_RSS.key}"
_MAXRSS_AT = 2  # ru_maxrss in a struct_rusage (or a tuple laid out like one)
_MINFLT_AT = 6  # ru_minflt, then ru_majflt
_INBLOCK_AT = 9  # ru_inblock, then ru_oublock

# ru_maxrss is in kibibytes on Linux and the BSDs, in bytes on macOS.
_MAXRSS_SCALE = 1 if sys.platform == "darwin" else 1024


def cpu_limit() -> float:
    """The most CPU seconds per second this process can use: the number of CPUs it
    may run on (its affinity where the platform has one)."""
    try:
        return float(len(os.sched_getaffinity(0)) or 1)
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)


class ResourceProbe(CumulativeProbe):
    """Process figures from :func:`resource.getrusage`, for the process and its children.

    Subjects: ``process`` (``RUSAGE_SELF``: every thread of this process) and
    ``children`` (``RUSAGE_CHILDREN``: children that have ended and been waited
    for; a running child counts only once it is reaped).

    Values per subject:

    - ``cpu_user``, ``cpu_system``: CPU seconds per second of wall time (a
      process using two cores fully reports 2.0).
    - ``max_rss``: peak resident set size in bytes. This is a lifetime
      high-water mark, not the current size: it never falls.
    - ``process.peak_rss`` (process only): the peak resident set size reached
      within the point's interval where the process set a new high-water mark
      in it (then it is exact), else 0.
    - ``shared_memory``, ``unshared_data``, ``unshared_stack``: the integral
      sizes ``ru_ixrss``, ``ru_idrss``, ``ru_isrss``. Linux leaves them at 0;
      the BSDs and macOS fill them in.
    - ``page_faults_no_io``, ``page_faults_io`` (minor and major faults),
      ``swaps``, ``block_input``, ``block_output``,
      ``context_switches_voluntary``, ``context_switches_involuntary``: events
      per second. Linux leaves ``swaps`` at 0; block counts cover only I/O that
      reached the block layer (not reads served from the page cache).

    The process's CPU rates are capped at the number of CPUs the process may run
    on. Linux accounts the CPU time of the process's *other* running threads (a
    writer or sampler thread, the application's own) at clock ticks, a few
    milliseconds at a time: over an interval shorter than that, such as a short
    ``@measured`` call, a catch-up of several milliseconds would otherwise read as
    hundreds of CPU seconds per second. The children's rates are not capped: a
    child reaped within an interval adds all of its CPU time to that interval.

    Rates over an interval of zero length are left out of that point.
    ``getrusage`` may be replaced, e.g. by a scripted fake in tests.

    The probe has both optional capabilities of :class:`CumulativeProbe`: rows
    and CPU-time rows (a reading is ``(getrusage(RUSAGE_SELF),
    getrusage(RUSAGE_CHILDREN))``, and ``ru_utime`` and ``ru_stime`` come first
    in a ``struct_rusage``).
    """

    cpu_time_rows = True

    def __init__(self, getrusage: Callable[[int], Any] = resource.getrusage) -> None:
        self._getrusage = getrusage
        subjects = (PROCESS, CHILDREN)
        self._measures = (
            *(Measure(s, metric) for s in subjects for _, metric, _ in _RUSAGE_FIELDS),
            Measure(PROCESS, _metric.PEAK_RSS),
        )
        gauges = [(f, m) for f, m, is_rate in _RUSAGE_FIELDS if not is_rate]
        rates = [(f, m) for f, m, is_rate in _RUSAGE_FIELDS if is_rate]
        # itemgetter picks the fields in C. The values are computed in the order
        # [gauges of process, of children, rates of process, of children] and
        # self._order puts them into the order of self.measures.
        self._gauges = itemgetter(*(_STRUCT_INDEX[f] for f, _ in gauges))
        self._rates = itemgetter(*(_STRUCT_INDEX[f] for f, _ in rates))
        self._rate_count = 2 * len(rates)
        computed = [f"{s.key}.{m.key}" for s in subjects for _, m in gauges]
        computed += [f"{s.key}.{m.key}" for s in subjects for _, m in rates]
        computed.append(_PEAK_KEY)
        self._gauge_keys = computed[: 2 * len(gauges)]
        self._rate_keys = computed[2 * len(gauges) : -1]
        self._order = itemgetter(*(computed.index(m.key) for m in self._measures))
        self._maxrss_positions = tuple(
            i for i, key in enumerate(computed) if key.endswith("." + _metric.MAX_RSS.key)
        )
        self._maxrss_index = [f for f, _ in gauges].index("ru_maxrss")
        self._no_change = [0] * len(rates)
        # The fast path of derive_row(): only the CPU times moved (a short call).
        self._other_rates = itemgetter(
            *(_STRUCT_INDEX[f] for f, _ in rates if f not in ("ru_utime", "ru_stime"))
        )
        self._cpu_at = tuple(
            self._measures.index(Measure(PROCESS, metric))
            for metric in (_metric.CPU_USER_RATE, _metric.CPU_SYSTEM_RATE)
        )
        self._peak_at = len(self._measures) - 1
        # Where the process's CPU rates are among the values in computed order.
        self._first_rate_at = 2 * len(gauges)
        self._cpu_limit = cpu_limit()
        # (gauges of process, children reading, the row with every rate 0), for the
        # fast path: the last one it used.
        self._template: tuple[Any, Any, list[float]] = ((), None, [])
        # (a children reading, its scaled gauges): the last one derive_row() saw.
        self._children: tuple[Any, list[float]] = (None, [])
        self._last_gauges: tuple[Any, list[float]] = (None, [])
        self._last_children: Any = None

    @property
    def measures(self) -> tuple[Measure, ...]:
        """The 13 measures for each of ``process`` and ``children``, and ``process.peak_rss``."""
        return self._measures

    def read(self) -> tuple[Any, Any]:
        """Return ``(getrusage(RUSAGE_SELF), getrusage(RUSAGE_CHILDREN))``.

        The children's figures change only when a child is reaped: while they are
        equal to the last ones read, that same object is returned (readings kept
        for many calls then share it).
        """
        getrusage = self._getrusage
        children = getrusage(resource.RUSAGE_CHILDREN)
        last = self._last_children
        if children == last:
            children = last
        else:
            self._last_children = children
        return getrusage(resource.RUSAGE_SELF), children

    def _gauge_values(self, current: Any) -> list[float]:
        now_self, now_children = current
        values = list(map(float, self._gauges(now_self) + self._gauges(now_children)))
        for position in self._maxrss_positions:
            values[position] *= _MAXRSS_SCALE
        return values

    def _deltas(self, current: Any, previous: Any) -> list[Any]:
        rates = self._rates
        return list(
            map(
                sub,
                rates(current[0]) + rates(current[1]),
                rates(previous[0]) + rates(previous[1]),
            )
        )

    def derive(
        self,
        values: MutableMapping[str, Any],
        current: Any,
        previous: Any,
        time_elapsed: float,
    ) -> None:
        """Store gauges as read and counters as rates per second of ``time_elapsed``."""
        gauges = self._gauge_values(current)
        values.update(zip(self._gauge_keys, gauges, strict=True))
        values[_PEAK_KEY] = self._new_peak(current, previous)
        if time_elapsed > 0:
            per_second = 1.0 / time_elapsed
            rates = [d * per_second if d > 0 else 0.0 for d in self._deltas(current, previous)]
            limit = self._cpu_limit
            rates[0], rates[1] = min(rates[0], limit), min(rates[1], limit)
            values.update(zip(self._rate_keys, rates, strict=True))

    def derive_row(self, current: Any, previous: Any, time_elapsed: float) -> Any:
        """The values of :meth:`derive` in :attr:`measures` order (the sampler's fast
        path), or ``None`` where :meth:`derive` must decide (empty interval, a counter
        that went back)."""
        if time_elapsed <= 0:
            return None
        now_self, now_children = current
        before_self, before_children = previous
        if (now_children is before_children or now_children == before_children) and (
            self._other_rates(now_self) == self._other_rates(before_self)
        ):
            return self._cpu_row(current, before_self, time_elapsed)
        rates = self._rates
        deltas = list(map(sub, rates(now_self), rates(before_self)))
        # Children's figures change only when a child is reaped: mostly they are
        # equal, and their gauges are those of the last time (one tuple, swapped whole).
        children_gauges = self._children_gauges(now_children)
        if now_children == before_children:
            deltas += self._no_change
        else:
            deltas += map(sub, rates(now_children), rates(before_children))
        if min(deltas) < 0:
            return None
        values = self._scaled_gauges(now_self)
        values += children_gauges
        values += map(mul, deltas, repeat(1.0 / time_elapsed, self._rate_count))
        values.append(self._new_peak(current, previous))
        user_at, limit = self._first_rate_at, self._cpu_limit
        values[user_at] = min(values[user_at], limit)
        values[user_at + 1] = min(values[user_at + 1], limit)
        return self._order(values)

    def amounts(self, current: Any, previous: Any, time_elapsed: float) -> tuple[Any, ...] | None:
        """What the process did between two readings ``time_elapsed`` seconds apart, as
        amounts rather than rates (the figures a span of a call carries): CPU user and
        system seconds (capped as the rates are), minor and major page faults, blocks
        read and written, and ``ru_maxrss`` in bytes before and after; ``None`` where a
        counter went back."""
        now, before = current[0], previous[0]
        user, system = now[0] - before[0], now[1] - before[1]
        if user < 0 or system < 0:
            return None
        most = self._cpu_limit * time_elapsed
        return (
            min(user, most),
            min(system, most),
            now[_MINFLT_AT] - before[_MINFLT_AT],
            now[_MINFLT_AT + 1] - before[_MINFLT_AT + 1],
            now[_INBLOCK_AT] - before[_INBLOCK_AT],
            now[_INBLOCK_AT + 1] - before[_INBLOCK_AT + 1],
            before[_MAXRSS_AT] * _MAXRSS_SCALE,
            now[_MAXRSS_AT] * _MAXRSS_SCALE,
        )

    def _cpu_row(self, current: Any, before: Any, time_elapsed: float) -> Any:
        """The row of an interval that ended with ``current`` in which only the
        process's CPU times (and ``ru_maxrss``) moved from the process figures
        ``before`` (most short calls; see :meth:`cpu_row`)."""
        now = current[0]
        user, system = now[0] - before[0], now[1] - before[1]
        if user < 0 or system < 0:
            return None
        maxrss = now[_MAXRSS_AT]
        peak = maxrss if maxrss > before[_MAXRSS_AT] else 0
        return self.cpu_row(current, user, system, time_elapsed, peak)

    def cpu_row(
        self,
        reading: Any,
        user: float,
        system: float,
        time_elapsed: float,
        new_peak: int = 0,
    ) -> DerivedRow:
        """The row of an interval that ended with ``reading`` in which only the
        process's CPU times moved, by ``user`` and ``system`` seconds (and
        ``ru_maxrss`` rose to ``new_peak``, where not 0): a copy of the row of
        those gauges with every rate 0, with the CPU rates (and the peak) set in
        it. See :attr:`CumulativeProbe.cpu_time_rows`."""
        figures, children = reading
        gauges = self._gauges(figures)
        template = self._template
        if template[1] is not children or template[0] != gauges:
            values = self._scaled_gauges(figures) + self._children_gauges(children)
            values += [0.0] * self._rate_count
            values.append(0.0)
            template = self._template = (gauges, children, list(self._order(values)))
        user_at, system_at = self._cpu_at
        if new_peak:
            row = DerivedRow(template[2], (user_at, system_at, self._peak_at))
            row[self._peak_at] = float(new_peak * _MAXRSS_SCALE)
        else:
            row = DerivedRow(template[2], self._cpu_at)
        per_second = 1.0 / time_elapsed  # as derive() computes rates
        if user:
            row[user_at] = min(user * per_second, self._cpu_limit)
        if system:
            row[system_at] = min(system * per_second, self._cpu_limit)
        return row

    def _children_gauges(self, children: Any) -> list[float]:
        """The scaled gauges of a children reading (the last one's are kept)."""
        known = self._children
        if children != known[0]:
            known = self._children = (children, self._scaled_gauges(children))
        return known[1]

    @staticmethod
    def _new_peak(current: Any, previous: Any) -> float:
        """``ru_maxrss`` in bytes where it rose from ``previous`` to ``current``, else 0."""
        now, before = current[0][_MAXRSS_AT], previous[0][_MAXRSS_AT]
        return float(now * _MAXRSS_SCALE) if now > before else 0.0

    def _scaled_gauges(self, reading: Any) -> list[float]:
        """The gauges of one ``struct_rusage`` as floats, ``ru_maxrss`` in bytes (the
        last ones are kept: they seldom change)."""
        raw = self._gauges(reading)
        last = self._last_gauges
        if raw == last[0]:
            return last[1][:]
        values = list(map(float, raw))
        values[self._maxrss_index] *= _MAXRSS_SCALE
        self._last_gauges = (raw, values[:])
        return values


_STRUCT_INDEX = {
    name: index
    for index, name in enumerate(
        (
            "ru_utime",
            "ru_stime",
            "ru_maxrss",
            "ru_ixrss",
            "ru_idrss",
            "ru_isrss",
            "ru_minflt",
            "ru_majflt",
            "ru_nswap",
            "ru_inblock",
            "ru_oublock",
            "ru_msgsnd",
            "ru_msgrcv",
            "ru_nsignals",
            "ru_nvcsw",
            "ru_nivcsw",
        )
    )
}
