"""The background writer: stores finished results off the measured code's thread.

Callers hand over *jobs* (anything with ``build() -> Result`` and a
``storage``) and return at once. One daemon thread per process builds the
results and stores them, in batches, in the order they came. The queue is
bounded: when it is full, the caller waits for room (backpressure), so nothing
is ever dropped. ``flush()`` waits until everything handed over before it was
stored. After ``os.fork()`` the child starts with an empty queue: the parent
stores what it had queued.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Protocol

from multimeter._log import logger
from multimeter.result import Result

CAPACITY = 10_000
_BATCH = 512
_IDLE_WAIT = 0.1


class Job(Protocol):
    """What the writer stores: a result to build, and where it goes."""

    storage: Any

    def build(self) -> Result:
        """Make the result (called on the writer thread)."""


class _Marker:
    """Queued by flush(); set once every job before it was handled."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class Writer:
    """One background thread that builds and stores queued results."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._reset()

    def _reset(self) -> None:
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failed = False  # a store failed since the last marker
        # The jobs of the batch being handled; the first `_handled` of them are done.
        self._in_hand: list[Any] = []
        self._handled = 0

    def put(self, job: Job) -> None:
        """Queue ``job``; waits for room while the queue is full (backpressure)."""
        queue = self._queue
        if len(queue) >= self._capacity:
            self._wait_for_room()
        queue.append(job)
        if self._thread is None:
            self._start()
        elif len(queue) >= _BATCH:
            self._wake.set()

    def pending(self) -> int:
        """How many jobs are not stored yet (queued or being stored)."""
        return len(self.unstored())

    def unstored(self) -> list[Any]:
        """The jobs not stored yet: the rest of the batch in hand, then the queue."""
        in_hand = self._in_hand[self._handled :]
        return in_hand + [item for item in list(self._queue) if not isinstance(item, _Marker)]

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job queued so far is stored; ``True`` if all were, in time."""
        done, ok = self._flush(timeout)
        return done and ok

    def _flush(self, timeout: float | None) -> tuple[bool, bool]:
        """(everything handled in time, and stored without error)."""
        marker = _Marker()
        self._queue.append(marker)
        if self._thread is None:
            self._start()
        self._wake.set()
        done = marker.done.wait(timeout)
        return done, marker.ok

    def _wait_for_room(self) -> None:
        self._wake.set()
        with self._room:
            while len(self._queue) >= self._capacity:
                self._room.wait(0.05)
                self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="multimeter-writer", daemon=True)
                self._thread = thread
                thread.start()

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(_IDLE_WAIT)
            self._wake.clear()
            while queue:
                batch: list[Any] = []
                while queue and len(batch) < _BATCH:
                    batch.append(queue.popleft())
                with self._room:
                    self._room.notify_all()
                self._handle(batch)

    def _handle(self, batch: list[Any]) -> None:
        self._handled = 0
        self._in_hand = [item for item in batch if not isinstance(item, _Marker)]
        group: list[Any] = []
        for item in batch:
            if isinstance(item, _Marker):
                self._store(group)
                group = []
                item.ok = not self._failed
                self._failed = False
                item.done.set()
            elif group and item.storage is not group[0].storage:
                self._store(group)
                group = [item]
            else:
                group.append(item)
        self._store(group)

    def _store(self, jobs: list[Any]) -> None:
        """Store jobs that share a storage: in one call where it takes batches."""
        if not jobs:
            return
        storage = jobs[0].storage
        store_many = getattr(storage, "store_many", None)
        if store_many is not None:
            results = [r for r in map(self._build, jobs) if r is not None]
            self._attempt(storage, results, lambda: store_many(results))
            self._handled += len(jobs)
            return
        for job in jobs:
            result = self._build(job)
            if result is not None:
                self._attempt(storage, [result], lambda: storage.store(result))  # noqa: B023 - called at once
            self._handled += 1

    def _attempt(self, storage: Any, results: list[Result], store: Any) -> None:
        try:
            store()
        except Exception as error:  # noqa: BLE001 - never let a storage stop the writer
            self._failed = True
            logger.error(
                "storing the result failed",
                identifier=", ".join(r.identifier for r in results[:5]),
                count=len(results),
                storage=repr(storage),
                error=repr(error),
            )

    def _build(self, job: Any) -> Result | None:
        try:
            result: Result = job.build()
            return result
        except Exception as error:  # noqa: BLE001
            self._failed = True
            logger.error("building a result failed", storage=repr(job.storage), error=repr(error))
            return None

    def _after_fork_in_child(self) -> None:
        self._reset()


_writer = Writer()  # cheap: its thread starts with the first result


def writer() -> Writer:
    """The process-wide writer."""
    return _writer


def flush(timeout: float | None = None) -> bool:
    """Flush the process-wide writer."""
    return _writer.flush(timeout)


def flush_at_exit(timeout: float) -> None:
    """Store what is pending, waiting at most ``timeout`` seconds.

    What is still pending then goes to the spool of storages that have one
    (``spool_results()``, e.g. InfluxDBStorage: ``multimeter push`` sends it
    later; the batch being sent at that moment is spooled too, so it may arrive
    twice); what cannot be kept anywhere is logged with its count.
    """
    current = _writer
    if current._thread is None:
        return
    started = time.monotonic()
    done, _ = current._flush(timeout)
    if done:
        return
    jobs = current.unstored()
    lost = 0
    by_storage: dict[int, tuple[Any, list[Any]]] = {}
    for job in jobs:
        by_storage.setdefault(id(job.storage), (job.storage, []))[1].append(job)
    for storage, group in by_storage.values():
        spool_results = getattr(storage, "spool_results", None)
        if spool_results is None:
            lost += len(group)
            continue
        results = [r for r in (current._build(job) for job in group) if r is not None]
        try:
            spool_results(results)
        except Exception as error:  # noqa: BLE001 - exit must go on
            lost += len(group)
            logger.error("spooling at exit failed", storage=repr(storage), error=repr(error))
    logger.warning(
        "results still pending at exit were not stored",
        pending=len(jobs),
        spooled=len(jobs) - lost,
        lost=lost,
        waited_s=round(time.monotonic() - started, 3),
    )


def _after_fork_in_child() -> None:
    _writer._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
