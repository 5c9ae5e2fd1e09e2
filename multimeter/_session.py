"""One measurement as the sampler sees it, and how probes are read.

A :class:`Session` holds a measurement's result and the readings not yet
turned into points; a :class:`ProbePlan` says how a set of probes is sampled.
:func:`read_probes` takes one reading per probe; probe code that raises is
logged once and its reading is :data:`FAILED`. :func:`call_hooks` runs probe
hooks (never under a lock that measured calls wait for).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from multimeter._log import warn_once
from multimeter._reentry import measuring_off
from multimeter.probe import CumulativeProbe, Probe
from multimeter.result import Result, ResultBuilder, Schema


class ProbePlan:
    """How a set of probes is sampled; computed once per multimeter, not per call.

    The sampler reads each of :attr:`cumulative`. A measured call reads
    :attr:`per_call` instead: the same probes, except that the background probes
    (read from the background reader's shared memory) are one group read at once
    (see ``multimeter.probes._background.BackgroundGroup``), so that a call costs
    the same however many of them there are. :meth:`by_probe` turns such readings
    into the sampler's.
    """

    __slots__ = (
        "call_order",
        "cpu_time_rows",
        "cumulative",
        "figures",
        "group",
        "per_call",
        "plain",
        "rows",
        "tracked",
    )

    def __init__(self, probes: Sequence[Probe], schema: Schema) -> None:
        self.cumulative = tuple(p for p in probes if isinstance(p, CumulativeProbe))
        # Probes of the documented protocol alone (sample() only): sampled one by one.
        self.plain = tuple(p for p in probes if not isinstance(p, CumulativeProbe))
        # Probes whose use the sampler must count: those with start/end hooks to
        # call, and plain probes (their last sample time is kept).
        self.tracked = tuple(
            p for p in probes if p in self.plain or needs_hook(p, "start") or needs_hook(p, "end")
        )
        # The fast path: every probe turns readings straight into a row of values in
        # schema order (derive_row, where it is as current as the probe's derive),
        # and the schema is exactly the probes' measures.
        self.rows = (
            bool(self.cumulative)
            and not self.plain
            and all(p.has_row_path() for p in self.cumulative)
            and schema.measures == tuple(m for p in self.cumulative for m in p.measures)
        )
        self.group = _background_group(self.cumulative)
        members = set(map(id, self.group.probes)) if self.group is not None else set()
        per_call: list[Any] = []
        for probe in self.cumulative:
            if id(probe) not in members:
                per_call.append(probe)
            elif self.group not in per_call:  # the group where its first probe is
                per_call.append(self.group)
        self.per_call: tuple[Any, ...] = tuple(per_call)
        #: Which figures of a call go on an OpenTelemetry span (``multimeter._spans``),
        #: made there when first needed.
        self.figures: Any = None
        #: Whether a short call may wait for the writer as CPU-time differences: the
        #: rows path, and one probe read per call that has the CPU-time rows
        #: capability (``CumulativeProbe.has_cpu_time_rows``).
        self.cpu_time_rows = (
            self.rows
            and len(self.per_call) == 1
            and isinstance(self.per_call[0], CumulativeProbe)
            and self.per_call[0].has_cpu_time_rows()
        )
        #: Where the rows of :attr:`per_call`, one after the other, differ from schema
        #: order: the index in them of each value in schema order.
        self.call_order: tuple[int, ...] | None = None
        if self.group is not None:
            at: dict[int, range] = {}
            offset = 0
            for reader in self.per_call:
                for probe in self.group.probes if reader is self.group else (reader,):
                    at[id(probe)] = range(offset, offset + len(probe.measures))
                    offset += len(probe.measures)
            order = tuple(i for p in self.cumulative for i in at[id(p)])
            self.call_order = None if order == tuple(range(offset)) else order

    def by_probe(self, readings: tuple[Any, ...]) -> dict[int, Any]:
        """Readings of :attr:`per_call` (:func:`read_probe_tuple`) as :func:`read_probes`
        gives them: by the ``id`` of each cumulative probe."""
        out: dict[int, Any] = {}
        group = self.group
        for reader, reading in zip(self.per_call, readings, strict=True):
            if reader is not group:
                out[id(reader)] = reading
            elif reading is FAILED:
                out.update((id(probe), FAILED) for probe in group.probes)
            else:
                out.update(zip(map(id, group.probes), reading, strict=True))
        return out


def _background_group(probes: tuple[CumulativeProbe, ...]) -> Any:
    """The background probes among ``probes`` as one group, or ``None``."""
    module = sys.modules.get("multimeter.probes._background")
    if module is None:  # no background probe was ever made (it imports the module)
        return None
    return module.group(probes)


class Session:
    """The sampler's state for one active measurement.

    Ticks only queue their readings (:meth:`record`); turning readings into
    values happens in batches (:meth:`flush`): every ``BATCH`` ticks, when the
    session ends, and whenever the result is read. A tick thus costs the
    sampler thread little more than the probe readings.
    """

    BATCH = 64

    __slots__ = (
        "active",
        "builder",
        "cycle",
        "last",
        "lock",
        "owner",
        "pending",
        "pid",
        "plan",
        "previous",
        "result",
    )

    def __init__(
        self,
        result: Result,
        probes: Sequence[Probe],
        cycle: float,
        plan: ProbePlan | None = None,
    ) -> None:
        self.result = result
        #: Adds the points to :attr:`result`.
        self.builder = ResultBuilder.of(result)
        self.cycle = cycle
        self.plan = plan if plan is not None else ProbePlan(probes, result.schema)
        # For each cumulative probe (by id): (reading, monotonic time) of the last point.
        self.previous: dict[int, tuple[Any, float]] = {}
        self.pending: list[tuple[float, int, dict[int, Any], dict[int, dict[str, Any]]]] = []
        self.last = 0.0
        self.active = False
        self.owner: object = None  # the sampler it was begun in
        self.lock: AbstractContextManager[Any] | None = None  # the sampler's lock, while active

    def start_from(self, readings: dict[int, Any], when: float) -> None:
        """Take ``readings`` (from :func:`read_probes`) as the start of the first interval."""
        self.previous = {key: (r, when) for key, r in readings.items() if r is not FAILED}
        self.last = when

    def record(
        self,
        now: float,
        now_us: int,
        readings: dict[int, Any],
        plain_values: dict[int, dict[str, Any]],
    ) -> None:
        """Queue the point for time ``now``; the sampler's lock is held."""
        self.pending.append((now, now_us, readings, plain_values))
        self.last = now
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        """Turn the queued readings into points; the sampler's lock is held."""
        pending, self.pending = self.pending, []
        rows = self.plan.rows
        for now, now_us, readings, plain_values in pending:
            if not (rows and self._append_row(now, now_us, readings)):
                self._append_values(now, now_us, readings, plain_values)

    def detach(self) -> Result:
        """The finished result with every queued point in it, no longer tied to
        this session (the writer calls this once the session has ended)."""
        self.flush()
        self.builder.set_sync(None)
        return self.result

    def sync(self) -> None:
        """Flush from outside the sampler (the result is being read)."""
        from multimeter import _process  # it needs this module: imported on use

        lock = self.lock
        if lock is None or self.owner is not _process.current().sampler:
            self.flush()  # ended, or a copy in a forked child (its sampler is another)
            return
        with lock:
            self.flush()

    def _append_values(
        self,
        now: float,
        now_us: int,
        readings: dict[int, Any],
        plain_values: dict[int, dict[str, Any]],
    ) -> None:
        values: dict[str, Any] = {}
        previous = self.previous
        for probe in self.plan.cumulative:
            key = id(probe)
            current = readings.get(key, FAILED)
            if current is FAILED:
                continue
            before = previous.get(key)
            previous[key] = (current, now)
            if before is not None:
                try:
                    probe.derive(values, current, before[0], now - before[1])
                except Exception as error:  # noqa: BLE001 - a probe must not stop sampling
                    probe_failed(probe, error)
        for plain in self.plan.plain:
            sampled = plain_values.get(id(plain))
            if sampled:
                values.update(sampled)
        self.builder.add_values(now_us, values)

    def _append_row(self, now: float, now_us: int, readings: dict[int, Any]) -> bool:
        previous = self.previous
        row: list[Any] = []
        for probe in self.plan.cumulative:
            key = id(probe)
            current = readings.get(key, FAILED)
            before = previous.get(key)
            if current is FAILED or before is None:
                return False
            try:
                part = probe.derive_row(current, before[0], now - before[1])
            except Exception:  # noqa: BLE001 - the general path logs it
                return False
            if part is None:
                return False
            row += part
        if not self.builder.add_row(now_us, row):
            return False
        for probe in self.plan.cumulative:
            previous[id(probe)] = (readings[id(probe)], now)
        return True


class _Failed:
    def __repr__(self) -> str:
        return "<failed>"


#: The reading of a probe that raised (it is logged once per probe and error type).
FAILED = _Failed()


def read_probes(probes: Iterable[Probe]) -> dict[int, Any]:
    """One reading per cumulative probe, by ``id``; :data:`FAILED` for a probe that raised.

    Measured code that a probe calls is not measured (it would feed itself):
    on multimeter's own threads ``_reentry.BUSY`` says so; callers on a user's thread
    use :func:`read_probes_guarded`, or (the per-call path) mark their call as
    reading.
    """
    readings: dict[int, Any] = {}
    for probe in probes:
        try:
            readings[id(probe)] = probe.read()  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001 - a probe must not break anything
            readings[id(probe)] = FAILED
            probe_failed(probe, error)
    return readings


def read_probe_tuple(probes: tuple[Any, ...]) -> tuple[Any, ...]:
    """Like :func:`read_probes`, as a tuple in the order of ``probes`` (the per-call
    path keeps readings this way: a tuple is a quarter of a dict's size). ``probes``
    may hold a :attr:`ProbePlan.group`."""
    try:
        if len(probes) == 1:
            return (probes[0].read(),)
        if len(probes) == 2:  # a probe and the background group; or two probes
            return (probes[0].read(), probes[1].read())
        if len(probes) == 3:  # spelt out: a comprehension costs 0.2 us more
            return (probes[0].read(), probes[1].read(), probes[2].read())
        return tuple([probe.read() for probe in probes])
    except Exception:  # noqa: BLE001 - one of them failed: read them one by one
        readings = read_probes(probes)
        return tuple(readings[id(probe)] for probe in probes)


def read_probes_guarded(probes: Iterable[Probe]) -> dict[int, Any]:
    """:func:`read_probes` on a user's thread, with measuring off meanwhile."""
    with measuring_off():
        return read_probes(probes)


_BUILTIN_HOOKS = {"start": CumulativeProbe.start, "end": CumulativeProbe.end}


def probe_failed(probe: Probe, error: BaseException) -> None:
    warn_once(
        ("probe", id(probe), type(error)),
        "probe failed; its values are missing from this point",
        probe=type(probe).__name__,
        error=repr(error),
    )


def needs_hook(probe: Probe, hook: str) -> bool:
    """CumulativeProbe's own hooks only serve stand-alone sample(): the sampler
    takes its readings itself, so they need not run."""
    return not (
        isinstance(probe, CumulativeProbe) and getattr(type(probe), hook) is _BUILTIN_HOOKS[hook]
    )


def call_hooks(probes: Iterable[Probe], hook: str) -> None:
    """Call ``hook`` of each probe (never under the sampler's lock: it may be slow)."""
    with measuring_off():
        for probe in probes:
            try:
                getattr(probe, hook)()
            except Exception as error:  # noqa: BLE001 - a probe must not break the measured code
                probe_failed(probe, error)
