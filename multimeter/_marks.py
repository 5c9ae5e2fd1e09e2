"""The enter and exit marks of measured calls, and where they go.

A finished call hands its marks to one *sink*, as one entry::

    (started_us, enter_label, ended_us, exit_label, inner)

where ``inner`` holds the entries of the calls made inside it (or ``None``).
The sink is the enclosing call's list of inner entries, where that call keeps
them (its storage stores results, with the marks of the calls made in it);
else the process's :class:`MarkSink`, where one is open (``multimeter run``'s
timeline, the test the pytest plugin measures), whichever thread the call ran
in. ``list.append`` is one step that neither another thread nor a signal's
handler can split: a sink needs no lock.
"""

from __future__ import annotations

from typing import Any

#: One call's marks: (started us, enter label, ended us, exit label, inner entries).
Entry = tuple[int, str, int, str, Any]


class MarkSink:
    """The process's sink for the marks of calls no enclosing call keeps.

    Args:
        limit: The most calls kept (their inner calls come with them); the marks
            of calls beyond it are counted in :attr:`left_out`.
        outer: A sink open before this one (``multimeter run`` around a pytest
            run): it gets every entry too.
    """

    __slots__ = ("entries", "left_out", "limit", "outer")

    def __init__(self, limit: int | None = None, outer: MarkSink | None = None) -> None:
        self.entries: list[Entry] = []
        self.limit = limit
        self.outer = outer
        #: Marks not kept (beyond the limit).
        self.left_out = 0

    def append(self, entry: Entry) -> None:
        """Keep one call's marks (never raises)."""
        entries = self.entries
        if self.limit is None or len(entries) < self.limit:
            entries.append(entry)
        else:
            self.left_out += _count(entry)
        if self.outer is not None:
            self.outer.append(entry)

    def marks(self) -> list[tuple[int, str]]:
        """The marks kept, as (microseconds since the epoch, label), in time order."""
        return in_time_order(list(self.entries))


def in_time_order(entries: list[Entry]) -> list[tuple[int, str]]:
    """The marks of ``entries`` and of the calls made in them, in time order."""
    marks: list[tuple[int, str]] = []
    _flatten(entries, marks)
    marks.sort(key=_timestamp)
    return marks


def flatten(entries: list[Entry]) -> list[tuple[int, str]]:
    """The marks of ``entries`` and of the calls made in them, each call's enter
    mark, its inner calls' marks, then its exit mark."""
    marks: list[tuple[int, str]] = []
    _flatten(entries, marks)
    return marks


def _flatten(entries: list[Entry], marks: list[tuple[int, str]]) -> None:
    for started_us, enter, ended_us, label, inner in entries:
        marks.append((started_us, enter))
        if inner:
            _flatten(inner, marks)
        marks.append((ended_us, label))


def _count(entry: Entry) -> int:
    inner = entry[4]
    return 2 + (sum(_count(e) for e in inner) if inner else 0)


def _timestamp(mark: tuple[int, str]) -> int:
    return mark[0]
