"""The Multimeter: probes, a cycle time and a storage, from which measurements are made."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from multimeter._sampler import ProbePlan
from multimeter.measurement import Measurement
from multimeter.probe import Probe
from multimeter.result import Schema
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage

__all__ = ["Multimeter"]

_DISCARD = DummyStorage()


def check_cycle_time(cycle_time: Any) -> float:
    """Return ``cycle_time`` as a float, or raise ``ValueError`` naming it."""
    if (
        isinstance(cycle_time, bool)
        or not isinstance(cycle_time, Real)
        or not math.isfinite(cycle_time)
        or cycle_time <= 0
    ):
        raise ValueError(f"cycle_time must be a finite number of seconds > 0, got {cycle_time!r}")
    return float(cycle_time)


def _check_storage(storage: Any) -> Storage:
    if not callable(getattr(storage, "store", None)):
        raise ValueError(
            f"storage must be a Storage such as FileStorage(...) or DummyStorage(), got {storage!r}"
        )
    return storage


def _check_probe(probe: Any) -> Probe:
    if not callable(getattr(probe, "sample", None)):
        raise ValueError(f"probes must be Probe objects such as ResourceProbe(), got {probe!r}")
    return probe


class Multimeter:
    """Measures run-time properties of Python code.

    >>> from multimeter import Multimeter, ResourceProbe
    >>> with Multimeter(ResourceProbe()).measure() as result:
    ...     total = sum(range(1000))
    >>> len(result.points) >= 1
    True

    Args:
        *probes: The probes that measure.
        cycle_time: Seconds between two points (default one second).
        storage: Stores each result when its measurement ends; the default
            discards it.

    Raises:
        ValueError: for a cycle time that is not a finite number > 0, or for
            probes or a storage of the wrong kind.
    """

    def __init__(
        self, *probes: Probe, cycle_time: float = 1.0, storage: Storage = _DISCARD
    ) -> None:
        self._probes: list[Probe] = []
        # Tags for every measurement (set by configure() from its tags and MULTIMETER_TAGS).
        self._default_tags: dict[str, str] = {}
        self._cycle_time = check_cycle_time(cycle_time)
        self._storage = _check_storage(storage)
        self.add_probes(*probes)

    @property
    def probes(self) -> tuple[Probe, ...]:
        """The probes that gather the data."""
        return tuple(self._probes)

    @property
    def cycle_time(self) -> float:
        """Seconds between two points."""
        return self._cycle_time

    @property
    def storage(self) -> Storage:
        """Where results are stored."""
        return self._storage

    def add_probes(self, *probes: Probe) -> Multimeter:
        """Add probes; returns the multimeter."""
        self._probes.extend(_check_probe(p) for p in probes)
        # What every measurement of these probes shares, computed once here.
        self._current_schema = Schema.from_probes(self._probes)
        self._current_plan = ProbePlan(self._probes, self._current_schema)
        return self

    def set_cycle_time(self, cycle_time: float) -> Multimeter:
        """Set the seconds between two points; returns the multimeter."""
        self._cycle_time = check_cycle_time(cycle_time)
        return self

    def set_storage(self, storage: Storage) -> Multimeter:
        """Set where results are stored; returns the multimeter."""
        self._storage = _check_storage(storage)
        return self

    def measure(self, identifier: str | None = None, **tags: Any) -> Measurement:
        """A new measurement with this configuration; call ``start()`` or use ``with``."""
        return Measurement(self, identifier, **tags)

    def __repr__(self) -> str:
        return (
            f"Multimeter({', '.join(type(p).__name__ + '()' for p in self._probes)},"
            f" cycle_time={self._cycle_time}, storage={self._storage!r})"
        )
