"""Call records: what a storage of many calls receives, and how it reads back."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

import multimeter
from multimeter.calls import CallRecord, CallStorage
from multimeter.result import Result
from multimeter.testing import InMemoryStorage


class RecordingCallStorage(CallStorage):
    """Keeps the records it is given, and any result stored the plain way."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self.results: list[Result] = []
        self._lock = threading.Lock()

    def store_calls(self, records: Sequence[CallRecord]) -> None:
        with self._lock:
            self.records.extend(records)

    def store(self, result: Result) -> None:
        self.results.append(result)


@multimeter.measured
def leaf(x: int) -> int:
    return x + 1


@multimeter.measured
def middle(x: int) -> int:
    return leaf(x) + leaf(x)


@multimeter.measured
def outer(x: int) -> int:
    if x < 0:
        raise KeyError(x)
    return middle(x) * 2


def _with_nested_marks(records: list[CallRecord]) -> dict[int, Result]:
    """What a reader does: each call gets the enter/exit marks of the calls made in it."""
    from multimeter.calls import nested_marks

    marks: dict[int, list[tuple[int, str]]] = {}
    results = {}
    for record in records:  # in the order the calls ended: inner calls first
        own = marks.pop(record.number, [])
        results[record.number] = record.to_result(own)
        if record.parent is not None:
            marks.setdefault(record.parent, []).extend([*nested_marks(record), *own])
    return results


def test_a_call_storage_receives_records_that_read_back_as_the_results_a_result_storage_gets():
    """Same calls, two storages: the records, made into results, equal the built results."""
    calls = RecordingCallStorage()
    multimeter.configure(storage=calls, cycle_time=0.01)
    assert 8 == outer(1)
    with pytest.raises(KeyError):
        outer(-1)
    assert multimeter.flush(10)
    assert [] == calls.results
    assert ["leaf", "leaf", "middle", "outer", "outer"] == [r.function.name for r in calls.records]
    leaf_record, _, middle_record, outer_record, failed = calls.records
    assert leaf_record.parent == middle_record.number
    assert middle_record.parent == outer_record.number
    assert outer_record.parent is None
    assert ("builtins", "KeyError") == failed.exception
    assert 1 == len(outer_record.points)
    assert len(outer_record.schema.measures) == len(outer_record.points[0][1])
    rebuilt = _with_nested_marks(calls.records)

    results = InMemoryStorage()
    multimeter.configure(storage=results, cycle_time=0.01)
    assert 8 == outer(1)
    with pytest.raises(KeyError):
        outer(-1)
    assert multimeter.flush(10)
    assert len(calls.records) == len(results.results)
    for record, built in zip(calls.records, results.results, strict=True):
        result = rebuilt[record.number]
        assert result.meta_data.keys() == built.meta_data.keys()
        assert result.tags == built.tags
        assert [m.label for m in result.marks] == [m.label for m in built.marks]
        assert [len(p.values) for p in result.points] == [len(p.values) for p in built.points]
    outer_labels = [m.label for m in rebuilt[outer_record.number].marks]
    assert [
        "outer:enter",
        "middle:enter",
        "leaf:enter",
        "leaf:exit",
        "leaf:enter",
        "leaf:exit",
        "middle:exit",
        "outer:exit",
    ] == outer_labels
    assert "outer:raise KeyError" == rebuilt[failed.number].marks[-1].label
    assert "raise" == rebuilt[failed.number].meta_data["outcome"]
    assert "KeyError" == rebuilt[failed.number].meta_data["exception_type"]
    assert rebuilt[outer_record.number].identifier == outer_record.identifier
