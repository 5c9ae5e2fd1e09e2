"""Measured code for the process-lifecycle tests (``tests/test_lifecycle.py``).

The programs those tests run import this module by its plain name (``lifecycle_app``,
with ``tests/`` on ``PYTHONPATH``), so that child processes made with any start method
(fork, spawn, forkserver) find the measured function and method by reference.
"""

from __future__ import annotations

import os

import multimeter


@multimeter.measured
def work(i: int) -> int:
    """One measured call; returns the pid of the process that made it."""
    return os.getpid()


def work_many(count: int) -> list[int]:
    """Make ``count`` measured calls (e.g. as a ``multiprocessing.Process`` target); their pids."""
    return [work(i) for i in range(count)]


class Scaler:
    """A module-level class with a measured method: picklable, like its instances."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    @multimeter.measured
    def scale(self, value: int) -> int:
        """``value`` times the factor."""
        return self.factor * value


class Kinds:
    """Measured methods of every kind, to be got from the class itself."""

    @multimeter.measured
    def plain(self, value: int) -> int:
        """A method (got from the class it is a function)."""
        return value

    @multimeter.measured
    @classmethod
    def klass(cls, value: int) -> int:
        """A classmethod."""
        return value * 2

    @multimeter.measured
    @staticmethod
    def static(value: int) -> int:
        """A staticmethod."""
        return value * 3
