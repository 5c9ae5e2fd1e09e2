"""Rows of values that say where they differ from a row made before.

A short call's row of ``resource`` values is mostly what the call before it had:
the same gauges, the same zero rates; only its CPU rates differ. The probe makes
such a row as a copy of a cached one with a few values set
(:class:`DerivedRow`), and an encoder that has the text of the cached row at hand
turns only the values set into text (``multimeter.storages._jsonl``): most of the
cost of writing a short call is otherwise turning two dozen floats into text.
"""

from __future__ import annotations

from typing import Any


class DerivedRow(list[Any]):
    """A row equal to ``base`` except at the positions ``changed``.

    It is a list like any other row; whoever changes one in place (nothing in
    multimeter does) must make a plain ``list`` of it first.
    """

    __slots__ = ("base", "changed")

    def __init__(self, base: list[Any], changed: tuple[int, ...]) -> None:
        super().__init__(base)
        #: The row this one was copied from (kept unchanged by its maker).
        self.base = base
        #: The positions at which this row may differ from ``base``.
        self.changed = changed
