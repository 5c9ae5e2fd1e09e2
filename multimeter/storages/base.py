"""The base class of storages."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from multimeter.result import Result

__all__ = ["Storage", "batches_itself", "holds_back", "keeps_for_later"]


class Storage(abc.ABC):
    """Stores the results of measurements.

    Implement :meth:`store`; override :meth:`close` when the storage holds
    resources. A storage is a context manager that closes itself.

    Three optional capabilities are used by the background writer of
    ``@measured`` when a subclass overrides them: :meth:`store_many` (store a
    batch in one go, e.g. one request), :meth:`spool_results` (keep results
    on disk for a later delivery, used for what is still pending at exit) and
    :meth:`flush_buffers` (store what the storage holds back, e.g. sums of
    calls not yet written). :func:`batches_itself`, :func:`keeps_for_later` and
    :func:`holds_back` tell whether a storage has them.
    """

    @abc.abstractmethod
    def store(self, result: Result) -> None:
        """Store ``result``; raise if it could not be stored."""

    def store_many(self, results: Sequence[Result]) -> None:
        """Store several results; raise if any could not be stored.

        The default stores them one by one; the writer then stores (and reports
        a failure of) each result separately.
        """
        for result in results:
            self.store(result)

    def spool_results(self, results: Sequence[Result]) -> None:
        """Keep ``results`` for a later delivery without trying to deliver them now.

        Raises:
            NotImplementedError: the default: this storage has no spool.
        """
        raise NotImplementedError(f"{type(self).__name__} has no spool")

    def flush_buffers(self, *, due_only: bool = False) -> None:  # noqa: B027 - optional hook
        """Store what this storage holds back instead of storing it at once.

        The background writer calls it on its own thread, one store at a time:
        with ``due_only=False`` when it handles a ``flush()`` (also the one flush
        at exit), after everything handed over before it; with ``due_only=True``
        whenever it has nothing else to do (about every 0.1 s): store only what
        is due by the storage's own rule. The default holds nothing back.
        Raise if something could not be stored.
        """

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


def batches_itself(storage: Any) -> bool:
    """Whether ``storage`` stores a batch in one go: its class overrides
    :meth:`Storage.store_many` (the writer then hands it a whole batch at once)."""
    method = getattr(type(storage), "store_many", None)
    return method is not None and method is not Storage.store_many


def keeps_for_later(storage: Any) -> bool:
    """Whether ``storage`` has a spool: its class overrides
    :meth:`Storage.spool_results` (what is still pending at exit is spooled)."""
    method = getattr(type(storage), "spool_results", None)
    return method is not None and method is not Storage.spool_results


def holds_back(storage: Any) -> bool:
    """Whether ``storage`` holds results back: its class overrides
    :meth:`Storage.flush_buffers` (the writer calls it at every flush and while idle)."""
    method = getattr(type(storage), "flush_buffers", None)
    return method is not None and method is not Storage.flush_buffers
