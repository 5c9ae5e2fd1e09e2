"""The base class of storages."""

from __future__ import annotations

import abc
from types import TracebackType

from multimeter.result import Result

__all__ = ["Storage"]


class Storage(abc.ABC):
    """Stores the results of measurements.

    Implement :meth:`store`; override :meth:`close` when the storage holds
    resources. A storage is a context manager that closes itself.
    """

    @abc.abstractmethod
    def store(self, result: Result) -> None:
        """Store ``result``; raise if it could not be stored."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release what the storage holds (connections, files)."""

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
