"""configure(), get_multimeter() and the environment variables."""

from __future__ import annotations

import json
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
from tests._programs import run_code


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
    _process.state.writer.failures.flush()
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
