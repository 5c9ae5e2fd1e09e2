"""The measuring plugin: one measurement per test, the run's summary, the comparison and the gate.

Registered by ``pytest_multimeter`` only when the run asks for it; that module owns the
command line (the options and their defaults) and hands the defaults in, so imports go one
way only: ``pytest_multimeter`` -> ``multimeter._testrun``. With
pytest-xdist the controller makes the run identifier and hands it to the
workers; each worker measures its tests and sends its rows back when it
finishes; the controller writes the summary and reports.
"""

from __future__ import annotations

import pathlib
import subprocess
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest

from multimeter import _config, _env, _meta, _process
from multimeter._log import describe, safe_log
from multimeter._marks import MarkSink
from multimeter._testrun.compare import (
    FIGURES,
    Comparison,
    Limit,
    compare,
    format_value,
    parse_limits,
)
from multimeter._testrun.memory import PeakMemory
from multimeter._testrun.summary import (
    SUMMARY_NAME,
    Row,
    Summary,
    latest_before,
    read_summary,
    write_summary,
)
from multimeter.measurement import Measurement
from multimeter.multimeter import Multimeter
from multimeter.probe import ResourceProbe
from multimeter.result import Result, us_to_datetime
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage
from multimeter.storages.file import FileStorage, JsonFormat, LineFormat
from multimeter.storages.jsonl import JsonLinesStorage

_PHASES = ("setup", "call", "teardown")
_WORKER_ROWS = "multimeter_rows"


@dataclass(frozen=True)
class Settings:
    """What one run was asked for (the same in the controller and its workers)."""

    run: str
    started: str
    directory: pathlib.Path
    top: int
    #: ``None``: no comparison; ``"latest"``: the latest run before this one; else a path.
    compare_with: str | None
    limits: tuple[Limit, ...]
    git_commit: str | None

    @property
    def run_directory(self) -> pathlib.Path:
        """Where this run's results and summary go."""
        return self.directory / self.run


def _started_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def git_commit(root: pathlib.Path) -> str | None:
    """The commit checked out at ``root`` (``git rev-parse HEAD``), ``None`` without one."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _settings(config: pytest.Config, default_dir: str, default_top: int) -> Settings:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return Settings(
            run=workerinput["multimeter_run"],
            started=workerinput["multimeter_started"],
            directory=pathlib.Path(workerinput["multimeter_dir"]),
            top=0,
            compare_with=None,
            limits=(),
            git_commit=workerinput["multimeter_git_commit"] or None,
        )
    top = config.getoption("multimeter_top")
    if top is None:
        top = default_top
    if top < 0:
        raise pytest.UsageError(f"--multimeter-top={top} is not valid; allowed: a number >= 0")
    fail = config.getoption("multimeter_fail")
    try:
        limits = parse_limits(fail) if fail is not None else ()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    compare_with = config.getoption("multimeter_compare")
    if compare_with is None and limits:
        compare_with = "latest"
    given = config.getoption("multimeter_dir")
    directory = pathlib.Path(given) if given else config.rootpath / default_dir
    if compare_with not in (None, "latest"):
        _check_named_run(directory, compare_with)
    run = _meta.new_run_id()
    while (directory / run).exists():  # two runs started in the same second
        run = _meta.new_run_id()
    return Settings(
        run=run,
        started=_started_now(),
        directory=directory,
        top=top,
        compare_with=compare_with,
        limits=limits,
        git_commit=git_commit(config.rootpath),
    )


def _check_named_run(directory: pathlib.Path, name: str) -> None:
    """Raise a usage error unless ``name`` names a stored run's summary."""
    for candidate in (directory / name, pathlib.Path(name)):
        if candidate.exists():
            try:
                read_summary(candidate)
                return
            except (ValueError, OSError) as error:
                raise pytest.UsageError(
                    f"--multimeter-compare={name!r} is not a stored run ({error}); a word"
                    " after --multimeter-compare is taken as the run to compare with: write"
                    " --multimeter-compare=RUN, or put the option after the tests"
                ) from None
    raise pytest.UsageError(
        f"--multimeter-compare={name!r}: no such run; allowed: the name of a run folder in"
        f" {str(directory)!r}, a run folder or a {SUMMARY_NAME}"
    )


def _storage(run_directory: pathlib.Path) -> tuple[Multimeter, Storage, bool]:
    """(a multimeter of the configured probes, cycle time and tags; where the results
    go; whether that is a file storage in the run folder, written per test)."""
    kind = _env.get(_env.STORAGE)
    in_folder = kind is None or kind.lower() == "file"
    storage: Storage | None = None
    if in_folder:
        text = (_env.get(_env.FORMAT) or "jsonl").lower()
        if text == "json":
            storage = FileStorage(run_directory, JsonFormat())
        elif text == "line":
            storage = FileStorage(run_directory, LineFormat())
        else:
            storage = JsonLinesStorage(run_directory)
    built = _config.build(storage=storage, calls="each")
    probes = built.probes or (ResourceProbe(),)
    meter = Multimeter(*probes, cycle_time=built.cycle_time, storage=DummyStorage())
    meter.set_tags(built.tags)
    return meter, built.storage, in_folder


def _close_marks(marks: MarkSink) -> list[tuple[int, str]]:
    """Stop collecting the test's marks; them, in time order."""
    state = _process.current()
    if state.marks is marks:
        state.marks = marks.outer
    return marks.marks()


class _Test:
    """One test being measured."""

    def __init__(self, measurement: Measurement, memory: tuple[int, int]) -> None:
        self.measurement = measurement
        self.memory = memory
        # The marks of the calls made meanwhile, in any thread (see multimeter._marks).
        state = _process.current()
        self.marks = state.marks = MarkSink(outer=state.marks)
        self.reports: dict[str, pytest.TestReport] = {}
        self.phases: dict[str, float] = {}


class MeasuringPlugin:
    """Measures each test of the run (see the README, "pytest plugin")."""

    def __init__(self, settings: Settings, worker: str) -> None:
        self.settings = settings
        self.worker = worker
        self.meter, self.storage, self.per_test = _storage(settings.run_directory)
        self.memory = PeakMemory()
        self.rows: list[Row] = []
        self.pending: list[Result] = []
        self.tests: dict[str, _Test] = {}
        self.comparison: Comparison | None = None
        self.compare_note = ""
        self.summary_path: pathlib.Path | None = None

    @classmethod
    def from_config(
        cls, config: pytest.Config, *, default_dir: str, default_top: int
    ) -> MeasuringPlugin:
        """The plugin for this run; ``--multimeter-dir`` defaults to ``default_dir`` in the
        root directory, ``--multimeter-top`` to ``default_top``.

        Raises:
            pytest.UsageError: for a bad option or ``MULTIMETER_*`` variable.
        """
        settings = _settings(config, default_dir, default_top)
        workerinput = getattr(config, "workerinput", None)
        worker = str(workerinput.get("workerid", "")) if workerinput is not None else ""
        try:
            return cls(settings, worker)
        except ValueError as error:
            raise pytest.UsageError(f"multimeter: {error}") from None
        except ImportError as error:  # MULTIMETER_STORAGE=influxdb without influxdb-client
            raise pytest.UsageError(
                f"multimeter: {error}; for MULTIMETER_STORAGE=influxdb install"
                " 'multimeter[influxdb]'"
            ) from None

    def measurement_of(self, item: pytest.Item) -> Measurement | None:
        """The measurement of the test ``item`` while it runs."""
        test = self.tests.get(item.nodeid)
        return test.measurement if test is not None else None

    # -- xdist: the controller hands the run to its workers, they send their rows back

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell a new xdist worker which run it measures for."""
        settings = self.settings
        node.workerinput["multimeter_run"] = settings.run
        node.workerinput["multimeter_started"] = settings.started
        node.workerinput["multimeter_dir"] = str(settings.directory)
        node.workerinput["multimeter_git_commit"] = settings.git_commit or ""

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Take the rows of a worker that finished."""
        output = getattr(node, "workeroutput", None) or {}
        for value in output.get(_WORKER_ROWS, ()):
            self.rows.append(Row.from_json(value))

    # -- one measurement per test

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Generator[None]:
        """Measure the test from its setup to its teardown."""
        test = self._begin(item)
        try:
            yield
        finally:
            if test is not None:
                self._end(item, test)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None]:
        """Marks ``setup:enter`` and ``setup:exit``."""
        yield from self._phase(item, "setup")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None]:
        """Marks ``call:enter`` and ``call:exit``."""
        yield from self._phase(item, "call")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: Any) -> Generator[None]:
        """Marks ``teardown:enter`` and ``teardown:exit``."""
        yield from self._phase(item, "teardown")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None]:
        """Keep each phase's report: the test's outcome comes from them."""
        outcome: Any = yield
        test = self.tests.get(item.nodeid)
        if test is not None:
            try:
                report = outcome.get_result()
            except BaseException:  # noqa: BLE001 - another plugin's failure is its own
                return
            test.reports[report.when] = report

    def _phase(self, item: pytest.Item, phase: str) -> Generator[None]:
        test = self.tests.get(item.nodeid)
        if test is None:
            yield
            return
        started = time.perf_counter()
        test.measurement.add_mark(f"{phase}:enter")
        try:
            yield
        finally:
            test.measurement.add_mark(f"{phase}:exit")
            test.phases[phase] = time.perf_counter() - started

    def _begin(self, item: pytest.Item) -> _Test | None:
        try:
            measurement = self.meter.measure(None, **_tags(item))
            memory = self.memory.start()
            measurement.start()
            test = self.tests[item.nodeid] = _Test(measurement, memory)
            return test
        except Exception as error:  # noqa: BLE001 - measuring must not break the test run
            safe_log("error", "measuring a test failed", test=item.nodeid, error=repr(error))
            return None

    def _end(self, item: pytest.Item, test: _Test) -> None:
        self.tests.pop(item.nodeid, None)
        try:
            nested = _close_marks(test.marks)
            measurement = test.measurement
            outcome = _outcome(test.reports, test.phases)
            result = measurement.result
            assert result is not None
            result.tags["outcome"] = outcome
            measurement.end()
            peak, peak_rss = self.memory.peak_rise(test.memory)
            for moment_us, label in nested:
                result.add_mark(us_to_datetime(moment_us), label)
            result.add_meta_data(
                run=self.settings.run,
                session_started=self.settings.started,
                outcome=outcome,
                test=item.nodeid,
            )
            if self.settings.git_commit:
                result.add_meta_data(git_commit=self.settings.git_commit)
            if peak is not None:
                result.add_meta_data(peak_memory_bytes=peak, peak_rss_bytes=peak_rss)
            figures = result.summary()
            self.rows.append(
                Row(
                    test=item.nodeid,
                    outcome=outcome,
                    duration_s=figures["duration_s"],
                    cpu_user_s=figures["cpu_user_s"],
                    cpu_system_s=figures["cpu_system_s"],
                    peak_memory_bytes=peak,
                    peak_rss_bytes=peak_rss,
                    setup_s=test.phases.get("setup"),
                    call_s=test.phases.get("call"),
                    teardown_s=test.phases.get("teardown"),
                    worker=self.worker,
                    identifier=result.identifier,
                )
            )
            self._store(result)
        except Exception as error:  # noqa: BLE001 - measuring must not break the test run
            safe_log("error", "measuring a test failed", test=item.nodeid, error=repr(error))

    def _store(self, result: Result) -> None:
        if not self.per_test:  # a server: one batch at the end of the session
            self.pending.append(result)
            return
        try:
            self.storage.store(result)
        except Exception as error:  # noqa: BLE001 - storing must not break the test run
            safe_log(
                "error",
                "storing a test's result failed",
                identifier=result.identifier,
                storage=describe(self.storage),
                error=repr(error),
            )

    def _store_pending(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        storage: Any = self.storage
        try:
            if callable(getattr(storage, "store_many", None)):
                storage.store_many(pending)
            else:
                for result in pending:
                    storage.store(result)
        except Exception as error:  # noqa: BLE001 - storing must not break the test run
            safe_log(
                "error",
                "storing the tests' results failed",
                results=len(pending),
                storage=describe(storage),
                error=repr(error),
            )

    # -- the end of the run

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Store what is pending; a worker sends its rows, the controller writes the
        summary, compares, and fails the run where the gate says so (``--collect-only``:
        nothing ran, nothing is written)."""
        if session.config.getoption("collectonly", False):
            return
        self._store_pending()
        close = getattr(self.storage, "close", None)
        if callable(close):
            try:
                close()
            except Exception as error:  # noqa: BLE001 - storing must not break the test run
                safe_log("error", "closing the storage failed", error=repr(error))
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[_WORKER_ROWS] = [row.to_json() for row in self.rows]
            return
        self._finish_run()
        if self.comparison is not None and self.comparison.failures and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _finish_run(self) -> None:
        settings = self.settings
        if settings.compare_with is not None:
            baseline = self._baseline()
            if baseline is not None:
                self.comparison = compare(tuple(self.rows), baseline, settings.limits)
        try:
            meta = _meta.process_meta_data()
            meta["run"] = settings.run
            if settings.git_commit:
                meta["git_commit"] = settings.git_commit
            self.summary_path = write_summary(
                settings.run_directory, settings.run, settings.started, self.rows, meta
            )
        except OSError as error:
            safe_log("error", "writing the run's summary failed", error=repr(error))

    def _baseline(self) -> Summary | None:
        settings = self.settings
        wanted = settings.compare_with
        if wanted == "latest":
            found = latest_before(settings.directory, settings.run, settings.started)
            if found is None:
                self.compare_note = (
                    f"nothing to compare with: no earlier run in {settings.directory}"
                )
            return found
        assert wanted is not None
        for candidate in (settings.directory / wanted, pathlib.Path(wanted)):
            if candidate.exists():
                try:
                    return read_summary(candidate)
                except (ValueError, OSError) as error:
                    self.compare_note = f"cannot compare: {error}"
                    return None
        self.compare_note = (
            f"cannot compare: no run {wanted!r} in {settings.directory} (nor a {SUMMARY_NAME})"
        )
        return None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The tests with the most CPU, peak memory and duration; the comparison; the gate."""
        config = terminalreporter.config
        if getattr(config, "workerinput", None) is not None or config.getoption(
            "collectonly", False
        ):
            return
        for line in report_lines(self):
            if line.startswith("="):
                terminalreporter.write_sep("=", line.strip("= "))
            else:
                terminalreporter.write_line(line)


def _tags(item: pytest.Item) -> dict[str, str]:
    module = getattr(getattr(item, "module", None), "__name__", None)
    tags = {
        "test": item.nodeid.rstrip("\\"),
        "module": str(module or item.nodeid.split("::")[0]).rstrip("\\"),
    }
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        tags["params"] = str(callspec.id).rstrip("\\")
    return tags


def _outcome(reports: dict[str, pytest.TestReport], phases: dict[str, float]) -> str:
    """passed, failed, skipped, error, xfailed or xpassed, as pytest reports it;
    interrupted where a phase began and has no report (Ctrl-C, ``pytest.exit()``)."""
    if any(phase not in reports for phase in phases):
        return "interrupted"
    setup, call, teardown = (reports.get(phase) for phase in _PHASES)
    if setup is not None and setup.failed:
        return "error"
    if setup is not None and setup.skipped:
        return "xfailed" if hasattr(setup, "wasxfail") else "skipped"
    if call is not None:
        if hasattr(call, "wasxfail"):
            return "xfailed" if call.skipped else "xpassed"
        if call.failed:
            return "failed"
        if call.skipped:
            return "skipped"
    if teardown is not None and teardown.failed:
        return "error"
    return "passed"


def report_lines(plugin: MeasuringPlugin) -> Iterator[str]:
    """The terminal summary, line by line (a line starting with ``=`` is a heading)."""
    settings = plugin.settings
    rows = plugin.rows
    yield f"= multimeter: {len(rows)} tests measured, run {settings.run} ="
    top = settings.top
    for title, read, unit in (
        ("most CPU (user + system)", lambda row: row.cpu_s, "s"),
        ("most peak memory (above the test's start)", lambda row: row.peak_memory_bytes, "B"),
        ("longest duration (setup to teardown)", lambda row: row.duration_s, "s"),
    ):
        known = [row for row in rows if read(row) is not None]
        if not top or not known:
            continue
        yield f"{title}:"
        for row in sorted(known, key=lambda row: -read(row))[:top]:
            yield f"  {format_value(read(row), unit):>10}  {row.test}"
    if plugin.summary_path is not None:
        yield f"results and summary: {plugin.summary_path.parent}"
    comparison = plugin.comparison
    if plugin.compare_note:
        yield plugin.compare_note
    if comparison is None:
        return
    baseline = comparison.baseline
    yield f"= multimeter: compared with run {baseline.run} ="
    shown = top or 5
    for figure, (_, floor, unit) in FIGURES.items():
        grown = sorted(
            (c for c in comparison.changes if c.figure == figure and c.growth > floor),
            key=lambda c: -c.growth,
        )[:shown]
        if grown:
            yield f"grew most in {figure} (by more than {format_value(floor, unit)}):"
            for change in grown:
                yield f"  {change.describe():<44}  {change.test}"
    for label, tests in (("new", comparison.new), ("gone", comparison.gone)):
        if tests:
            more = f" (and {len(tests) - shown} more)" if len(tests) > shown else ""
            yield f"{label} tests, not compared: {', '.join(tests[:shown])}{more}"
    if settings.limits:
        limits = ", ".join(f"{limit.figure} +{limit.percent:g}%" for limit in settings.limits)
        if comparison.failures:
            yield f"= multimeter: FAILED the gate ({limits}) ="
            for change in comparison.failures:
                yield f"  worse: {change.test}: {change.describe()}"
        else:
            yield f"multimeter: passed the gate ({limits}) against run {baseline.run}"
