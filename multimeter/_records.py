"""A finished call's record, made on the writer thread from what the call kept.

The calling thread keeps as little as it can (see ``_measured`` and
``_packed``): its numbers, its start and end readings, or the session the
sampler promoted it to. This module turns that into a
:class:`~multimeter.calls.CallRecord`, the form every storage of calls takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from multimeter._session import FAILED, ProbePlan, Session
from multimeter._tags import clean_text
from multimeter.calls import CallRecord
from multimeter.result import Result, ResultBuilder, datetime_to_us


def call_record(
    spec: Any,
    setup: Any,
    token: str,
    number: int,
    lane: int,
    started_us: int,
    end_us: int,
    tags: dict[str, str],
    error: BaseException | None,
    parent: int | None,
    start_readings: tuple[Any, ...] | None,
    end_readings: tuple[Any, ...] | None,
    elapsed: float,
    session: Session | None = None,
) -> CallRecord:
    """A finished call's record: the points of its ``session`` where the sampler
    promoted it, else one point from its start and end readings ``elapsed``
    seconds apart (runs on the writer thread)."""
    row = None
    if session is None:
        row = single_row(setup.plan, start_readings, end_readings, elapsed)
    if row is not None:
        points: Any = ((end_us, row),)
    else:
        if session is None:  # one point, from the start to the end readings
            result = ResultBuilder(f"{spec.prefix}{token}-{number}", setup.schema, tags, {}).result
            session = Session(result, (), setup.cycle, setup.plan)
            if start_readings is not None:
                session.start_from(setup.plan.by_probe(start_readings), 0.0)
            session.record(elapsed, end_us, setup.plan.by_probe(end_readings or ()), {})
        points = _rows(session.detach())
    return CallRecord(
        spec.function,
        setup.schema,
        token,
        number,
        lane,
        started_us,
        end_us,
        tags,
        None if error is None else exception_names(error),
        parent,
        points,
        spec.shared_meta(),
    )


def exception_names(error: BaseException) -> tuple[str, str]:
    """(module, qualified name) of ``error``'s type, as clean text (a class may set
    ``__module__`` to anything, ``None`` included)."""
    kind = type(error)
    module = getattr(kind, "__module__", None)
    qualname = getattr(kind, "__qualname__", None) or kind.__name__
    return clean_text(str(module)), clean_text(str(qualname))


def single_row(
    plan: ProbePlan,
    start: tuple[Any, ...] | None,
    end: tuple[Any, ...] | None,
    elapsed: float,
) -> Sequence[Any] | None:
    """The one point of a short call, from its start and end readings, in schema
    order; ``None`` where the general path must decide."""
    if not plan.rows or start is None or end is None:
        return None
    probes = plan.per_call  # the background probes' group reads their readings at once
    if len(probes) == 1:  # the usual case, without the loop
        current, previous = end[0], start[0]
        if current is FAILED or previous is FAILED:
            return None
        try:
            row = probes[0].derive_row(current, previous, elapsed)
        except Exception:  # noqa: BLE001 - the general path logs it
            return None
    else:
        row = []
        for probe, previous, current in zip(probes, start, end, strict=True):
            if current is FAILED or previous is FAILED:
                return None
            try:
                part = probe.derive_row(current, previous, elapsed)
            except Exception:  # noqa: BLE001 - the general path logs it
                return None
            if part is None:
                return None
            row += part
    order = plan.call_order
    return row if order is None or row is None else [row[i] for i in order]


def _rows(result: Result) -> list[tuple[int, tuple[Any, ...]]]:
    """The points of ``result`` as rows in schema order (``None`` where missing)."""
    keys = [m.key for m in result.schema.measures]
    return [
        (datetime_to_us(point.datetime), tuple(point.values.get(key) for key in keys))
        for point in result.points
    ]
