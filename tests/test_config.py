"""configure(), get_multimeter() and the environment variables."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

import multimeter
from multimeter import FileStorage, JsonFormat, JsonLinesStorage, LineFormat, _config, _process
from multimeter.probe import ResourceProbe
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage
from multimeter.storages.influx import InfluxDBStorage
from multimeter.storages.log import LogStorage
from multimeter.testing import InMemoryStorage
from tests._programs import run_code, run_program


def test_defaults_without_any_configuration():
    """Resource probe, one-second cycle, JSON Lines batch files under ./multimeter-results/."""
    meter = multimeter.get_multimeter()
    assert 1.0 == meter.cycle_time
    assert ["ResourceProbe"] == [type(p).__name__ for p in meter.probes]
    assert isinstance(meter.storage, JsonLinesStorage)
    assert "multimeter-results" == str(meter.storage.directory)


@pytest.mark.parametrize(("value", "file_format"), [("json", JsonFormat), ("LINE", LineFormat)])
def test_the_json_and_line_formats_store_one_file_per_result(monkeypatch, value, file_format):
    """MULTIMETER_FORMAT=json or line keeps FileStorage, one file per result."""
    monkeypatch.setenv("MULTIMETER_FORMAT", value)
    storage = multimeter.configure().storage
    assert isinstance(storage, FileStorage)
    assert isinstance(storage.file_format, file_format)


def test_configure_returns_and_installs_the_global_multimeter():
    """configure() builds the multimeter that get_multimeter() then returns."""
    storage = InMemoryStorage()
    meter = multimeter.configure(storage=storage, cycle_time=0.5)
    assert meter is multimeter.get_multimeter()
    assert (storage, 0.5) == (meter.storage, meter.cycle_time)


def test_environment_fills_in_what_arguments_leave_out(monkeypatch, tmp_path):
    """MULTIMETER_* variables decide storage, format, cycle and tags."""
    monkeypatch.setenv("MULTIMETER_DIR", str(tmp_path))
    monkeypatch.setenv("MULTIMETER_FORMAT", "line")
    monkeypatch.setenv("MULTIMETER_CYCLE_TIME", "0.25")
    monkeypatch.setenv("MULTIMETER_TAGS", "team=data, env=prod")
    monkeypatch.setenv("MULTIMETER_SAMPLE_RATE", "0.5")
    meter = multimeter.configure(tags={"env": "staging"})
    assert isinstance(meter.storage.file_format, LineFormat)
    assert tmp_path == meter.storage.save_directory
    assert 0.25 == meter.cycle_time
    config = _config.current()
    assert {"team": "data", "env": "staging"} == config.tags
    assert 0.5 == config.sample_rate


def test_an_explicit_argument_beats_the_environment(monkeypatch):
    """Precedence: argument, then environment, then default."""
    monkeypatch.setenv("MULTIMETER_CYCLE_TIME", "5")
    assert 0.1 == multimeter.configure(cycle_time=0.1).cycle_time


@pytest.mark.parametrize(
    ("value", "kind"), [("none", DummyStorage), ("log", LogStorage), ("FILE", JsonLinesStorage)]
)
def test_storage_kinds_from_the_environment(monkeypatch, value, kind):
    """MULTIMETER_STORAGE picks none, log or file (case does not matter)."""
    monkeypatch.setenv("MULTIMETER_STORAGE", value)
    assert isinstance(multimeter.configure().storage, kind)


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("MULTIMETER_ENABLED", "maybe", "true, false"),
        ("MULTIMETER_STORAGE", "s3", "none, file, log"),
        ("MULTIMETER_FORMAT", "csv", "jsonl, json, line"),
        ("MULTIMETER_CYCLE_TIME", "-1", "seconds from 0.001 to 86400"),
        ("MULTIMETER_CYCLE_TIME", "1e15", "seconds from 0.001 to 86400"),
        ("MULTIMETER_READER", "fork", "process, thread"),
        ("MULTIMETER_READER", "bogus", "process, thread"),
        ("MULTIMETER_RUN", "ci\n42", "one line of printable text"),
        ("MULTIMETER_RUN", "\x1b]0;pwned\x07", "one line of printable text"),
        ("MULTIMETER_RUN", "x" * 201, "at most 200"),
        ("MULTIMETER_PROBES", "resource,gpu", "resource"),
        ("MULTIMETER_TAGS", "novalue", "key=value"),
        ("MULTIMETER_SAMPLE_RATE", "1.5", "from 0 to 1"),
        ("MULTIMETER_EXIT_TIMEOUT", "soon", "seconds > 0"),
    ],
)
def test_a_bad_variable_makes_configure_raise_naming_it(monkeypatch, variable, value, allowed):
    """The error names the variable and the allowed values."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable) as caught:
        multimeter.configure()
    assert allowed in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"cycle_time": 0}, "cycle_time"),
        ({"enabled": "yes"}, "enabled"),
        ({"tags": {"k": None}}, "tag 'k'"),
        ({"storage": "disk"}, "storage"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(arguments, name):
    """Wrong explicit configuration is a clear ValueError."""
    with pytest.raises(ValueError, match=name):
        multimeter.configure(**arguments)


def test_a_bad_variable_with_implicit_configuration_logs_once_and_runs_on(monkeypatch, logs):
    """First decorated call with a bad environment: logged, measuring off, result returned."""
    monkeypatch.setenv("MULTIMETER_CYCLE_TIME", "fast")

    @multimeter.measured
    def work():
        return 42

    assert [42, 42] == [work(), work()]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert 1 == len(errors)
    assert "MULTIMETER_CYCLE_TIME" in errors[0]["error"]
    assert not _config.current().enabled


def test_enabled_false_from_the_environment(monkeypatch):
    """MULTIMETER_ENABLED=0 switches measuring off."""
    monkeypatch.setenv("MULTIMETER_ENABLED", "0")
    multimeter.configure(storage=InMemoryStorage())
    assert not _config.current().enabled


def test_sample_rate_zero_measures_no_call(monkeypatch):
    """MULTIMETER_SAMPLE_RATE=0: calls run, none is measured."""
    monkeypatch.setenv("MULTIMETER_SAMPLE_RATE", "0")
    storage = InMemoryStorage()
    multimeter.configure(storage=storage)

    @multimeter.measured
    def work():
        return 1

    assert 100 == sum(work() for _ in range(100))
    assert multimeter.flush(10)
    assert [] == storage.results


def test_log_storage_emits_one_event_with_the_summary(logs):
    """MULTIMETER_STORAGE=log: one structlog event per finished measurement."""
    multimeter.configure(storage=LogStorage())

    @multimeter.measured(tags={"stage": "etl"})
    def work():
        return sum(range(1000))

    work()
    assert multimeter.flush(10)
    events = [e for e in logs if e["event"] == "measurement"]
    assert 1 == len(events)
    event = events[0]
    assert event["identifier"].startswith("work-")
    assert {"stage": "etl"} == event["tags"]
    assert "ok" == event["outcome"]
    for key in ("duration_s", "cpu_user_s", "cpu_system_s", "max_rss_bytes"):
        assert event[key] is not None
    assert "peak_memory_bytes" in event  # None unless the call raised the high-water mark


def _run(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_code(code, cwd=tmp_path, timeout=60, **env)


def test_exit_stores_pending_results_within_the_exit_timeout(tmp_path):
    """Results still queued at interpreter exit are stored before the process ends."""
    code = """
        import multimeter
        @multimeter.measured
        def work(i):
            return i
        for i in range(2000):
            work(i)
    """
    completed = _run(code, tmp_path, MULTIMETER_EXIT_TIMEOUT="30")
    assert 0 == completed.returncode, completed.stderr
    results = list(multimeter.load_results(tmp_path / "multimeter-results"))
    assert 2000 == len(results)
    assert {"work"} == {r.meta_data["function"] for r in results}


def test_a_slow_storage_does_not_hold_exit_beyond_the_timeout(tmp_path):
    """With a storage that never finishes, exit waits MULTIMETER_EXIT_TIMEOUT and goes on."""
    code = """
        import time, multimeter
        from multimeter.storages.base import Storage
        class Stuck(Storage):
            def store(self, result):
                time.sleep(60)
        multimeter.configure(storage=Stuck())
        @multimeter.measured
        def work():
            return 1
        work()
    """
    started = time.monotonic()
    completed = _run(code, tmp_path, MULTIMETER_EXIT_TIMEOUT="1")
    assert time.monotonic() - started < 30  # the storage would take 60 s
    assert 0 == completed.returncode, completed.stderr
    assert "results still pending at exit were not stored" in completed.stdout + completed.stderr
    assert "pending=1" in completed.stdout + completed.stderr


def test_global_tags_also_apply_to_measurements_of_the_global_multimeter(monkeypatch):
    """configure(tags) and MULTIMETER_TAGS reach get_multimeter().measure(...) too."""
    monkeypatch.setenv("MULTIMETER_TAGS", "team=data")
    multimeter.configure(storage=InMemoryStorage(), tags={"env": "prod"})
    measurement = multimeter.get_multimeter().measure("m", env="test")
    assert {"team": "data", "env": "test"} == measurement.tags


@pytest.mark.parametrize(
    ("tags", "variable"),
    [({"_k": "v"}, None), ({"k": "v\\"}, None), (None, "_k=v")],
)
def test_global_tags_the_line_format_would_refuse_are_refused_by_configure(
    monkeypatch, tags, variable
):
    """A key starting with '_' or a value ending with a backslash fails at configure()."""
    if variable is not None:
        monkeypatch.setenv("MULTIMETER_TAGS", variable)
    with pytest.raises(ValueError, match="allowed") as caught:
        multimeter.configure(storage=InMemoryStorage(), tags=tags)
    assert ("MULTIMETER_TAGS" if variable else "tags") in str(caught.value)


@pytest.mark.parametrize("cycle_time", [86_401, 1e15, 1e308, float("inf")])
def test_cycle_times_over_a_day_are_refused(cycle_time):
    """cycle_time=1e308 overflowed at the first call (aggregate mode): over a day raises."""
    with pytest.raises(ValueError, match="86400"):
        multimeter.configure(cycle_time=cycle_time, calls="aggregate")
    with pytest.raises(ValueError, match="86400"):
        multimeter.Multimeter(cycle_time=cycle_time)


@pytest.mark.parametrize("value", ["1e15", "1e303"])
def test_a_huge_cycle_time_in_the_environment_never_raises_into_the_program(tmp_path, value):
    """Aggregate mode with MULTIMETER_CYCLE_TIME=1e303: the program runs on, unmeasured,
    and the log names the variable."""
    code = """
        import multimeter

        @multimeter.measured
        def work(i):
            return i * 2

        print(sum(work(i) for i in range(100)))
    """
    completed = _run(
        code,
        tmp_path,
        MULTIMETER_CYCLE_TIME=value,
        MULTIMETER_CALLS="aggregate",
        MULTIMETER_DIR=str(tmp_path / "results"),
    )
    assert (0, "9900") == (completed.returncode, completed.stdout.strip()[-4:]), completed.stderr
    assert "MULTIMETER_CYCLE_TIME" in completed.stdout + completed.stderr


@pytest.mark.parametrize("cycle_time", [1e-9, 0.0005])
def test_cycle_times_below_a_millisecond_are_refused(cycle_time):
    """cycle_time=1e-9 halved the user's throughput: below 0.001 s raises ValueError."""
    with pytest.raises(ValueError, match=r"0\.001"):
        multimeter.configure(cycle_time=cycle_time)
    with pytest.raises(ValueError, match=r"0\.001"):
        multimeter.Multimeter(cycle_time=cycle_time)


def test_a_failing_storage_logs_a_count_not_one_line_per_result(logs):
    """A full disk: 2,000 failed results make a few log lines, with the count."""

    class Full(Storage):
        def store(self, result):
            raise OSError(28, "No space left on device")

    multimeter.configure(storage=Full())

    @multimeter.measured
    def work():
        return 1

    for _ in range(2000):
        work()
    assert not multimeter.flush(30)
    _process.current().writer.failures.flush()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert 1 <= len(errors) <= 3
    assert 2000 == 1 + sum(e.get("failures_not_logged", 0) for e in errors[1:])


def test_an_exit_timeout_leaves_no_temporary_file_behind(tmp_path):
    """A store cut off by the exit timeout leaves no '.multimeter-*.tmp' file."""
    code = """
        import threading, multimeter
        from multimeter import FileStorage, JsonFormat

        class Stuck(JsonFormat):
            def save_result_to_stream(self, result, stream):
                stream.write(b"{")
                threading.Event().wait(60)

        multimeter.configure(storage=FileStorage("out", Stuck()))

        @multimeter.measured
        def work():
            return 1

        work()
    """
    completed = _run(code, tmp_path, MULTIMETER_EXIT_TIMEOUT="1")
    assert 0 == completed.returncode, completed.stderr
    assert [] == sorted(p.name for p in (tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: multimeter.configure(tags=["a"]), "tags"),
        (lambda: multimeter.configure(tags="a=b"), "tags"),
        (lambda: multimeter.configure(probes=ResourceProbe()), "probes"),
        (lambda: multimeter.configure(storage=FileStorage), "storage"),
        (lambda: multimeter.Multimeter(ResourceProbe), "probes"),
        (lambda: multimeter.measured(name=5), "name"),
        (lambda: multimeter.instrument(json, include=5), "include"),
        (lambda: FileStorage(123, JsonFormat()), "save_directory"),
        (lambda: InfluxDBStorage("t", timeout=float("nan")), "timeout"),
        (lambda: InfluxDBStorage("t", bucket=""), "bucket"),
        (lambda: InfluxDBStorage("t", org=None), "org"),
        (lambda: InfluxDBStorage("t", url="http://[::1"), "url"),
        (lambda: InfluxDBStorage("t", url="http://127.0.0.1:notaport"), "url"),
    ],
)
def test_wrong_explicit_settings_raise_value_error_naming_them(make, setting):
    """Every explicit call names the bad setting in a ValueError."""
    with pytest.raises(ValueError, match=setting):
        make()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MULTIMETER_HANDLE_SIGTERM", "maybe"),
        ("MULTIMETER_INFLUXDB_URL", "http://127.0.0.1:notaport"),
    ],
)
def test_bad_lifecycle_and_url_variables_make_configure_raise(monkeypatch, variable, value):
    """MULTIMETER_HANDLE_SIGTERM and the InfluxDB URL are checked like every variable."""
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("MULTIMETER_STORAGE", "influxdb")
    monkeypatch.setenv("MULTIMETER_INFLUXDB_TOKEN", "t")
    with pytest.raises(ValueError, match=variable):
        multimeter.configure()


# -- configure() changes only what it is given; reset() and is_configured() -----------


class _Closing(InMemoryStorage):
    """An in-memory storage that notes when it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_configure_tags_after_storage_keeps_the_storage_and_the_multimeter():
    """configure(tags=...) after configure(storage=...) changes the tags only."""
    storage = InMemoryStorage()
    meter = multimeter.configure(storage=storage, cycle_time=0.5)
    again = multimeter.configure(tags={"team": "data"})
    assert meter is again is multimeter.get_multimeter()
    assert (storage, 0.5, {"team": "data"}) == (meter.storage, meter.cycle_time, meter.tags)


def test_configure_keeps_the_multimeter_that_get_multimeter_returned_before():
    """A multimeter taken before configure() is the one configure() changes."""
    meter = multimeter.get_multimeter()
    storage = InMemoryStorage()
    assert meter is multimeter.configure(storage=storage)
    assert storage is meter.storage


def test_a_later_configure_keeps_enabled_and_replaces_the_tags(monkeypatch):
    """Settings left out keep their value; given tags replace earlier ones, over MULTIMETER_TAGS."""
    monkeypatch.setenv("MULTIMETER_TAGS", "team=data")
    multimeter.configure(storage=InMemoryStorage(), enabled=False, tags={"a": "1"})
    meter = multimeter.configure(tags={"b": "2"})
    assert {"team": "data", "b": "2"} == meter.tags
    assert not _config.current().enabled


def test_a_bad_value_in_a_later_configure_raises_and_changes_nothing():
    """ValueError naming the setting; the configuration stays as it was."""
    storage = InMemoryStorage()
    meter = multimeter.configure(storage=storage, tags={"a": "1"})
    with pytest.raises(ValueError, match="cycle_time"):
        multimeter.configure(tags={"b": "2"}, cycle_time=0)
    assert (storage, {"a": "1"}) == (meter.storage, meter.tags)


def test_aggregate_mode_survives_a_later_configure_and_follows_the_cycle_time():
    """calls='aggregate' stays on for configure(tags=...); a new cycle_time re-wraps the storage."""
    storage = InMemoryStorage()
    meter = multimeter.configure(storage=storage, calls="aggregate")
    wrapper = meter.storage
    multimeter.configure(tags={"a": "1"})
    assert wrapper is meter.storage
    multimeter.configure(cycle_time=2)
    assert (storage, 2.0) == (meter.storage.inner, meter.storage.cycle_time)
    multimeter.configure(calls="each")
    assert storage is meter.storage


def test_is_configured_says_whether_configure_was_called():
    """False at the start and after reset(); get_multimeter() alone does not configure."""
    assert not multimeter.is_configured()
    multimeter.get_multimeter()
    assert not multimeter.is_configured()
    multimeter.configure(storage=InMemoryStorage())
    assert multimeter.is_configured()
    multimeter.reset()
    assert not multimeter.is_configured()


def test_reset_goes_back_to_the_defaults_and_the_environment(monkeypatch):
    """After reset() the settings are those of a fresh process: environment, then defaults."""
    multimeter.configure(storage=InMemoryStorage(), cycle_time=0.5, tags={"a": "1"})
    monkeypatch.setenv("MULTIMETER_CYCLE_TIME", "0.25")
    multimeter.reset()
    meter = multimeter.get_multimeter()
    assert (0.25, {}) == (meter.cycle_time, meter.tags)
    assert isinstance(meter.storage, JsonLinesStorage)


def test_a_replaced_storage_is_closed_and_the_new_one_kept_open():
    """configure(storage=B) closes A, once; reset() closes B."""
    first, second = _Closing(), _Closing()
    multimeter.configure(storage=first)
    multimeter.configure(storage=second)
    assert (1, 0) == (first.closed, second.closed)
    multimeter.configure(tags={"a": "1"})
    assert (1, 0) == (first.closed, second.closed)
    multimeter.reset()
    assert (1, 1) == (first.closed, second.closed)


def test_results_pending_for_a_replaced_storage_are_stored_in_it(stored):
    """The calls made before configure(storage=B) are in A when configure() returns."""

    @multimeter.measured
    def work():
        return 1

    for _ in range(50):
        work()
    second = InMemoryStorage()
    multimeter.configure(storage=second)
    assert 50 == len(stored.results)
    work()
    assert multimeter.flush(10)
    assert (50, 1) == (len(stored.results), len(second.results))


def test_a_failing_close_is_logged_not_raised(logs):
    """configure() and reset() never raise for the storage they replace."""

    class Broken(InMemoryStorage):
        def close(self):
            raise OSError("disk gone")

    multimeter.configure(storage=Broken())
    multimeter.configure(storage=InMemoryStorage())
    errors = [e for e in logs if e["log_level"] == "error"]
    assert ["closing a replaced storage failed"] == [e["event"] for e in errors]
    assert "disk gone" in errors[0]["error"]


def test_each_storage_holds_the_calls_made_while_it_was_configured(tmp_path):
    """A program switching from batch files A to result files B: A holds A's calls (stored
    and closed when configure() returns), B holds B's (stored at exit)."""
    code = """
        import multimeter
        from multimeter import FileStorage, JsonFormat, JsonLinesStorage

        @multimeter.measured
        def first(i):
            return i

        @multimeter.measured
        def second(i):
            return i

        multimeter.configure(storage=JsonLinesStorage("a"))
        for i in range(200):
            first(i)
        multimeter.configure(storage=FileStorage("b", JsonFormat()))
        print(len(list(multimeter.load_results("a"))))
        for i in range(30):
            second(i)
    """
    completed = _run(code, tmp_path)
    assert (0, "200") == (completed.returncode, completed.stdout.strip()), completed.stderr
    in_a = [r.meta_data["function"] for r in multimeter.load_results(tmp_path / "a")]
    in_b = [r.meta_data["function"] for r in multimeter.load_results(tmp_path / "b")]
    assert (["first"] * 200, ["second"] * 30) == (in_a, in_b)


# -- signal handlers that touch the configuration ------------------------------------

_HANDLER_PROGRAM = """
    import os, signal, sys, threading, time
    import multimeter

    state = {"in": False, "handled": 0}

    def handler(signum, frame):
        if state["in"]:
            return
        state["in"] = True
        HANDLER_LINE
        state["handled"] += 1
        state["in"] = False

    def pinger():
        while True:
            time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGUSR1)

    signal.signal(signal.SIGUSR1, handler)
    threading.Thread(target=pinger, daemon=True).start()
    MAIN_LINES
    print("handled", state["handled"] > 0)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
@pytest.mark.parametrize(
    ("handler_line", "main_lines"),
    [
        (  # reload the configuration on a signal, while the program configures too
            'multimeter.configure(tags={"reloaded": "yes"})',
            "end = time.monotonic() + 3\n"
            "    while time.monotonic() < end:\n"
            '        multimeter.configure(tags={"main": "yes"})\n'
            "    assert multimeter.get_multimeter().tags",
        ),
        (  # a handler that asks for the multimeter while the first call builds it
            "multimeter.get_multimeter()",
            "end = time.monotonic() + 3\n"
            "    while time.monotonic() < end:\n"
            "        multimeter.reset()\n"
            "        multimeter.measured(lambda: 1)()",
        ),
    ],
    ids=["configure", "get_multimeter"],
)
def test_a_signal_handler_that_configures_never_deadlocks(tmp_path, handler_line, main_lines):
    """A handler (SIGUSR1 every millisecond) that calls configure() or get_multimeter()
    in the thread whose own configure() or first measured call it interrupted: the
    configuration's lock is held by that very thread. The program ends; what the
    handler asked is done once the interrupted change is over."""
    code = _HANDLER_PROGRAM.replace("HANDLER_LINE", handler_line).replace("MAIN_LINES", main_lines)
    done = run_program(tmp_path, code, timeout=60)
    assert "handled True" in done.stdout
