"""The pytest plugin, run the way a user runs it: pytest in a subprocess on small real suites."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

import multimeter
from tests._programs import run_python
from tests.servers import VictoriaMetrics

pytest_plugins = ["pytester"]

# Each test runs whole pytest sessions (several, for the gate): past the 120 s default
# on a loaded machine.
pytestmark = pytest.mark.timeout(300)

#: A small suite: a fast test, a CPU-heavy one (BURN times heavier), an allocating
#: one, a failing one, a parametrized one calling a measured function, a fixture
#: with a heavy setup, and the outcomes pytest knows.
SUITE = """
import os
import threading
import time

import pytest

import multimeter


@multimeter.measured
def inner(n):
    return sum(range(n))


def burn(seconds):
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


@pytest.fixture
def heavy_setup():
    burn(0.15)
    yield "ready"


def test_fast():
    assert True


def test_cpu():
    burn(0.2 * float(os.environ.get("BURN", "1")))


def test_alloc():
    data = [bytes(1000) for _ in range(60_000)]
    assert len(data) == 60_000


def test_fails():
    assert 1 == 2


@pytest.mark.parametrize("n", [10, 20], ids=["small", "large"])
def test_param(n):
    assert inner(n) > 0
    worker = threading.Thread(target=inner, args=(n,))
    worker.start()
    worker.join()


def test_setup_heavy(heavy_setup, multimeter_measurement):
    multimeter_measurement.add_mark("checked")
    multimeter_measurement.result.add_meta_data(rows=42)
    assert heavy_setup == "ready"


def test_skipped():
    pytest.skip("not today")


@pytest.mark.xfail(strict=False)
def test_xfailed():
    assert False


@pytest.mark.xfail(strict=False)
def test_xpassed():
    assert True


@pytest.fixture
def broken():
    raise RuntimeError("no fixture today")


def test_error(broken):
    pass
"""

#: Only tests that pass, so a gate's verdict is the only thing that can fail the run.
PASSING = """
import os
import time


def burn(seconds):
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def test_fast():
    assert True


def test_cpu():
    burn(0.2 * float(os.environ.get("BURN", "1")))


def test_alloc():
    # 20 MB: its CPU (page faults, about 0.02 s) may double on a loaded machine and
    # still stay under the gate's 0.05 s floor; the gate tests grow test_cpu alone.
    data = [bytes(1000) for _ in range(20_000)]
    assert len(data) == 20_000
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The small suite in a fresh directory, without a MULTIMETER_PYTEST of the outer run."""
    monkeypatch.delenv("MULTIMETER_PYTEST", raising=False)
    monkeypatch.delenv("BURN", raising=False)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def _runs(pytester: pytest.Pytester) -> list[pathlib.Path]:
    """The run folders in the order the runs started (two may share a second in their name)."""
    folders = [p for p in (pytester.path / ".multimeter").iterdir() if p.is_dir()]
    return sorted(
        folders, key=lambda p: json.loads((p / "pytest-summary.json").read_text())["started"]
    )


def _summary(run: pathlib.Path) -> dict[str, dict]:
    document = json.loads((run / "pytest-summary.json").read_text())
    return {row["test"]: row for row in document["tests"]}


def _results(run: pathlib.Path) -> dict[str, multimeter.Result]:
    return {result.tags["test"]: result for result in multimeter.load_results(run)}


def test_without_being_asked_the_plugin_writes_nothing_and_imports_nothing(suite):
    """No --multimeter: the run's output, exit status and files are as without the plugin."""
    suite.makepyfile(
        test_imports="""
        import sys

        def test_multimeter_not_imported_by_the_plugin():
            assert "pytest_multimeter" in sys.modules
            assert "multimeter._testrun.plugin" not in sys.modules
        """
    )
    unasked = _run(suite, "test_imports.py")

    assert 0 == unasked.ret
    assert "multimeter:" not in unasked.stdout.str()
    assert not (suite.path / ".multimeter").exists()


def test_unasked_run_of_a_suite_is_unchanged(suite):
    """The same outcomes, exit status and no result folder without --multimeter."""
    plain = _run(suite, "-p", "no:multimeter", "-k", "not setup_heavy")
    unasked = _run(suite, "-k", "not setup_heavy")

    assert plain.ret == unasked.ret == 1
    expected = plain.parseoutcomes()
    expected.pop("seconds", None)
    actual = unasked.parseoutcomes()
    actual.pop("seconds", None)
    assert expected == actual
    assert not (suite.path / ".multimeter").exists()


class MeasuredRun:
    """The small suite, run once with --multimeter for the tests that only read what it left."""

    def __init__(self, directory: pathlib.Path) -> None:
        (directory / "test_suite.py").write_text(SUITE)
        environment = {
            k: v for k, v in os.environ.items() if k not in ("MULTIMETER_PYTEST", "BURN")
        }
        command = ["-m", "pytest", "-p", "no:cacheprovider", "--multimeter"]
        done = run_python(*command, cwd=directory, env=environment, timeout=300)
        self.status = done.returncode
        self.output = done.stdout
        (self.run,) = sorted(p for p in (directory / ".multimeter").iterdir() if p.is_dir())
        self.rows = _summary(self.run)
        self.results = _results(self.run)


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory) -> MeasuredRun:
    """The small suite's run with --multimeter (once for the module)."""
    return MeasuredRun(tmp_path_factory.mktemp("measured_run"))


def test_measuring_keeps_the_exit_status(measured_run):
    """The failing test fails the run, as without the plugin; the run's folder is made."""
    assert 1 == measured_run.status
    assert measured_run.run.parent.name == ".multimeter"


def test_each_test_is_one_measurement_with_its_outcome(measured_run):
    """One result per test, tagged with pytest's outcome."""
    outcomes = {test.split("::")[1]: r.tags["outcome"] for test, r in measured_run.results.items()}
    assert {
        "test_fast": "passed",
        "test_cpu": "passed",
        "test_alloc": "passed",
        "test_fails": "failed",
        "test_param[small]": "passed",
        "test_param[large]": "passed",
        "test_setup_heavy": "passed",
        "test_skipped": "skipped",
        "test_xfailed": "xfailed",
        "test_xpassed": "xpassed",
        "test_error": "error",
    } == outcomes


def test_phases_are_marks_and_tags_name_the_test(measured_run):
    """setup, call and teardown as enter/exit marks; test, module and params tags."""
    fast = measured_run.results["test_suite.py::test_fast"]
    labels = [m.label for m in fast.marks]
    assert [
        "setup:enter",
        "setup:exit",
        "call:enter",
        "call:exit",
        "teardown:enter",
        "teardown:exit",
    ] == labels
    assert "test_suite.py::test_fast" == fast.tags["test"]
    assert "test_suite" == fast.tags["module"]
    assert "large" == measured_run.results["test_suite.py::test_param[large]"].tags["params"]


def test_every_result_carries_the_run_and_the_session_start(measured_run):
    """The run's identifier (its folder's name) and the session's start, on every result."""
    results = measured_run.results.values()
    assert {measured_run.run.name} == {r.meta_data["run"] for r in results}
    assert 1 == len({r.meta_data["session_started"] for r in results})


def test_measured_calls_inside_a_test_mark_its_measurement(measured_run):
    """A @measured call in the test puts its enter and exit marks in the test's result."""
    marks = [m.label for m in measured_run.results["test_suite.py::test_param[small]"].marks]
    assert "inner:enter" in marks
    assert "inner:exit" in marks


def test_calls_in_a_thread_the_test_starts_mark_its_measurement(measured_run):
    """test_param calls inner() itself and in a thread it starts: both calls are marked
    on the test, and on no other test."""
    for name in ("test_param[small]", "test_param[large]"):
        marks = [m.label for m in measured_run.results[f"test_suite.py::{name}"].marks]
        assert 2 == marks.count("inner:enter") == marks.count("inner:exit")
    fast = measured_run.results["test_suite.py::test_fast"]
    assert "inner:enter" not in [m.label for m in fast.marks]


def test_the_fixture_gives_the_tests_measurement(measured_run):
    """multimeter_measurement adds marks and meta data to the test's own result."""
    result = measured_run.results["test_suite.py::test_setup_heavy"]
    assert "checked" in [m.label for m in result.marks]
    assert "42" == result.meta_data["rows"]


def test_a_heavy_fixture_shows_in_setup(measured_run):
    """The fixture's 150 ms of CPU lie between setup:enter and setup:exit."""
    row = measured_run.rows["test_suite.py::test_setup_heavy"]
    assert row["setup_s"] > 0.1
    assert row["setup_s"] > 5 * row["call_s"]
    result = measured_run.results["test_suite.py::test_setup_heavy"]
    marks = {m.label: m.datetime for m in result.marks}
    assert (marks["setup:exit"] - marks["setup:enter"]).total_seconds() > 0.1


def test_the_summary_has_a_row_per_test_with_its_figures(measured_run):
    """CPU seconds, peak memory above the test's start, duration and outcome per test."""
    rows = measured_run.rows
    assert 11 == len(rows)
    cpu = rows["test_suite.py::test_cpu"]
    assert cpu["cpu_user_s"] + cpu["cpu_system_s"] >= 0.19
    assert cpu["duration_s"] >= 0.19
    assert "passed" == cpu["outcome"]
    assert rows["test_suite.py::test_alloc"]["peak_memory_bytes"] > 40 * 2**20
    assert rows["test_suite.py::test_fast"]["peak_memory_bytes"] < 2**20


def test_the_summary_is_as_readable_as_the_results(measured_run):
    """The summary gets the results files' mode (0644 less the umask), not a temporary
    file's 0600: whoever may read the results may read the summary."""
    (batch,) = measured_run.run.glob("*.jsonl")
    summary = measured_run.run / "pytest-summary.json"
    assert oct(batch.stat().st_mode & 0o777) == oct(summary.stat().st_mode & 0o777)
    assert not list(measured_run.run.glob(".summary-*"))


def test_the_terminal_names_the_heaviest_tests_first(measured_run):
    """Like --durations: the tests with the most CPU, peak memory and duration."""
    text = measured_run.output
    most_cpu = text.split("most CPU (user + system):")[1].splitlines()[1:3]
    most_memory = text.split("most peak memory")[1].splitlines()[1]
    assert any("test_suite.py::test_cpu" in line for line in most_cpu)
    assert "test_suite.py::test_alloc" in most_memory
    assert "longest duration" in text
    assert "11 tests measured" in text


def test_the_fixture_works_without_the_plugin(suite):
    """Without --multimeter the fixture is a measurement that is not stored: the test passes."""
    ran = _run(suite, "-k", "test_setup_heavy")

    assert 0 == ran.ret
    ran.assert_outcomes(passed=1)


def test_xdist_workers_measure_and_the_summary_covers_all(suite):
    """With -n 2 each worker measures its tests; one summary holds every test."""
    ran = _run(suite, "--multimeter", "-n", "2")

    assert 1 == ran.ret
    (run,) = _runs(suite)
    rows = _summary(run)
    assert 11 == len(rows)
    assert {"gw0", "gw1"} == {row["worker"] for row in rows.values()}
    results = _results(run)
    assert set(rows) == set(results)
    assert {run.name} == {r.meta_data["run"] for r in results.values()}
    assert "11 tests measured" in ran.stdout.str()


def _passing_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("MULTIMETER_PYTEST", raising=False)
    monkeypatch.delenv("BURN", raising=False)
    pytester.makepyfile(test_passing=PASSING)
    return pytester


def test_the_gate_fails_a_test_that_got_twice_as_cpu_heavy(pytester, monkeypatch):
    """cpu:50%: a test burning twice the CPU fails the run, and the output names it."""
    suite = _passing_suite(pytester, monkeypatch)
    assert 0 == _run(suite, "--multimeter").ret

    monkeypatch.setenv("BURN", "2")
    ran = _run(suite, "--multimeter-compare", "--multimeter-fail=cpu:50%")

    assert 1 == ran.ret
    text = ran.stdout.str()
    assert "FAILED the gate" in text
    worse = [line for line in text.splitlines() if line.strip().startswith("worse:")]
    assert 1 == len(worse)
    assert "test_passing.py::test_cpu" in worse[0]
    assert "cpu" in worse[0]
    ran.assert_outcomes(passed=3)


def test_with_xdist_the_gate_covers_every_workers_tests(pytester, monkeypatch):
    """-n 2 both times: the comparison sees every test, and the regressed one fails the run."""
    suite = _passing_suite(pytester, monkeypatch)
    assert 0 == _run(suite, "--multimeter", "-n", "2").ret

    monkeypatch.setenv("BURN", "2")
    ran = _run(suite, "--multimeter-fail=cpu:50%", "-n", "2")

    assert 1 == ran.ret
    text = ran.stdout.str()
    worse = [line for line in text.splitlines() if line.strip().startswith("worse:")]
    assert ["test_passing.py::test_cpu"] == [line.split()[1].rstrip(":") for line in worse]
    assert "new tests" not in text
    assert "gone tests" not in text


@pytest.mark.slow  # eleven pytest sessions: minutes on a loaded machine
@pytest.mark.timeout(600)
def test_the_gate_passes_an_unchanged_suite_ten_times_in_a_row(pytester, monkeypatch):
    """An unchanged suite against its first run passes cpu:50%,memory:10% ten times."""
    suite = _passing_suite(pytester, monkeypatch)
    assert 0 == _run(suite, "--multimeter").ret
    baseline = _runs(suite)[0].name

    verdicts = []
    for _ in range(10):
        ran = _run(
            suite, f"--multimeter-compare={baseline}", "--multimeter-fail=cpu:50%,memory:10%"
        )
        verdicts.append((ran.ret, "passed the gate" in ran.stdout.str()))

    assert [(0, True)] * 10 == verdicts


def test_compare_defaults_to_the_latest_earlier_run(pytester, monkeypatch):
    """--multimeter-compare without a value compares with the run stored last before."""
    suite = _passing_suite(pytester, monkeypatch)
    _run(suite, "--multimeter")
    _run(suite, "--multimeter")
    second = _runs(suite)[1].name

    ran = _run(suite, "--multimeter-compare")

    assert f"compared with run {second}" in ran.stdout.str()


def test_new_and_gone_tests_are_listed_never_failed(pytester, monkeypatch):
    """A renamed test is gone and new: listed, and the gate passes."""
    suite = _passing_suite(pytester, monkeypatch)
    _run(suite, "--multimeter")
    suite.makepyfile(test_passing=PASSING.replace("def test_fast", "def test_quick"))

    ran = _run(suite, "--multimeter-fail=cpu:50%")

    assert 0 == ran.ret
    text = ran.stdout.str()
    assert "new tests, not compared: test_passing.py::test_quick" in text
    assert "gone tests, not compared: test_passing.py::test_fast" in text


def test_the_first_run_has_nothing_to_compare_with_and_passes(pytester, monkeypatch):
    """A gate without an earlier run says so and does not fail the run."""
    suite = _passing_suite(pytester, monkeypatch)

    ran = _run(suite, "--multimeter-fail=cpu:50%")

    assert 0 == ran.ret
    assert "nothing to compare with" in ran.stdout.str()


def test_a_test_stopped_by_ctrl_c_is_interrupted_and_the_run_folder_is_whole(pytester, monkeypatch):
    """Ctrl-C inside a test: its row says interrupted (not passed), the summary is written."""
    monkeypatch.delenv("MULTIMETER_PYTEST", raising=False)
    pytester.makepyfile(
        test_stopped="""
        import os
        import signal


        def test_before():
            pass


        def test_stopped():
            signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
            os.kill(os.getpid(), signal.SIGINT)


        def test_never_run():
            pass
        """
    )

    ran = _run(pytester, "--multimeter")

    assert pytest.ExitCode.INTERRUPTED == ran.ret
    (run,) = _runs(pytester)
    outcomes = {test: row["outcome"] for test, row in _summary(run).items()}
    assert {
        "test_stopped.py::test_before": "passed",
        "test_stopped.py::test_stopped": "interrupted",
    } == outcomes
    assert 2 == len(_results(run))


def test_an_interrupted_test_is_never_a_baseline_for_the_gate(pytester, monkeypatch):
    """A test cut short by Ctrl-C has tiny figures: the next run's are not failed against them."""
    suite = _passing_suite(pytester, monkeypatch)
    suite.makeconftest(
        """
        import os
        import signal


        def pytest_runtest_call(item):
            if os.environ.get("STOP") and item.name == "test_cpu":
                signal.signal(signal.SIGINT, signal.default_int_handler)
                os.kill(os.getpid(), signal.SIGINT)
        """
    )
    monkeypatch.setenv("STOP", "1")
    assert pytest.ExitCode.INTERRUPTED == _run(suite, "--multimeter").ret
    monkeypatch.delenv("STOP")

    ran = _run(suite, "--multimeter-fail=cpu:50%")

    assert 0 == ran.ret, ran.stdout.str()
    assert "passed the gate" in ran.stdout.str()


def test_a_collect_only_run_writes_nothing_and_is_no_baseline(pytester, monkeypatch):
    """--collect-only measures nothing: no run folder, and the gate still compares with
    the last run that measured the tests (an empty run would let any regression pass)."""
    suite = _passing_suite(pytester, monkeypatch)
    assert 0 == _run(suite, "--multimeter").ret
    (first,) = _runs(suite)

    collected = _run(suite, "--multimeter", "--collect-only")

    assert 0 == collected.ret
    assert [first] == _runs(suite)
    assert "tests measured" not in collected.stdout.str()
    monkeypatch.setenv("BURN", "2")
    ran = _run(suite, "--multimeter-fail=cpu:50%")
    assert 1 == ran.ret
    assert f"compared with run {first.name}" in ran.stdout.str()


def test_a_run_that_measured_no_test_is_passed_over_as_baseline(pytester, monkeypatch):
    """-k matching nothing stores an empty run: the next compare looks past it."""
    suite = _passing_suite(pytester, monkeypatch)
    _run(suite, "--multimeter")
    (first,) = _runs(suite)
    assert pytest.ExitCode.NO_TESTS_COLLECTED == _run(suite, "--multimeter", "-k", "nothing").ret
    assert 2 == len(_runs(suite))

    ran = _run(suite, "--multimeter-compare")

    assert f"compared with run {first.name}" in ran.stdout.str()


@pytest.mark.parametrize(
    "limits", ["cpu:50", "cpu=50%", "disk:10%", "cpu:50%,", "cpu:x%", "", "cpu:50%,cpu:20%"]
)
def test_a_bad_gate_is_a_usage_error_naming_the_setting(pytester, monkeypatch, limits):
    """Bad --multimeter-fail: exit status 4 and one line naming the option and the form."""
    suite = _passing_suite(pytester, monkeypatch)

    ran = _run(suite, f"--multimeter-fail={limits}")

    assert pytest.ExitCode.USAGE_ERROR == ran.ret
    error = ran.stderr.str()
    assert "--multimeter-fail" in error
    assert "cpu:20%,memory:10%,duration:25%" in error
    assert "Traceback" not in error


def test_comparing_with_a_run_that_is_not_there_is_a_usage_error(pytester, monkeypatch):
    """--multimeter-compare=NAME of no stored run: exit status 4, one line naming it."""
    suite = _passing_suite(pytester, monkeypatch)

    ran = _run(suite, "--multimeter-compare=20200101T000000-000000")

    assert pytest.ExitCode.USAGE_ERROR == ran.ret
    assert "--multimeter-compare='20200101T000000-000000': no such run" in ran.stderr.str()
    assert "Traceback" not in ran.stderr.str()


def test_a_path_after_compare_is_a_usage_error_that_says_how_to_write_it(pytester, monkeypatch):
    """`pytest --multimeter-compare tests.py`: the path is taken as the run; the one line
    says so and how to write the option instead."""
    suite = _passing_suite(pytester, monkeypatch)

    ran = _run(suite, "--multimeter-compare", "test_passing.py")

    assert pytest.ExitCode.USAGE_ERROR == ran.ret
    error = ran.stderr.str()
    assert "--multimeter-compare='test_passing.py' is not a stored run" in error
    assert "write --multimeter-compare=RUN, or put the option after the tests" in error
    assert "Traceback" not in error


def test_environment_variable_switches_it_on(pytester, monkeypatch):
    """MULTIMETER_PYTEST=1 measures like --multimeter."""
    suite = _passing_suite(pytester, monkeypatch)
    monkeypatch.setenv("MULTIMETER_PYTEST", "1")

    ran = _run(suite, "--multimeter-dir", "results")

    assert 0 == ran.ret
    (run,) = (suite.path / "results").iterdir()
    assert 3 == len(_summary(run))


def test_the_git_commit_is_meta_data_where_there_is_one(pytester, monkeypatch):
    """In a git checkout every result carries the commit; without git nothing fails."""
    suite = _passing_suite(pytester, monkeypatch)
    _run(suite, "--multimeter", "-k", "fast")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=suite.path, check=True)
    subprocess.run([*git, "add", "test_passing.py"], cwd=suite.path, check=True)
    subprocess.run([*git, "commit", "-qm", "suite"], cwd=suite.path, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=suite.path, capture_output=True, text=True, check=True
    ).stdout.strip()

    _run(suite, "--multimeter", "-k", "fast")

    without, within = _runs(suite)
    assert "git_commit" not in _results(without)["test_passing.py::test_fast"].meta_data
    assert commit == _results(within)["test_passing.py::test_fast"].meta_data["git_commit"]


needs_victoria = pytest.mark.skipif(
    VictoriaMetrics.binary is None, reason="victoria-metrics is not installed (.ci/run installs it)"
)


@needs_victoria
def test_results_go_to_influxdb_when_configured(pytester, monkeypatch, tmp_path):
    """MULTIMETER_STORAGE=influxdb sends each test's result to the server; the summary stays."""
    server = VictoriaMetrics(tmp_path / "victoria")
    server.start()
    try:
        suite = _passing_suite(pytester, monkeypatch)
        monkeypatch.setenv("MULTIMETER_STORAGE", "influxdb")
        monkeypatch.setenv("MULTIMETER_INFLUXDB_URL", server.url)
        monkeypatch.setenv("MULTIMETER_INFLUXDB_TOKEN", "token")
        monkeypatch.setenv("MULTIMETER_SPOOL_DIR", str(tmp_path / "spool"))

        ran = _run(suite, "--multimeter")

        assert 0 == ran.ret
        series = server.export(".*cpu_user.*")
        tests = {s["metric"].get("test") for s in series}
        assert {
            "test_passing.py::test_fast",
            "test_passing.py::test_cpu",
            "test_passing.py::test_alloc",
        } <= tests
        assert {"passed"} == {s["metric"].get("outcome") for s in series if s["metric"].get("test")}
        (run,) = _runs(suite)
        assert 3 == len(_summary(run))
    finally:
        server.stop()


def test_the_entry_module_imports_no_part_of_multimeter():
    """Loading the plugin imports pytest_multimeter alone, not the multimeter package."""
    code = (
        "import sys, pytest_multimeter;"
        " print(sorted(m for m in sys.modules if m.split('.')[0].endswith('multimeter')))"
    )
    out = run_python("-c", code, check=True)

    assert "['pytest_multimeter']" == out.stdout.strip()
