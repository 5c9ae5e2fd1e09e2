"""The Multimeter: probes, a cycle time and a storage, from which measurements are made."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

from multimeter._env import DEFAULT_EXIT_TIMEOUT, MAX_CYCLE_TIME, MIN_CYCLE_TIME
from multimeter._session import ProbePlan
from multimeter._spans import check_spans
from multimeter._tags import normalize_tags
from multimeter.measurement import Measurement
from multimeter.probe import Probe
from multimeter.result import Schema
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage

__all__ = ["Multimeter", "Snapshot"]

_DISCARD = DummyStorage()


def check_cycle_time(cycle_time: Any) -> float:
    """Return ``cycle_time`` as a float, or raise ``ValueError`` naming it."""
    if (
        isinstance(cycle_time, bool)
        or not isinstance(cycle_time, Real)
        or not MIN_CYCLE_TIME <= float(cycle_time) <= MAX_CYCLE_TIME
    ):
        raise ValueError(
            f"cycle_time must be a number of seconds from {MIN_CYCLE_TIME} to"
            f" {MAX_CYCLE_TIME:g} (a day), got {cycle_time!r}"
        )
    return float(cycle_time)


def check_storage(storage: Any) -> Storage:
    if isinstance(storage, type) or not callable(getattr(storage, "store", None)):
        raise ValueError(
            f"storage must be a Storage such as FileStorage(...) or DummyStorage(), got {storage!r}"
        )
    return storage


def _check_probe(probe: Any) -> Probe:
    if isinstance(probe, type) or not callable(getattr(probe, "sample", None)):
        raise ValueError(f"probes must be Probe objects such as ResourceProbe(), got {probe!r}")
    return probe


@dataclass(frozen=True)
class Snapshot:
    """A multimeter's whole configuration as of one moment: the one object a
    measurement (and, for the global multimeter, every ``@measured`` call and the
    exit flush) reads.

    A :class:`Multimeter` publishes a new snapshot whenever one of its setters
    (or :meth:`Multimeter.update`) is called; a measurement takes the snapshot
    current when it is made (``measure()``), each ``@measured`` call the one
    current at its start, so a change applies from the next measurement on.
    """

    probes: tuple[Probe, ...]
    schema: Schema
    plan: ProbePlan
    cycle_time: float
    storage: Storage
    #: Tags every measurement gets (its own tags win).
    tags: Mapping[str, str]
    #: Whether results go anywhere (``False`` for :class:`DummyStorage`).
    stores: bool
    #: Whether ``@measured`` calls are measured (read from the global multimeter).
    enabled: bool = True
    #: The fraction of ``@measured`` calls measured (read from the global multimeter).
    sample_rate: float = 1.0
    #: Seconds the exit waits for pending results (read from the global multimeter).
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT
    #: Whether SIGTERM and SIGHUP store what is pending (read from the global multimeter).
    handle_sigterm: bool = True
    #: What ``@measured`` calls and measurements do with OpenTelemetry spans:
    #: ``"attributes"`` (their figures on the current span), ``"calls"`` (each call
    #: its own span, with its figures) or ``"off"``.
    spans: str = "attributes"

    @classmethod
    def of(
        cls,
        probes: tuple[Probe, ...],
        cycle_time: float,
        storage: Storage,
        tags: Mapping[str, str],
    ) -> Snapshot:
        """A snapshot with the schema and probe plan computed from ``probes``."""
        schema = Schema.from_probes(probes)
        return cls(
            probes=probes,
            schema=schema,
            plan=ProbePlan(probes, schema),
            cycle_time=cycle_time,
            storage=storage,
            tags=dict(tags),
            stores=not isinstance(storage, DummyStorage),
        )


def _check_bool(value: Any, setting: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{setting} must be True or False, got {value!r}")
    return value


def _check_number(value: Any, setting: str, valid: Callable[[float], bool], allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not valid(float(value)):
        raise ValueError(f"{setting} must be {allowed}, got {value!r}")
    return float(value)


class Multimeter:
    """Measures run-time properties of Python code.

    >>> from multimeter import Multimeter, ResourceProbe
    >>> with Multimeter(ResourceProbe()).measure() as result:
    ...     total = sum(range(1000))
    >>> len(result.points) >= 1
    True

    Args:
        *probes: The probes that measure.
        cycle_time: Seconds between two points (default one second; at least
            0.001).
        storage: Stores each result when its measurement ends; the default
            discards it.

    Raises:
        ValueError: for a cycle time that is not a finite number >= 0.001, or
            for probes or a storage of the wrong kind.

    The setters take effect for measurements made (and ``@measured`` calls
    started) after them; one already made keeps what it started with.
    ``multimeter.configure()`` changes the global multimeter (the one
    :func:`~multimeter.get_multimeter` returns) through :meth:`update`.
    """

    def __init__(
        self, *probes: Probe, cycle_time: float = 1.0, storage: Storage = _DISCARD
    ) -> None:
        # Reentrant: a signal's handler may call a setter in the thread whose own
        # setter it interrupted (a later snapshot then wins).
        self._lock = threading.RLock()
        #: The current configuration, as one immutable object; replaced (never
        #: changed) by the setters. Read it; do not assign it.
        self.snapshot = Snapshot.of(
            tuple(_check_probe(p) for p in probes),
            check_cycle_time(cycle_time),
            check_storage(storage),
            {},
        )

    @property
    def probes(self) -> tuple[Probe, ...]:
        """The probes that gather the data."""
        return self.snapshot.probes

    @property
    def cycle_time(self) -> float:
        """Seconds between two points."""
        return self.snapshot.cycle_time

    @property
    def storage(self) -> Storage:
        """Where results are stored."""
        return self.snapshot.storage

    @property
    def tags(self) -> Mapping[str, str]:
        """Tags every measurement of this multimeter gets (its own tags win)."""
        return self.snapshot.tags

    def add_probes(self, *probes: Probe) -> Multimeter:
        """Add probes; returns the multimeter."""
        checked = tuple(_check_probe(p) for p in probes)
        with self._lock:
            now = self.snapshot
            self._publish(now, {"probes": now.probes + checked})
        return self

    def set_cycle_time(self, cycle_time: float) -> Multimeter:
        """Set the seconds between two points; returns the multimeter."""
        return self._update(cycle_time=check_cycle_time(cycle_time))

    def set_storage(self, storage: Storage) -> Multimeter:
        """Set where results are stored; returns the multimeter."""
        return self._update(storage=check_storage(storage))

    def set_tags(self, tags: Mapping[str, Any]) -> Multimeter:
        """Set the tags every measurement gets; returns the multimeter.

        Raises:
            ValueError: for a tag that cannot be stored (see README, Tags).
        """
        return self._update(tags=normalize_tags(tags))

    def _update(
        self,
        *,
        probes: Iterable[Probe] | None = None,
        cycle_time: float | None = None,
        storage: Storage | None = None,
        tags: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        sample_rate: float | None = None,
        exit_timeout: float | None = None,
        handle_sigterm: bool | None = None,
        spans: str | None = None,
        wait: bool = True,
    ) -> Multimeter:
        """Change the settings given (``None`` keeps one), published as one new
        :class:`Snapshot`; returns the multimeter.

        ``probes`` replaces the probes. ``enabled``, ``sample_rate``,
        ``exit_timeout`` and ``handle_sigterm`` are read from the global
        multimeter only (``@measured`` calls, the exit); ``configure()`` and the
        ``MULTIMETER_*`` variables set them there. ``wait=False`` publishes
        without waiting for a setter running in another thread (the exit flush
        of a signal uses it: the thread it interrupted may never go on).

        Raises:
            ValueError: naming the setting that is wrong and the allowed values.
        """
        changes: dict[str, Any] = {}
        if probes is not None:
            if isinstance(probes, (str, Probe)) or not isinstance(probes, Iterable):
                raise ValueError(f"probes must be a list of Probe objects, got {probes!r}")
            changes["probes"] = tuple(_check_probe(p) for p in probes)
        if cycle_time is not None:
            changes["cycle_time"] = check_cycle_time(cycle_time)
        if storage is not None:
            changes["storage"] = check_storage(storage)
        if tags is not None:
            changes["tags"] = normalize_tags(tags)
        if enabled is not None:
            changes["enabled"] = _check_bool(enabled, "enabled")
        if sample_rate is not None:
            changes["sample_rate"] = _check_number(
                sample_rate, "sample_rate", lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1"
            )
        if exit_timeout is not None:
            changes["exit_timeout"] = _check_number(
                exit_timeout,
                "exit_timeout",
                lambda v: 0.0 < v < math.inf,
                "a finite number of seconds > 0",
            )
        if handle_sigterm is not None:
            changes["handle_sigterm"] = _check_bool(handle_sigterm, "handle_sigterm")
        if spans is not None:
            changes["spans"] = check_spans(spans)
        if not wait:
            self._publish(self.snapshot, changes)
            return self
        with self._lock:
            self._publish(self.snapshot, changes)
        return self

    def _publish(self, now: Snapshot, changes: dict[str, Any]) -> None:
        """Make ``now`` with ``changes`` the current snapshot (checked values)."""
        if not changes:
            return
        if "probes" in changes:  # a new schema and plan
            fresh = Snapshot.of(
                changes.pop("probes"),
                changes.get("cycle_time", now.cycle_time),
                changes.get("storage", now.storage),
                changes.get("tags", now.tags),
            )
            kept = {
                name: getattr(now, name)
                for name in ("enabled", "sample_rate", "exit_timeout", "handle_sigterm", "spans")
            }
            now = replace(fresh, **kept)
        if "storage" in changes:
            changes["stores"] = not isinstance(changes["storage"], DummyStorage)
        self.snapshot = replace(now, **changes)

    def measure(self, identifier: str | None = None, **tags: Any) -> Measurement:
        """A new measurement with this configuration; call ``start()`` or use ``with``."""
        return Measurement(self, identifier, **tags)

    def __repr__(self) -> str:
        now = self.snapshot
        return (
            f"Multimeter({', '.join(type(p).__name__ + '()' for p in now.probes)},"
            f" cycle_time={now.cycle_time}, storage={now.storage!r})"
        )
