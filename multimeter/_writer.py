"""The background writer: stores finished results off the measured code's thread.

Callers hand over *jobs* and return at once: a :class:`Job` (a result to build,
and where it goes), a :class:`CallJob` (one measured call), or a short call
packed by ``multimeter._packed``. The queue is one ``collections.deque``, one
item per finished call or result: ``append`` is a single step that neither
another thread nor a signal's handler can split, so the queue needs no lock,
and items are stored in the order they were put (a call made inside another
ends, and is put, before it). One daemon thread per process builds the results
and stores them, in batches. The queue is bounded: when it is full, the caller
waits for room (backpressure), so nothing is dropped. ``flush()`` waits until
everything handed over before it was handled.

The thread survives anything a storage, a result or a log call raises; if it
dies all the same, the next caller that would wait for it starts a new one, so
no user call ever waits on a dead thread. Each process has its own writer
(see ``multimeter._process``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from multimeter import _packed
from multimeter._log import RateLimitedLog, describe, safe_log
from multimeter._reentry import OwnThread
from multimeter.calls import CallRecord, CallStorage
from multimeter.result import Result
from multimeter.storages.base import Storage, batches_itself, holds_back

CAPACITY = 10_000
_BATCH = 512
_IDLE_WAIT = 0.1
_CHECK_EVERY = 0.25  # seconds between liveness checks while a caller waits
# Seconds between looks at a full queue, doubling from the first to the last.
_ROOM_POLL_MIN = 0.0002
_ROOM_POLL_MAX = 0.005


class Job:
    """What the writer stores: a result to build, and where it goes."""

    __slots__ = ()

    storage: Any

    def build(self) -> Result:
        """Make the result (called on the writer thread)."""
        raise NotImplementedError


class CallJob(Job):
    """A job that is one measured call: a storage of calls takes its record."""

    __slots__ = ()

    def record(self) -> CallRecord:
        """The call's record (called on the writer thread)."""
        raise NotImplementedError


class ResultJob(Job):
    """A finished result to store as it is (a :class:`~multimeter.Measurement`'s)."""

    __slots__ = ("result", "storage")

    def __init__(self, result: Result, storage: Storage) -> None:
        self.result = result
        self.storage = storage

    def build(self) -> Result:
        """The result."""
        return self.result


class PackedJob(CallJob):
    """A packed call (see ``multimeter._packed``) as a job of its own, for code that
    handles what the writer has not stored (the exit flush)."""

    __slots__ = ("item", "storage", "token")

    def __init__(self, item: _packed.Packed, token: str) -> None:
        self.item = item
        self.storage = _packed.storage(item)
        self.token = token

    def record(self) -> CallRecord:
        """The call's record."""
        return _packed.record(self.item, self.token)

    def build(self) -> Result:
        """The call's result."""
        return self.record().to_result()


class _Stopped(Exception):
    """The writer was stopped (the process is ending) before a store began."""


class Latch:
    """A one-way signal that a ``KeyboardInterrupt`` cannot jam.

    ``threading.Event`` and ``Condition`` take a lock around their waiting: a
    signal's exception landing in the waiting thread between taking and giving
    back that lock leaves it taken, and the thread that sets the event then blocks
    forever. A latch is one plain lock, held until :meth:`set`: waiting is trying
    to take it, setting is giving it back, and neither holds anything on the way.
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._flag = False

    def set(self) -> None:
        """Open the latch (never blocks; again: nothing happens)."""
        self._flag = True
        with contextlib.suppress(RuntimeError):  # opened already
            self._lock.release()

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the latch is open, at most ``timeout`` seconds; whether it is."""
        if self._flag:
            return True
        if self._lock.acquire(True, -1 if timeout is None else timeout):
            self._lock.release()  # open for every other waiter too
        return self._flag


class _Marker:
    """Queued by flush(); set once every job before it was handled."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = Latch()
        self.ok = True


class Writer:
    """One background thread that builds and stores queued results.

    Args:
        capacity: Jobs the queue holds before callers wait for room.
        token: The process's token (in the identifiers of packed calls).
        on_start: Called (in the caller's thread) when the thread is first started.
        orphaned: Whether nobody can hand over jobs any more (the thread then
            ends once the queue is empty, so it keeps no process alive).
    """

    def __init__(
        self,
        capacity: int = CAPACITY,
        *,
        token: str = "",
        on_start: Callable[[], None] | None = None,
        orphaned: Callable[[], bool] | None = None,
    ) -> None:
        self._capacity = capacity
        self._token = token
        self._on_start = on_start
        self._orphaned = orphaned
        self._queue: deque[Any] = deque()
        # Held while nobody rings; released to wake the thread. Ringing never
        # blocks (a signal handler may ring while the thread it interrupted rings).
        self._bell = threading.Lock()
        self._bell.acquire()
        # Reentrant: a SIGTERM handler that flushes may interrupt a start in progress.
        self._start_lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._starting = False  # this thread is in thread.start() (see _start)
        self._started = False
        self._failed = False  # a store failed since the last marker
        # Held while a store runs; stop() takes it for good (the process is ending).
        self._storing = threading.Lock()
        self._stopping = False
        self._stop_holds_lock = False
        # The jobs of the batch being handled; the first `_handled` of them are done.
        self._in_hand: list[Any] = []
        self._handled = 0
        # Counts stop()s: a batch taken before a stop is not stored after it, even if
        # the writer resumes (what was in hand then may have been spooled and forgotten).
        self._stops = 0
        self._batch_stops = 0
        # Storages given jobs that hold results back (see Storage.flush_buffers), by id;
        # forgotten once a flush has had them store everything.
        self._holding: dict[int, Any] = {}
        self.failures = RateLimitedLog("storing the result failed")

    def put(self, job: Job | _packed.Packed) -> None:
        """Queue ``job`` (a :class:`Job` or a packed call); waits for room while the
        queue is full (backpressure)."""
        queue = self._queue
        if len(queue) >= self._capacity:
            self._wait_for_room()
        queue.append(job)
        if self._thread is None:
            self._start()
        elif len(queue) >= _BATCH:
            self._ring()

    def pending(self) -> int:
        """How many jobs are not stored yet (queued or being stored)."""
        return len(self.unstored())

    def unstored(self) -> list[Job]:
        """The jobs not stored yet: the rest of the batch in hand, then the queue."""
        return [
            PackedJob(item, self._token) if type(item) is tuple else item
            for item in self._in_hand[self._handled :] + list(self._queue)
            if not isinstance(item, _Marker)
        ]

    @property
    def started(self) -> bool:
        """Whether the thread was ever started in this process."""
        return self._started

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job queued so far is handled; ``True`` if all were stored, in time."""
        done, ok = self.flush_status(timeout)
        return done and ok

    def flush_status(self, timeout: float | None) -> tuple[bool, bool]:
        """(everything handled in time, and stored without error)."""
        if self._stopping:  # the process is ending: nothing more will be stored
            return not self.unstored(), False
        marker = _Marker()
        self._queue.append(marker)
        self._ring()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._ensure_alive()
            wait = _CHECK_EVERY
            if deadline is not None:
                wait = max(min(wait, deadline - time.monotonic()), 0.0)
            if marker.done.wait(wait):
                return True, marker.ok
            if deadline is not None and time.monotonic() >= deadline:
                return False, False

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called (the process is ending)."""
        return self._stopping

    def stop(self, timeout: float) -> bool:
        """Start no store from now on, and wait at most ``timeout`` seconds for the
        one in progress to end (the process is ending: a store cut off by the
        interpreter's exit would leave its temporary file behind). Returns whether
        no store is running any more; what was not stored stays in :meth:`unstored`.
        """
        if not self._stopping:
            self._stopping = True
            self._stops += 1
            self._stop_holds_lock = self._storing.acquire(True, timeout)
        return self._stop_holds_lock

    def forget(self, jobs: Sequence[Any]) -> None:
        """Drop ``jobs`` (kept elsewhere now, e.g. in a spool) from a stopped writer, so
        that they are not stored twice should it resume."""
        gone = {id(job.item) if isinstance(job, PackedJob) else id(job) for job in jobs}
        kept = [item for item in list(self._queue) if id(item) not in gone]
        self._queue.clear()
        self._queue.extend(kept)
        rest = [job for job in self._in_hand[self._handled :] if id(job) not in gone]
        self._in_hand, self._handled = rest, 0

    def resume(self) -> None:
        """Undo :meth:`stop` (the process did not end after all)."""
        if self._stopping:
            self._stopping = False
            if self._stop_holds_lock:
                self._stop_holds_lock = False
                self._storing.release()
            self._ring()

    def _ring(self) -> None:
        """Wake the thread; never blocks."""
        # Rung already (the usual case in a sustained loop, which rings at every put):
        # nothing to do, and no RuntimeError to raise and catch (about 1.3 us).
        if self._bell.locked():
            with contextlib.suppress(RuntimeError):  # rung in the meantime
                self._bell.release()

    def _wait_for_room(self) -> None:
        # The writer itself never waits: only it makes room. Calls end on its thread
        # when the garbage collector, running there, closes a measured generator that
        # a program left unfinished (jinja2 does; its instrumented suite hung here).
        if threading.current_thread() is self._thread:
            return
        # Polling, not a Condition: a Ctrl-C landing here must leave no lock taken
        # that the writer needs (see Latch).
        delay = _ROOM_POLL_MIN
        while len(self._queue) >= self._capacity:
            self._ring()
            self._ensure_alive()
            time.sleep(delay)
            delay = min(delay * 2, _ROOM_POLL_MAX)

    def _ensure_alive(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            thread = self._thread
            if self._starting or (thread is not None and thread.is_alive()):
                return  # alive, or being started by this thread (a signal's handler)
            # A signal's handler may run in this thread anywhere from here on (its
            # measured calls and flushes come here again): once the flag is up it
            # starts nothing; before, it may have started the thread itself, so look
            # again after raising the flag. Never two writers.
            self._starting = True
            try:
                thread = self._thread
                if thread is not None and thread.is_alive():
                    return
                first = not self._started
                self._started = True
                thread = OwnThread(self._run, "multimeter-writer")
                self._thread = thread
                thread.start()
            finally:
                self._starting = False
        if first and self._on_start is not None:
            try:
                self._on_start()
            except Exception as error:  # noqa: BLE001 - must not break the measured call
                safe_log("warning", "multimeter could not set up its exit hooks", error=repr(error))

    def _run(self) -> None:
        orphaned = self._orphaned
        while True:
            try:
                self._run_once()
            except BaseException as error:  # noqa: BLE001 - the writer survives anything
                safe_log("error", "multimeter writer error; it goes on", error=repr(error))
            if orphaned is not None and not self._queue and orphaned():
                with contextlib.suppress(_Stopped):
                    self._release(due_only=False)  # the thread ends: store what is held back
                return

    def _run_once(self) -> None:
        queue = self._queue
        self._bell.acquire(True, _IDLE_WAIT)
        while True:
            # Taking jobs from the queue and noting them as in hand is one step
            # under the store lock, so stop() sees every job in one place or the other.
            with self._storing:
                if self._stopping or (not queue and self._handled >= len(self._in_hand)):
                    break
                # Jobs left in hand by a stop() that the process outlived come first.
                batch: list[Any] = self._in_hand[self._handled :]
                while queue and len(batch) < _BATCH:
                    batch.append(queue.popleft())
                self._handled = 0
                self._in_hand = [item for item in batch if not isinstance(item, _Marker)]
                self._batch_stops = self._stops
            self._handle(batch)
        if self._holding and not self._stopping:
            with contextlib.suppress(_Stopped):
                self._release(due_only=True)

    def _handle(self, batch: list[Any]) -> None:
        group: list[Any] = []
        try:
            for item in batch:
                if isinstance(item, _Marker):
                    self._store(group)
                    group = []
                    self._release(due_only=False)
                    item.ok = not self._failed
                    self._failed = False
                    item.done.set()
                elif group and _storage(item) is not _storage(group[0]):
                    self._store(group)
                    group = [item]
                else:
                    group.append(item)
            self._store(group)
        except _Stopped:
            pass  # the rest of the batch stays in hand (see unstored() and _run_once())
        finally:
            # Whatever happened, no flush() waits for a marker of this batch forever.
            for item in batch:
                if isinstance(item, _Marker) and not item.done.is_set():
                    item.ok = False
                    item.done.set()

    def _store(self, jobs: list[Any]) -> None:
        """Store jobs that share a storage: in one call where it takes batches."""
        if not jobs:
            return
        storage = _storage(jobs[0])
        if id(storage) not in self._holding and holds_back(storage):
            self._holding[id(storage)] = storage
        if isinstance(storage, CallStorage):
            self._store_calls(storage, jobs)
            return
        if batches_itself(storage):
            results = [r for r in map(self.build, jobs) if r is not None]
            if results and not self._attempt(storage, results, lambda: storage.store_many(results)):
                raise _Stopped  # the jobs stay unstored, in hand
            self._handled += len(jobs)
            return
        for job in jobs:
            self._store_one(storage, job)

    def _store_one(self, storage: Any, job: Any) -> None:
        """Store one job's result on its own."""
        result = self.build(job)
        if result is not None and not self._attempt(
            storage, [result], lambda: storage.store(result)
        ):
            raise _Stopped  # the job stays unstored, in hand
        self._handled += 1

    def _store_calls(self, storage: CallStorage, jobs: list[Any]) -> None:
        """Store jobs for a storage of calls: the records of each run of calls in one
        batch, a result that is no call (a measurement's) on its own, in their order."""
        calls: list[Any] = []
        for job in jobs:
            if isinstance(job, Job) and not isinstance(job, CallJob):
                self._store_records(storage, calls)
                calls = []
                self._store_one(storage, job)
            else:
                calls.append(job)
        self._store_records(storage, calls)

    def _store_records(self, storage: CallStorage, calls: list[Any]) -> None:
        """Store the records of ``calls`` (jobs or packed calls) in one batch."""
        records = [r for r in map(self.record, calls) if r is not None]
        if records and not self._attempt(storage, records, lambda: storage.store_calls(records)):
            raise _Stopped  # the calls stay unstored, in hand
        self._handled += len(calls)

    def _release(self, *, due_only: bool) -> None:
        """Have the storages that hold results back store them: all, or what is due."""
        for storage in list(self._holding.values()):
            if not self._attempt(
                storage,
                (),
                lambda: storage.flush_buffers(due_only=due_only),  # noqa: B023 - called at once
            ):
                raise _Stopped
        if not due_only:
            self._holding.clear()

    def _attempt(self, storage: Any, results: Sequence[Any], store: Any) -> bool:
        """Run ``store``; ``False`` (nothing done) once the writer is stopped."""
        with self._storing:
            if self._stopping or self._stops != self._batch_stops:
                return False  # stopped, or stopped and resumed since the batch was taken
            try:
                store()
            except BaseException as error:  # noqa: BLE001 - never let a storage stop the writer
                self._store_failed(storage, results, error)
        return True

    def _store_failed(self, storage: Any, results: Sequence[Any], error: BaseException) -> None:
        self._failed = True
        self.failures.error(
            (id(storage), type(error)),
            identifier=", ".join(r.identifier for r in results[:5]),
            count=len(results),
            storage=describe(storage),
            error=_error_text(error),
        )

    def record(self, job: CallJob | _packed.Packed) -> CallRecord | None:
        """The record of a call (a job or a packed call), or ``None`` when making it
        failed (that is logged)."""
        try:
            if type(job) is tuple:
                return _packed.record(job, self._token)
            return job.record()  # type: ignore[union-attr]
        except BaseException as error:  # noqa: BLE001 - never let a job stop the writer
            self._build_failed(job, error)
            return None

    def build(self, job: Job | _packed.Packed) -> Result | None:
        """``job``'s result, or ``None`` when building it failed (that is logged)."""
        try:
            if type(job) is tuple:
                return PackedJob(job, self._token).build()
            return job.build()  # type: ignore[union-attr]
        except BaseException as error:  # noqa: BLE001 - never let a job stop the writer
            self._build_failed(job, error)
            return None

    def _build_failed(self, job: Any, error: BaseException) -> None:
        self._failed = True
        safe_log(
            "error",
            "building a result failed",
            storage=describe(_storage(job)),
            error=_error_text(error),
        )


def _storage(item: Any) -> Any:
    """Where a queued item goes."""
    return _packed.storage(item) if type(item) is tuple else item.storage


#: The longest error text logged (a UnicodeEncodeError's repr holds the whole text).
_MAX_ERROR_TEXT = 500


def _error_text(error: BaseException) -> str:
    try:
        text = repr(error)
    except Exception:  # noqa: BLE001 - an exception whose repr raises
        return type(error).__name__
    if len(text) > _MAX_ERROR_TEXT:
        return f"{text[: _MAX_ERROR_TEXT - 20]}... ({len(text)} characters)"
    return text
