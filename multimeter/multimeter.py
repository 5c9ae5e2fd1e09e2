"""The Multimeter: probes, a cycle time and a storage, from which measurements are made."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

from multimeter._env import MAX_CYCLE_TIME, MIN_CYCLE_TIME
from multimeter._session import ProbePlan
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


def _check_storage(storage: Any) -> Storage:
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
    """Everything a measurement needs from its multimeter, as of one moment.

    A :class:`Multimeter` publishes a new snapshot whenever one of its setters
    is called; a measurement takes the snapshot current when it is made
    (``measure()``), each ``@measured`` call the one current at its start, so
    a change applies from the next measurement on.
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
    """

    def __init__(
        self, *probes: Probe, cycle_time: float = 1.0, storage: Storage = _DISCARD
    ) -> None:
        self._lock = threading.Lock()
        #: The current configuration, as one immutable object; replaced (never
        #: changed) by the setters. Read it; do not assign it.
        self.snapshot = Snapshot.of(
            tuple(_check_probe(p) for p in probes),
            check_cycle_time(cycle_time),
            _check_storage(storage),
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
            self.snapshot = Snapshot.of(now.probes + checked, now.cycle_time, now.storage, now.tags)
        return self

    def set_cycle_time(self, cycle_time: float) -> Multimeter:
        """Set the seconds between two points; returns the multimeter."""
        checked = check_cycle_time(cycle_time)
        with self._lock:
            self.snapshot = replace(self.snapshot, cycle_time=checked)
        return self

    def set_storage(self, storage: Storage) -> Multimeter:
        """Set where results are stored; returns the multimeter."""
        checked = _check_storage(storage)
        with self._lock:
            self.snapshot = replace(
                self.snapshot, storage=checked, stores=not isinstance(checked, DummyStorage)
            )
        return self

    def set_tags(self, tags: Mapping[str, Any]) -> Multimeter:
        """Set the tags every measurement gets; returns the multimeter.

        Raises:
            ValueError: for a tag that cannot be stored (see README, Tags).
        """
        checked = normalize_tags(tags)
        with self._lock:
            self.snapshot = replace(self.snapshot, tags=checked)
        return self

    def measure(self, identifier: str | None = None, **tags: Any) -> Measurement:
        """A new measurement with this configuration; call ``start()`` or use ``with``."""
        return Measurement(self, identifier, **tags)

    def __repr__(self) -> str:
        now = self.snapshot
        return (
            f"Multimeter({', '.join(type(p).__name__ + '()' for p in now.probes)},"
            f" cycle_time={now.cycle_time}, storage={now.storage!r})"
        )
