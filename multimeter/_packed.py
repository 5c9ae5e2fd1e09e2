"""Short measured calls packed as numbers while they wait for the writer.

A short call measured with the ``resource`` probe alone, ended without an
exception and stored by a :class:`~multimeter.calls.CallStorage` (the default
batch files), is the commonest call there is, and a hot loop ends them faster
than the writer stores them. Kept as Python objects (the call, its two
``struct_rusage`` readings) each one waiting would hold about 800 bytes and a
dozen objects for the garbage collector to visit; packed here it is 32 numbers
in an ``array('d')`` (256 bytes, no object of its own).

The calling thread appends each such call to the open :class:`PackedCalls` of
its process (one per storage), which is queued with the writer when it is
opened: the writer closes it when it takes it from the queue, and makes the
call records (:meth:`PackedCalls.records`). Every other job queued with the
writer closes the open batch for good (:func:`close`), so the writer still sees
calls in the order they ended: a call made inside another is stored before it,
as the readers of batch files expect.
"""

from __future__ import annotations

import array
import struct
import time
from typing import Any

from multimeter import _measured, _process
from multimeter._reentry import BUSY
from multimeter.calls import CallRecord

#: Calls in one batch; the writer's queue counts a batch as this many jobs.
BATCH_CALLS = 256

# A packed call: setup (its index in PackedCalls.setups), number, lane, started and
# ended (microseconds since the epoch), parent (-1: none), seconds elapsed, the CPU
# user and system seconds of its start and end readings, and the readings whose other
# figures those readings share (their indexes in PackedCalls.readings).
_PACK = struct.Struct("=7d4d2d")
WIDTH = _PACK.size // 8


class PackedCalls:
    """Finished calls for one storage, packed (see the module's docstring).

    Most readings of short calls differ from the one before in their CPU times
    alone: a reading is kept as an object only where its other figures (memory,
    faults, context switches, the children's figures) changed, and each call
    names the kept ones its readings share those with.

    Thread-safe: calls are added under its lock, and :meth:`records` closes it
    under the same lock; a closed batch takes no more calls. A thread that holds
    the lock may never go on: a signal's handler that flushes (multimeter's own on
    SIGTERM) runs in the thread it interrupted, maybe in the middle of
    :meth:`add`. :meth:`records` therefore waits for the lock only briefly, then
    takes the calls packed so far without it (*forced*): the call being added
    then goes to another batch unless it was taken (see :meth:`_taken`).
    """

    __slots__ = (
        "closed",
        "data",
        "epoch",
        "forced",
        "last",
        "last_at",
        "last_others",
        "lock",
        "packing",
        "readings",
        "setup_at",
        "setups",
        "storage",
        "taken",
        "token",
    )

    def __init__(
        self,
        storage: Any,
        token: str,
        epoch: int = 0,
        packing: _process.PackingLock | None = None,
    ) -> None:
        self.storage = storage
        self.token = token
        #: The process's ``packed_epoch`` when the batch was made (see :func:`add`).
        self.epoch = epoch
        #: The lock of the process's batches (see :func:`add`), or one of its own.
        self.packing = packing if packing is not None else _process.PackingLock()
        self.lock = self.packing.lock
        self.data = array.array("d")
        #: (spec, setup) of the calls, and where each setup is in that list.
        self.setups: list[tuple[Any, Any]] = []
        self.setup_at: dict[Any, int] = {}
        #: The readings kept whole (see the class's docstring).
        self.readings: list[Any] = []
        # The reading packed last, the figures of it besides the CPU times, and
        # where the reading that shares them is kept.
        self.last: Any = (None, None)
        self.last_others: Any = None
        self.last_at = -1
        self.closed = False
        # Set by records() when it could not take the lock: then what it took.
        self.forced = False
        self.taken: int | None = None

    def add(self, call: Any, start: Any, end: Any, elapsed: float, parent: int) -> bool:
        """Pack ``call`` (a ``_Call`` just ended) with its ``resource`` readings
        ``start`` and ``end``; ``False`` when the batch is closed or full."""
        with self.lock:
            return self.add_locked(call, start, end, elapsed, parent)

    def add_locked(self, call: Any, start: Any, end: Any, elapsed: float, parent: int) -> bool:
        """:meth:`add`, its lock held by the caller."""
        if self.closed or len(self.data) >= _FULL:
            return False
        setup = call.setup
        at = self.setup_at.get(setup)
        if at is None:
            at = self.setup_at[setup] = len(self.setups)
            self.setups.append((call.spec, setup))
        start_at = self._kept(start)
        end_at = self._kept(end)
        start_self, end_self = start[0], end[0]
        data = self.data
        data.frombytes(
            _PACK.pack(
                at,
                call.number,
                call.lane,
                call.started_us,
                call.end_us,
                parent,
                elapsed,
                start_self[0],
                start_self[1],
                end_self[0],
                end_self[1],
                start_at,
                end_at,
            )
        )
        if self.forced:  # taken by records() meanwhile, without the lock
            return self._taken(len(data))
        return True

    def _taken(self, end: int) -> bool:
        """Whether the call packed up to ``end`` was among what a forced
        :meth:`records` took (it sets ``taken`` right after ``forced``)."""
        deadline = time.monotonic() + _FORCED_WAIT
        while self.taken is None and time.monotonic() < deadline:
            time.sleep(0)
        taken = self.taken
        return taken is not None and end <= taken

    def _kept(self, reading: Any) -> int:
        """Where the reading that shares ``reading``'s figures besides its CPU times
        is kept (``reading`` itself, when none does yet)."""
        last = self.last
        if reading is last:  # the end of the call before is the start of this one
            return self.last_at
        others = reading[0][2:]
        if reading[1] is not last[1] or others != self.last_others:
            self.readings.append(reading)
            self.last_at = len(self.readings) - 1
            self.last_others = others
        self.last = reading
        return self.last_at

    def __len__(self) -> int:
        return len(self.data) // WIDTH

    def records(self) -> list[CallRecord]:
        """Close the batch; the records of its calls (the writer calls this)."""
        packing = self.packing
        if self.lock.acquire(True, 0.0 if packing.stuck else _FORCED_WAIT):
            packing.stuck = False
            self.closed = True
            self.lock.release()
            values = self.data.tolist()
        else:  # held by a thread that does not go on (or not for now): see the class
            packing.stuck = True
            self.forced = True  # first: an add() that sees it waits for `taken`
            self.closed = True
            taken = len(self.data)
            self.taken = taken
            values = self.data[:taken].tolist()
        # What the calls of each setup share: (function, schema, tags, meta, probe).
        shared = [
            (spec.function, setup.schema, setup.tags, spec.shared_meta(), setup.plan.per_call[0])
            for spec, setup in self.setups
        ]
        readings = self.readings
        token = self.token
        records = []
        for at in range(0, len(values), WIDTH):
            setup_at, number, lane, started, ended, parent, elapsed, user_0, system_0 = values[
                at : at + 9
            ]
            user_1, system_1, start_at, end_at = values[at + 9 : at + WIDTH]
            function, schema, tags, meta, probe = shared[int(setup_at)]
            row = None
            if start_at == end_at and elapsed > 0:  # only the CPU times moved (most calls)
                kept = readings[int(end_at)]
                user, system = user_1 - user_0, system_1 - system_0
                if user >= 0 and system >= 0:
                    row = probe.cpu_row(kept, user, system, elapsed)
            ended = int(ended)
            if row is None:
                records.append(self._record(values, at))
                continue
            records.append(
                CallRecord(
                    function,
                    schema,
                    token,
                    int(number),
                    int(lane),
                    int(started),
                    ended,
                    tags,
                    None,
                    None if parent < 0 else int(parent),
                    ((ended, row),),
                    meta,
                )
            )
        return records

    def pending(self) -> list[PackedCall]:
        """Each call of the batch as a job of its own (for what is left at exit)."""
        return [PackedCall(self, i) for i in range(len(self))]

    def _record(self, values: list[float], at: int) -> CallRecord:
        """The record of the call packed at ``values[at:]``, the general way."""
        setup_at, number, lane, started, ended, parent, elapsed, *cpu, start_at, end_at = values[
            at : at + WIDTH
        ]
        spec, setup = self.setups[int(setup_at)]
        start, end = self.readings[int(start_at)], self.readings[int(end_at)]
        before, now = list(start[0]), list(end[0])
        before[0], before[1], now[0], now[1] = cpu
        return _measured.call_record(
            spec,
            setup,
            self.token,
            int(number),
            int(lane),
            int(started),
            int(ended),
            setup.tags,
            None,
            None if parent < 0 else int(parent),
            ((before, start[1]),),
            ((now, end[1]),),
            elapsed,
        )


_FULL = BATCH_CALLS * WIDTH
#: Seconds records() waits for a batch's lock before it takes the calls without it
#: (a flush from a signal's handler waits this long when the handler interrupted
#: a call being packed).
_FORCED_WAIT = 0.01


class PackedCall:
    """One call of a :class:`PackedCalls`, as a job of the writer (see ``Writer.unstored``)."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: PackedCalls, index: int) -> None:
        self.batch = batch
        self.index = index

    @property
    def storage(self) -> Any:
        """Where the call goes."""
        return self.batch.storage

    def record(self) -> CallRecord:
        """The call's record."""
        batch = self.batch
        return batch._record(batch.data.tolist(), self.index * WIDTH)

    def build(self) -> Any:
        """The call's result."""
        return self.record().to_result()


def add(process: _process.ProcessState, call: Any, start: Any, end: Any, elapsed: float) -> bool:
    """Hand ``call`` to the writer packed, in the open batch of its storage; ``False``
    when this thread is packing a call already (a signal's handler interrupted it
    there): the caller then queues ``call`` as a job of its own.

    The process's batches share one lock, under which a call is added and a new
    batch is queued and made the open one, so the open batch is always the one
    queued last: a call made inside another is never stored after it. The open
    batch takes no more calls once another job was queued after it (see
    :func:`close`).
    """
    parent = call.parent
    number = parent.number if parent is not None and parent.pid == call.pid else -1
    lock = process.packing.lock
    # A signal's handler may run in this thread while it holds the lock: the calls
    # it makes meanwhile are not packed (they would wait for the lock forever).
    if BUSY.packing:
        return False
    BUSY.packing = True
    try:
        with lock:
            batch = process.packed
            if (
                batch is not None
                and batch.epoch == process.packed_epoch
                and batch.storage is call.storage
                and batch.add_locked(call, start, end, elapsed, number)
            ):
                return True
        writer = process.writer
        writer.wait_for_room(BATCH_CALLS)  # not under the lock: the writer needs it
        with lock:
            epoch = process.packed_epoch
            batch = PackedCalls(call.storage, process.token, epoch, process.packing)
            batch.add_locked(call, start, end, elapsed, number)
            writer.put(batch, weight=BATCH_CALLS, wait=False)
            process.packed = batch
        return True
    finally:
        BUSY.packing = False


def close(process: _process.ProcessState) -> None:
    """A job other than a packed call was queued: calls that end from now on go to
    a batch queued after it. A batch queued before it takes no more calls, even if
    a thread makes it the open batch afterwards (its epoch is an older one)."""
    process.packed_epoch += 1  # a lost update between threads still changes it
