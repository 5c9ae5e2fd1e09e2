"""Finished ``@measured`` calls as compact records, and storages that take them.

A short measured call is about 300 bytes of information: one point of a few
dozen numbers, its start and end, its outcome and tags. Turned into a
:class:`~multimeter.result.Result` with its own meta data and schema it is
twenty times that. A storage that stores many calls (a batch file, say)
subclasses :class:`CallStorage`: the background writer then hands it
:class:`CallRecord` objects instead of built results, and it writes what the
calls share (schema, process meta data, function names) once.

The marks of a record are implicit: ``<name>:enter`` at ``started_us`` and
``<name>:exit`` (or ``<name>:raise <Exception>``) at ``ended_us``. A call made
inside another measured call of the same process names it in ``parent``; a
reader gives the enclosing call the enter/exit marks of the calls made inside
it (see :func:`nested_marks`), as the result of a call stored on its own has them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from multimeter.result import Result, ResultBuilder, Schema, us_to_datetime
from multimeter.storages.base import Storage

__all__ = ["CallFunction", "CallRecord", "CallStorage", "nested_marks"]


class CallFunction(NamedTuple):
    """What every call of one measured function shares (one object per function)."""

    #: The measurement's name (``Loader.load``, or the ``name`` given to ``@measured``).
    name: str
    #: The module the function is defined in.
    module: str
    #: The function's qualified name.
    qualname: str
    #: The start of the calls' identifiers: ``name`` made safe for file names, and ``-``.
    prefix: str


class CallRecord(NamedTuple):
    """One finished measured call, as a :class:`CallStorage` receives it."""

    function: CallFunction
    #: The schema of the rows in ``points``.
    schema: Schema
    #: The process's random token (new in every process, forked ones too).
    token: str
    #: The call's number in its process (unique per token).
    number: int
    #: The call's lane: a small number, free for another call of the same function
    #: once this one ended (series stay few when InfluxDB writes it as a tag).
    lane: int
    #: When the call started and ended, in microseconds since the epoch.
    started_us: int
    ended_us: int
    #: The call's tags: global, the function's and those taken from arguments.
    tags: Mapping[str, str]
    #: ``None`` for a call that returned, else the exception's type as
    #: (module, qualified name).
    exception: tuple[str, str] | None
    #: The ``number`` of the measured call this one was made in, if any.
    parent: int | None
    #: (timestamp in microseconds, values in ``schema.measures`` order; ``None``
    #: where a value is missing), one per point: one for a short call.
    points: Sequence[tuple[int, Sequence[Any]]]
    #: Meta data of the process and the function (shared by the records of a
    #: process: do not change it). ``started``, ``lane`` and ``outcome`` are not in it.
    meta: Mapping[str, str]

    @property
    def identifier(self) -> str:
        """``<prefix><token>-<number>``, as the result of the call is identified."""
        return f"{self.function.prefix}{self.token}-{self.number}"

    @property
    def exit_label(self) -> str:
        """The label of the call's last mark: ``<name>:exit`` or ``<name>:raise <Type>``."""
        if self.exception is None:
            return f"{self.function.name}:exit"
        return f"{self.function.name}:raise {self.exception[1].rsplit('.', 1)[-1]}"

    def to_result(self, marks: Iterable[tuple[int, str]] = ()) -> Result:
        """The call as a :class:`~multimeter.result.Result`, equal to the one the
        writer builds for storages that store results; ``marks`` (timestamp in
        microseconds, label) are those of calls made inside it."""
        meta = dict(self.meta)
        meta["started"] = us_to_datetime(self.started_us).isoformat()
        meta["lane"] = str(self.lane)
        if self.exception is None:
            meta["outcome"] = "ok"
        else:
            meta["outcome"] = "raise"
            meta["exception_module"], meta["exception_type"] = self.exception
        name = self.function.name
        all_marks = [(self.started_us, f"{name}:enter"), *marks, (self.ended_us, self.exit_label)]
        all_marks.sort(key=lambda mark: mark[0])
        return ResultBuilder.from_rows(
            self.identifier, self.schema, dict(self.tags), meta, self.points, all_marks
        )


def nested_marks(record: CallRecord) -> list[tuple[int, str]]:
    """The marks a call adds to each call it was made in: its enter and exit."""
    enter = (record.started_us, f"{record.function.name}:enter")
    return [enter, (record.ended_us, record.exit_label)]


class CallStorage(Storage):
    """A storage that takes measured calls as :class:`CallRecord` objects.

    The background writer of ``@measured`` calls :meth:`store_calls` with the
    calls it has in hand, in the order they ended; results of other
    measurements still come through :meth:`store`.
    """

    @abc.abstractmethod
    def store_calls(self, records: Sequence[CallRecord]) -> None:
        """Store ``records``; raise if they could not be stored."""
