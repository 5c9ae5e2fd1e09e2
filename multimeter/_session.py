"""One measurement as the sampler sees it, and how probes are read.

A :class:`Session` holds a measurement's result and the readings not yet
turned into points; a :class:`ProbePlan` says how a set of probes is sampled.
:func:`read_probes` takes one reading per probe; probe code that raises is
logged once and its reading is :data:`FAILED`. :func:`call_hooks` runs probe
hooks (never under a lock that measured calls wait for).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from multimeter._log import warn_once
from multimeter._reentry import measuring_off
from multimeter.probe import CumulativeProbe, Probe
from multimeter.result import Result, Schema


class ProbePlan:
    """How a set of probes is sampled; computed once per multimeter, not per call."""

    __slots__ = ("cumulative", "legacy", "rows", "tracked")

    def __init__(self, probes: Sequence[Probe], schema: Schema) -> None:
        self.cumulative = tuple(p for p in probes if isinstance(p, CumulativeProbe))
        self.legacy = tuple(p for p in probes if not isinstance(p, CumulativeProbe))
        # Probes whose use the sampler must count: those with start/end hooks to
        # call, and plain probes (their last sample time is kept).
        self.tracked = tuple(
            p for p in probes if p in self.legacy or needs_hook(p, "start") or needs_hook(p, "end")
        )
        # The fast path: every probe turns readings straight into a row of values in
        # schema order (derive_row, where it is as current as the probe's derive),
        # and the schema is exactly the probes' measures.
        self.rows = (
            bool(self.cumulative)
            and not self.legacy
            and all(p.has_row_path() for p in self.cumulative)
            and schema.measures == tuple(m for p in self.cumulative for m in p.measures)
        )


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
        self.cycle = cycle
        self.plan = plan if plan is not None else ProbePlan(probes, result.schema)
        # For each cumulative probe (by id): (reading, monotonic time) of the last point.
        self.previous: dict[int, tuple[Any, float]] = {}
        self.pending: list[tuple[float, int, dict[int, Any], dict[int, dict[str, Any]]]] = []
        self.last = 0.0
        self.active = False
        self.owner: object = None  # the sampler it was begun in
        self.lock: threading.Lock | None = None  # the sampler's lock, while active
        self.pid = 0

    def start_from(self, readings: dict[int, Any], when: float) -> None:
        """Take ``readings`` (from :func:`read_probes`) as the start of the first interval."""
        self.previous = {key: (r, when) for key, r in readings.items() if r is not FAILED}
        self.last = when

    def record(
        self,
        now: float,
        now_us: int,
        readings: dict[int, Any],
        legacy_values: dict[int, dict[str, Any]],
    ) -> None:
        """Queue the point for time ``now``; the sampler's lock is held."""
        self.pending.append((now, now_us, readings, legacy_values))
        self.last = now
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        """Turn the queued readings into points; the sampler's lock is held."""
        pending, self.pending = self.pending, []
        rows = self.plan.rows
        for now, now_us, readings, legacy_values in pending:
            if not (rows and self._append_row(now, now_us, readings)):
                self._append_values(now, now_us, readings, legacy_values)

    def detach(self) -> Result:
        """The finished result with every queued point in it, no longer tied to
        this session (the writer calls this once the session has ended)."""
        self.flush()
        self.result._sync_hook = None
        return self.result

    def sync(self) -> None:
        """Flush from outside the sampler (the result is being read)."""
        lock = self.lock
        if lock is None or self.pid != os.getpid():  # ended, or a copy in a forked child
            self.flush()
            return
        with lock:
            self.flush()

    def _append_values(
        self,
        now: float,
        now_us: int,
        readings: dict[int, Any],
        legacy_values: dict[int, dict[str, Any]],
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
        for plain in self.plan.legacy:
            sampled = legacy_values.get(id(plain))
            if sampled:
                values.update(sampled)
        self.result._append_us(now_us, values)

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
        if not self.result._append_row(now_us, row):
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


def read_probe_tuple(probes: tuple[Probe, ...]) -> tuple[Any, ...]:
    """Like :func:`read_probes`, as a tuple in the order of ``probes`` (the per-call
    path keeps readings this way: a tuple is a quarter of a dict's size)."""
    try:
        if len(probes) == 1:
            return (probes[0].read(),)  # type: ignore[attr-defined]
        return tuple([probe.read() for probe in probes])  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - one of them failed: read them one by one
        readings = read_probes(probes)
        return tuple(readings[id(probe)] for probe in probes)


def readings_by_probe(probes: tuple[Probe, ...], readings: tuple[Any, ...]) -> dict[int, Any]:
    """Readings of :func:`read_probe_tuple` as :func:`read_probes` gives them."""
    return {id(probe): reading for probe, reading in zip(probes, readings, strict=True)}


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
