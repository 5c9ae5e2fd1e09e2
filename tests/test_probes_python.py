"""Probes of the Python interpreter: the traced heap (TracemallocProbe) and the
garbage collector (GCProbe), on real allocations and real collections."""

from __future__ import annotations

import gc
import os
import signal
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import multimeter
from multimeter import GCProbe, Multimeter, TracemallocProbe, measured
from multimeter.probes import tracemalloc as heap
from multimeter.testing import InMemoryStorage
from tests._programs import run_python

MB = 1_000_000
#: What else the process allocates (and keeps) while a test runs: pytest, the sampler.
SLACK = MB // 2


@pytest.fixture(autouse=True)
def tracing_off() -> Iterator[None]:
    """Each test starts and ends with tracemalloc off (the probe never stops it)."""
    tracemalloc.stop()
    yield
    multimeter.flush(10)
    tracemalloc.stop()


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0]


def _last_values(result: Any) -> dict[str, Any]:
    return result.points[-1].values  # type: ignore[no-any-return]


# -- TracemallocProbe: starting ------------------------------------------------------


def test_tracing_starts_at_the_first_reading_not_at_import_or_construction():
    """Importing multimeter and making the probe leave tracemalloc off; reading starts it."""
    code = (
        "import tracemalloc, multimeter\n"
        "probe = multimeter.TracemallocProbe()\n"
        "before = tracemalloc.is_tracing()\n"
        "probe.read()\n"
        "print(before, tracemalloc.is_tracing())"
    )
    output = run_python("-c", code, check=True).stdout
    assert "False True" == output.strip()


def test_tracing_already_on_is_left_as_it_is_and_never_stopped():
    """The user's tracing (25 frames here) stays as set, and on after the probe is gone."""
    tracemalloc.start(25)
    probe = TracemallocProbe()
    probe.read()
    del probe
    gc.collect()
    assert (True, 25) == (tracemalloc.is_tracing(), tracemalloc.get_traceback_limit())


def test_both_probes_serve_the_fast_path():
    """derive_row() stands in for derive() in both."""
    assert (True, True) == (TracemallocProbe().has_row_path(), GCProbe().has_row_path())


# -- TracemallocProbe: current size and peak ------------------------------------------


def test_a_measurement_reports_what_is_alive_and_the_highest_it_got():
    """10 MB kept and 20 MB freed again: current +10 MB, peak +30 MB."""
    meter = Multimeter(TracemallocProbe(), cycle_time=60)
    TracemallocProbe().read()  # tracing on before the baseline
    baseline = _traced()
    with meter.measure() as result:
        kept = bytearray(10 * MB)
        transient = bytearray(20 * MB)
        del transient
    values = _last_values(result)
    assert 10 * MB == pytest.approx(values["python.heap_current"] - baseline, abs=SLACK)
    assert 30 * MB == pytest.approx(values["python.heap_peak"] - baseline, abs=SLACK)
    del kept


def test_an_earlier_bigger_allocation_does_not_leak_into_a_later_peak():
    """50 MB allocated and freed before the measurement started are not its peak."""
    meter = Multimeter(TracemallocProbe(), cycle_time=60)
    TracemallocProbe().read()
    earlier = bytearray(50 * MB)
    del earlier
    baseline = _traced()
    with meter.measure() as result:
        transient = bytearray(10 * MB)
        del transient
    assert 10 * MB == pytest.approx(_last_values(result)["python.heap_peak"] - baseline, abs=SLACK)


def _overlapping_nested(meter: Multimeter) -> tuple[Any, Any]:
    with meter.measure() as outer:
        big = bytearray(30 * MB)
        del big
        with meter.measure() as inner:
            small = bytearray(10 * MB)
            del small
    return outer, inner


def _overlapping_threads(meter: Multimeter) -> tuple[Any, Any]:
    outer_allocated = threading.Event()
    inner_done = threading.Event()
    found: dict[str, Any] = {}

    def outer_thread() -> None:
        with meter.measure() as found["outer"]:
            big = bytearray(30 * MB)
            del big
            outer_allocated.set()
            assert inner_done.wait(10)

    def inner_thread() -> None:
        assert outer_allocated.wait(10)
        with meter.measure() as found["inner"]:
            small = bytearray(10 * MB)
            del small
        inner_done.set()

    threads = [threading.Thread(target=outer_thread), threading.Thread(target=inner_thread)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return found["outer"], found["inner"]


@pytest.mark.parametrize("overlap", [_overlapping_nested, _overlapping_threads])
def test_overlapping_measurements_each_get_their_own_peak(overlap):
    """30 MB inside the outer measurement only, 10 MB inside both: 30 MB and 10 MB."""
    meter = Multimeter(TracemallocProbe(), cycle_time=60)
    TracemallocProbe().read()
    baseline = _traced()
    outer, inner = overlap(meter)
    assert 30 * MB == pytest.approx(_last_values(outer)["python.heap_peak"] - baseline, abs=SLACK)
    assert 10 * MB == pytest.approx(_last_values(inner)["python.heap_peak"] - baseline, abs=SLACK)


def test_the_peak_of_any_two_readings_is_the_highest_slice_between_them():
    """Readings taken around allocations of 1..9 MB: each pair gives the highest between."""
    probe = TracemallocProbe()
    readings = [probe.read()]
    sizes = [3, 9, 1, 5, 2, 8, 4]
    for size in sizes:
        block = bytearray(size * MB)
        del block
        readings.append(probe.read())
    baseline = readings[0][4]
    for start in range(len(readings)):
        for end in range(start + 1, len(readings)):
            peak = probe.derive_row(readings[end], readings[start], 1.0)[1]
            assert max(sizes[start:end]) * MB == pytest.approx(peak - baseline, abs=SLACK)


def test_a_reading_derived_long_after_is_still_exact():
    """Readings are snapshots: thousands of later reads do not change their peak."""
    probe = TracemallocProbe()
    before = probe.read()
    block = bytearray(10 * MB)
    del block
    after = probe.read()
    for _ in range(5000):
        probe.read()
    values: dict[str, Any] = {}
    probe.derive(values, after, before, 0.0)
    assert 10 * MB == pytest.approx(values["python.heap_peak"] - before[4], abs=SLACK)


def test_a_heap_shrinking_in_more_steps_than_the_stack_keeps_gives_a_lower_bound():
    """Freed in 600 steps, each read: the peak before the first step is lost, a lower bound."""
    probe = TracemallocProbe()
    probe.read()
    chunks = [bytearray(10_000) for _ in range(600)]
    start = probe.read()
    while chunks:
        chunks.pop()
        probe.read()
    end = probe.read()
    peak = probe.derive_row(end, start, 1.0)[1]
    exact_peak = start[4]  # all 600 chunks alive, as the interval began
    assert heap.KEPT_DEPTH < 600
    assert end[4] <= peak < exact_peak - 50 * 10_000


def test_an_empty_interval_reports_the_size_as_the_peak():
    """A reading compared with itself: the peak is the size at that reading."""
    probe = TracemallocProbe()
    reading = probe.read()
    assert (reading[4], reading[4]) == tuple(probe.derive_row(reading, reading, 0.0))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_child_forked_while_a_read_holds_the_lock_reads_on():
    """The reads' lock, held by another thread at the fork, is renewed in the child."""
    probe = TracemallocProbe()
    probe.read()
    heap._tracker().acquire()  # as a read on another thread would
    try:
        pid = os.fork()
        if pid == 0:  # the child: exits 0 once it has read; SIGALRM ends a deadlock
            signal.alarm(10)
            probe.read()
            os._exit(0)
    finally:
        heap._tracker().release()
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)


# -- GCProbe -------------------------------------------------------------------------


def _gc_rates(probe: GCProbe, work: Any, seconds: float = 1.0) -> dict[str, float]:
    before = probe.read()
    work()
    values: dict[str, float] = {}
    probe.derive(values, probe.read(), before, seconds)
    return values


def test_gc_collect_counts_as_collections_of_generation_2():
    """Three gc.collect() calls over one second: at least 3 per second in generation 2."""
    values = _gc_rates(GCProbe(), lambda: [gc.collect() for _ in range(3)])
    assert values["python.gc_collections_gen2"] >= 3.0
    assert values["python.gc_time"] > 0.0


def test_reference_cycles_trigger_young_collections_that_free_them():
    """100,000 two-object cycles make generation-0 collections that free objects."""

    def make_cycles() -> None:
        for _ in range(100_000):
            a: list[Any] = []
            b = [a]
            a.append(b)

    values = _gc_rates(GCProbe(), make_cycles)
    assert values["python.gc_collections_gen0"] > 0.0
    assert values["python.gc_collected"] > 0.0
    assert 0.0 == values["python.gc_uncollectable"]


def test_gc_rates_are_per_second_of_the_interval():
    """Three collections over half a second are six per second."""
    probe = GCProbe()
    before = probe.read()
    for _ in range(3):
        gc.collect()
    after = probe.read()
    assert 6.0 == pytest.approx(probe.derive_row(after, before, 0.5)[2])


def test_gc_rates_over_an_empty_interval_are_left_out():
    """No time elapsed: no rates (there are no gauges to store)."""
    probe = GCProbe()
    reading = probe.read()
    values: dict[str, Any] = {}
    probe.derive(values, reading, reading, 0.0)
    assert ({}, None) == (values, probe.derive_row(reading, reading, 0.0))


def test_the_callback_is_added_at_the_first_reading_and_removed_with_the_probe():
    """One callback per probe in use; none before its first reading, none after it is gone."""
    before = len(gc.callbacks)
    probe = GCProbe()
    assert before == len(gc.callbacks)
    probe.read()
    probe.read()
    assert before + 1 == len(gc.callbacks)
    del probe
    gc.collect()
    assert before == len(gc.callbacks)


# -- end to end ----------------------------------------------------------------------


def test_measured_calls_carry_heap_and_gc_figures():
    """@measured with both probes configured stores the peak of the call's allocation."""
    storage = InMemoryStorage()
    multimeter.configure(probes=[TracemallocProbe(), GCProbe()], storage=storage, cycle_time=60)

    @measured
    def allocate() -> None:
        block = bytearray(10 * MB)
        del block
        gc.collect()

    TracemallocProbe().read()
    baseline = _traced()
    allocate()
    assert multimeter.flush(10)
    values = _last_values(storage.results[0])
    assert 10 * MB == pytest.approx(values["python.heap_peak"] - baseline, abs=SLACK)
    assert values["python.gc_collections_gen2"] > 0.0
