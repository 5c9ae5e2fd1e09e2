"""JSON Lines batch files: many measured calls per file, what they share written once.

See DESIGN-NOTES, "Many calls". Claims about processes (the default configuration,
forked and multiprocessing children, crashes) are checked in real subprocesses.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import multimeter
from multimeter import JsonLinesStorage, ResultFileError, load_result, load_results
from multimeter._meta import process_meta_data
from multimeter.calls import CallFunction, CallRecord, nested_marks
from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.probe import ResourceProbe
from multimeter.result import Result, Schema
from multimeter.subject import Subject
from tests import _programs
from tests._programs import run_program

TESTS = pathlib.Path(__file__).resolve().parent
RESOURCE = Schema.from_probes([ResourceProbe()])
TOKEN = "4242-00112233aabbccdd"
META = {"host": "box", "pid": "4242", "function": "load", "module": "etl", "qualname": "load"}
LOAD = CallFunction("load", "etl", "load", "load-")
PARSE = CallFunction("parse", "etl", "parse", "parse-")
START = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def _row(seed: int) -> list[float]:
    """27 values like a short call's: two rates, max_rss, the rest zero."""
    return [0.1 * seed + 0.3, 1 / (seed + 3), 36_384_768.0] + [0.0] * 24


def _record(
    number: int,
    *,
    function: CallFunction = LOAD,
    parent: int | None = None,
    started: int = 0,
    ended: int = 10,
    tags: dict[str, str] | None = None,
    exception: tuple[str, str] | None = None,
    points: Sequence[tuple[int, Sequence[Any]]] | None = None,
    schema: Schema = RESOURCE,
    meta: dict[str, str] = META,
) -> CallRecord:
    """A finished call, as the writer hands it to a storage (times relative to START)."""
    return CallRecord(
        function,
        schema,
        TOKEN,
        number,
        0,
        START + started,
        START + ended,
        {"stage": "etl"} if tags is None else tags,
        exception,
        parent,
        [(START + ended, _row(number))] if points is None else points,
        meta,
    )


def _results_of(records: Sequence[CallRecord]) -> list[Result]:
    """What a reader makes of records: each call gets the marks of the calls made in it."""
    waiting: dict[int, list[tuple[int, str]]] = {}
    results = []
    for record in records:
        own = waiting.pop(record.number, [])
        results.append(record.to_result(own))
        if record.parent is not None:
            waiting.setdefault(record.parent, []).extend([*nested_marks(record), *own])
    return results


def _lines(directory: pathlib.Path) -> list[str]:
    """Every line of the batch files in ``directory``, files in name order."""
    return [
        line for path in sorted(directory.glob("*.jsonl")) for line in path.read_text().splitlines()
    ]


# --- what the files hold ----------------------------------------------------------------


def test_stored_calls_read_back_as_the_results_their_records_make(tmp_path):
    """Points, marks (also of calls made inside a call), tags, meta data and outcome."""
    records = [
        _record(3, function=PARSE, parent=2, started=2, ended=4),
        _record(4, function=PARSE, parent=2, started=5, ended=6, exception=("etl", "Bad")),
        _record(2, parent=1, started=1, ended=8, tags={"stage": "etl", "dataset": "a"}),
        _record(1, started=0, ended=9),
        _record(5, started=20, ended=30, exception=("builtins", "KeyError")),
    ]
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls(records[:2])
        storage.store_calls(records[2:])

    loaded = list(load_results(tmp_path))

    assert _results_of(records) == loaded
    assert [
        "load:enter",
        "load:enter",
        "parse:enter",
        "parse:exit",
        "parse:enter",
        "parse:raise Bad",
        "load:exit",
        "load:exit",
    ] == [mark.label for mark in loaded[3].marks]
    assert {"stage": "etl", "dataset": "a"} == loaded[2].tags
    assert ("raise", "builtins", "KeyError") == tuple(
        loaded[4].meta_data[k] for k in ("outcome", "exception_module", "exception_type")
    )
    assert "load-4242-00112233aabbccdd-5" == loaded[4].identifier


def test_a_file_starts_with_a_header_and_defines_what_calls_share_once(tmp_path):
    """One header, one schema, function, tag set and meta data, then one line per call."""
    meta = {**process_meta_data(), "function": "load", "module": "etl", "qualname": "load"}
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([_record(n, meta=meta) for n in range(1, 4)])
        storage.store_calls([_record(n, meta=meta) for n in range(4, 7)])
    (path,) = tmp_path.iterdir()
    lines = [json.loads(line) for line in path.read_text().splitlines()]

    header, *definitions, _, _, _, _, _, _ = lines
    token = multimeter._process.current().token
    assert ("multimeter-calls", 1, token) == (header["format"], header["version"], header["token"])
    assert str(os.getpid()) == header["meta"]["pid"]
    assert ["function", "schema", "meta", "tags", "group"] == [d["def"] for d in definitions]
    assert {"function": "load", "module": "etl", "qualname": "load"} == definitions[2]["meta"]
    assert all(meta.items() <= r.meta_data.items() for r in load_results(path))
    assert f"calls-{token}-1.jsonl" == path.name


def test_a_short_call_takes_less_than_300_bytes(tmp_path):
    """A call of a measured function with the resource probe: one short line."""
    storage = JsonLinesStorage(tmp_path)
    multimeter.configure(storage=storage)

    @multimeter.measured(tags={"stage": "etl"})
    def step(i: int) -> int:
        return i

    for i in range(200):
        step(i)
    assert multimeter.flush(10)
    calls = [line for line in _lines(tmp_path) if line.startswith("[")]

    assert 200 == len(calls)
    assert max(len(line.encode()) + 1 for line in calls) < 300


@pytest.mark.parametrize(
    "value",
    [
        0.1 + 0.2,
        5e-324,
        1.7976931348623157e308,
        -0.5,
        12.0,
        math.inf,
        -math.inf,
        math.nan,
        3,
        True,
    ],
)
def test_float_values_round_trip_exactly(tmp_path, value):
    """No rounding: what is read back equals what was measured, non-finite values too."""
    record = _record(1, points=[(START + 10, [value, *_row(1)[1:]])])
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([record])

    (loaded,) = load_results(tmp_path)

    assert record.to_result() == loaded
    read = next(loaded.values("process.cpu_user"))
    assert math.isnan(read) if value != value else value == read


def test_nan_missing_values_and_values_of_other_types_round_trip(tmp_path):
    """NaN, a missing value (None), ints past 2**63, booleans and strings."""
    subject = Subject("job")
    metrics = (
        Metric("ratio"),
        Metric("rows", value_type=int),
        Metric("ok", value_type=bool),
        Metric("phase", value_type=str),
    )
    schema = Schema(metrics, (subject,), tuple(Measure(subject, m) for m in metrics))
    points = [
        (START + 5, [math.nan, 2**70, True, "NaN"]),
        (START + 10, [None, 7, False, "load"]),
    ]
    record = _record(1, schema=schema, points=points)
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([record])

    (loaded,) = load_results(tmp_path)

    assert record.to_result() == loaded
    first, second = (point.values for point in loaded.points)
    assert math.isnan(first["job.ratio"])
    assert "job.ratio" not in second
    assert (2**70, True, "NaN") == (first["job.rows"], first["job.ok"], first["job.phase"])


def test_a_long_call_keeps_every_point(tmp_path):
    """A call the sampler promoted has a point at every tick: all of them are stored."""
    points = [(START + t, _row(t)) for t in (100, 200, 300, 350)]
    record = _record(1, ended=350, points=points)
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([record])

    (loaded,) = load_results(tmp_path)

    assert record.to_result() == loaded
    assert 4 == len(loaded.points)


def test_results_of_other_measurements_are_stored_in_the_same_files(tmp_path):
    """store(result), e.g. from Multimeter.measure(), adds a line that reads back equal."""
    storage = JsonLinesStorage(tmp_path)
    meter = multimeter.Multimeter(ResourceProbe(), cycle_time=0.01, storage=storage)
    with meter.measure("etl-run", job="etl") as result:
        sum(range(1000))
    storage.store_calls([_record(1)])
    storage.close()

    first, call = load_results(tmp_path)

    assert result == first
    assert "load-4242-00112233aabbccdd-1" == call.identifier


# --- files: processes, rotation, closing ------------------------------------------------


def test_a_full_file_is_followed_by_the_next_one_each_readable_on_its_own(tmp_path):
    """Past max_file_bytes the next batch starts file -2, -3, ...: each with its header."""
    records = [_record(n, parent=100) for n in range(1, 13)] + [_record(100, ended=50)]
    with JsonLinesStorage(tmp_path, max_file_bytes=1500) as storage:
        for start in range(0, len(records), 2):
            storage.store_calls(records[start : start + 2])
    paths = sorted(tmp_path.iterdir(), key=lambda p: int(p.stem.rsplit("-", 1)[1]))

    assert len(paths) > 3
    assert all(json.loads(p.read_text().splitlines()[0])["format"] for p in paths)
    loaded = list(load_results(tmp_path))
    assert _results_of(records) == loaded
    assert 2 + 2 * 12 == len(loaded[-1].marks)  # its own, and those of the calls made in it


def test_after_close_the_next_batch_starts_a_new_file(tmp_path):
    """close() releases the file; the storage stays usable."""
    storage = JsonLinesStorage(tmp_path)
    storage.store_calls([_record(1)])
    storage.close()
    storage.store_calls([_record(2)])
    storage.close()

    assert 2 == len(list(tmp_path.iterdir()))
    assert 2 == len(list(load_results(tmp_path)))


def test_two_storages_of_one_process_write_files_of_their_own(tmp_path):
    """Names are taken exclusively: a second storage on the directory takes the next number."""
    first, second = JsonLinesStorage(tmp_path), JsonLinesStorage(tmp_path)
    first.store_calls([_record(1)])
    second.store_calls([_record(2)])
    first.store_calls([_record(3)])
    first.close()
    second.close()

    assert 2 == len(list(tmp_path.iterdir()))
    assert [1, 3, 2] == [int(r.identifier.rsplit("-", 1)[1]) for r in load_results(tmp_path)]


def test_fsync_flushes_each_batch(tmp_path, monkeypatch):
    """With fsync=True every batch is flushed to the disk (and a new file's directory)."""
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    with JsonLinesStorage(tmp_path, fsync=True) as storage:
        storage.store_calls([_record(1)])
        storage.store_calls([_record(2)])

    assert 3 == len(synced)
    assert 2 == len(list(load_results(tmp_path)))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"directory": ""}, "directory"),
        ({"directory": 7}, "directory"),
        ({"directory": "d", "max_file_bytes": 0}, "max_file_bytes"),
        ({"directory": "d", "max_file_bytes": 1.5}, "max_file_bytes"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    """A ValueError names the argument."""
    with pytest.raises(ValueError, match=message):
        JsonLinesStorage(**arguments)


# --- failures: a full disk, a crash, damage ---------------------------------------------


def test_a_failed_write_raises_and_leaves_only_whole_lines(tmp_path, monkeypatch):
    """Half a batch written, then ENOSPC: the file is cut back; the next batch goes on."""
    storage = JsonLinesStorage(tmp_path)
    storage.store_calls([_record(1), _record(2)])
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        monkeypatch.setattr(os, "write", failing)
        return real_write(fd, bytes(data)[: len(data) // 2])

    def failing(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        storage.store_calls([_record(3), _record(4)])
    monkeypatch.setattr(os, "write", real_write)
    storage.store_calls([_record(5)])
    storage.close()

    assert all(path.read_bytes().endswith(b"\n") for path in tmp_path.iterdir())
    assert [1, 2, 5] == [int(r.identifier.rsplit("-", 1)[1]) for r in load_results(tmp_path)]


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A 64 KiB tmpfs (needs root); unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    directory = tmp_path / "small"
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_a_full_disk_fails_the_batch_and_writing_goes_on_once_there_is_room(small_disk):
    """ENOSPC raises from store_calls; every stored call still loads, and so do later ones."""
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * 40_000)
    storage = JsonLinesStorage(small_disk / "results")
    stored: list[CallRecord] = []
    with pytest.raises(OSError) as failure:
        for start in range(1, 100_000, 20):
            batch = [_record(n) for n in range(start, start + 20)]
            storage.store_calls(batch)
            stored += batch
    assert errno.ENOSPC == failure.value.errno
    assert stored
    assert _results_of(stored) == list(load_results(small_disk))

    filler.unlink()
    later = [_record(n) for n in range(start, start + 20)]
    storage.store_calls(later)
    storage.close()

    assert _results_of(stored + later) == list(load_results(small_disk))


def test_a_partial_last_line_is_passed_over(tmp_path):
    """What a crash in the middle of a write leaves: the whole lines before it load."""
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([_record(1), _record(2)])
    (path,) = tmp_path.iterdir()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])

    assert [1] == [int(r.identifier.rsplit("-", 1)[1]) for r in load_results(path)]


def test_a_damaged_line_raises_naming_the_file_and_line(tmp_path):
    """A line in the middle that does not decode: ResultFileError, unless skipped."""
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([_record(1), _record(2), _record(3)])
    (path,) = tmp_path.iterdir()
    lines = path.read_bytes().splitlines(keepends=True)
    lines[-2] = lines[-2][:30] + b"\x00\x00garbage" + lines[-2][30:]
    path.write_bytes(b"".join(lines))

    with pytest.raises(ResultFileError, match=rf"{path.name}: line {len(lines) - 1}: not JSON"):
        list(load_results(tmp_path))


def test_damaged_lines_can_be_skipped_with_a_warning(tmp_path, logs):
    """skip_damaged=True passes over damaged lines and files, with one warning per file."""
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([_record(1), _record(2), _record(3)])
    (path,) = tmp_path.iterdir()
    lines = path.read_bytes().splitlines(keepends=True)
    lines[-2] = b"[99,2]\n"
    path.write_bytes(b"".join(lines))
    (tmp_path / "broken.json").write_text("{")

    loaded = list(load_results(tmp_path, skip_damaged=True))

    assert [1, 3] == [int(r.identifier.rsplit("-", 1)[1]) for r in loaded]
    warnings = [(e["event"], e["path"]) for e in logs if e["log_level"] == "warning"]
    assert [
        ("skipped a damaged result file", str(tmp_path / "broken.json")),
        ("skipped damaged lines of a batch file", str(path)),
    ] == warnings


def test_a_file_that_is_not_a_batch_file_is_refused(tmp_path):
    """A .jsonl file without the header: ResultFileError naming the file."""
    path = tmp_path / "other.jsonl"
    path.write_text('{"some": "log"}\n')

    with pytest.raises(ResultFileError, match=r"other\.jsonl: line 1: not a batch file"):
        load_result(path)


# --- reading: load_result, load_results -------------------------------------------------


def test_load_result_reads_a_batch_file_of_one_result(tmp_path):
    """The batch file of a single call is a result file like any other."""
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([_record(1)])
    (path,) = tmp_path.iterdir()

    assert _record(1).to_result() == load_result(path)


def test_load_result_refuses_a_batch_file_of_several_results(tmp_path):
    """It names load_results(), which reads them all."""
    with JsonLinesStorage(tmp_path) as storage:
        storage.store_calls([_record(1), _record(2)])
    (path,) = tmp_path.iterdir()

    with pytest.raises(ValueError, match=r"more than one result.*load_results\(\)"):
        load_result(path)


def test_load_results_reads_every_format_under_a_directory(tmp_path):
    """.json, .line and .jsonl files, in subdirectories too; other files are passed over."""
    first = _record(1).to_result()
    second = _record(2).to_result()
    multimeter.FileStorage(tmp_path / "a", multimeter.JsonFormat()).store(first)
    multimeter.FileStorage(tmp_path / "b" / "c", multimeter.LineFormat()).store(second)
    with JsonLinesStorage(tmp_path / "b") as storage:
        storage.store_calls([_record(3), _record(4)])
    (tmp_path / "b" / "notes.txt").write_text("not a result")

    loaded = list(load_results(tmp_path))

    assert [first, _record(3).to_result(), _record(4).to_result(), second] == loaded


# --- real processes -----------------------------------------------------------------------


APP = """
    import os, sys
    import multimeter

    @multimeter.measured(tag_args=["dataset"])
    def parse(dataset, text):
        return text.split()

    @multimeter.measured(tags={"stage": "etl"})
    def load(dataset):
        if dataset == "bad":
            raise KeyError(dataset)
        return len(parse(dataset, "a b")) + len(parse(dataset, "c"))

    for dataset in ("x", "y", "bad", "z"):
        try:
            load(dataset)
        except KeyError:
            pass
"""


def _run(tmp_path: pathlib.Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    completed = _programs.run_code(
        code, cwd=tmp_path, timeout=120, pythonpath=[TESTS.parent], **env
    )
    assert 0 == completed.returncode, completed.stderr[-4000:]
    return completed


def _comparable(result: Result) -> dict[str, Any]:
    """What two runs of the same calls share: all but times, measured values and the process."""
    changing = {"started", "pid", "command_line", "run"}
    return {
        "name": result.identifier.split("-")[0],
        "number": result.identifier.rsplit("-", 1)[1],
        "tags": result.tags,
        "meta": {k: v for k, v in result.meta_data.items() if k not in changing},
        "marks": [mark.label for mark in result.marks],
        "keys": [sorted(point.values) for point in result.points],
        "schema": result.schema,
    }


def test_a_program_with_the_default_configuration_stores_what_json_files_would_hold(tmp_path):
    """Batch files read back as the one-file-per-call results of the same calls."""
    _run(tmp_path, APP, MULTIMETER_DIR="batch")
    _run(tmp_path, APP, MULTIMETER_DIR="files", MULTIMETER_FORMAT="json")

    batch = list(load_results(tmp_path / "batch"))
    files = list(load_results(tmp_path / "files"))

    assert 1 == len(list((tmp_path / "batch").iterdir()))
    assert 10 == len(list((tmp_path / "files").iterdir()))
    by_number = sorted(files, key=lambda r: int(r.identifier.rsplit("-", 1)[1]))
    assert [_comparable(r) for r in by_number] == sorted(
        (_comparable(r) for r in batch), key=lambda c: int(c["number"])
    )
    load_x = next(r for r in batch if r.identifier.endswith("-1"))
    assert [
        "load:enter",
        "parse:enter",
        "parse:exit",
        "parse:enter",
        "parse:exit",
        "load:exit",
    ] == [m.label for m in load_x.marks]


def test_forked_and_multiprocessing_children_write_files_of_their_own(tmp_path):
    """Each process appends to its own files, also a child forked with the file open."""
    code = """
        import multiprocessing, os
        import multimeter
        from tests.lifecycle_app import work

        work(0)
        multimeter.flush()  # the parent's file is open now
        pid = os.fork()
        if pid == 0:
            for i in range(5):
                work(i)
            multimeter.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            pool.map(work, range(20))
            pool.close()
            pool.join()
        work(1)
    """
    _run(tmp_path, code, MULTIMETER_DIR="results")
    files = sorted((tmp_path / "results").iterdir())
    headers = [json.loads(path.read_text().splitlines()[0]) for path in files]
    results = list(load_results(tmp_path / "results"))

    assert len(files) == len({h["token"] for h in headers}) >= 3
    for path, header in zip(files, headers, strict=True):
        assert header["token"] in path.name
        pids = {r.meta_data["pid"] for r in load_results(path)}
        assert {header["meta"]["pid"]} == pids
    assert 2 + 5 + 20 == len(results)


def test_os_exit_in_the_middle_of_a_run_leaves_only_loadable_lines(tmp_path):
    """What was flushed is there; what was pending is lost (nothing runs at os._exit)."""
    code = """
        import os
        import multimeter
        from tests.lifecycle_app import work

        for i in range(3000):
            work(i)
            if i == 1000:
                multimeter.flush()
        os._exit(0)
    """
    _run(tmp_path, code, MULTIMETER_DIR="results")

    loaded = list(load_results(tmp_path / "results"))

    assert 1001 <= len(loaded) <= 3000


def test_sigkill_while_a_child_writes_never_damages_earlier_lines(tmp_path):
    """Killed in the middle of its loop: every whole line loads, the file's lines are whole."""
    code = """
        import multimeter
        from tests.lifecycle_app import work

        i = 0
        while True:
            work(i)
            i += 1
    """
    environment = _programs.environment(PYTHONPATH=str(TESTS.parent), MULTIMETER_DIR="results")
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=environment
    ) as child:
        try:
            deadline = time.monotonic() + 60
            while _size(tmp_path / "results") < 200_000:
                assert child.poll() is None, "the program ended"
                assert time.monotonic() < deadline, "the program stored too little"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
    assert -signal.SIGKILL == child.wait()

    loaded = list(load_results(tmp_path / "results"))

    assert len(loaded) > 500
    numbers = [int(r.identifier.rsplit("-", 1)[1]) for r in loaded]
    assert list(range(1, len(loaded) + 1)) == numbers


def _size(directory: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.jsonl")) if directory.exists() else 0


def test_load_results_passes_over_an_influxdb_spool_under_the_directory(tmp_path):
    """The spool of MULTIMETER_STORAGE=influxdb lives under MULTIMETER_DIR by default."""
    from multimeter.result import Result
    from multimeter.storages._spool import Spool

    storage = multimeter.FileStorage(tmp_path, multimeter.LineFormat())
    result = Result(identifier="run-1")
    storage.store(result)
    spool = Spool(tmp_path / "spool")
    spool.put("m,lane=0 x=1 1\nm,lane=0 x=2 2\n")
    assert ["run-1"] == [r.identifier for r in multimeter.load_results(tmp_path)]


# --- files removed or truncated while the program runs --------------------------------

#: A program's measured calls; after the first ``BEFORE`` calls are all on disk, what the
#: placeholder does to the results (a cleanup job, logrotate) runs; then ``AFTER`` calls.
_VANISHING = """
    import glob, os, shutil, time
    import multimeter

    @multimeter.measured
    def work(i):
        return i

    results = os.environ["MULTIMETER_DIR"]

    def written():
        lines = [
            line
            for path in glob.glob(os.path.join(results, "*.jsonl"))
            for line in open(path, encoding="utf-8")
        ]
        return sum(line.startswith("[") for line in lines)

    for i in range({before}):
        work(i)
    deadline = time.monotonic() + 60
    while written() < {before}:  # the writer stores them in the background
        assert time.monotonic() < deadline, "the calls were not written"
        time.sleep(0.01)
    {action}
    for i in range({after}):
        work(i)
"""


def _vanishing(tmp_path: pathlib.Path, action: str, after: int) -> tuple[list[int], str]:
    """Run ``_VANISHING`` with ``action``: (the call numbers loaded afterwards, the log)."""
    code = textwrap.dedent(_VANISHING).format(before=1000, action=action, after=after)
    completed = run_program(tmp_path, code, timeout=120)
    numbers = [int(r.identifier.rsplit("-", 1)[1]) for r in load_results(tmp_path / "results")]
    return numbers, completed.stdout + completed.stderr


@pytest.mark.parametrize(
    "action",
    [
        "shutil.rmtree(results)",
        "[os.unlink(path) for path in glob.glob(os.path.join(results, '*.jsonl'))]",
    ],
    ids=["directory", "files"],
)
def test_calls_after_a_cleanup_job_removes_the_results_are_all_kept(tmp_path, action):
    """The directory or its files removed mid-run: later calls go to a new file, logged once."""
    numbers, log = _vanishing(tmp_path, action, after=5000)

    assert list(range(1001, 6001)) == [n for n in numbers if n > 1000]
    assert 1 == log.count("batch file was removed or moved")


def test_calls_after_logrotate_copytruncate_are_all_readable(tmp_path):
    """The file copied aside and truncated in place: later calls start a new file, header first."""
    action = """\
for path in glob.glob(os.path.join(results, "*.jsonl")):
        shutil.copyfile(path, path + ".1")
        os.truncate(path, 0)"""
    numbers, log = _vanishing(tmp_path, action, after=3000)

    assert list(range(1001, 4001)) == [n for n in numbers if n > 1000]
    assert 1 == log.count("batch file was truncated")
    rotated = tmp_path / "rotated.jsonl"  # what logrotate kept, read as a batch file
    rotated.write_bytes(next((tmp_path / "results").glob("*.jsonl.1")).read_bytes())
    kept = [int(r.identifier.rsplit("-", 1)[1]) for r in load_results(rotated)]
    assert list(range(1, 1001)) == kept


def test_a_file_moved_aside_keeps_its_calls_and_the_next_batch_starts_a_new_one(tmp_path, logs):
    """logrotate's default (rename): the moved file reads on its own, later calls in a new one."""
    storage = JsonLinesStorage(tmp_path / "results")
    storage.store_calls([_record(1)])
    (moved,) = (tmp_path / "results").glob("*.jsonl")
    moved.rename(tmp_path / "rotated.jsonl")
    storage.store_calls([_record(2)])
    storage.store_calls([_record(3)])
    storage.close()

    def numbers(path: pathlib.Path) -> list[int]:
        return [int(r.identifier.rsplit("-", 1)[1]) for r in load_results(path)]

    assert [1] == numbers(tmp_path / "rotated.jsonl")
    assert [2, 3] == numbers(tmp_path / "results")
    assert 1 == len([e for e in logs if "removed or moved" in e["event"]])


def test_a_file_left_alone_is_checked_without_starting_another(tmp_path, logs):
    """Many batches into an untouched file: one file, no warning."""
    storage = JsonLinesStorage(tmp_path)
    for number in range(1, 51):
        storage.store_calls([_record(number)])
    storage.close()

    assert 1 == len(list(tmp_path.iterdir()))
    assert 50 == len(list(load_results(tmp_path)))
    assert [] == logs
