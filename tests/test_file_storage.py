"""FileStorage, JsonFormat and LineFormat, through real files."""

from __future__ import annotations

import errno
import io
import json
import math
import multiprocessing
import os
import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from multimeter import FileStorage, JsonFormat, LineFormat, Multimeter, ResourceProbe, load_result
from multimeter.result import Result
from multimeter.storages.file import FileFormat, remove_unfinished_files
from multimeter.testing import CounterProbe

T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
FORMATS = [JsonFormat(), LineFormat()]


def _result(identifier: str = "run-1") -> Result:
    result = Result(
        ResourceProbe(), identifier=identifier, tags={"stage": "etl", "host id": "a,b=c"}
    )
    result.add_meta_data(host="box", pid=7)
    for second in range(3):
        result.append(
            T0 + timedelta(seconds=second),
            {"process.cpu_user": 0.25 * second, "process.max_rss": 1e6 + second},
        )
    result.add_mark(T0, "load:enter")
    result.add_mark(T0 + timedelta(seconds=2), 'say "hi", then\\leave')
    return result


def _files(directory) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


@pytest.mark.parametrize("file_format", FORMATS, ids=lambda f: type(f).__name__)
def test_a_stored_result_loads_back_equal(tmp_path, file_format):
    """Identifier, tags, meta data, schema, points and marks survive a real file."""
    result = _result()
    FileStorage(tmp_path, file_format).store(result)
    path = tmp_path / f"run-1{file_format.extension}"
    assert [path.name] == _files(tmp_path)
    assert result == load_result(path)


@pytest.mark.parametrize("file_format", FORMATS, ids=lambda f: type(f).__name__)
def test_a_measured_result_with_resource_values_loads_back_equal(tmp_path, file_format):
    """A real measurement, through the multimeter, round-trips in both formats."""
    storage = FileStorage(tmp_path, file_format)
    with Multimeter(ResourceProbe(), CounterProbe(), storage=storage).measure("real") as result:
        sum(range(10_000))
    assert result == load_result(tmp_path / f"real{file_format.extension}")


def test_json_document_has_the_documented_layout(tmp_path):
    """identifier, tags, meta_data, schema{metrics,subjects,measures}, points, marks."""
    FileStorage(tmp_path, JsonFormat()).store(_result())
    document = json.loads((tmp_path / "run-1.json").read_text())
    assert ["identifier", "tags", "meta_data", "schema", "points", "marks"] == list(document)
    assert ["metrics", "subjects", "measures"] == list(document["schema"])
    assert {"key": "process.cpu_user", "subject": "process", "metric": "cpu_user"} in document[
        "schema"
    ]["measures"]
    assert "2026-03-04T05:06:07.890123+00:00" == document["points"][0]["datetime"]
    assert {"datetime": "2026-03-04T05:06:07.890123+00:00", "label": "load:enter"} == document[
        "marks"
    ][0]


def test_non_finite_values_keep_json_strict_and_load_back(tmp_path):
    """NaN and infinities are written as strings, so any strict JSON parser accepts the file."""
    result = Result(ResourceProbe(), identifier="nan")
    result.append(T0, {"process.cpu_user": math.nan, "process.cpu_system": math.inf})
    result.append(T0, {"process.cpu_user": -math.inf})
    FileStorage(tmp_path, JsonFormat()).store(result)
    text = (tmp_path / "nan.json").read_text()

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(text, parse_constant=refuse)
    assert result == load_result(tmp_path / "nan.json")


def test_line_format_leaves_out_non_finite_fields_but_keeps_the_point():
    """InfluxDB rejects NaN and infinity: those fields go, the rest of the point stays."""
    result = Result(identifier="m")
    result.append(T0, {"a.x": math.nan, "a.y": 1.5, "a.z": math.inf})
    result.append(T0, {"a.x": math.nan})
    stream = io.BytesIO()
    LineFormat().save_result_to_stream(result, stream)
    data_lines = [
        line for line in stream.getvalue().decode().splitlines() if not line.startswith("#")
    ]
    assert [f"m a.y=1.5 {1772600767890123000}"] == data_lines


def test_line_format_escapes_like_influxdb_client(tmp_path):
    """Our escaping of names, tags, fields and strings matches the official client's."""
    influxdb_client = pytest.importorskip("influxdb_client")
    result = Result(identifier="my run,1", tags={"stage name": "e,t=l", "k=ey": "v"})
    values = {"a b.c,d=e": 1.5, "count": 3, "flag": True, "text": 'he said "x\\y"'}
    result.append(T0, values)
    stream = io.BytesIO()
    LineFormat().save_result_to_stream(result, stream)
    ours = [line for line in stream.getvalue().decode().splitlines() if not line.startswith("#")]

    point = influxdb_client.Point("my run,1").time(T0, write_precision="ns")
    for key, value in sorted(result.tags.items()):
        point.tag(key, value)
    for key, value in values.items():
        point.field(key, value)
    assert [point.to_line_protocol()] == ours


def test_line_format_writes_marks_as_annotation_lines_with_distinct_times():
    """Each mark is a line with the string field 'mark'; equal times get distinct nanoseconds."""
    result = Result(identifier="m", tags={"stage": "etl"})
    result.add_mark(T0, "a")
    result.add_mark(T0, "b")
    stream = io.BytesIO()
    LineFormat().save_result_to_stream(result, stream)
    lines = stream.getvalue().decode().splitlines()[1:]
    base = 1772600767890123000
    assert [f'm,stage=etl mark="a" {base}', f'm,stage=etl mark="b" {base + 1}'] == lines


@pytest.mark.parametrize("identifier", ["_internal", "two\nlines", "tab\there", "ends\\"])
def test_line_format_refuses_identifiers_influxdb_would_reject(tmp_path, identifier):
    """Reserved or unparseable measurement names raise ValueError; no file is left."""
    with pytest.raises(ValueError, match="identifier"):
        FileStorage(tmp_path, LineFormat()).store(Result(identifier=identifier))
    assert [] == _files(tmp_path)


@pytest.mark.parametrize(
    "identifier", ["../x", "/etc/passwd", "a/b", "a\\b", "nul\x00byte", ".", "..", "x" * 300]
)
def test_identifiers_that_are_not_file_names_raise_and_write_nothing(tmp_path, identifier):
    """Nothing is ever written outside (or inside) the save directory for a bad identifier."""
    save_directory = tmp_path / "results"
    before = _files(tmp_path)
    with pytest.raises(ValueError, match="identifier"):
        FileStorage(save_directory, JsonFormat()).store(Result(identifier=identifier))
    assert before == _files(tmp_path)


class HalfWriter(FileFormat):
    """Writes a little, then fails, like a full disk would."""

    @property
    def extension(self):
        return ".json"

    def save_result_to_stream(self, result, stream):
        stream.write(b'{"identifier": ')
        raise OSError(28, "No space left on device")


def test_a_failed_write_raises_and_leaves_no_partial_file(tmp_path):
    """The temporary file is removed; the target file never appears."""
    with pytest.raises(OSError, match="No space"):
        FileStorage(tmp_path, HalfWriter()).store(Result(identifier="partial"))
    assert [] == _files(tmp_path)


def test_a_failed_rewrite_keeps_the_previous_complete_file(tmp_path):
    """A failed store leaves an old file with the same name whole, and adds none."""
    FileStorage(tmp_path, JsonFormat()).store(_result("same"))
    with pytest.raises(OSError):
        FileStorage(tmp_path, HalfWriter()).store(_result("same"))
    assert _result("same") == load_result(tmp_path / "same.json")
    assert ["same.json"] == _files(tmp_path)


def test_an_unusable_directory_raises_from_store(tmp_path):
    """A save directory that is a file cannot hold results: store() raises OSError."""
    blocker = tmp_path / "results"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        FileStorage(blocker, JsonFormat()).store(_result())


def test_the_save_directory_is_created_on_first_store(tmp_path):
    """Nested directories are made as needed."""
    storage = FileStorage(tmp_path / "a" / "b", JsonFormat(), fsync=True)
    storage.store(_result())
    assert ["run-1.json"] == _files(tmp_path / "a" / "b")
    assert tmp_path / "a" / "b" == storage.save_directory


def test_constructor_refuses_missing_directory_or_wrong_format():
    """Wrong configuration raises ValueError naming the argument."""
    with pytest.raises(ValueError, match="save_directory"):
        FileStorage(None, JsonFormat())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="file_format"):
        FileStorage("results", "json")  # type: ignore[arg-type]


def test_load_result_refuses_unknown_extensions(tmp_path):
    """Only .json, .line and .jsonl files are known."""
    with pytest.raises(ValueError, match=r"\.json, \.line and \.jsonl"):
        load_result(tmp_path / "result.csv")


def test_line_files_without_the_header_load_with_an_empty_schema():
    """Plain line protocol, e.g. exported from InfluxDB, loads points and marks."""
    data = b'cpu,host=a usage=0.5,count=3i 1000000000\ncpu,host=a mark="start" 2000000000\n'
    result = LineFormat().load_result_from_stream(io.BytesIO(data))
    assert ("cpu", {"host": "a"}) == (result.identifier, result.tags)
    assert [{"usage": 0.5, "count": 3}] == [p.values for p in result.points]
    assert ["start"] == [m.label for m in result.marks]


def test_line_format_rows_of_finite_and_non_finite_floats_agree_with_the_rules():
    """Complete rows of floats take a fast path; a row with NaN still drops only that field."""
    result = Result(identifier="m")
    result.append(T0, {"a.x": 1.0, "a.y": 2.5})
    result.append(T0 + timedelta(seconds=1), {"a.x": math.nan, "a.y": 3.0})
    stream = io.BytesIO()
    LineFormat().save_result_to_stream(result, stream)
    lines = stream.getvalue().decode().splitlines()[1:]
    base = 1772600767890123000
    assert [f"m a.x=1.0,a.y=2.5 {base}", f"m a.y=3.0 {base + 1_000_000_000}"] == lines


def _tagged(identifier: str, writer: str) -> Result:
    result = Result(identifier=identifier, tags={"writer": writer})
    result.append(T0, {"a.x": 1.5})
    return result


def test_a_second_result_with_the_same_identifier_gets_a_numbered_file(tmp_path):
    """Nothing is replaced: the newcomer is stored as <identifier>~2<extension>."""
    storage = FileStorage(tmp_path, JsonFormat())
    storage.store(_tagged("same", "first"))
    storage.store(_tagged("same", "second"))
    storage.store(_tagged("same", "third"))
    assert ["same.json", "same~2.json", "same~3.json"] == _files(tmp_path)
    assert [_tagged("same", w) for w in ("first", "second", "third")] == [
        load_result(tmp_path / name) for name in _files(tmp_path)
    ]


def test_a_name_clash_is_logged_naming_both_files(tmp_path, logs):
    """The warning names the file that was there and the one the newcomer got."""
    storage = FileStorage(tmp_path, LineFormat())
    storage.store(_tagged("same", "first"))
    storage.store(_tagged("same", "second"))
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [(str(tmp_path / "same.line"), str(tmp_path / "same~2.line"))] == [
        (entry["existing"], entry["path"]) for entry in warnings
    ]


def test_a_numbered_name_of_a_long_identifier_still_fits_a_file_name(tmp_path):
    """An identifier at the length limit is shortened to make room for '~2'."""
    identifier = "é" * 125  # 250 bytes, plus '.json' is 255
    storage = FileStorage(tmp_path, JsonFormat())
    storage.store(_tagged(identifier, "first"))
    storage.store(_tagged(identifier, "second"))
    names = _files(tmp_path)
    assert 2 == len(names)
    assert all(len(os.fsencode(name)) <= 255 for name in names)
    assert ["first", "second"] == sorted(load_result(tmp_path / n).tags["writer"] for n in names)


def test_concurrent_threads_storing_one_identifier_keep_every_file(tmp_path):
    """Threads racing for one name each get a file of their own."""
    storage = FileStorage(tmp_path, JsonFormat())
    barrier = threading.Barrier(16)

    def store(number: int) -> None:
        barrier.wait()
        storage.store(_tagged("same", str(number)))

    threads = [threading.Thread(target=store, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {str(n) for n in range(16)} == {
        load_result(tmp_path / name).tags["writer"] for name in _files(tmp_path)
    }


def _store_in_child(directory: str, number: int, start) -> None:
    start.wait()
    storage = FileStorage(directory, LineFormat())
    for count in range(5):
        storage.store(_tagged("same", f"{number}-{count}"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_concurrent_processes_storing_one_identifier_keep_every_file(tmp_path):
    """Forked processes racing for one name never replace each other's files."""
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [
        context.Process(target=_store_in_child, args=(str(tmp_path), n, start)) for n in range(6)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(30)
    assert [0] * 6 == [process.exitcode for process in processes]
    assert {f"{n}-{c}" for n in range(6) for c in range(5)} == {
        load_result(tmp_path / name).tags["writer"] for name in _files(tmp_path)
    }


def test_without_hard_links_a_clash_still_keeps_both_files(tmp_path, monkeypatch):
    """Where os.link is not supported (e.g. FAT), names are reserved exclusively instead."""

    def no_hard_links(source, destination):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    storage = FileStorage(tmp_path, JsonFormat())
    storage.store(_tagged("same", "first"))
    storage.store(_tagged("same", "second"))
    assert ["same.json", "same~2.json"] == _files(tmp_path)
    assert [_tagged("same", "first"), _tagged("same", "second")] == [
        load_result(tmp_path / name) for name in _files(tmp_path)
    ]


class BlockingFormat(FileFormat):
    """Writes half a result, then waits until the test releases it."""

    def __init__(self) -> None:
        self.writing = threading.Event()
        self.release = threading.Event()

    @property
    def extension(self):
        return ".json"

    def save_result_to_stream(self, result, stream):
        stream.write(b'{"identifier": ')
        stream.flush()
        self.writing.set()
        self.release.wait(10)
        stream.write(b'"blocked"}')


def _store_in_background(storage: FileStorage) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def store() -> None:
        try:
            storage.store(Result(identifier="blocked"))
        except BaseException as error:  # noqa: BLE001 - handed to the test
            errors.append(error)

    thread = threading.Thread(target=store)
    thread.start()
    return thread, errors


def test_remove_unfinished_files_removes_the_temporary_file_of_a_store_in_progress(tmp_path):
    """At exit, a half-written temporary file is removed; the interrupted store raises OSError."""
    file_format = BlockingFormat()
    thread, errors = _store_in_background(FileStorage(tmp_path, file_format))
    assert file_format.writing.wait(10)
    assert 1 == len(_files(tmp_path))
    assert 1 == remove_unfinished_files()
    assert [] == _files(tmp_path)
    file_format.release.set()
    thread.join(10)
    assert [True] == [isinstance(error, OSError) for error in errors]
    assert [] == _files(tmp_path)


def test_temporary_files_are_named_with_the_pid_and_random_bits(tmp_path):
    """'.multimeter-<pid>-<16 hex digits>-<n>.tmp': processes sharing a pid never meet."""
    file_format = BlockingFormat()
    thread, _ = _store_in_background(FileStorage(tmp_path, file_format))
    assert file_format.writing.wait(10)
    name = _files(tmp_path)[0]
    file_format.release.set()
    thread.join(10)
    assert re.fullmatch(rf"\.multimeter-{os.getpid()}-[0-9a-f]{{16}}-[0-9]+\.tmp", name)


def test_remove_unfinished_files_leaves_finished_results_and_other_processes_files(tmp_path):
    """Only this process's stores in progress are touched: results and foreign temp files stay."""
    FileStorage(tmp_path, JsonFormat()).store(_result())
    foreign = tmp_path / ".multimeter-1-0123456789abcdef.tmp"
    foreign.write_bytes(b"{")
    assert 0 == remove_unfinished_files()
    assert [foreign.name, "run-1.json"] == _files(tmp_path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_does_not_remove_its_parents_temporary_files(tmp_path):
    """The child's remove_unfinished_files() knows only the child's own stores."""
    file_format = BlockingFormat()
    thread, errors = _store_in_background(FileStorage(tmp_path, file_format))
    assert file_format.writing.wait(10)
    pid = os.fork()
    if pid == 0:  # child
        os._exit(remove_unfinished_files())
    _, status = os.waitpid(pid, 0)
    temporary_files = _files(tmp_path)
    file_format.release.set()
    thread.join(10)
    assert (0, 1, []) == (os.waitstatus_to_exitcode(status), len(temporary_files), errors)
    assert ["blocked.json"] == _files(tmp_path)
