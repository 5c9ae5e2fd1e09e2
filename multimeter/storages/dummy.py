"""A storage that keeps nothing."""

from __future__ import annotations

from multimeter.result import Result
from multimeter.storages.base import Storage

__all__ = ["DummyStorage"]


class DummyStorage(Storage):
    """Discards every result (the default of :class:`~multimeter.Multimeter`)."""

    def store(self, result: Result) -> None:
        """Do nothing."""

    def __repr__(self) -> str:
        return "DummyStorage()"
