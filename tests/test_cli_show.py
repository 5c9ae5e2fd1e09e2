"""``multimeter show``: tables of real results, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import pathlib
import resource
import shutil
import subprocess

import pytest

from multimeter import LineFormat, load_result, load_results
from multimeter._cli import show
from multimeter._cli._summary import ResultRow, function_rows, scan
from multimeter._loading import MAX_LINE_BYTES
from tests._cli_results import LOAD_CALLS, VALIDATE_CALLS, multimeter_command, write_results
from tests._programs import run_python


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """batch/ (default batch files), files/ (a .json file per call), linefiles/ (a
    .line file per call), aggregate/
    (aggregate mode), session/json and session/line (measure() results): each
    written by a real program, each its own run."""
    root = tmp_path_factory.mktemp("results")
    for mode in ("batch", "files", "linefiles", "aggregate", "session"):
        write_results(root / mode, mode, f"run-{mode}")
    return root


def _show_json(*arguments: str) -> dict:
    done = multimeter_command("show", "--json", *arguments)
    assert 0 == done.returncode, done.stderr
    return json.loads(done.stdout)


def _functions(document: dict) -> dict[str, dict]:
    return {row["function"]: row for run in document["runs"] for row in run["functions"]}


@pytest.mark.parametrize("mode", ["batch", "files", "linefiles", "aggregate"])
def test_measured_calls_are_summed_per_function(results, mode):
    """Batch files, a file per call and aggregate mode give the same calls and errors."""
    functions = _functions(_show_json(str(results / mode)))
    assert {"__main__.load", "__main__.validate"} == set(functions)
    assert (LOAD_CALLS, 0) == (
        functions["__main__.load"]["calls"],
        functions["__main__.load"]["errors"],
    )
    assert (VALIDATE_CALLS, VALIDATE_CALLS) == (
        functions["__main__.validate"]["calls"],
        functions["__main__.validate"]["errors"],
    )
    for row in functions.values():
        assert row["duration_p50_s"] <= row["duration_p95_s"] <= row["duration_max_s"]
        assert row["duration_max_s"] <= row["duration_total_s"]
        assert row["cpu_total_s"] > 0
        assert (mode == "aggregate") == row["approximate"]


@pytest.mark.parametrize("mode", ["batch", "files", "linefiles"])
def test_function_figures_are_those_of_the_loaded_results(results, mode):
    """Durations, CPU and peak memory per function agree with Result.summary()."""
    summaries = [
        r.summary() | {"qualname": r.meta_data["qualname"]} for r in load_results(results / mode)
    ]
    functions = _functions(_show_json(str(results / mode)))
    for qualname in ("load", "validate"):
        mine = [s for s in summaries if s["qualname"] == qualname]
        row = functions[f"__main__.{qualname}"]
        durations = sorted(s["duration_s"] for s in mine)
        assert pytest.approx(sum(durations)) == row["duration_total_s"]
        assert durations[-1] == row["duration_max_s"]
        cpu = sum(s["cpu_user_s"] + s["cpu_system_s"] for s in mine)
        assert pytest.approx(cpu) == row["cpu_total_s"]
        peaks = [s["peak_memory_bytes"] for s in mine if s["peak_memory_bytes"] is not None]
        assert (max(peaks) if peaks else None) == row["peak_memory_max_bytes"]


def test_results_of_measurements_get_a_row_each_with_the_library_s_figures(results):
    """A measure() session in .json and .line: identifier, tags, figures of summary()."""
    document = _show_json(str(results / "session"))
    (run,) = document["runs"]
    assert "run-session" == run["run"]
    rows = {row["identifier"]: row for row in run["results"]}
    assert {"session-json", "session-line"} == set(rows)
    for name, row in rows.items():
        result = load_result(row["path"])
        summary = result.summary()
        assert name == result.identifier
        assert {"stage": "report", "team": "a b"} == row["tags"]
        assert result.start.isoformat() == row["start"]
        for key in ("duration_s", "points", "marks", "peak_memory_bytes", "cpu_user_s"):
            assert summary[key] == pytest.approx(row[key]), key
        assert 2 == row["marks"]


def test_results_are_grouped_by_run_in_the_order_the_runs_started(results):
    """Each program's MULTIMETER_RUN is a group of its own."""
    document = _show_json(str(results))
    assert ["run-batch", "run-files", "run-linefiles", "run-aggregate", "run-session"] == [
        run["run"] for run in document["runs"]
    ]
    assert [30, 30, 30, 30, 0] == [run["call_count"] for run in document["runs"]]


def test_the_table_shows_runs_functions_and_human_units(results):
    """The text output: a heading per run, one row per function and per result."""
    done = multimeter_command("show", str(results))
    assert 0 == done.returncode, done.stderr
    assert "" == done.stderr
    lines = done.stdout.splitlines()
    assert 5 == sum(line.startswith("run run-") for line in lines)
    assert "run run-batch: 30 calls of 2 functions" in lines
    load_rows = [line for line in lines if line.startswith("__main__.load ")]
    assert 4 == len(load_rows)
    assert all(line.split()[1] == str(LOAD_CALLS) for line in load_rows)
    session = next(line for line in lines if line.startswith("session-json"))
    assert "stage=report,team=a b" in session
    summary = load_result(results / "session" / "json" / "session-json.json").summary()
    assert show.seconds(summary["duration_s"]) in session
    # "-" where no new high-water mark was reached: a subprocess of a big process (this
    # test run) starts with its parent's maximum RSS (Linux keeps it across exec).
    assert f"  {show.memory(summary['peak_memory_bytes'])}  " in session
    assert "\x1b[" not in done.stdout  # no colours when not a terminal


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_the_table_fits_the_width(results, columns):
    """Long names are cut and the least needed columns left out, with a note."""
    done = multimeter_command("show", str(results), COLUMNS=str(columns))
    assert 0 == done.returncode, done.stderr
    rows = [line for line in done.stdout.splitlines() if not line.startswith(("run ", "("))]
    assert max(map(len, rows)) <= max(columns, 66)  # 66: the narrowest the tables get
    if columns < 80:
        assert "left out to fit" in done.stdout


def test_a_tag_filter_keeps_the_results_that_have_it(results):
    """--tag stage=etl: only load() calls (validate() has no tags), no session."""
    document = _show_json(str(results), "--tag", "stage=etl")
    assert {"__main__.load"} == set(_functions(document))
    assert all(not run["results"] for run in document["runs"])
    done = multimeter_command("show", str(results), "--tag", "stage=nothing")
    assert 1 == done.returncode
    assert ["multimeter show: no results with the tag(s) stage=nothing"] == done.stderr.splitlines()


def test_sort_and_reverse(results):
    """--sort name orders by identifier; --reverse turns it round; numbers go largest first."""
    session = str(results / "session")
    by_name = _show_json(session, "--sort", "name")["runs"][0]["results"]
    reverse = _show_json(session, "--sort", "name", "--reverse")["runs"][0]["results"]
    by_points = _show_json(session, "--sort", "points")["runs"][0]["results"]
    assert ["session-json", "session-line"] == [row["identifier"] for row in by_name]
    assert ["session-line", "session-json"] == [row["identifier"] for row in reverse]
    assert by_points[0]["points"] >= by_points[1]["points"]
    functions = _show_json(str(results / "batch"), "--sort", "calls")["runs"][0]["functions"]
    assert ["__main__.load", "__main__.validate"] == [row["function"] for row in functions]


def test_limit_cuts_each_table_and_says_how_many_more(results):
    """--limit 1: one row per table; the text says what is left out, JSON counts all."""
    document = _show_json(str(results / "session"), "--limit", "1")
    assert (2, 1) == (document["runs"][0]["result_count"], len(document["runs"][0]["results"]))
    done = multimeter_command("show", str(results / "session"), "--limit", "1")
    assert "... 1 more results (see --limit)" in done.stdout.splitlines()


def test_limit_0_prints_the_headings_and_counts_only(results):
    """--limit 0: the tables' headings and how many rows are left out, no error."""
    done = multimeter_command("show", str(results / "batch"), "--limit", "0")
    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert "... 2 more functions (see --limit)" in lines
    assert "" == done.stderr


def test_a_damaged_file_is_named_and_the_others_are_shown(results, tmp_path):
    """A careful user gets the table of the good results, a warning per bad file, status 1."""
    copy = tmp_path / "mixed"
    shutil.copytree(results / "session", copy)
    (copy / "broken.json").write_text('{"identifier": "x", "points": [')
    (copy / "other.json").write_text('{"name": "not a result"}')
    batch = next((results / "batch").glob("*.jsonl"))
    lines = batch.read_bytes().splitlines(keepends=True)
    (copy / "calls-x-1.jsonl").write_bytes(b"".join([*lines[:-2], b"[1, 2]\n", lines[-1]]))
    done = multimeter_command("show", str(copy))
    assert 1 == done.returncode
    warnings = done.stderr.splitlines()
    assert 3 == len(warnings), done.stderr
    assert all(line.startswith("multimeter show: skipped ") for line in warnings)
    assert any(str(copy / "broken.json") in line for line in warnings)
    assert any(str(copy / "other.json") in line and "not a result" in line for line in warnings)
    assert any("calls-x-1.jsonl" in line and "1 damaged line" in line for line in warnings)
    assert "session-json" in done.stdout
    assert "session-line" in done.stdout
    assert "__main__.load" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing"], "multimeter show: no such file or directory: 'missing'"),
        (["empty"], "multimeter show: no results under 'empty'"),
        (["notes.txt"], "multimeter show: 'notes.txt' is not a result file"),
        (["empty", "--sort", "size"], "multimeter show: unknown sort key 'size'"),
        (["empty", "--tag", "stage"], "multimeter show: --tag 'stage': write it as KEY=VALUE"),
        (["empty", "--limit", "x"], "multimeter show: argument --limit: invalid int value"),
        ([], "multimeter show: no PATH given, and no results in 'multimeter-results'"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_status(tmp_path, arguments, message):
    """Missing path, empty directory, a file that is no result, a bad option."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a result")
    (tmp_path / "notes.txt").write_text("not a result")
    done = multimeter_command("show", *arguments, cwd=tmp_path)
    assert 2 == done.returncode
    assert 1 == len(done.stderr.splitlines()), done.stderr
    assert done.stderr.startswith(message)
    assert "" == done.stdout


def test_files_without_a_result_say_so(results, tmp_path):
    """A batch file with only its header (a process that stored nothing) is no result."""
    batch = next((results / "batch").glob("*.jsonl"))
    (tmp_path / batch.name).write_bytes(batch.read_bytes().splitlines(keepends=True)[0])
    done = multimeter_command("show", str(tmp_path))
    assert 2 == done.returncode
    assert [f"multimeter show: no results in {tmp_path}"] == done.stderr.splitlines()


def test_a_partial_last_line_of_a_batch_file_is_passed_over(results, tmp_path):
    """What a crash in the middle of a write leaves is not damage (as load_results())."""
    batch = next((results / "batch").glob("*.jsonl"))
    (tmp_path / batch.name).write_bytes(batch.read_bytes() + b"[1,99,0,17")
    document = _show_json(str(tmp_path))
    assert LOAD_CALLS == _functions(document)["__main__.load"]["calls"]


def test_scan_gives_the_rows_the_report_uses(results):
    """The shared module: a row per result, functions folded, calls marked as such."""
    rows = list(scan([results]))
    assert all(isinstance(row, ResultRow) for row in rows)
    calls = [row for row in rows if row.function is not None and row.aggregate is None]
    assert 3 * (LOAD_CALLS + VALIDATE_CALLS) == len(calls)
    assert 3 * VALIDATE_CALLS == sum(row.error for row in calls)
    nested = [row for row in calls if row.function == "__main__.validate"]
    assert all(4 == row.marks for row in nested)  # its own enter/exit and load()'s
    folded = {row.function: row.calls for row in function_rows(rows)}
    assert {"__main__.load": 4 * LOAD_CALLS, "__main__.validate": 4 * VALIDATE_CALLS} == folded


def test_rows_read_without_the_schema_equal_those_of_the_loaded_results(results):
    """The fast reading of .json files and batch files gives Result.summary()'s figures."""
    from multimeter._cli._summary import _row_of_result

    rows = list(scan([results]))
    loaded = list(load_results(results))
    assert len(loaded) == len(rows)
    assert [
        _row_of_result(row.path, result) for row, result in zip(rows, loaded, strict=True)
    ] == rows


def test_a_json_result_laid_out_otherwise_reads_the_same(results, tmp_path):
    """Pretty-printed, keys in another order, tags named like the document's keys."""
    source = results / "session" / "json" / "session-json.json"
    document = json.loads(source.read_text())
    document["tags"] = {"schema": "{", "points": "[", **document["tags"]}
    document = {key: document[key] for key in reversed(list(document))}
    (tmp_path / "pretty.json").write_text(json.dumps(document, indent=2))
    (row,) = scan([tmp_path / "pretty.json"])
    (original,) = scan([source])
    assert {"schema": "{", "points": "["} | dict(original.tags) == dict(row.tags)
    for name in ("identifier", "start", "duration_s", "points", "marks", "cpu_user_s"):
        assert getattr(original, name) == getattr(row, name)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0.000_85, "850 us"),
        (0.0123, "12.3 ms"),
        (4.561, "4.56 s"),
        (187.0, "3m07s"),
        (7500.0, "2h05m"),
    ],
)
def test_durations_are_written_in_human_units(value, text):
    """us below a millisecond, ms below a second, then s, minutes, hours."""
    assert text == show.seconds(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (512, "512 B"),
        (3 * 1024, "3.0 KiB"),
        (28.4 * 2**20, "28.4 MiB"),
        (1.25 * 2**30, "1.2 GiB"),
        (3 * 2**40, "3072.0 GiB"),
    ],
)
def test_memory_is_written_in_human_units(value, text):
    """Binary units up to GiB."""
    assert text == show.memory(value)


def test_values_are_found_in_points_whatever_their_neighbours_hold(tmp_path):
    """Several points, missing and non-finite values, strings that look like keys."""
    from datetime import datetime, timedelta, timezone

    from multimeter import JsonFormat, LineFormat, ResourceProbe, Result
    from multimeter._cli._summary import _row_of_result

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    result = Result(ResourceProbe(), identifier="tricky", tags={"k": '"process.cpu_user":9'})
    result.add_meta_data(started=start.isoformat(), note='{"datetime":"x"')
    rows = [
        {"process.cpu_user": 0.5, "note.text": '"process.cpu_system":7,}', "proc.rss": 10},
        {"process.cpu_user": float("nan"), "process.cpu_system": 0.25, "note.text": "}}],"},
        {"process.cpu_system": float("inf"), "process.peak_rss": 2.5e9, "proc.rss": 12},
        {"note.text": '{"datetime":"2020-01-01T00:00:00+00:00","values":{'},
    ]
    for number, values in enumerate(rows, 1):
        result.append(start + timedelta(milliseconds=number * 10), values)
    result.add_mark(start, 'a "quoted" mark {"datetime":"')
    with open(tmp_path / "tricky.json", "wb") as stream:
        JsonFormat().save_result_to_stream(result, stream)
    (row,) = scan([tmp_path / "tricky.json"])
    assert _row_of_result(row.path, load_result(tmp_path / "tricky.json")) == row
    assert (4, 1, 2.5e9) == (row.points, row.marks, row.peak_memory_bytes)
    with open(tmp_path / "tricky.line", "wb") as stream:
        LineFormat().save_result_to_stream(result, stream)
    (row,) = scan([tmp_path / "tricky.line"])
    assert _row_of_result(row.path, load_result(tmp_path / "tricky.line")) == row
    assert (4, 1, 2.5e9) == (row.points, row.marks, row.peak_memory_bytes)


def test_a_line_file_s_points_and_marks_are_found_whatever_their_fields_hold(tmp_path):
    """Labels with commas and equals signs, escaped names, fields that look like others."""
    from datetime import datetime, timedelta, timezone

    from multimeter import ResourceProbe, Result
    from multimeter._cli._summary import _line_parts, _row_of_result

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    result = Result(ResourceProbe(), identifier="a b,c", tags={"k=1": "v ,w", "z": ""})
    result.add_meta_data(started=start.isoformat())
    for number in range(1, 4):
        values = {"process.cpu_user": 0.5 * number, "x.process.cpu_user": 9.0}
        if number == 2:
            values["process.peak_rss"] = 1e9
        result.append(start + timedelta(milliseconds=number), values)
    result.add_mark(start, "a,process.cpu_user=5 mark")
    result.add_mark(start + timedelta(milliseconds=2), "phase=2, done")
    with open(tmp_path / "names.line", "wb") as stream:
        LineFormat().save_result_to_stream(result, stream)
    assert _line_parts((tmp_path / "names.line").read_bytes()) is not None  # the fast way
    (row,) = scan([tmp_path / "names.line"])
    assert _row_of_result(row.path, load_result(tmp_path / "names.line")) == row
    assert (3, 2, 1e9) == (row.points, row.marks, row.peak_memory_bytes)


def _bounded_show(*arguments: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """``multimeter show ARGUMENTS`` in at most 512 MiB of address space and 30 s: a
    reader that waits on a FIFO or reads without bound fails instead of taking the
    machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))

    return run_python("-m", "multimeter", "show", *arguments, cwd=cwd, timeout=30, preexec_fn=limit)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (os.mkfifo, "a FIFO"),
        (lambda path: os.symlink("/dev/zero", path), "a character device"),
    ],
    ids=["fifo", "link-to-dev-zero"],
)
def test_what_is_not_a_regular_file_is_passed_over_not_read(results, tmp_path, make, kind):
    """A FIFO or a link to /dev/zero named x.jsonl: named on stderr, never waited for or read."""
    shutil.copytree(results / "session", tmp_path / "session")
    make(tmp_path / "session" / "x.jsonl")
    done = _bounded_show("session", cwd=tmp_path)
    assert 1 == done.returncode, done.stderr
    assert [
        f"multimeter show: skipped session/x.jsonl: not a regular file but {kind}"
        " (only regular files are read)"
    ] == done.stderr.splitlines()
    assert "session-json" in done.stdout and "session-line" in done.stdout


def test_a_link_to_a_result_file_is_read(results, tmp_path):
    """A symbolic link to a regular result file reads as the file."""
    (tmp_path / "linked.json").symlink_to(results / "session" / "json" / "session-json.json")
    document = _show_json(str(tmp_path / "linked.json"))
    assert ["session-json"] == [row["identifier"] for row in document["runs"][0]["results"]]


def test_a_line_longer_than_the_cap_is_named_and_read_in_bounded_memory(results, tmp_path):
    """A batch file's 100 MiB line: one complaint naming the line, the other calls shown."""
    batch = next((results / "batch").glob("*.jsonl"))
    header, *calls = batch.read_bytes().splitlines(keepends=True)
    with open(tmp_path / batch.name, "wb") as stream:
        stream.write(header)
        stream.write(b'"' + b"x" * (100 << 20) + b'"\n')
        stream.writelines(calls)
    done = _bounded_show("--json", batch.name, cwd=tmp_path)
    assert 1 == done.returncode, done.stderr
    assert [
        f"multimeter show: skipped {batch.name}: 1 damaged line passed over (first: line 2:"
        f" longer than {MAX_LINE_BYTES >> 20} MiB, the most a line may hold)"
    ] == done.stderr.splitlines()
    assert LOAD_CALLS == _functions(json.loads(done.stdout))["__main__.load"]["calls"]


def test_control_characters_of_stored_text_are_shown_escaped(results, tmp_path):
    """A crafted result's run, tags and identifier cannot drive the terminal or split a line."""
    document = json.loads((results / "session" / "json" / "session-json.json").read_text())
    document["identifier"] = "evil\x1b[2J"
    document["tags"] = {"team": "a\x1b[31mred\nline"}
    document["meta_data"]["run"] = "r\x1b]0;pwned\x07\x9b1m"
    (tmp_path / "evil.json").write_text(json.dumps(document))
    done = multimeter_command("show", str(tmp_path / "evil.json"))
    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert "run r\\x1b]0;pwned\\x07\\x9b1m: 1 result" == lines[0].split(",")[0]
    assert lines[3].startswith("evil\\x1b[2J  team=a\\x1b[31mred\\nline  ")
    assert 4 == len(lines)
    assert all(line.isprintable() for line in lines)
