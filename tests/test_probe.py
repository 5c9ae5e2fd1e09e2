"""Probes: the documented protocol and ResourceProbe."""

from __future__ import annotations

import resource

import pytest

from multimeter.probe import CumulativeProbe, Probe, ResourceProbe
from multimeter.subject import CHILDREN, PROCESS

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
