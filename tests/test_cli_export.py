"""``multimeter export``: real results converted, run as a user runs it (a subprocess)."""

from __future__ import annotations

import csv
import io
import math
import os
import pathlib
import stat
import string
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimeter import JsonFormat, LineFormat, Result, load_result, load_results
from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.result import Schema
from multimeter.subject import Subject
from tests._cli_results import (
    LOAD_CALLS,
    VALIDATE_CALLS,
    fifo_read,
    multimeter_command,
    null_device,
    write_results,
)
from tests._programs import environment


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """batch/ (default batch files) and session/json, session/line (measure() results
    with tags, marks, meta data, two subjects), written by a real program."""
    root = tmp_path_factory.mktemp("results")
    for mode in ("batch", "session"):
        write_results(root / mode, mode, f"run-{mode}")
    return root


EXPORT = [sys.executable, "-m", "multimeter", "export"]


def _export(*arguments: str, cwd: pathlib.Path | None = None) -> str:
    done = multimeter_command("export", *arguments, cwd=cwd)
    assert 0 == done.returncode, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_json_to_line_to_json_keeps_the_whole_result(results, tmp_path):
    """A real result with tags, marks, meta data and two subjects survives the round trip."""
    original = load_result(results / "session" / "json" / "session-json.json")
    assert {"process", "python"} <= {subject.key for subject in original.schema.subjects}
    _export(str(results / "session" / "json"), "--format", "line", "-o", str(tmp_path / "a.line"))
    _export(str(tmp_path / "a.line"), "--format", "json", "-o", str(tmp_path / "b.json"))
    again = load_result(tmp_path / "b.json")
    assert original == again
    assert original.meta_data == again.meta_data
    assert ["built", "summed, done"] == [mark.label for mark in again.marks]


def test_the_format_comes_from_the_output_s_extension(results, tmp_path):
    """-o x.line without --format writes line protocol."""
    _export(str(results / "session" / "line"), "-o", str(tmp_path / "x.line"))
    assert (tmp_path / "x.line").read_text().startswith("# multimeter-result ")
    assert load_result(results / "session" / "line" / "session-line.line") == load_result(
        tmp_path / "x.line"
    )


def test_several_results_go_to_a_directory_one_file_each(results, tmp_path):
    """The calls of a batch file become .json files that load back equal."""
    _export(str(results / "batch"), "--format", "json", "-o", str(tmp_path / "calls"))
    original = {r.identifier: r for r in load_results(results / "batch")}
    exported = {r.identifier: r for r in load_results(tmp_path / "calls")}
    assert LOAD_CALLS + VALIDATE_CALLS == len(exported)
    assert original == exported
    assert {f"{identifier}.json" for identifier in original} == {
        path.name for path in (tmp_path / "calls").iterdir()
    }


def test_json_to_stdout_is_one_document_per_line(results):
    """Without -o: JSON Lines, each line a result document."""
    out = _export(str(results / "batch"), "--format", "json")
    lines = out.splitlines()
    assert LOAD_CALLS + VALIDATE_CALLS == len(lines)
    original = list(load_results(results / "batch"))
    loaded = [JsonFormat().load_result_from_stream(io.BytesIO(line.encode())) for line in lines]
    assert original == loaded


def test_line_to_stdout_loads_back(results):
    """Without -o: line protocol with its header comment, for one result a whole file."""
    out = _export(str(results / "session" / "json"), "--format", "line")
    loaded = LineFormat().load_result_from_stream(io.BytesIO(out.encode()))
    assert load_result(results / "session" / "json" / "session-json.json") == loaded


@pytest.mark.parametrize("file_format", ["json", "line", "csv"])
def test_a_reader_that_goes_away_ends_the_export_quietly(results, file_format):
    """``| head``: stdout closed before the export writes is no error to report."""
    reader, writer = os.pipe()
    process = subprocess.Popen(
        [*EXPORT, str(results / "batch"), "--format", file_format],
        stdout=writer,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    os.close(writer)
    os.close(reader)  # gone before the first write
    _, stderr = process.communicate(timeout=120)
    assert b"" == stderr
    assert 1 == process.returncode


def test_csv_has_a_row_per_point_and_the_marks_in_a_second_file(results, tmp_path):
    """datetime, then one column per measure; marks in OUT.marks.csv."""
    source = results / "session" / "json" / "session-json.json"
    result = load_result(source)
    _export(str(source), "-o", str(tmp_path / "out.csv"))
    with open(tmp_path / "out.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    keys = [measure.key for measure in result.schema.measures]
    assert ["datetime", *keys] == rows[0]
    assert len(result.points) == len(rows) - 1
    for point, row in zip(result.points, rows[1:], strict=True):
        assert point.datetime == datetime.fromisoformat(row[0])
        for key, cell in zip(keys, row[1:], strict=True):
            value = point.values.get(key)
            assert ("" if value is None else float(value)) == (cell and float(cell))
    with open(tmp_path / "out.marks.csv", newline="") as stream:
        marks = list(csv.reader(stream))
    assert ["datetime", "label"] == marks[0]
    assert [[m.datetime.isoformat(), m.label] for m in result.marks] == marks[1:]


def test_csv_of_several_results_has_an_identifier_column(results, tmp_path):
    """One file for all the calls: a row per point, the identifier first."""
    _export(str(results / "batch"), "--format", "csv", "-o", str(tmp_path / "calls.csv"))
    with open(tmp_path / "calls.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    results_list = list(load_results(results / "batch"))
    assert sum(len(r.points) for r in results_list) == len(rows)
    assert {r.identifier for r in results_list} == {row["identifier"] for row in rows}
    with open(tmp_path / "calls.marks.csv", newline="") as stream:
        marks = list(csv.DictReader(stream))
    assert sum(len(r.marks) for r in results_list) == len(marks)
    assert {"identifier", "datetime", "label"} == set(marks[0])


def test_csv_to_stdout_says_that_the_marks_were_left_out(results):
    """Without -o the points go to stdout and one line on stderr counts the marks."""
    done = multimeter_command("export", str(results / "session" / "line"), "--format", "csv")
    assert 0 == done.returncode
    assert done.stdout.startswith("datetime,process.cpu_user,")
    assert [
        "multimeter export: 2 mark(s) not written: give -o FILE.csv to get them in FILE.marks.csv"
    ] == done.stderr.splitlines()


def test_o_through_a_symbolic_link_replaces_its_target_and_the_link_stays(results, tmp_path):
    """-o link.json, link.json -> data/real.json: real.json gets the result."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("data/real.json")
    source = results / "session" / "json" / "session-json.json"
    _export(str(source), "-o", "link.json", cwd=tmp_path)
    assert (tmp_path / "link.json").is_symlink()
    assert load_result(source) == load_result(tmp_path / "data" / "real.json")
    assert ["real.json"] == [path.name for path in (tmp_path / "data").iterdir()]


def test_o_naming_a_fifo_writes_the_points_into_it_and_no_marks_file(results, tmp_path):
    """-o out.csv, a FIFO: written into as stdout is, never replaced; the marks are counted."""
    with fifo_read(tmp_path / "out.csv") as written:
        done = multimeter_command(
            "export", str(results / "session" / "line"), "-o", "out.csv", cwd=tmp_path
        )
        assert 0 == done.returncode, done.stderr
        assert written().startswith(b"datetime,process.cpu_user,")
    assert stat.S_ISFIFO((tmp_path / "out.csv").stat().st_mode)
    assert ["out.csv"] == [path.name for path in tmp_path.iterdir()]
    assert [
        "multimeter export: 2 mark(s) not written: give -o FILE.csv to get them in FILE.marks.csv"
    ] == done.stderr.splitlines()


@pytest.mark.parametrize("file_format", ["json", "csv"])
def test_o_naming_a_device_writes_into_it_and_the_device_stays(results, tmp_path, file_format):
    """-o a character device (a copy of /dev/null): still that device, nothing made beside it."""
    device = null_device(tmp_path / "null")
    source = str(results / "session" / "line")
    done = multimeter_command("export", source, "--format", file_format, "-o", str(device))
    assert 0 == done.returncode, done.stderr
    assert stat.S_ISCHR(device.stat().st_mode)
    assert os.stat("/dev/null").st_rdev == device.stat().st_rdev
    assert ["null"] == [path.name for path in tmp_path.iterdir()]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing", "--format", "json"], "no such file or directory: 'missing'"),
        (["empty", "--format", "json"], "no results under 'empty'"),
        (["notes.txt", "--format", "json"], "'notes.txt' is not a result file"),
        (["broken.json", "--format", "line"], "broken.json: not JSON"),
        (["good.json", "--format", "xml"], "unknown format 'xml': choose one of json, line, csv"),
        (["good.json"], "say which format: --format json, line or csv"),
        (["good.json", "--format", "csv", "-o", "empty"], "'empty' is a directory"),
        (["good.json", "--format", "json", "-o", "no/such/dir/x.json"], "cannot write"),
        (["good.json", "--output"], "argument -o/--output: expected one argument"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_status(results, tmp_path, arguments, message):
    """Missing path, empty directory, not a result, damaged, unknown format, bad output."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a result")
    (tmp_path / "broken.json").write_text('{"identifier": "x", "points": [')
    good = results / "session" / "json" / "session-json.json"
    (tmp_path / "good.json").write_bytes(good.read_bytes())
    done = multimeter_command("export", *arguments, cwd=tmp_path)
    assert 2 == done.returncode
    assert 1 == len(done.stderr.splitlines()), done.stderr
    assert done.stderr.startswith(f"multimeter export: {message}")


def test_a_result_the_line_format_cannot_hold_is_named(tmp_path):
    """An identifier InfluxDB reserves: one line naming the result, no partial file."""
    result = Result(identifier="_internal")
    result.append(datetime(2026, 1, 1, tzinfo=timezone.utc), {"x.y": 1.0})
    with open(tmp_path / "r.json", "wb") as stream:
        JsonFormat().save_result_to_stream(result, stream)
    done = multimeter_command("export", "r.json", "-o", "r.line", cwd=tmp_path)
    assert 2 == done.returncode
    assert done.stderr.startswith("multimeter export: result '_internal' cannot be exported:")
    assert ["r.json"] == sorted(path.name for path in tmp_path.iterdir())


# -- json -> line -> json, for results hypothesis makes ----------------------------------

_NAME = st.text(string.ascii_letters + string.digits + "._- ,=\\\"'é", min_size=1, max_size=12)
_LINE_NAME = _NAME.filter(lambda s: not s.startswith(("_", "#")) and not s.endswith("\\"))
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)
_FLOAT = st.floats(allow_nan=False, allow_infinity=False)
_SUBJECTS = [Subject("process"), Subject("python")]
_METRICS = [
    Metric("rate", value_type=float),
    Metric("count", value_type=int),
    Metric("flag", value_type=bool),
    Metric("state", value_type=str),
]
_VALUES = {
    float: _FLOAT,
    int: st.integers(-(2**63), 2**63 - 1),
    bool: st.booleans(),
    str: _TEXT,
}


@st.composite
def _results(draw: st.DrawFn) -> Result:
    measures = draw(
        st.lists(
            st.builds(Measure, st.sampled_from(_SUBJECTS), st.sampled_from(_METRICS)),
            min_size=1,
            max_size=5,
            unique_by=lambda m: m.key,
        )
    )
    schema = Schema(
        tuple(dict.fromkeys(m.metric for m in measures)),
        tuple(dict.fromkeys(m.subject for m in measures)),
        tuple(measures),
    )
    result = Result(
        identifier=draw(_LINE_NAME),
        tags=draw(st.dictionaries(_LINE_NAME, _LINE_NAME, max_size=3)),
        meta_data=draw(st.dictionaries(_NAME, _TEXT, max_size=3)),
        schema=schema,
    )
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    moments = sorted(draw(st.sets(st.integers(0, 10**9), max_size=6)))
    for moment in moments:
        # Some values missing (the line format keeps a point with at least one).
        present = draw(st.lists(st.sampled_from(measures), min_size=1, unique_by=lambda m: m.key))
        values = {m.key: draw(_VALUES[m.metric.value_type]) for m in present}
        result.append(start + timedelta(microseconds=moment), values)
    for moment in sorted(draw(st.lists(st.integers(0, 10**9), max_size=4))):
        result.add_mark(start + timedelta(microseconds=moment), draw(_TEXT))
    return result


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(result=_results())
def test_json_line_json_round_trips_what_the_line_format_can_hold(tmp_path_factory, result):
    """Tags, meta data, marks, several subjects, typed and missing values come back equal."""
    from multimeter._cli import main

    directory = tmp_path_factory.mktemp("round")
    with open(directory / "a.json", "wb") as stream:
        JsonFormat().save_result_to_stream(result, stream)
    assert 0 == main(["export", str(directory / "a.json"), "-o", str(directory / "b.line")])
    assert 0 == main(["export", str(directory / "b.line"), "-o", str(directory / "c.json")])
    again = load_result(directory / "c.json")
    assert result == again
    assert not any(
        isinstance(v, float) and math.isnan(v) for p in again.points for v in p.values.values()
    )
