"""Probes: the documented protocol and ResourceProbe."""

from __future__ import annotations

import os
import resource

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import multimeter
from multimeter.probe import CumulativeProbe, Probe, ResourceProbe
from multimeter.subject import CHILDREN, PROCESS
from tests._programs import run_program

_FIELDS = [
    "ru_utime",
    "ru_stime",
    "ru_maxrss",
    "ru_ixrss",
    "ru_idrss",
    "ru_isrss",
    "ru_minflt",
    "ru_majflt",
    "ru_nswap",
    "ru_inblock",
    "ru_oublock",
    "ru_msgsnd",
    "ru_msgrcv",
    "ru_nsignals",
    "ru_nvcsw",
    "ru_nivcsw",
]


def _usage(**fields: float) -> tuple[float, ...]:
    return tuple(fields.get(name, 0) for name in _FIELDS)


class ScriptedRusage:
    """A getrusage stand-in returning scripted readings for SELF and CHILDREN."""

    def __init__(self) -> None:
        self.self_usage = _usage()
        self.children_usage = _usage()

    def __call__(self, who: int) -> tuple[float, ...]:
        return self.self_usage if who == resource.RUSAGE_SELF else self.children_usage


def test_resource_probe_measures_13_figures_for_process_and_children():
    """Both subjects carry CPU, memory, faults, swaps, block I/O and context switches;
    the process also the peak RSS it reached within each interval."""
    probe = ResourceProbe()
    keys = [m.key for m in probe.measures]
    assert 27 == len(keys)
    assert "process.peak_rss" == keys[-1]
    assert (PROCESS, CHILDREN) == probe.subjects
    assert 14 == len(probe.metrics)
    for key in (
        "process.cpu_user",
        "process.cpu_system",
        "process.max_rss",
        "process.page_faults_no_io",
        "process.page_faults_io",
        "process.swaps",
        "process.block_input",
        "process.block_output",
        "process.context_switches_voluntary",
        "children.context_switches_involuntary",
    ):
        assert key in keys


def test_sample_before_start_raises_runtime_error():
    """The documented protocol: sample() needs a start() first."""
    with pytest.raises(RuntimeError, match="start"):
        ResourceProbe().sample({}, 1.0)


def test_counters_become_rates_per_second_and_gauges_stay_as_read():
    """CPU seconds and event counts are divided by the elapsed time; max_rss is in bytes."""
    rusage = ScriptedRusage()
    probe = ResourceProbe(getrusage=rusage)
    rusage.self_usage = _usage(ru_utime=1.0, ru_stime=0.5, ru_nvcsw=10, ru_maxrss=100)
    probe.start()
    rusage.self_usage = _usage(ru_utime=2.0, ru_stime=0.75, ru_nvcsw=30, ru_maxrss=200, ru_majflt=4)
    rusage.children_usage = _usage(ru_utime=1.0)
    values: dict[str, float] = {}
    probe.sample(values, 2.0)
    assert 0.5 == values["process.cpu_user"]
    assert 0.125 == values["process.cpu_system"]
    assert 10.0 == values["process.context_switches_voluntary"]
    assert 2.0 == values["process.page_faults_io"]
    assert 200 * 1024 == values["process.max_rss"]
    assert 0.5 == values["children.cpu_user"]


def test_rates_are_left_out_for_an_empty_interval():
    """With no time elapsed there is no rate, but gauges are still reported."""
    probe = ResourceProbe()
    probe.start()
    values: dict[str, float] = {}
    probe.sample(values, 0.0)
    assert "process.cpu_user" not in values
    assert "process.max_rss" in values


def test_real_getrusage_reports_cpu_used_by_a_busy_loop():
    """Against the real kernel: a busy loop shows up as user CPU time."""
    probe = ResourceProbe()
    probe.start()
    total = 0
    for i in range(300_000):
        total += i * i
    values: dict[str, float] = {}
    probe.sample(values, 1.0)
    assert values["process.cpu_user"] > 0.0
    assert values["process.max_rss"] > 1_000_000


def test_a_probe_written_against_the_documented_protocol_only_needs_sample():
    """Subclassing Probe with sample() alone gives a usable probe with empty schema parts."""

    class Constant(Probe):
        def sample(self, values, time_elapsed):
            values["thing.value"] = 42.0

    probe = Constant()
    probe.start()
    values: dict[str, float] = {}
    probe.sample(values, 1.0)
    probe.end()
    assert {"thing.value": 42.0} == values
    assert () == probe.measures == probe.metrics == probe.subjects


def test_cumulative_probe_needs_read_and_derive():
    """CumulativeProbe is abstract until read() and derive() exist."""
    with pytest.raises(TypeError):
        CumulativeProbe()  # type: ignore[abstract]
    assert issubclass(ResourceProbe, Probe)


_readings = st.tuples(
    st.floats(0, 1e4, allow_subnormal=False),  # ru_utime
    st.floats(0, 1e4, allow_subnormal=False),  # ru_stime
    *(st.integers(0, 2**40) for _ in _FIELDS[2:]),
)


@settings(max_examples=300, deadline=None)
@given(
    before=_readings,
    cpu=st.tuples(st.floats(0, 5, allow_subnormal=False), st.floats(0, 5, allow_subnormal=False)),
    others_move=st.booleans(),
    maxrss_up=st.integers(0, 3),
    children_move=st.booleans(),
    elapsed=st.floats(1e-7, 100),
)
def test_the_row_of_an_interval_is_what_derive_stores(
    before, cpu, others_move, maxrss_up, children_move, elapsed
):
    """derive_row() (the path of measured calls) gives derive()'s values in measures
    order, whether only the CPU times moved (its fast path) or other figures too."""
    now = list(before)
    now[0] += cpu[0]
    now[1] += cpu[1]
    now[2] += maxrss_up
    if others_move:
        now[6] += 3  # page faults
        now[14] += 1  # voluntary context switches
    children_before = _usage(ru_utime=1.0, ru_maxrss=50)
    children_now = _usage(ru_utime=2.0, ru_maxrss=60) if children_move else children_before
    current, previous = (tuple(now), children_now), (before, children_before)
    probe = ResourceProbe()
    for _ in range(2):  # the second time from what the probe keeps of the first
        values: dict[str, float] = {}
        probe.derive(values, current, previous, elapsed)
        row = probe.derive_row(current, previous, elapsed)
        assert [values[m.key] for m in probe.measures] == pytest.approx(list(row), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    before=_readings,
    cpu=st.tuples(st.floats(0, 5, allow_subnormal=False), st.floats(0, 5, allow_subnormal=False)),
    elapsed=st.floats(1e-7, 100),
)
def test_the_cpu_time_row_of_an_interval_is_its_row(before, cpu, elapsed):
    """cpu_row() (the capability the short-call path uses) gives derive_row()'s values
    for an interval in which only the CPU times moved."""
    now = list(before)
    now[0] += cpu[0]
    now[1] += cpu[1]
    children = _usage(ru_utime=1.0, ru_maxrss=50)
    current, previous = (tuple(now), children), (before, children)
    user, system = now[0] - before[0], now[1] - before[1]
    probe = ResourceProbe()
    expected = list(probe.derive_row(current, previous, elapsed))
    assert expected == pytest.approx(list(probe.cpu_row(current, user, system, elapsed)))


class _CountingProbe(CumulativeProbe):
    """A cumulative probe with rows whose reading is (CPU seconds, other figures)."""

    cpu_time_rows = True

    @property
    def measures(self):
        return ResourceProbe().measures[:1]

    def read(self):
        return ((0.0, 0.0), ())

    def derive(self, values, current, previous, time_elapsed):
        values[self.measures[0].key] = (current[0][0] - previous[0][0]) / time_elapsed

    def derive_row(self, current, previous, time_elapsed):
        return [(current[0][0] - previous[0][0]) / time_elapsed]

    def cpu_row(self, reading, user, system, time_elapsed):
        return [user / time_elapsed]


class _NewReading(_CountingProbe):
    def read(self):
        return ((1.0, 0.0), ())


class _NewReadingDeclared(_NewReading):
    cpu_time_rows = True


class _RowsOnly(CumulativeProbe):
    def read(self):
        return 0

    def derive(self, values, current, previous, time_elapsed):
        pass

    def derive_row(self, current, previous, time_elapsed):
        return []


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (ResourceProbe(), True),
        (_CountingProbe(), True),
        (_NewReading(), False),  # overrides read() without declaring it again
        (_NewReadingDeclared(), True),
        (_RowsOnly(), False),  # rows, but no CPU-time rows declared
    ],
)
def test_a_probe_has_cpu_time_rows_where_its_class_declares_them(probe, expected):
    """The short-call path asks the probe for the capability instead of its exact type."""
    assert expected == probe.has_cpu_time_rows()


def test_a_counter_that_went_back_has_no_row():
    """CPU time that fell between two readings (another process's reading, say) gives
    no row: derive() then decides."""
    probe = ResourceProbe()
    before = _usage(ru_utime=2.0, ru_stime=1.0)
    children = _usage()
    for fell in (_usage(ru_utime=1.0, ru_stime=1.0), _usage(ru_utime=2.0, ru_stime=0.5)):
        assert probe.derive_row((fell, children), (before, children), 1.0) is None


def test_process_cpu_rates_are_capped_at_the_cpus_the_process_may_use():
    """Linux accounts other running threads' CPU time at clock ticks: 8 ms landing in a
    10 us interval is read as at most every CPU busy, not 800 s/s. The children's
    rates are not capped (a reaped child adds all its CPU time at once)."""
    limit = float(len(os.sched_getaffinity(0)))
    probe = ResourceProbe()
    before = (_usage(ru_utime=1.0, ru_stime=1.0), _usage())
    after = (_usage(ru_utime=1.008, ru_stime=1.008), _usage(ru_utime=3.0))
    only_cpu = (after[0], before[1])
    for current in (after, only_cpu):  # the general path and the fast path
        values: dict[str, float] = {}
        probe.derive(values, current, before, 10e-6)
        keys = [m.key for m in probe.measures]
        row = dict(zip(keys, probe.derive_row(current, before, 10e-6), strict=True))
        for figures in (values, row):
            assert limit == figures["process.cpu_user"] == figures["process.cpu_system"]
            reaped = current[1][0] - before[1][0]  # ru_utime of the children
            assert reaped / 10e-6 == pytest.approx(figures["children.cpu_user"])


_SHORT_CALLS_WITH_A_BUSY_THREAD = """
import os, resource, sys, threading, time
import multimeter

@multimeter.measured
def noop():
    return None

stop = False
def busy():  # another thread's CPU time is accounted at clock ticks
    while not stop:
        sum(range(1000))

thread = threading.Thread(target=busy)
thread.start()
end = time.monotonic() + 1.5
while time.monotonic() < end:
    noop()
stop = True
thread.join()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(usage.ru_utime + usage.ru_stime)
"""


def test_short_calls_never_report_more_cpu_than_the_cpus_can_give(tmp_path):
    """A user's loop of no-op measured calls while another thread works: Linux hands
    that thread's CPU time over in tick-sized lumps, yet no call's CPU rate exceeds
    the CPUs the process may use, and the calls' CPU seconds together stay below
    what the whole process used."""
    completed = run_program(tmp_path, _SHORT_CALLS_WITH_A_BUSY_THREAD)
    process_cpu = float(completed.stdout)
    limit = float(len(os.sched_getaffinity(0)))
    calls_cpu = 0.0
    results = list(multimeter.load_results(tmp_path / "results"))
    assert len(results) > 1000
    for result in results:
        (point,) = result.points
        user, system = point.values["process.cpu_user"], point.values["process.cpu_system"]
        assert 0 <= user <= limit and 0 <= system <= limit
        calls_cpu += (user + system) * (result.end - result.start).total_seconds()
    assert calls_cpu <= process_cpu


def test_the_probe_plan_packs_short_calls_of_a_probe_with_cpu_time_rows():
    """The plan of a probe with the capability says so; one without it does not."""
    from multimeter._session import ProbePlan
    from multimeter.result import Schema

    plans = {
        type(probe).__name__: ProbePlan([probe], Schema.from_probes([probe])).cpu_time_rows
        for probe in (ResourceProbe(), _CountingProbe(), _NewReading())
    }
    assert {"ResourceProbe": True, "_CountingProbe": True, "_NewReading": False} == plans
