"""``multimeter report``: one self-contained HTML page, opened in a real Chromium.

The results come from real programs run in subprocesses; the report is written
by the real command line and opened with Debian's ``chromium`` headless, driven by
Playwright (no browser is downloaded: ``executable_path`` names the system one).
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from multimeter import Result, load_result, load_results
from tests._cli_results import fifo_read, null_device
from tests._programs import environment, run_python

CHROMIUM = "/usr/bin/chromium"

#: A job of three @measured phases inside a @measured job, and a measurement of
#: the same work with plain marks; the job waits for a child process, so the
#: ``children`` subject has figures too.
JOB = textwrap.dedent(
    """
    import subprocess, sys, time
    import multimeter
    from multimeter import FileStorage, JsonFormat

    multimeter.configure(
        storage=FileStorage(sys.argv[1], JsonFormat()), cycle_time=0.01,
        tags={"job": "nightly", "note": sys.argv[2]},
    )

    @multimeter.measured
    def extract(n):
        return [str(i) * 3 for i in range(n)]

    @multimeter.measured
    def transform(rows):
        subprocess.run([sys.executable, "-c", "sum(range(3 * 10**6))"], check=True)
        return sorted(rows, reverse=True)

    @multimeter.measured
    def load(rows):
        time.sleep(0.05)
        return len(rows)

    @multimeter.measured
    def job():
        return load(transform(extract(100_000)))

    job()
    measurement = multimeter.get_multimeter().measure("marked", stage="marked")
    with measurement:
        measurement.add_mark("begin")
        extract(50_000)
        measurement.add_mark("middle")
        time.sleep(0.05)
        measurement.add_mark("end")
    """
)

#: One measurement, tagged with the first argument and with a mark labelled with it.
TAGGED = textwrap.dedent(
    """
    import sys
    import multimeter
    from multimeter import FileStorage, JsonFormat

    meter = multimeter.configure(storage=FileStorage(sys.argv[1], JsonFormat()), cycle_time=0.01)
    measurement = meter.measure("tagged", note=sys.argv[2])
    with measurement:
        measurement.add_mark(sys.argv[2])
        sum(range(10**6))
    """
)

#: Many short @measured calls of three functions (one of them raises), stored
#: as JSON Lines batch files as multimeter does by default.
MANY_CALLS = textwrap.dedent(
    """
    import sys
    import multimeter
    from multimeter import JsonLinesStorage

    multimeter.configure(storage=JsonLinesStorage(sys.argv[1]), cycle_time=0.05)

    @multimeter.measured
    def fetch(i):
        return sum(range(100 * (i % 5)))

    @multimeter.measured
    def compute(i):
        return sum(range(1000 * (i % 7)))

    @multimeter.measured
    def fail(i):
        raise ValueError(i)

    for i in range(300):
        fetch(i)
        compute(i)
        if i % 50 == 0:
            try:
                fail(i)
            except ValueError:
                pass
    """
)

#: One result of 100,000 points of every ResourceProbe measure (a 10 ms cycle for
#: about 17 minutes), with a one-point spike every 9,973 points and a mark every
#: 10,000: what a long run leaves, stored as JSON.
BIG = textwrap.dedent(
    """
    import math, sys
    from datetime import datetime, timedelta, timezone
    from multimeter import FileStorage, JsonFormat, Result, ResourceProbe

    probe = ResourceProbe()
    result = Result(probe, identifier="big", tags={"size": "100k"})
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    keys = [measure.key for measure in probe.measures]
    for i in range(100_000):
        moment = start + timedelta(milliseconds=10 * i)
        spike = 50.0 if i % 9973 == 5000 else 0.0
        result.append(moment, {
            key: abs(math.sin(i / 700 + j)) * (1e8 if "rss" in key else 1) + spike
            for j, key in enumerate(keys)
        })
        if i % 10_000 == 0:
            result.add_mark(moment, f"step {i}")
    FileStorage(sys.argv[1], JsonFormat()).store(result)
    """
)


def _run_program(source: str, tmp_path: pathlib.Path, *args: str, **env: str) -> None:
    script = tmp_path / f"program_{abs(hash(source))}.py"
    script.write_text(source)
    run_python(script, *args, cwd=tmp_path, env=environment(**env), check=True, timeout=300)


def _report(*args: str | os.PathLike[str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "multimeter", "report", *args, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def job_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """Two runs of the job program: result files by name (``job-1``, ``marked-2``...)."""
    base = tmp_path_factory.mktemp("job")
    files = {}
    for number in (1, 2):
        _run_program(
            JOB, base, str(base / f"run{number}"), f"run {number}", MULTIMETER_RUN=f"run-{number}"
        )
        for result_file in (base / f"run{number}").iterdir():
            result = load_result(result_file)
            name = result.meta_data.get("function") or result.identifier
            files[f"{name}-{number}"] = result_file
    return files


# -- the browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')"
    )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Page:
    """A report opened in the browser, with what it logged and requested."""

    def __init__(self, browser: Any, path: pathlib.Path) -> None:
        self.url = path.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.console: list[tuple[str, str]] = []
        self.requests: list[str] = []
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.console.append(("pageerror", str(error))))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.load()

    def load(self) -> float:
        """(Re)load the page; milliseconds from navigation start to all charts drawn."""
        self.page.goto(self.url)
        self.page.wait_for_function("window.multimeterReady !== undefined", timeout=30_000)
        return float(self.page.evaluate("window.multimeterReady"))

    def evaluate(self, script: str) -> Any:
        return self.page.evaluate(script)

    def charts(self) -> dict[str, int]:
        """Series drawn per chart (by metric), read from the uPlot instances."""
        pairs = self.evaluate(
            "window.multimeterCharts.map(u => [u.root.parentNode.dataset.metric,"
            " u.series.length - 1, u.data[0].length])"
        )
        assert all(rows > 0 for _, _, rows in pairs), pairs
        return {metric: count for metric, count, _ in pairs}

    def table(self, selector: str) -> list[list[str]]:
        """The cells of a table's body, row by row."""
        rows: list[list[str]] = self.evaluate(
            f"[...document.querySelectorAll({json.dumps(selector + ' tbody tr')})]"
            ".map(tr => [...tr.children].map(td => td.textContent))"
        )
        return rows

    def data(self) -> Any:
        return self.evaluate("JSON.parse(document.getElementById('multimeter-data').textContent)")

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """Opens a report; checks on the way out that it logged no error and requested
    nothing but the file itself."""
    pages: list[Page] = []

    def open_(path: pathlib.Path) -> Page:
        page = Page(browser, path)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        assert [] == [m for m in page.console if m[0] in ("error", "pageerror", "warning")]
        assert {page.url} == set(page.requests)
        page.close()


def expected_series(results: list[Result]) -> dict[str, int]:
    """Per metric, the (result, subject) pairs with a non-zero value somewhere."""
    counts: dict[str, int] = {}
    for result in results:
        for measure in result.schema.measures:
            if any(value for value in result.values(measure.key)):
                counts[measure.metric.key] = counts.get(measure.metric.key, 0) + 1
    return counts


# -- one result -------------------------------------------------------------------------


def test_report_of_a_measured_job_charts_every_metric_with_its_subjects(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path, open_page: Any
) -> None:
    """A chart per metric with a non-zero value, one series per subject; nothing
    but the path written on stderr, nothing on stdout."""
    output = tmp_path / "job.html"
    completed = _report(job_results["job-1"], "-o", output, cwd=tmp_path)
    assert (0, "") == (completed.returncode, completed.stdout)
    assert f"multimeter report: wrote {output}\n" == completed.stderr
    result = load_result(job_results["job-1"])
    expected = expected_series([result])

    page = open_page(output)

    assert expected == page.charts()
    assert expected["cpu_user"] == 2  # the process and the child it waited for
    assert "true" == page.evaluate("document.body.dataset.chartsDrawn")


def test_measured_calls_become_nested_intervals_and_marks_are_listed(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path, open_page: Any
) -> None:
    """The job's phases are intervals one level below the job; every mark is in the
    marks table with its time from the start."""
    output = tmp_path / "job.html"
    assert 0 == _report(job_results["job-1"], "-o", output, cwd=tmp_path).returncode
    result = load_result(job_results["job-1"])

    page = open_page(output)
    intervals = page.data()["runs"][0]["intervals"]
    marks = page.table("#marks table")

    assert [["job", 0], ["extract", 1], ["transform", 1], ["load", 1]] == [
        [name, depth] for _, _, name, depth, _ in intervals
    ]
    assert all(ok for *_, ok in intervals)
    assert [mark.label for mark in result.marks] == [label for _, label in marks]
    assert 8 == len(marks)


def test_plain_marks_are_labelled_and_tags_and_meta_data_are_in_a_table(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path, open_page: Any
) -> None:
    """A measurement's own marks are listed in order; its tags and meta data are rows."""
    output = tmp_path / "marked.html"
    assert 0 == _report(job_results["marked-1"], "-o", output, cwd=tmp_path).returncode

    page = open_page(output)
    facts = {(kind, key): value for kind, key, value in page.table("#facts table")}

    assert ["begin", "middle", "end"] == [label for _, label in page.table("#marks table")]
    assert "nightly" == facts[("tag", "job")]
    assert "marked" == facts[("tag", "stage")]
    assert "run-1" == facts[("meta", "run")]
    assert ("meta", "started") in facts


def test_drag_zooms_every_chart_shift_drag_pans_double_click_resets_ctrl_wheel_zooms(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path, open_page: Any
) -> None:
    """The charts of a page follow each other: zoom (drag, ctrl + wheel), pan and reset
    in one act on all; a plain wheel leaves the charts alone."""
    output = tmp_path / "job.html"
    assert 0 == _report(job_results["job-1"], "-o", output, cwd=tmp_path).returncode
    page = open_page(output)
    ranges = "window.multimeterCharts.map(u => [u.scales.x.min, u.scales.x.max])"
    over = page.page.locator(".u-over").first.bounding_box()
    y = over["y"] + over["height"] / 2

    def drag(start: float, end: float, *, shift: bool = False) -> None:
        if shift:
            page.page.keyboard.down("Shift")
        page.page.mouse.move(over["x"] + over["width"] * start, y)
        page.page.mouse.down()
        page.page.mouse.move(over["x"] + over["width"] * end, y, steps=5)
        page.page.mouse.up()
        if shift:
            page.page.keyboard.up("Shift")

    full = page.evaluate(ranges)
    drag(0.25, 0.5)
    zoomed = page.evaluate(ranges)
    drag(0.5, 0.25, shift=True)
    panned = page.evaluate(ranges)
    page.page.mouse.dblclick(over["x"] + over["width"] / 2, y)
    reset = page.evaluate(ranges)
    page.page.mouse.wheel(0, -100)  # a plain wheel scrolls the page
    page.page.wait_for_timeout(200)  # (wheel() does not wait for the event)
    scrolled = page.evaluate(ranges)
    page.page.keyboard.down("Control")
    page.page.mouse.wheel(0, -100)  # ctrl + wheel zooms in around the cursor
    page.page.keyboard.up("Control")
    page.page.wait_for_timeout(200)
    wheeled = page.evaluate(ranges)

    width = full[0][1] - full[0][0]
    assert len(set(map(tuple, zoomed))) == 1  # every chart shows the same range
    assert zoomed[0][1] - zoomed[0][0] == pytest.approx(width / 4, rel=0.1)
    assert zoomed[0][0] == pytest.approx(full[0][0] + width / 4, abs=width * 0.03)
    assert len(set(map(tuple, panned))) == 1
    assert panned[0][1] - panned[0][0] == pytest.approx(width / 4, rel=0.01)
    assert panned[0][0] == pytest.approx(zoomed[0][0] + width / 16, abs=width * 0.01)
    assert full == reset == scrolled
    assert len(set(map(tuple, wheeled))) == 1
    assert wheeled[0][1] - wheeled[0][0] == pytest.approx(width * 0.75, rel=0.01)


# -- several results ----------------------------------------------------------------------


def test_two_runs_of_the_same_job_are_overlaid_aligned_on_their_start(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path, open_page: Any
) -> None:
    """Each chart holds both runs' series, labelled by run; both start at 0."""
    output = tmp_path / "two.html"
    files = [job_results["job-1"], job_results["job-2"]]
    assert 0 == _report(*files, "-o", output, cwd=tmp_path).returncode
    expected = expected_series([load_result(file) for file in files])

    page = open_page(output)
    runs = page.data()["runs"]
    legends = page.evaluate("window.multimeterCharts[0].series.slice(1).map(s => s.label)")

    assert expected == page.charts()
    assert ["run-1", "run-2"] == [run["label"] for run in runs]
    assert all(0 <= run["t"][0] < 0.5 for run in runs)
    assert {"#1", "#2"} == {label.split()[-1] for label in legends}
    assert 2 == len(page.table("#results table"))
    assert ["", "key", "#1 run-1", "#2 run-2"] == page.evaluate(
        "[...document.querySelectorAll('#facts th')].map(th => th.textContent)"
    )


def test_a_directory_of_many_calls_gets_the_function_summary_not_a_chart_per_call(
    tmp_path: pathlib.Path, open_page: Any
) -> None:
    """About 600 call results: a summary row per function and one chart of call
    durations with a series per function, and no chart per result."""
    _run_program(MANY_CALLS, tmp_path, str(tmp_path / "calls"))
    output = tmp_path / "calls.html"
    assert 0 == _report(tmp_path / "calls", "-o", output, cwd=tmp_path).returncode

    page = open_page(output)
    summary = {row[0]: row[1:3] for row in page.table("#calls table.summary")}

    assert {
        "__main__.compute": ["300", "0"],
        "__main__.fail": ["6", "6"],
        "__main__.fetch": ["300", "0"],
    } == summary
    assert {"call-duration": 3} == page.charts()
    assert [] == page.data()["runs"]


def test_many_calls_and_a_measurement_get_the_summary_and_the_measurement_charts(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path, open_page: Any
) -> None:
    """The results that are not calls keep their charts next to the summary."""
    _run_program(MANY_CALLS, tmp_path, str(tmp_path / "calls"))
    output = tmp_path / "mixed.html"
    job_directory = job_results["job-1"].parent
    completed = _report(job_directory, tmp_path / "calls", "-o", output, cwd=tmp_path)
    assert 0 == completed.returncode, completed.stderr
    marked = load_result(job_results["marked-1"])

    page = open_page(output)
    functions = [row[0] for row in page.table("#calls table.summary")]
    charts = page.charts()

    assert ["marked"] == [run["identifier"] for run in page.data()["runs"]]
    assert 7 == charts.pop("call-duration")
    assert expected_series([marked]) == charts
    assert [
        "__main__.compute",
        "__main__.extract",
        "__main__.fail",
        "__main__.fetch",
        "__main__.job",
        "__main__.load",
        "__main__.transform",
    ] == functions


def test_few_results_in_a_directory_are_all_charted(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path, open_page: Any
) -> None:
    """Six results of one run (the job, its three phases, the second extract, the
    measurement): each is charted, overlaid; no summary."""
    directory = job_results["job-1"].parent
    output = tmp_path / "dir.html"
    assert 0 == _report(directory, "-o", output, cwd=tmp_path).returncode
    results = list(load_results(directory))

    page = open_page(output)

    assert 6 == len(results) == len(page.data()["runs"])
    assert expected_series(results) == page.charts()
    assert 0 == page.evaluate("document.querySelectorAll('#calls').length")


# -- big results ---------------------------------------------------------------------------


@pytest.mark.timeout(300)  # making the result takes longer than rendering it
def test_a_result_of_100000_points_renders_in_under_2_s_in_a_file_under_3_mb(
    tmp_path: pathlib.Path, open_page: Any
) -> None:
    """Downsampled for display, min and max per bucket: spikes stay; best of three loads.

    (The figure is the spec's bound; bench/report_render.py measures it.)"""
    _run_program(BIG, tmp_path, str(tmp_path / "big"))
    output = tmp_path / "big.html"
    assert 0 == _report(tmp_path / "big", "-o", output, cwd=tmp_path).returncode

    page = open_page(output)
    best = min(page.load() for _ in range(3))
    runs, charts = page.data()["runs"], page.data()["charts"]
    cpu = next(chart for chart in charts if chart["metric"] == "cpu_user")["series"][0]["v"]

    assert output.stat().st_size < 3_000_000
    assert best < 2000
    assert 100_000 == runs[0]["points"]
    assert len(runs[0]["t"]) <= 4000
    assert 51 == pytest.approx(max(cpu), abs=0.01)  # the spikes (50 + at most 1)
    assert 10 == sum(1 for v in cpu if v > 50)  # all ten of them


# -- the page itself -----------------------------------------------------------------------


def test_text_from_the_results_cannot_end_the_embedded_script(
    tmp_path: pathlib.Path, open_page: Any
) -> None:
    """A tag value holding ``</script>`` and markup is shown as text."""
    hostile = "</script><script>window.pwned=1</script><b>bold</b>"
    _run_program(TAGGED, tmp_path, str(tmp_path / "r"), hostile)
    output = tmp_path / "hostile.html"
    assert 0 == _report(tmp_path / "r", "-o", output, cwd=tmp_path).returncode

    page = open_page(output)
    facts = {(kind, key): value for kind, key, value in page.table("#facts table")}

    assert hostile == facts[("tag", "note")]
    assert [hostile] == [label for _, label in page.table("#marks table")]
    assert page.evaluate("window.pwned === undefined")


def test_the_default_output_is_multimeter_report_html_in_the_current_directory(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Written atomically: no temporary file is left beside it."""
    completed = _report(job_results["marked-1"], cwd=tmp_path)

    assert 0 == completed.returncode
    assert ["multimeter-report.html"] == sorted(p.name for p in tmp_path.iterdir())
    text = (tmp_path / "multimeter-report.html").read_text()
    assert "uPlot" in text and "<link" not in text and "src=" not in text


def test_o_dash_writes_the_page_to_stdout(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """``-o -``: the page on stdout, no file named ``-``, nothing on stderr."""
    completed = _report(job_results["marked-1"], "-o", "-", cwd=tmp_path)

    assert 0 == completed.returncode, completed.stderr
    assert completed.stdout.startswith("<!DOCTYPE html>") and "uPlot" in completed.stdout
    assert ("", []) == (completed.stderr, list(tmp_path.iterdir()))


def test_o_naming_a_fifo_writes_the_page_into_it(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """A FIFO is written into, as a shell's ``>`` does, and stays a FIFO."""
    with fifo_read(tmp_path / "page.html") as written:
        completed = _report(job_results["marked-1"], "-o", "page.html", cwd=tmp_path)
        assert 0 == completed.returncode, completed.stderr
        assert written().startswith(b"<!DOCTYPE html>")
    assert stat.S_ISFIFO((tmp_path / "page.html").stat().st_mode)
    assert ["page.html"] == [path.name for path in tmp_path.iterdir()]


def test_o_naming_a_device_writes_into_it_and_the_device_stays(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """A character device (a copy of /dev/null) is not replaced by a regular file."""
    device = null_device(tmp_path / "null")
    completed = _report(job_results["marked-1"], "-o", device, cwd=tmp_path)

    assert 0 == completed.returncode, completed.stderr
    assert stat.S_ISCHR(device.stat().st_mode)
    assert ["null"] == [path.name for path in tmp_path.iterdir()]


def test_o_through_a_symbolic_link_replaces_its_target_and_the_link_stays(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """``-o latest.html``, a link to ``reports/monday.html``: the target gets the page."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "monday.html").write_text("old")
    (tmp_path / "latest.html").symlink_to("reports/monday.html")
    completed = _report(job_results["marked-1"], "-o", "latest.html", cwd=tmp_path)

    assert 0 == completed.returncode, completed.stderr
    assert (tmp_path / "latest.html").is_symlink()
    assert (tmp_path / "reports" / "monday.html").read_text().startswith("<!DOCTYPE html>")
    assert ["monday.html"] == [path.name for path in (tmp_path / "reports").iterdir()]


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "named", "message"),
    [
        (lambda tmp: tmp / "missing", "missing", "no such file or directory"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "empty", "no results under"),
        (lambda tmp: (tmp / "x.json").write_text("{]") and tmp / "x.json", "x.json", "not JSON"),
        (lambda tmp: (tmp / "y.json").write_text('{"a": 1}') and tmp / "y.json", "y.json", ""),
        (lambda tmp: (tmp / "x.txt").write_text("hi") and tmp / "x.txt", "x.txt", "not a result"),
    ],
)
def test_bad_input_is_one_line_naming_the_path_and_a_non_zero_status(
    tmp_path: pathlib.Path, make: Any, named: str, message: str
) -> None:
    """No traceback, no report written."""
    completed = _report(make(tmp_path), "-o", tmp_path / "out.html", cwd=tmp_path)

    assert 2 == completed.returncode
    assert 1 == len(completed.stderr.splitlines()), completed.stderr
    assert named in completed.stderr and message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out.html").exists()


def test_a_missing_output_directory_is_one_line(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """The report is not written half-way anywhere."""
    completed = _report(job_results["marked-1"], "-o", tmp_path / "no" / "r.html", cwd=tmp_path)

    assert 2 == completed.returncode
    assert f"multimeter report: no such directory for the report: '{tmp_path / 'no'}'\n" == (
        completed.stderr
    )


def test_an_unwritable_output_is_named_not_its_temporary_file(
    job_results: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """The report goes through a temporary file: an error names the path given."""
    completed = _report(job_results["marked-1"], "-o", "/proc/report.html", cwd=tmp_path)

    assert 1 == completed.returncode
    assert completed.stderr.startswith("multimeter report: ")
    assert "'/proc/report.html'" in completed.stderr and ".tmp" not in completed.stderr
    assert 1 == len(completed.stderr.splitlines())


def test_debug_shows_the_traceback(tmp_path: pathlib.Path) -> None:
    """``--debug``: the error with its traceback."""
    completed = _report(tmp_path / "missing", "--debug", cwd=tmp_path)

    assert 0 != completed.returncode
    assert "Traceback" in completed.stderr
