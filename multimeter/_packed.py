"""A short measured call, packed while it waits for the writer.

A short call measured with one probe of CPU-time rows (``ResourceProbe``, see
``CumulativeProbe.cpu_time_rows``) alone, ended without an
exception and stored by a :class:`~multimeter.calls.CallStorage` (the default
batch files), is the commonest call there is, and a hot loop ends them faster
than the writer stores them. Kept as Python objects (the call, its two
``struct_rusage`` readings) each one waiting would hold about 800 bytes; packed
it is one item of the writer's queue (:func:`pack`)::

    (numbers: bytes, reading, setup)

``numbers`` packs the call's number, lane, start and end, the call it was made
in, its duration and the CPU times of its start and end readings (80 bytes; a
``bytes`` object is not tracked by the garbage collector). ``reading`` is a
``resource`` reading whose other figures (memory, faults, context switches, the
children's figures) are those of both readings: most short calls move the CPU
times alone, and consecutive calls share one such reading object. A call whose
other figures moved is not packed: it waits as itself (see ``_measured``).

The writer turns an item into the call's record (:func:`record`). Nothing here
is shared between calls but the reading, which is never changed: packing takes
no lock, and a signal's handler that ends calls of its own in the middle of
:func:`pack` cannot disturb it.
"""

from __future__ import annotations

import struct
from typing import Any

from multimeter._records import call_record
from multimeter.calls import CallRecord

# number, lane, started and ended (microseconds since the epoch), parent (-1: none),
# seconds elapsed, the CPU user and system seconds of the start and of the end reading.
_NUMBERS = struct.Struct("=6d4d")
_pack = _NUMBERS.pack

#: A packed call, as the writer's queue holds it.
Packed = tuple[bytes, Any, Any]


def pack(process: Any, call: Any, start: Any, end: Any, elapsed: float) -> Packed | None:
    """``call`` (a ``_Call`` just ended, with its ``resource`` readings ``start`` and
    ``end``) packed; ``None`` when figures other than its CPU times moved in it."""
    end_self = end[0]
    others = end_self[2:]
    shared = process.shared_reading  # (reading, its other figures): the last one kept
    if others == shared[1] and end[1] is shared[0][1]:
        reading = shared[0]
    else:
        reading = end
        process.shared_reading = (end, others)
    start_self = start[0]
    if start is not reading and (start[1] is not end[1] or start_self[2:] != others):
        return None
    parent = call.parent
    return (
        _pack(
            call.number,
            call.lane,
            call.started_us,
            call.end_us,
            parent.number if parent is not None and parent.process is call.process else -1,
            elapsed,
            start_self[0],
            start_self[1],
            end_self[0],
            end_self[1],
        ),
        reading,
        call.setup,
    )


def storage(item: Packed) -> Any:
    """Where the packed call goes."""
    return item[2].storage


def record(item: Packed, token: str) -> CallRecord:
    """The record of a packed call (the writer calls this)."""
    numbers, reading, setup = item
    number, lane, started, ended, parent, elapsed, user_0, system_0, user_1, system_1 = (
        _NUMBERS.unpack(numbers)
    )
    spec = setup.spec
    user, system = user_1 - user_0, system_1 - system_0
    row = None
    if elapsed > 0 and user >= 0 and system >= 0:  # the row from the shared reading
        row = setup.plan.per_call[0].cpu_row(reading, user, system, elapsed)
    if row is not None:
        return CallRecord(
            spec.function,
            setup.schema,
            token,
            int(number),
            int(lane),
            int(started),
            int(ended),
            setup.tags,
            None,
            None if parent < 0 else int(parent),
            ((int(ended), row),),
            spec.shared_meta(),
        )
    # A clock that went back, say: the general way, from the two readings.
    before, now = list(reading[0]), list(reading[0])
    before[0], before[1], now[0], now[1] = user_0, system_0, user_1, system_1
    return call_record(
        spec,
        setup,
        token,
        int(number),
        int(lane),
        int(started),
        int(ended),
        setup.tags,
        None,
        None if parent < 0 else int(parent),
        ((before, reading[1]),),
        ((now, reading[1]),),
        elapsed,
    )
