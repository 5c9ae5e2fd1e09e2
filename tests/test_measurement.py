"""Multimeter and Measurement: configuring, starting, marking, ending, storing."""

from __future__ import annotations

import math
import os
import signal
import threading

import pytest

from multimeter import DummyStorage, Multimeter, ResourceProbe
from multimeter.measurement import Measurement
from multimeter.result import Result
from multimeter.storages.base import Storage
from multimeter.testing import CounterProbe, InMemoryStorage
from tests._programs import run_program


def test_multimeter_defaults_match_the_documentation():
    """No probes given, one-second cycle, a storage that discards."""
    meter = Multimeter()
    assert ((), 1.0) == (meter.probes, meter.cycle_time)
    assert isinstance(meter.storage, DummyStorage)


def test_setters_and_add_probes_return_the_multimeter_for_chaining():
    """add_probes, set_cycle_time and set_storage change the configuration and chain."""
    probe, storage = ResourceProbe(), InMemoryStorage()
    meter = Multimeter()
    assert meter is meter.add_probes(probe).set_cycle_time(0.5).set_storage(storage)
    assert ((probe,), 0.5, storage) == (meter.probes, meter.cycle_time, meter.storage)


@pytest.mark.parametrize("cycle_time", [0, -1.0, math.nan, math.inf, "1", None, True])
def test_invalid_cycle_time_raises_value_error_naming_it(cycle_time):
    """Zero, negative, NaN, infinite and non-numbers are refused, in both places."""
    with pytest.raises(ValueError, match="cycle_time"):
        Multimeter(cycle_time=cycle_time)
    with pytest.raises(ValueError, match="cycle_time"):
        Multimeter().set_cycle_time(cycle_time)


def test_wrong_storage_or_probe_raises_value_error():
    """A storage must have store(); a probe must have sample()."""
    with pytest.raises(ValueError, match="storage"):
        Multimeter(storage="results/")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probes"):
        Multimeter("cpu")  # type: ignore[arg-type]


def test_measure_creates_a_measurement_with_identifier_and_tags():
    """measure(identifier, **tags) gives a Measurement carrying both."""
    measurement = Multimeter().measure("run-1", stage="etl", attempt=2)
    assert isinstance(measurement, Measurement)
    assert ("run-1", {"stage": "etl", "attempt": "2"}) == (
        measurement.identifier,
        measurement.tags,
    )


def test_identifiers_are_generated_from_the_time_and_unique():
    """Without an identifier each measurement gets a distinct, time-based one."""
    identifiers = {Multimeter().measure().identifier for _ in range(1000)}
    assert 1000 == len(identifiers)
    assert all(i[:2] == "20" and "/" not in i for i in identifiers)


def test_start_returns_the_result_and_end_stores_it():
    """start() gives the Result, end() hands it to the storage, with a final point."""
    storage = InMemoryStorage()
    measurement = Multimeter(ResourceProbe(), storage=storage).measure("m")
    result = measurement.start()
    assert measurement.result is result
    measurement.end()
    assert [result] == storage.results
    assert len(result) >= 1
    assert result.points[-1].values["process.max_rss"] > 0


def test_context_manager_returns_the_result_and_stores_it():
    """`with meter.measure() as result` measures the block."""
    storage = InMemoryStorage()
    with Multimeter(CounterProbe(), storage=storage).measure("ctx") as result:
        assert isinstance(result, Result)
    assert [result] == storage.results


def test_an_exception_in_the_block_propagates_unchanged_and_the_result_is_stored():
    """Measuring never swallows or replaces the measured code's exception."""
    storage = InMemoryStorage()
    error = KeyError("boom")
    with pytest.raises(KeyError) as caught, Multimeter(storage=storage).measure("e"):
        raise error
    assert caught.value is error
    assert 1 == len(storage.results)


def test_marks_are_added_at_the_current_time():
    """add_mark puts labelled marks between the measurement's start and end."""
    measurement = Multimeter().measure("marks")
    result = measurement.start()
    measurement.add_mark("loaded")
    measurement.add_mark("transformed")
    measurement.end()
    assert ["loaded", "transformed"] == [m.label for m in result.marks]
    assert result.marks[0].datetime <= result.end


def test_meta_data_describes_the_process():
    """Host, pid, Python version, platform, multimeter version and command line."""
    with Multimeter().measure() as result:
        pass
    assert {
        "host",
        "pid",
        "python_version",
        "platform",
        "multimeter_version",
        "command_line",
    } <= set(result.meta_data)
    assert str(os.getpid()) == result.meta_data["pid"]


class BrokenStorage(Storage):
    def store(self, result):
        raise OSError(28, "No space left on device")


def test_a_storage_error_is_logged_not_raised(logs):
    """A full disk does not break the measured code; the result stays available."""
    measurement = Multimeter(storage=BrokenStorage()).measure("full")
    measurement.start()
    measurement.end()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert 1 == len(errors)
    assert "full" == errors[0]["identifier"]
    assert "No space left" in errors[0]["error"]
    assert measurement.result is not None


def test_starting_twice_or_ending_unstarted_raises_runtime_error():
    """Misuse of the lifecycle is reported clearly."""
    measurement = Multimeter().measure("x")
    with pytest.raises(RuntimeError):
        measurement.end()
    with pytest.raises(RuntimeError):
        measurement.add_mark("too early")
    measurement.start()
    with pytest.raises(RuntimeError):
        measurement.start()
    measurement.end()


def test_ending_twice_stores_once():
    """A second end() is a no-op."""
    storage = InMemoryStorage()
    measurement = Multimeter(storage=storage).measure("twice")
    measurement.start()
    measurement.end()
    measurement.end()
    assert 1 == len(storage.results)


def test_bad_tags_raise_value_error_when_the_measurement_is_created():
    """Tags are checked up front, not when storing."""
    with pytest.raises(ValueError, match="tag 'k'"):
        Multimeter().measure("x", k=None)


class ThreadNoting(Storage):
    """Notes the thread each result is stored on, and the order of the results."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, str]] = []

    def store(self, result: Result) -> None:
        self.stored.append((result.identifier, threading.current_thread().name))


def test_end_stores_through_the_writer_and_returns_once_stored():
    """A measurement's result takes the path of @measured calls: the writer thread
    stores it (with the spool, backpressure and the flush at exit that gives), and
    end() returns once it is stored."""
    storage = ThreadNoting()
    meter = Multimeter(ResourceProbe(), cycle_time=0.05, storage=storage)
    with meter.measure("through-the-writer"):
        pass
    assert [("through-the-writer", "multimeter-writer")] == storage.stored


def test_calls_made_during_a_measurement_are_stored_before_it(tmp_path):
    """The writer stores in the order things ended: a @measured call made inside a
    measure() block is stored before the block's own result."""
    import multimeter

    storage = ThreadNoting()
    multimeter.configure(storage=storage, probes=["resource"])
    try:

        @multimeter.measured(name="inner")
        def inner() -> int:
            return 1

        with multimeter.get_multimeter().measure("outer"):
            inner()
        names = [identifier.split("-")[0] for identifier, _ in storage.stored]
        assert ["inner", "outer"] == names
    finally:
        multimeter.reset()


def test_measurements_ended_right_before_exit_are_stored_with_a_slow_storage(tmp_path):
    """A program whose last lines end measurements, with a storage that takes its
    time: every result is stored, in order, before the program is gone."""
    program = f"""
        import time
        import multimeter
        from multimeter.storages.base import Storage

        class Slow(Storage):
            def store(self, result):
                time.sleep(0.2)
                with open({str(tmp_path / "stored.txt")!r}, "a") as out:
                    out.write(result.identifier + "\\n")

        meter = multimeter.Multimeter(multimeter.ResourceProbe(), storage=Slow())
        for name in ("first", "second"):
            with meter.measure(name):
                pass
    """
    run_program(tmp_path, program)
    assert ["first", "second"] == (tmp_path / "stored.txt").read_text().split()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_measure_in_a_signal_handler_never_deadlocks(tmp_path):
    """The main thread loops on measure(); a handler (SIGUSR1 every 2 ms) measures too,
    often while the main thread holds the sampler's lock in start() or end(). The
    program ends; the handler's measurements are stored except those made right then."""
    program = """
        import os, signal, threading, time
        import multimeter
        from multimeter.testing import InMemoryStorage

        storage = InMemoryStorage()
        meter = multimeter.Multimeter(multimeter.ResourceProbe(), storage=storage)
        handled = []

        def handler(signum, frame):
            with meter.measure("h"):
                pass
            handled.append(1)

        def pinger():
            while True:
                time.sleep(0.002)
                os.kill(os.getpid(), signal.SIGUSR1)

        signal.signal(signal.SIGUSR1, handler)
        threading.Thread(target=pinger, daemon=True).start()
        end = time.monotonic() + 3
        main = 0
        while time.monotonic() < end:
            with meter.measure("main"):
                pass
            main += 1
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        multimeter.flush(30)
        names = [r.identifier for r in storage.results]
        print(main == names.count("main"), len(handled) > 0,
              names.count("h") >= 0.9 * len(handled))
    """
    done = run_program(tmp_path, program, timeout=60)
    assert "True True True" == done.stdout.strip().splitlines()[-1]
