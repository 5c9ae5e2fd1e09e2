"""Aggregate mode: per function and cycle, sums of the calls instead of one result per call.

The sums are checked on records made up here (a fake clock decides what is due), on
real calls in this process, and in user programs run as real subprocesses where the
claim is about processes: an exit without ``flush()``, ``multiprocessing`` workers, fork.
"""

from __future__ import annotations

import os
import pathlib
import textwrap
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

import multimeter
from multimeter import _process
from multimeter._aggregate import SCHEMA, AggregatingStorage, storage_for_calls
from multimeter.calls import CallFunction, CallRecord, CallStorage
from multimeter.measure import Measure
from multimeter.metric import CPU_SYSTEM_RATE, CPU_USER_RATE, DURATION_BUCKETS
from multimeter.result import Result, Schema
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage
from multimeter.subject import PROCESS
from multimeter.testing import InMemoryStorage
from tests._programs import environment, run_python

TESTS = pathlib.Path(__file__).resolve().parent
CYCLE_US = 1_000_000
#: The start of a cycle: 2026-01-01T00:00:00Z.
T0 = 1_767_225_600_000_000
FUNCTION = CallFunction("load", "app", "load", "load-")
CPU_SCHEMA = Schema(
    (CPU_USER_RATE, CPU_SYSTEM_RATE),
    (PROCESS,),
    (Measure(PROCESS, CPU_USER_RATE), Measure(PROCESS, CPU_SYSTEM_RATE)),
)
META = {"host": "here", "pid": "1", "function": "load", "module": "app", "qualname": "load"}
BUCKETS = [m.key for m in SCHEMA.measures if "duration_le_" in m.key]


class Clock:
    """Wall time in microseconds, moved by the test."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def record(
    ended_us: int,
    duration_us: int = 10,
    *,
    error: bool = False,
    tags: dict[str, str] | None = None,
    rates: tuple[float | None, float | None] = (0.5, 0.25),
    schema: Schema = CPU_SCHEMA,
) -> CallRecord:
    """A finished call of ``load`` with one point of CPU rates at its end."""
    return CallRecord(
        FUNCTION,
        schema,
        "1-token",
        1,
        0,
        ended_us - duration_us,
        ended_us,
        tags if tags is not None else {},
        ("builtins", "KeyError") if error else None,
        None,
        ((ended_us, list(rates)[: len(schema.measures)]),),
        META,
    )


def aggregating(now_us: int = T0) -> tuple[AggregatingStorage, InMemoryStorage, Clock]:
    """An aggregating storage with a one-second cycle, in memory, on a fake clock."""
    inner = InMemoryStorage()
    clock = Clock(now_us)
    return AggregatingStorage(inner, 1.0, clock=clock), inner, clock


def points(results: Sequence[Result]) -> list[tuple[int, dict[str, Any]]]:
    """(timestamp in microseconds since the epoch, values) of every point, in time order."""
    return sorted(
        ((round(p.datetime.timestamp() * 1e6), dict(p.values)) for r in results for p in r.points),
        key=lambda item: item[0],
    )


# --- the sums ----------------------------------------------------------------------------


def test_each_point_counts_the_calls_that_ended_in_its_cycle_stamped_at_the_cycles_end():
    """Calls ending in three cycles: three points, at the three cycle ends, counts per cycle."""
    storage, inner, _ = aggregating()
    storage.store_calls([record(T0 + 10), record(T0 + 999_999)])
    storage.store_calls([record(T0 + CYCLE_US), record(T0 + 2 * CYCLE_US + 5)] * 2)
    storage.flush_buffers()
    assert [
        (T0 + CYCLE_US, 2),
        (T0 + 2 * CYCLE_US, 2),
        (T0 + 3 * CYCLE_US, 2),
    ] == [(t, values["calls.count"]) for t, values in points(inner.results)]


def test_errors_duration_sum_and_longest_call():
    """``errors`` counts the calls that raised; durations are summed and maxed, in seconds."""
    storage, inner, _ = aggregating()
    storage.store_calls(
        [record(T0 + 100, 20), record(T0 + 200, 50, error=True), record(T0 + 300, 30)]
    )
    storage.flush_buffers()
    [(_, values)] = points(inner.results)
    assert (3, 1) == (values["calls.count"], values["calls.errors"])
    assert pytest.approx(100e-6) == values["calls.duration"]
    assert pytest.approx(50e-6) == values["calls.duration_max"]


@pytest.mark.parametrize(
    ("duration_us", "first_bucket"),
    [
        (0, "calls.duration_le_1us"),
        (1, "calls.duration_le_1us"),
        (2, "calls.duration_le_10us"),
        (10_000, "calls.duration_le_10ms"),
        (10_001, "calls.duration_le_100ms"),
        (10_000_000, "calls.duration_le_10s"),
        (10_000_001, "calls.duration_le_inf"),
    ],
)
def test_a_call_counts_in_the_first_bucket_at_least_its_duration_and_in_every_one_above(
    duration_us, first_bucket
):
    """The histogram is cumulative, as Prometheus buckets: ``le`` means at most."""
    storage, inner, _ = aggregating()
    storage.store_calls([record(T0 + 20_000_000, duration_us)])
    storage.flush_buffers()
    [(_, values)] = points(inner.results)
    first = BUCKETS.index(first_bucket)
    assert [0] * first + [1] * (len(BUCKETS) - first) == [values[key] for key in BUCKETS]


def test_the_buckets_are_one_per_decade_from_a_microsecond_to_ten_seconds_and_one_for_any():
    """The bucket bounds, in seconds, and their keys."""
    assert [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, float("inf")] == [
        bound for bound, _ in DURATION_BUCKETS
    ]
    assert "calls.duration_le_1ms" in BUCKETS
    assert "calls.duration_le_inf" == BUCKETS[-1]


def test_cpu_seconds_are_each_calls_rates_times_its_duration_summed():
    """``cpu_user_time``: the process's user CPU rate over each call times the call's duration."""
    storage, inner, _ = aggregating()
    storage.store_calls(
        [record(T0 + 100, 100, rates=(0.5, 0.25)), record(T0 + 500, 200, rates=(1.0, None))]
    )
    storage.flush_buffers()
    [(_, values)] = points(inner.results)
    assert pytest.approx(0.5 * 100e-6 + 1.0 * 200e-6) == values["calls.cpu_user_time"]
    assert pytest.approx(0.25 * 100e-6) == values["calls.cpu_system_time"]


def test_without_the_cpu_measures_the_cpu_sums_are_absent():
    """A call schema without ``process.cpu_user``/``cpu_system`` leaves those values out."""
    storage, inner, _ = aggregating()
    storage.store_calls([record(T0 + 100, schema=Schema())])
    storage.flush_buffers()
    [(_, values)] = points(inner.results)
    assert "calls.cpu_user_time" not in values
    assert "calls.cpu_system_time" not in values
    assert 1 == values["calls.count"]


def test_each_tag_set_of_a_function_is_a_result_of_its_own():
    """Tags (argument tags too) are kept: one result per function and tag set."""
    storage, inner, _ = aggregating()
    storage.store_calls(
        [record(T0 + 1, tags={"kind": "a"}), record(T0 + 2, tags={"kind": "b"})] * 3
    )
    storage.flush_buffers()
    counts = {r.tags["kind"]: r.points[0].values["calls.count"] for r in inner.results}
    assert {"a": 3, "b": 3} == counts


def test_an_aggregate_result_has_a_calls_meta_data_and_says_it_is_an_aggregate():
    """Identifier ``<name>-aggregate-<token>-<n>``; the call's meta data, ``calls=aggregate``."""
    storage, inner, _ = aggregating()
    storage.store_calls([record(T0 + 1_500_000)])
    storage.flush_buffers()
    [result] = inner.results
    assert result.identifier.startswith("load-aggregate-1-token-")
    assert {**META, "calls": "aggregate", "cycle_time": "1.0"}.items() <= result.meta_data.items()
    assert T0 + CYCLE_US == round(result.start.timestamp() * 1e6)  # the first cycle's start
    assert SCHEMA == result.schema


def test_results_of_other_measurements_go_to_the_wrapped_storage_unchanged():
    """``store()`` (a ``measure()`` block, say) passes its result through."""
    storage, inner, _ = aggregating()
    result = Result(identifier="block")
    storage.store(result)
    assert [result] == inner.results


# --- when sums are stored ----------------------------------------------------------------


def test_a_cycle_is_stored_unasked_once_it_ended_more_than_the_grace_time_ago():
    """Before the cycle's end plus the grace time nothing is stored; after it, that cycle is."""
    storage, inner, clock = aggregating(now_us=T0 + 500_000)
    storage.store_calls([record(T0 + 100), record(T0 + CYCLE_US + 100)])
    clock.now_us = T0 + CYCLE_US + 200_000  # the first cycle ended 0.2 s ago
    storage.flush_buffers(due_only=True)
    assert [] == inner.results
    clock.now_us = T0 + CYCLE_US + 300_000
    storage.flush_buffers(due_only=True)
    assert [T0 + CYCLE_US] == [t for t, _ in points(inner.results)]
    storage.flush_buffers()  # a flush stores the open cycle too
    assert [T0 + CYCLE_US, T0 + 2 * CYCLE_US] == [t for t, _ in points(inner.results)]


def test_while_calls_come_a_call_ending_the_grace_time_after_a_cycle_stores_it():
    """While the writer is busy, the calls' own end times (not the clock) say what is due."""
    storage, inner, clock = aggregating()
    clock.now_us = T0 + 60 * CYCLE_US  # the writer is far behind the clock
    storage.store_calls([record(T0 + 100), record(T0 + CYCLE_US + 200_000)])
    assert [] == inner.results  # calls that ended in the first cycle may still come
    storage.store_calls([record(T0 + 300), record(T0 + CYCLE_US + 250_000)])
    assert [(T0 + CYCLE_US, 2)] == [(t, v["calls.count"]) for t, v in points(inner.results)]


def test_a_call_that_arrives_after_its_cycle_was_stored_makes_another_point_for_it():
    """Nothing is lost to lateness: the points of one timestamp sum to its calls."""
    storage, inner, _ = aggregating()
    storage.store_calls([record(T0 + 100)])
    storage.flush_buffers()
    storage.store_calls([record(T0 + 200)])
    storage.flush_buffers()
    assert [(T0 + CYCLE_US, 1), (T0 + CYCLE_US, 1)] == [
        (t, v["calls.count"]) for t, v in points(inner.results)
    ]
    assert 2 == len({r.identifier for r in inner.results})


def test_memory_grows_with_functions_tag_sets_and_open_cycles_not_with_calls():
    """10,000 calls in one cycle are one accumulator; once stored, nothing is held."""
    storage, inner, _ = aggregating()
    storage.store_calls([record(T0 + n) for n in range(10_000)])
    held = _process.current().aggregates[storage]
    assert 1 == len(held.series)
    assert 1 == sum(len(series.cycles) for series in held.series.values())
    storage.flush_buffers()
    assert {} == held.series
    assert 10_000 == points(inner.results)[0][1]["calls.count"]


# --- real calls in this process ----------------------------------------------------------


@multimeter.measured
def hot(i: int) -> int:
    if i % 10 == 0:
        raise KeyError(i)
    return i


def _call_hot(count: int) -> int:
    raised = 0
    for i in range(count):
        try:
            hot(i)
        except KeyError:
            raised += 1
    return raised


def test_ten_thousand_calls_across_three_cycles_sum_to_ten_thousand():
    """Every call is counted once and every call that raised is an error."""
    storage = InMemoryStorage()
    multimeter.configure(storage=storage, cycle_time=0.05, calls="aggregate")
    raised = 0
    for _ in range(3):
        raised += _call_hot(3_334 if raised else 3_332)
        time.sleep(0.06)  # the next calls end in a later cycle
    assert multimeter.flush(10)
    found = points(storage.results)
    assert len({t for t, _ in found}) >= 3
    assert 10_000 == sum(v["calls.count"] for _, v in found)
    assert raised == sum(v["calls.errors"] for _, v in found)
    for _, values in found:
        assert values["calls.count"] == values["calls.duration_le_inf"]
        buckets = [values[key] for key in BUCKETS]
        assert sorted(buckets) == buckets


class TeeCallStorage(CallStorage):
    """Keeps the records it gets and hands them on to an aggregating storage."""

    def __init__(self, aggregate: AggregatingStorage) -> None:
        self.aggregate = aggregate
        self.records: list[CallRecord] = []

    def store_calls(self, records: Sequence[CallRecord]) -> None:
        self.records.extend(records)
        self.aggregate.store_calls(records)

    def store(self, result: Result) -> None:
        raise AssertionError("only calls are stored here")


def test_cpu_sums_equal_the_sums_over_the_per_call_results_of_the_same_calls():
    """``calls=aggregate`` adds up what ``calls=each`` would store for the same calls."""
    inner = InMemoryStorage()
    aggregate = AggregatingStorage(inner, 0.05)
    tee = TeeCallStorage(aggregate)
    multimeter.configure(storage=tee, cycle_time=0.05)
    _call_hot(2_000)
    assert multimeter.flush(10)
    aggregate.flush_buffers()
    each = [record.to_result().summary() for record in tee.records]  # what each-mode stores
    found = [values for _, values in points(inner.results)]
    assert 2_000 == len(each) == sum(v["calls.count"] for v in found)
    for key, figure in (("calls.cpu_user_time", "cpu_user_s"), ("calls.duration", "duration_s")):
        assert pytest.approx(sum(s[figure] for s in each), rel=1e-9, abs=1e-9) == sum(
            v[key] for v in found
        )
    assert pytest.approx(sum(s["cpu_system_s"] for s in each), abs=1e-9) == sum(
        v["calls.cpu_system_time"] for v in found
    )


def test_a_flush_stores_the_open_cycle():
    """``flush()`` does not wait for the cycle to end: the calls so far are stored."""
    storage = InMemoryStorage()
    multimeter.configure(storage=storage, cycle_time=600, calls="aggregate")
    _call_hot(5)
    assert multimeter.flush(10)
    assert 5 == sum(v["calls.count"] for _, v in points(storage.results))


def test_a_quiet_program_gets_its_cycles_stored_soon_after_they_end():
    """No further calls, no flush: the idle writer stores a cycle about a grace time after it."""
    storage = InMemoryStorage()
    multimeter.configure(storage=storage, cycle_time=0.05, calls="aggregate")
    _call_hot(5)
    deadline = time.monotonic() + 10  # loose: a loaded machine
    while not storage.results and time.monotonic() < deadline:
        time.sleep(0.02)
    assert 5 == sum(v["calls.count"] for _, v in points(storage.results))


class HoldingStorage(Storage):
    """Counts how the writer asks it to store what it holds back."""

    def __init__(self) -> None:
        self.asked: list[bool] = []
        self.lock = threading.Lock()

    def store(self, result: Result) -> None:
        pass

    def flush_buffers(self, *, due_only: bool = False) -> None:
        with self.lock:
            self.asked.append(due_only)


def test_the_writer_asks_a_storage_that_holds_back_at_every_flush_and_while_idle():
    """``Storage.flush_buffers``: everything at a flush, what is due while the writer idles."""
    storage = HoldingStorage()
    multimeter.configure(storage=storage, cycle_time=0.05)
    _call_hot(3)
    deadline = time.monotonic() + 10
    while True not in storage.asked and time.monotonic() < deadline:
        time.sleep(0.02)
    assert multimeter.flush(10)
    assert True in storage.asked
    assert False is storage.asked[-1]


# --- settings ------------------------------------------------------------------------------


def test_calls_aggregate_wraps_the_configured_storage():
    """``configure(calls="aggregate")``: the storage sums calls into the given storage."""
    storage = InMemoryStorage()
    meter = multimeter.configure(storage=storage, calls="aggregate", cycle_time=2)
    assert isinstance(meter.storage, AggregatingStorage)
    assert storage is meter.storage.inner
    assert 2.0 == meter.storage.cycle_time


def test_the_environment_chooses_aggregate_mode(monkeypatch):
    """``MULTIMETER_CALLS=aggregate`` (any case) does what ``calls="aggregate"`` does."""
    monkeypatch.setenv("MULTIMETER_CALLS", "Aggregate")
    assert isinstance(multimeter.configure(storage=InMemoryStorage()).storage, AggregatingStorage)
    monkeypatch.setenv("MULTIMETER_CALLS", "each")
    multimeter.reset()  # the environment is read again by the first configure() after it
    assert isinstance(multimeter.configure(storage=InMemoryStorage()).storage, InMemoryStorage)


def test_an_invalid_calls_variable_makes_configure_raise_naming_it_and_the_choices(monkeypatch):
    """A bad value is an error at ``configure()``, never a silent default."""
    monkeypatch.setenv("MULTIMETER_CALLS", "sometimes")
    with pytest.raises(ValueError, match=r"MULTIMETER_CALLS=.sometimes.*allowed: each, aggregate"):
        multimeter.configure()


@pytest.mark.parametrize("value", ["sometimes", "AGGREGATE", 1, True])
def test_an_invalid_calls_argument_raises_naming_it_and_the_choices(value):
    """``configure(calls=...)`` takes ``"each"`` or ``"aggregate"``."""
    with pytest.raises(ValueError, match="calls must be one of each, aggregate"):
        multimeter.configure(calls=value)


def test_storage_for_calls_wraps_for_aggregate_unwraps_for_each_and_never_wraps_dummy():
    """The hook a per-function setting uses: the storage its calls go to."""
    inner = InMemoryStorage()
    wrapped = storage_for_calls(inner, "aggregate", 1.0)
    assert isinstance(wrapped, AggregatingStorage)
    assert wrapped is storage_for_calls(wrapped, "aggregate", 1.0)
    assert inner is storage_for_calls(wrapped, "each", 1.0)
    assert wrapped is storage_for_calls(wrapped, None, 1.0)
    dummy = DummyStorage()
    assert dummy is storage_for_calls(dummy, "aggregate", 1.0)


# --- processes -------------------------------------------------------------------------------


def run_program(tmp_path: pathlib.Path, code: str, **env: str) -> dict[str, int]:
    """Run ``code`` in aggregate mode, default files; the stored ``calls.count`` per pid."""
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    settings = {
        "MULTIMETER_DIR": str(tmp_path / "results"),
        "MULTIMETER_CALLS": "aggregate",
        "MULTIMETER_EXIT_TIMEOUT": "30",
        **env,
    }
    done = run_python(
        "app.py", cwd=tmp_path, env=environment(pythonpath=[TESTS], **settings), timeout=120
    )
    assert 0 == done.returncode, done.stderr
    counts: dict[str, int] = {}
    for result in multimeter.load_results(tmp_path / "results"):
        assert "aggregate" == result.meta_data["calls"], result.meta_data
        pid = result.meta_data["pid"]
        counts[pid] = counts.get(pid, 0) + sum(result.values("calls.count"))
    return counts


def test_a_program_that_exits_without_flush_has_every_call_counted(tmp_path):
    """The exit flush stores the open cycles: 10,000 calls, none lost."""
    counts = run_program(
        tmp_path,
        """
        from lifecycle_app import work_many
        work_many(10_000)
        """,
        MULTIMETER_CYCLE_TIME="0.05",
    )
    assert [10_000] == list(counts.values())


@pytest.mark.parametrize(
    ("method", "use"),
    [
        ("fork", "with context.Pool(2) as pool:  # __exit__ terminates the workers"),
        ("spawn", "with context.Pool(2) as pool:  # __exit__ terminates the workers"),
        ("spawn", "with ProcessPoolExecutor(2, mp_context=context) as pool:"),
    ],
)
def test_every_workers_calls_are_counted_by_that_worker(tmp_path, method, use):
    """``multiprocessing`` workers store their sums at their own exit, SIGTERM included."""
    counts = run_program(
        tmp_path,
        f"""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from lifecycle_app import work_many

        if __name__ == "__main__":
            context = multiprocessing.get_context({method!r})
            {use}
                list(pool.map(work_many, [100] * 30))
            work_many(7)
        """,
    )
    assert 3_007 == sum(counts.values())
    assert 7 in counts.values()  # the parent's own calls, stored by the parent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_no_sums_of_its_parent(tmp_path):
    """Calls folded before a fork are stored once, by the parent; the child stores its own."""
    counts = run_program(
        tmp_path,
        """
        import os
        from lifecycle_app import work_many

        work_many(5)  # folded, not stored: the cycle is an hour long
        pid = os.fork()
        if pid == 0:
            work_many(3)
            import multimeter
            multimeter.flush(30)
            os._exit(0)
        os.waitpid(pid, 0)
        """,
        MULTIMETER_CYCLE_TIME="3600",
    )
    assert [3, 5] == sorted(counts.values())
