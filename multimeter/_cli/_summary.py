"""Summaries of stored results: one row per result, one per measured function.

What ``multimeter show`` prints and ``multimeter report`` charts. :func:`scan`
reads result files and directories of them in every format multimeter writes
(``.json``, ``.line``, ``.jsonl`` batch files, aggregate-mode results among
them) and gives one :class:`ResultRow` per result, reading only what the row
needs: a ``.json`` file as :class:`~multimeter.JsonFormat` writes it is decoded
without its schema (most of its bytes), a call of a batch file without building
its :class:`~multimeter.Result`. The figures are those of
:meth:`multimeter.Result.summary`. :func:`function_rows` folds the rows of
``@measured`` calls into one :class:`FunctionRow` per function.

A file that cannot be read (damaged, truncated, not a result) raises
:class:`~multimeter._cli._common.CommandError` naming it, or, when ``scan`` is
given ``on_damaged``, is reported there and passed over. What a row does not
need is not read: damage in the schema of a ``.json`` or ``.line`` file, or in
the fields of a ``.line`` point that a row does not use, goes unnoticed here
(``export`` and ``load_result`` read everything).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from multimeter._aggregate import SCHEMA as _AGGREGATE_SCHEMA
from multimeter._cli._common import CommandError
from multimeter._loading import (
    LINE_TOO_LONG,
    PendingMarks,
    batch_lines,
    load_result,
    open_regular,
    result_files,
)
from multimeter.metric import DURATION_BUCKETS
from multimeter.result import Result, Schema, us_to_datetime
from multimeter.storages._format import ResultFileError, reading
from multimeter.storages._jsonl import EXTENSION, Call, Decoder
from multimeter.storages._line import HEADER, escape_key, series_prefix

__all__ = [
    "BUCKET_BOUNDS_S",
    "AggregateSums",
    "FunctionRow",
    "FunctionTable",
    "ResultRow",
    "check_paths",
    "function_rows",
    "scan",
]

#: The upper bounds (seconds) of aggregate mode's duration buckets, the last infinite.
BUCKET_BOUNDS_S: tuple[float, ...] = tuple(bound for bound, _ in DURATION_BUCKETS)
_BOUNDS_US = tuple(round(bound * 1e6) for bound in BUCKET_BOUNDS_S[:-1])
_EXTENSIONS = (".json", ".line", EXTENSION)
_CHUNK = 1 << 20
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_ABSENT = object()
#: Where a result's own peak memory is read from, as in Result.summary().
_PEAK_KEYS = ("process.peak_rss", "proc.rss")
_CPU_USER, _CPU_SYSTEM = "process.cpu_user", "process.cpu_system"
#: How a schema (as JSON writes it, in .json and .line files) names a measure's key.
_SCHEMA_KEYS = {key: f'"key": "{key}"'.encode() for key in (_CPU_USER, _CPU_SYSTEM)}
_AGGREGATE_KEYS = [m.key for m in _AGGREGATE_SCHEMA.measures]
_COUNT, _ERRORS, _DURATION, _MAX, _AGG_USER, _AGG_SYSTEM = _AGGREGATE_KEYS[:6]
_BUCKET_KEYS = _AGGREGATE_KEYS[6:]


@dataclass(frozen=True)
class AggregateSums:
    """The sums of an aggregate-mode result (``calls="aggregate"``), over its cycles."""

    #: Calls, and calls that raised.
    calls: int
    errors: int
    #: The calls' durations summed, and the longest (seconds).
    duration_total_s: float
    duration_max_s: float
    #: CPU seconds of the calls (``None`` without the ``resource`` probe).
    cpu_user_s: float | None
    cpu_system_s: float | None
    #: Calls per duration bucket (not cumulative), bounds :data:`BUCKET_BOUNDS_S`.
    buckets: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ResultRow:
    """The key figures of one stored result (see :meth:`multimeter.Result.summary`).

    Rows of the calls of one function share their ``tags`` dict: do not change it.
    """

    #: The file the result came from.
    path: pathlib.Path
    identifier: str
    #: The ``run`` meta datum (``None`` for results written before runs existed).
    run: str | None
    tags: Mapping[str, str]
    #: When the measurement started (UTC), ``None`` when it does not say.
    start: datetime | None
    duration_s: float | None
    points: int
    marks: int
    peak_memory_bytes: float | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    #: ``module.qualname`` for a ``@measured`` call (and an aggregate of calls), else ``None``.
    function: str | None
    #: The call raised (meta datum ``outcome`` is ``raise``).
    error: bool
    #: The ``outcome`` meta datum (``ok``, ``raise``) or ``None``.
    outcome: str | None = None
    #: The sums of an aggregate-mode result; ``None`` for any other.
    aggregate: AggregateSums | None = None

    @property
    def cpu_s(self) -> float | None:
        """CPU seconds, user and system together (``None`` when neither is known)."""
        if self.cpu_user_s is None and self.cpu_system_s is None:
            return None
        return (self.cpu_user_s or 0.0) + (self.cpu_system_s or 0.0)


@dataclass(frozen=True)
class FunctionRow:
    """The calls of one measured function, summed.

    Durations are exact for calls stored one by one; where aggregate-mode results
    count in, the percentiles come from their duration histogram (one bucket per
    decade), interpolated within the bucket, and ``approximate`` is true.
    """

    #: ``module.qualname``.
    function: str
    calls: int
    #: Calls that raised.
    errors: int
    duration_total_s: float
    duration_p50_s: float | None
    duration_p95_s: float | None
    duration_max_s: float | None
    #: CPU seconds (user and system) of all the calls, and per call.
    cpu_total_s: float | None
    cpu_mean_s: float | None
    #: The highest peak memory of a call (``None``: no call tells; aggregates never do).
    peak_memory_max_bytes: float | None
    #: The percentiles are estimated from histograms (aggregate-mode results).
    approximate: bool
    #: The earliest start of a call (or cycle).
    first_start: datetime | None


def scan(
    paths: Iterable[str | os.PathLike[str]],
    *,
    tags: Mapping[str, str] | None = None,
    on_damaged: Callable[[pathlib.Path, str], None] | None = None,
) -> Iterator[ResultRow]:
    """One row per result in ``paths``: files and directories (recursively).

    Only results whose tags include every item of ``tags`` are given. Results
    come in the order of :func:`multimeter.load_results`. Every path is checked
    before the first row.

    Raises:
        CommandError: for a path that does not exist, a file with another
            extension, a directory without result files (``no results under
            DIR``), and, without ``on_damaged``, a file that cannot be read;
            with it, such a file (or a batch file's damaged lines) is passed
            over and ``on_damaged(path, reason)`` called once per file.
    """
    given = check_paths(paths)
    reader = _Reader(dict(tags or {}), on_damaged)
    for path in given:
        if path.is_dir():
            try:
                files = list(result_files(path))
            except OSError as error:
                raise CommandError(f"cannot read {str(path)!r}: {error}") from error
            if not files:
                raise CommandError(f"no results under {str(path)!r}")
            yield from reader.files(files)
        else:
            yield from reader.file(path)


def check_paths(paths: Iterable[str | os.PathLike[str]]) -> list[pathlib.Path]:
    """``paths`` as paths, each an existing directory or a file of a result format.

    Raises:
        CommandError: naming the first path that is neither.
    """
    given = [pathlib.Path(path) for path in paths]
    for path in given:
        if path.is_dir():
            continue
        if not path.exists():
            raise CommandError(f"no such file or directory: {str(path)!r}")
        if path.suffix not in _EXTENSIONS:
            raise CommandError(
                f"{str(path)!r} is not a result file (allowed extensions: .json, .line, .jsonl)"
            )
    return given


def function_rows(rows: Iterable[ResultRow]) -> list[FunctionRow]:
    """One row per function of the ``@measured`` calls among ``rows``, by function name."""
    table = FunctionTable()
    for row in rows:
        table.add(row)
    return table.rows()


class FunctionTable:
    """Folds rows into per-function sums as they come (keeps no row).

    >>> table = FunctionTable()  # doctest: +SKIP
    >>> for row in scan(["multimeter-results"]): table.add(row)  # doctest: +SKIP
    >>> table.rows()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._sums: dict[str, _FunctionSums] = {}

    def add(self, row: ResultRow) -> None:
        """Count ``row`` in, if it is a ``@measured`` call (or an aggregate of calls)."""
        if row.function is None:
            return
        found = self._sums.get(row.function)
        if found is None:
            found = self._sums[row.function] = _FunctionSums()
        found.add(row)

    def __len__(self) -> int:
        """The number of functions."""
        return len(self._sums)

    def rows(self) -> list[FunctionRow]:
        """One row per function, by function name."""
        return [self._sums[name].row(name) for name in sorted(self._sums)]


# -- reading -----------------------------------------------------------------------

#: The C scanner behind json.loads: (value, end) of the JSON value at an index;
#: StopIteration where there is none.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, not in the stubs


class _Reader:
    """Reads files into rows; one per scan (the marks of nested calls span files)."""

    def __init__(
        self,
        tags: dict[str, str],
        on_damaged: Callable[[pathlib.Path, str], None] | None,
    ) -> None:
        self._tags = tags
        self._on_damaged = on_damaged
        self._pending = PendingMarks()
        # id(schema) -> (schema, cpu user column, cpu system column, peak columns)
        self._layouts: dict[int, tuple[Schema, int | None, int | None, list[int]]] = {}

    def _damaged(self, path: pathlib.Path, reason: str) -> None:
        if self._on_damaged is None:
            raise CommandError(f"{path}: {reason}")
        self._on_damaged(path, reason)

    def _wanted(self, tags: Mapping[str, str]) -> bool:
        return not self._tags or all(tags.get(k) == v for k, v in self._tags.items())

    def files(self, files: list[pathlib.Path]) -> Iterator[ResultRow]:
        """The rows of ``files``; .json files (the common case) without a generator each."""
        for file in files:
            name = str(file)
            if name.endswith(".json"):
                row = self.json_row(file, name)
                if row is not None:
                    yield row
            else:
                yield from self.file(file)

    def file(self, path: pathlib.Path) -> Iterator[ResultRow]:
        """The rows of one file."""
        name = str(path)
        if name.endswith(".json"):
            row = self.json_row(path, name)
            if row is not None:
                yield row
            return
        try:
            if name.endswith(EXTENSION):
                yield from self._batch_file(path)
            else:
                skimmed = _line_parts(_read(name))
                if skimmed is not None:
                    row = _row(path, *skimmed)
                else:  # laid out otherwise: read it whole
                    row = _row_of_result(path, load_result(path))
                if self._wanted(row.tags):
                    yield row
        except ResultFileError as error:
            self._damaged(path, error.reason)
        except OSError as error:
            self._damaged(path, f"cannot be read ({error.strerror or error})")

    def json_row(self, path: pathlib.Path, name: str) -> ResultRow | None:
        """The row of the ``.json`` file ``path`` (``name``: its text); ``None`` when
        its tags are not wanted or it cannot be read (reported)."""
        try:
            return self._json_file(path, name)
        except ResultFileError as error:
            self._damaged(path, error.reason)
        except OSError as error:
            self._damaged(path, f"cannot be read ({error.strerror or error})")
        return None

    def _json_file(self, path: pathlib.Path, name: str) -> ResultRow | None:
        data = _read(name)
        try:  # the common case, without the cost of reading()'s error messages
            document = _skimmed(data)
            if document is not None:
                return _row_of_document(path, document, self._wanted)
        except Exception:  # noqa: BLE001 - read it again below, for the reason
            pass
        with reading():
            return _row_of_document(path, json.loads(data.decode("utf-8")), self._wanted)

    def _batch_file(self, path: pathlib.Path) -> Iterator[ResultRow]:
        decoder: Decoder | None = None
        damaged, first_reason = 0, ""
        wanted = self._wanted
        with open(open_regular(path), "rb") as stream:
            for number, raw in enumerate(batch_lines(stream), 1):
                try:
                    with reading(f"line {number}"):
                        if raw is None:
                            raise ResultFileError(LINE_TOO_LONG)
                        value = _line_value(raw)
                        if decoder is None:
                            decoder = Decoder(value, self._pending)
                            continue
                        if isinstance(value, list):
                            call = decoder.call(value)
                            if wanted(call.record.tags):
                                yield self._call_row(path, call)
                        elif isinstance(value, dict) and "result" in value:
                            row = _row_of_document(path, value["result"], wanted)
                            if row is not None:
                                yield row
                        else:
                            decoder.define(value)
                except ResultFileError as error:
                    if self._on_damaged is None:
                        raise
                    damaged, first_reason = damaged + 1, first_reason or error.reason
                    if decoder is None:
                        break  # no header: nothing in the file can be read
        if damaged:
            lines = "1 damaged line" if damaged == 1 else f"{damaged} damaged lines"
            self._damaged(path, f"{lines} passed over (first: {first_reason})")

    def _layout(self, schema: Schema) -> tuple[Schema, int | None, int | None, list[int]]:
        layout = self._layouts.get(id(schema))
        if layout is None or layout[0] is not schema:
            keys = [m.key for m in schema.measures]
            user = keys.index(_CPU_USER) if _CPU_USER in keys else None
            system = keys.index(_CPU_SYSTEM) if _CPU_SYSTEM in keys else None
            peaks = [keys.index(key) for key in _PEAK_KEYS if key in keys]
            layout = self._layouts[id(schema)] = (schema, user, system, peaks)
        return layout

    def _call_row(self, path: pathlib.Path, call: Call) -> ResultRow:
        """The row of a call of a batch file, from its record (no Result is built)."""
        record = call.record
        _, user, system, peaks = self._layout(record.schema)
        origin = record.started_us
        points = record.points
        times = [moment for moment, _ in points]
        peak = None
        for column in peaks:
            peak = _highest((row[column] for _, row in points), peak)
        function = record.function
        return ResultRow(
            path=path,
            identifier=record.identifier,
            run=record.meta.get("run"),
            tags=record.tags,
            start=us_to_datetime(origin),
            duration_s=(times[-1] - origin) / 1e6 if times else None,
            points=len(points),
            marks=2 + len(call.marks),
            peak_memory_bytes=peak,
            cpu_user_s=_integral(times, [row[user] for _, row in points], origin)
            if user is not None
            else None,
            cpu_system_s=_integral(times, [row[system] for _, row in points], origin)
            if system is not None
            else None,
            function=f"{function.module}.{function.qualname}",
            error=record.exception is not None,
            outcome="ok" if record.exception is None else "raise",
        )


def _read(name: str) -> bytes:
    """The bytes of a regular file, in as few system calls as it takes."""
    descriptor = open_regular(name)
    try:
        data = os.read(descriptor, _CHUNK)
        if len(data) == _CHUNK:  # a big result: read the rest
            chunks = [data]
            while chunks[-1]:
                chunks.append(os.read(descriptor, _CHUNK))
            data = b"".join(chunks)
    finally:
        os.close(descriptor)
    return data


def _line_value(raw: bytes) -> Any:
    """The JSON value of a line, as ``json.loads`` gives it (and its error), faster."""
    try:
        text = raw.decode("utf-8")
        value, end = _scan(text, 0)
        if end == len(text) or not text[end:].strip():
            return value
    except (StopIteration, ValueError):
        pass
    return json.loads(raw)  # raises what reading() turns into the reason


def _skimmed(data: bytes) -> dict[str, Any] | None:
    """The identifier, tags, meta data, points and marks of a ``.json`` result laid
    out as :class:`~multimeter.JsonFormat` writes it, without decoding its schema
    (neither from UTF-8 nor as JSON); ``None`` for data laid out otherwise (decode
    it whole).

    The schema starts at the first ``,"schema":{`` (the values of tags and meta
    data are strings, so no ``{`` follows a key of theirs) and ends at the first
    ``},"points":[`` after it (JSON escapes every quote inside a string, and no key
    of a schema is ``points``); the split happens at ASCII characters.
    """
    if not data.startswith(b'{"identifier":'):
        return None
    schema = data.find(b',"schema":{')
    points_at = data.find(b'},"points":[', schema)
    if schema < 0 or points_at < 0:
        return None
    try:
        head = data[:schema].decode("utf-8")
        tail = data[points_at + 11 :].decode("utf-8")
        identifier, position = _scan(head, 14)
        if not head.startswith(',"tags":', position):
            return None
        tags, position = _scan(head, position + 8)
        if not head.startswith(',"meta_data":', position):
            return None
        meta, position = _scan(head, position + 13)
        if position != len(head):
            return None
        found = None if meta.get("calls") == "aggregate" else _points_needed(tail)
        if found is not None:
            points, marks = found
        else:
            points, position = _scan(tail, 0)
            if not tail.startswith(',"marks":', position):
                return None
            marks, position = _scan(tail, position + 9)
            if tail[position:].strip() != "}":
                return None
    except (StopIteration, ValueError):
        return None
    return {
        "identifier": identifier,
        "tags": tags,
        "meta_data": meta,
        "points": points,
        "marks": marks,
        "cpu_in_schema": _cpu_in_schema(data[schema:points_at]),
    }


_POINT = '{"datetime":"'
#: The value of a needed key in a point's values: a JSON string, or anything up to
#: the next comma or brace (a number, true, false, null).
_NEEDED = {
    key: re.compile(re.escape(f'"{key}":') + r'("(?:[^"\\]|\\.)*"|[^,}]*)')
    for key in (_CPU_USER, _CPU_SYSTEM, *_PEAK_KEYS)
}


def _points_needed(tail: str) -> tuple[list[dict[str, Any]], list[None]] | None:
    """From ``[points],"marks":[marks]}``: each point with only the values a row
    needs, and a placeholder per mark (a row counts them); ``None`` where the text
    is laid out otherwise (scan it whole).

    Safe to split on ``{"datetime":"`` and to search for ``"<key>":``: inside a
    JSON string every quote is escaped, so neither occurs there.
    """
    middle = tail.rfind('],"marks":[')
    if middle < 0 or not tail.endswith("]}"):
        return None
    chunks = tail[: middle + 1].split(_POINT)
    if chunks[0] != "[":
        return None
    points = []
    last = len(chunks) - 1
    for number, chunk in enumerate(chunks[1:], 1):
        end = chunk.find('"')
        if not chunk.startswith('","values":{', end) or not chunk.endswith(
            "}}]" if number == last else "}},"
        ):
            return None
        values = {}
        for key, pattern in _NEEDED.items():
            if key in chunk:
                match = pattern.search(chunk, end)
                if match is not None:
                    values[key] = _json_scalar(match[1])
        points.append({"datetime": chunk[:end], "values": values})
    return points, [None] * tail.count(_POINT, middle)


_HEADER_START = HEADER + '{"identifier": '
_SCHEMA_START = ', "schema": {'
#: (key, what precedes its value in ``,`` + a line's fields) of the values a row needs.
_LINE_NEEDED = [(key, f",{escape_key(key)}=") for key in (_CPU_USER, _CPU_SYSTEM, *_PEAK_KEYS)]


def _line_parts(
    data: bytes,
) -> (
    tuple[
        str, dict[str, str], dict[str, str], list[tuple[int, dict[str, Any]]], int, frozenset[str]
    ]
    | None
):
    """Identifier, tags, meta data, points (with the values a row needs), the
    number of marks and the CPU measures of the schema of a ``.line`` result laid out as
    :class:`~multimeter.LineFormat` writes it, without decoding its schema or the
    fields a row does not need; ``None`` for anything else (read it whole).

    Every data line must start with the series of the header's identifier and
    tags; a line with a string field or a backslash in its fields is left to the
    full reader, and so are aggregate-mode results (their rows need every field).
    """
    if not data.startswith(_HEADER_START.encode()):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    end = text.find("\n")
    schema = text.find(_SCHEMA_START, 0, end)
    if end < 0 or schema < 0:
        return None
    try:
        head = json.loads(text[len(HEADER) : schema] + "}")
        identifier, tags, meta = head["identifier"], head["tags"], head["meta_data"]
        if len(head) != 3 or meta.get("calls") == "aggregate":
            return None
        prefix = series_prefix(identifier, tags)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    points: list[tuple[int, dict[str, Any]]] = []
    marks = 0
    for raw in text[end + 1 :].split("\n"):
        line = raw.strip(" \t\r")
        if not line or (line.startswith("#") and not line.startswith(HEADER)):
            continue
        if not line.startswith(prefix):
            return None
        fields, _, stamp = line[len(prefix) :].rpartition(" ")
        if not stamp.isdigit() or "\\" in fields:
            return None
        if fields.startswith('mark="'):
            if not fields.endswith('"') or '"' in fields[6:-1]:
                return None
            marks += 1
            continue
        if '"' in fields:
            return None
        fields = "," + fields
        values = {}
        for key, before in _LINE_NEEDED:
            at = fields.find(before)
            if at >= 0:
                at += len(before)
                stop = fields.find(",", at)
                values[key] = _line_scalar(fields[at : stop if stop >= 0 else len(fields)])
        points.append((int(stamp) // 1000, values))
    return identifier, tags, meta, points, marks, _cpu_in_schema(data[: data.find(b"\n")])


def _line_scalar(text: str) -> Any:
    """A line-protocol field value that is no string: an integer, a boolean or a float."""
    if text.endswith(("i", "u")):
        return int(text[:-1])
    if text in ("t", "T", "true", "True", "TRUE"):
        return True
    if text in ("f", "F", "false", "False", "FALSE"):
        return False
    return float(text)


def _json_scalar(text: str) -> Any:
    """The value of a JSON number, string, true, false or null."""
    if text[:1] in "-0123456789" and text:
        if "." in text or "e" in text or "E" in text:
            return float(text)
        return int(text)
    return json.loads(text)


def _row_of_document(
    path: pathlib.Path,
    document: Any,
    wanted: Callable[[Mapping[str, str]], bool],
) -> ResultRow | None:
    """The row of a decoded ``.json`` result document (``None`` when its tags are
    not wanted). Call it inside ``reading()``: a malformed document raises there."""
    if not isinstance(document, dict):
        raise ResultFileError("the result must be an object")
    identifier = document.get("identifier")
    if not isinstance(identifier, str) or not identifier:
        raise ResultFileError("not a result: no identifier (a non-empty string)")
    tags = document.get("tags") or {}
    meta = document.get("meta_data") or {}
    if not isinstance(tags, dict) or not isinstance(meta, dict):
        raise ResultFileError("tags and meta_data must be objects")
    if not wanted(tags):
        return None
    points = document.get("points") or []
    marks = document.get("marks") or []
    if not isinstance(points, list) or not isinstance(marks, list):
        raise ResultFileError("points and marks must be arrays")
    timed = [(_us(point["datetime"]), point["values"]) for point in points]
    in_schema = document.get("cpu_in_schema")
    if in_schema is None:  # a whole document
        schema = document.get("schema") or {}
        measures = schema.get("measures") or [] if isinstance(schema, dict) else []
        keys = {m.get("key") for m in measures if isinstance(m, dict)}
        in_schema = frozenset(key for key in (_CPU_USER, _CPU_SYSTEM) if key in keys)
    return _row(path, identifier, tags, meta, timed, len(marks), in_schema)


def _cpu_in_schema(schema: bytes) -> frozenset[str]:
    """The CPU measures a schema's JSON text names (it is not decoded)."""
    return frozenset(key for key, text in _SCHEMA_KEYS.items() if text in schema)


def _row(
    path: pathlib.Path,
    identifier: str,
    tags: dict[str, str],
    meta: dict[str, str],
    points: Sequence[tuple[int, Mapping[str, Any]]],
    marks: int,
    cpu_in_schema: frozenset[str],
) -> ResultRow:
    """The row of a result from its parts; ``points``: (microseconds since the
    epoch, values), with at least the values a row needs (all, for aggregates);
    ``cpu_in_schema``: the CPU measures of the schema (0 s where no point has one,
    as Result.summary() says; ``None`` for one the schema lacks too)."""
    started = meta.get("started")
    origin = _us(started) if isinstance(started, str) and started else None
    # One pass over the points: CPU seconds as Result.summary() computes them (None
    # where no point has the measure), the highest peak memory, the last time.
    user = system = peak = None
    last = previous = origin
    for moment, values in points:
        if previous is None:
            origin = previous = moment
        span = moment - previous  # microseconds
        if span < 0:
            span = 0
        previous = last = moment
        rate = values.get(_CPU_USER, _ABSENT)
        if rate is not _ABSENT:
            rate = _number(rate)
            user = (user or 0.0) + (rate * span / 1e6 if rate is not None else 0.0)
        rate = values.get(_CPU_SYSTEM, _ABSENT)
        if rate is not _ABSENT:
            rate = _number(rate)
            system = (system or 0.0) + (rate * span / 1e6 if rate is not None else 0.0)
        for key in _PEAK_KEYS:
            value = values.get(key)
            if value is not None:
                value = _number(value)
                if value is not None and value > 0 and (peak is None or value > peak):
                    peak = value
    if points:
        if user is None and _CPU_USER in cpu_in_schema:
            user = 0.0
        if system is None and _CPU_SYSTEM in cpu_in_schema:
            system = 0.0
    aggregate = None
    if meta.get("calls") == "aggregate":
        aggregate = _aggregate([values for _, values in points])
    outcome = meta.get("outcome")
    module, qualname = meta.get("module"), meta.get("qualname")
    return ResultRow(
        path=path,
        identifier=identifier,
        run=meta.get("run"),
        tags=tags,
        start=us_to_datetime(origin) if origin is not None else None,
        duration_s=(last - origin) / 1e6
        if points and last is not None and origin is not None
        else None,
        points=len(points),
        marks=marks,
        peak_memory_bytes=peak,
        cpu_user_s=user,
        cpu_system_s=system,
        function=f"{module}.{qualname}" if module and qualname else None,
        error=outcome == "raise",
        outcome=outcome,
        aggregate=aggregate,
    )


def _row_of_result(path: pathlib.Path, result: Result) -> ResultRow:
    """The row of a loaded result (``.line`` files)."""
    summary = result.summary()
    meta = result.meta_data
    module, qualname = meta.get("module"), meta.get("qualname")
    aggregate = None
    if meta.get("calls") == "aggregate":
        aggregate = _aggregate([point.values for point in result.points])
    return ResultRow(
        path=path,
        identifier=result.identifier,
        run=meta.get("run"),
        tags=result.tags,
        start=result.start,
        duration_s=summary["duration_s"],
        points=summary["points"],
        marks=summary["marks"],
        peak_memory_bytes=summary["peak_memory_bytes"],
        cpu_user_s=summary["cpu_user_s"],
        cpu_system_s=summary["cpu_system_s"],
        function=f"{module}.{qualname}" if module and qualname else None,
        error=summary["outcome"] == "raise",
        outcome=summary["outcome"],
        aggregate=aggregate,
    )


def _us(text: Any) -> int:
    """Microseconds since the epoch of an ISO 8601 datetime with a time zone."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ResultFileError(f"{text!r} has no time zone")
    return (moment - _EPOCH) // _ONE_US


def _number(value: Any) -> float | None:
    """A value as a number, ``None`` for a missing, non-numeric or NaN one."""
    if type(value) is float:
        return value if value == value else None
    if isinstance(value, str):
        value = {"Infinity": math.inf, "-Infinity": -math.inf}.get(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return value


def _integral(times: Sequence[int], rates: Sequence[Any], origin: int | None) -> float | None:
    """The sum of each point's rate times its interval (from ``origin``), as
    :meth:`multimeter.Result.summary` computes CPU seconds."""
    if origin is None:
        return None
    total, previous = 0.0, origin
    for moment, rate in zip(times, rates, strict=True):
        number = _number(rate)
        if number is not None:
            total += number * max(moment - previous, 0) / 1e6
        previous = moment
    return total


def _highest(values: Iterable[Any], best: float | None) -> float | None:
    """The highest positive number of ``values`` and ``best``."""
    for value in values:
        number = _number(value)
        if number is not None and number > 0 and (best is None or number > best):
            best = number
    return best


def _aggregate(values: Sequence[Mapping[str, Any]]) -> AggregateSums:
    """The sums of the points of an aggregate-mode result."""
    calls = errors = 0
    total = longest = 0.0
    user: float | None = None
    system: float | None = None
    buckets = [0] * len(_BUCKET_KEYS)
    for row in values:
        calls += int(_number(row.get(_COUNT)) or 0)
        errors += int(_number(row.get(_ERRORS)) or 0)
        total += _number(row.get(_DURATION)) or 0.0
        longest = max(longest, _number(row.get(_MAX)) or 0.0)
        if _number(row.get(_AGG_USER)) is not None:
            user = (user or 0.0) + (_number(row.get(_AGG_USER)) or 0.0)
        if _number(row.get(_AGG_SYSTEM)) is not None:
            system = (system or 0.0) + (_number(row.get(_AGG_SYSTEM)) or 0.0)
        below = 0
        for index, key in enumerate(_BUCKET_KEYS):  # cumulative in the point
            cumulative = int(_number(row.get(key)) or 0)
            buckets[index] += max(cumulative - below, 0)
            below = max(below, cumulative)
    return AggregateSums(calls, errors, total, longest, user, system, tuple(buckets))


# -- per function ----------------------------------------------------------------------


class _FunctionSums:
    """What the rows of one function add up to."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.total = 0.0
        self.durations: list[float] = []
        self.buckets = [0] * len(BUCKET_BOUNDS_S)
        self.approximate = False
        self.longest: float | None = None
        self.cpu: float | None = None
        self.cpu_calls = 0
        self.peak: float | None = None
        self.first: datetime | None = None

    def add(self, row: ResultRow) -> None:
        if row.start is not None and (self.first is None or row.start < self.first):
            self.first = row.start
        sums = row.aggregate
        if sums is not None:
            self.approximate = self.approximate or sums.calls > 0
            self.calls += sums.calls
            self.errors += sums.errors
            self.total += sums.duration_total_s
            for index, count in enumerate(sums.buckets):
                self.buckets[index] += count
            if sums.calls:
                self._longest(sums.duration_max_s)
            if sums.cpu_user_s is not None or sums.cpu_system_s is not None:
                cpu = (sums.cpu_user_s or 0.0) + (sums.cpu_system_s or 0.0)
                self.cpu = (self.cpu or 0.0) + cpu
                self.cpu_calls += sums.calls
            return
        self.calls += 1
        self.errors += row.error
        if row.duration_s is not None:
            self.total += row.duration_s
            self.durations.append(row.duration_s)
            self.buckets[bisect_left(_BOUNDS_US, round(row.duration_s * 1e6))] += 1
            self._longest(row.duration_s)
        call_cpu = row.cpu_s
        if call_cpu is not None:
            self.cpu = (self.cpu or 0.0) + call_cpu
            self.cpu_calls += 1
        if row.peak_memory_bytes is not None and (
            self.peak is None or row.peak_memory_bytes > self.peak
        ):
            self.peak = row.peak_memory_bytes

    def _longest(self, duration: float) -> None:
        if self.longest is None or duration > self.longest:
            self.longest = duration

    def row(self, function: str) -> FunctionRow:
        if self.approximate:
            p50 = _histogram_quantile(self.buckets, 0.5, self.longest)
            p95 = _histogram_quantile(self.buckets, 0.95, self.longest)
        else:
            self.durations.sort()
            p50 = _quantile(self.durations, 0.5)
            p95 = _quantile(self.durations, 0.95)
        return FunctionRow(
            function=function,
            calls=self.calls,
            errors=self.errors,
            duration_total_s=self.total,
            duration_p50_s=p50,
            duration_p95_s=p95,
            duration_max_s=self.longest,
            cpu_total_s=self.cpu,
            cpu_mean_s=self.cpu / self.cpu_calls
            if self.cpu is not None and self.cpu_calls
            else None,
            peak_memory_max_bytes=self.peak,
            approximate=self.approximate,
            first_start=self.first,
        )


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, interpolated linearly between the closest ranks."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _histogram_quantile(buckets: Sequence[int], q: float, longest: float | None) -> float | None:
    """The ``q`` quantile estimated from calls per decade bucket: geometric
    interpolation within the bucket (linear in the first, from 0), at most ``longest``."""
    count = sum(buckets)
    if not count:
        return None
    rank = q * count
    below = 0
    for index, in_bucket in enumerate(buckets):
        if in_bucket and below + in_bucket >= rank:
            fraction = (rank - below) / in_bucket
            upper = BUCKET_BOUNDS_S[index]
            lower = BUCKET_BOUNDS_S[index - 1] if index else 0.0
            if math.isinf(upper):
                upper = max(longest or lower, lower)
            estimate = upper * fraction if lower <= 0 else lower * (upper / lower) ** fraction
            return min(estimate, longest) if longest is not None else estimate
        below += in_bucket
    return longest
